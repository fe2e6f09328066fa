# slabd container image: a build stage that builds the release binaries and checks them (unit
# tests and a smoke test), and a runtime stage with the binaries, their shared libraries and a
# config file, run as an unprivileged user. README.md, "Container image", has the commands.
#
#   podman build --format docker -t localhost/slabd:0.1.0 .    # or: docker build -t slabd:0.1.0 .
#   podman run -d --name slabd --stop-timeout 15 -p 127.0.0.1:7000:7000 localhost/slabd:0.1.0
#
# `--format docker` keeps the HEALTHCHECK (podman's default OCI format has no field for it).
# tests/container/test_image.sh builds, runs and stops the image and checks each promise here.

# ---------------------------------------------------------------------------------------------
# Build stage. Not the whole suite (scripts/test.sh: sanitizers, fuzzing, Prometheus, Chromium;
# CI runs it): the unit tests of the very objects the image ships, and a smoke test of slabd.
FROM debian:bookworm-slim AS build

WORKDIR /src
# The packages first, in a layer of their own that a source change does not invalidate: what
# building and running needs (install-deps.sh run), doctest for the unit tests, and a Python
# interpreter only because configuring with SLABD_BUILD_TESTS=ON looks for one (the integration
# tests, not run here, are Python). python3-minimal is the interpreter alone (no stdlib extras).
COPY scripts/install-deps.sh scripts/
RUN ./scripts/install-deps.sh run \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends doctest-dev python3-minimal

COPY . .

# The release preset (-O2, no debug info) with the unit tests on: one tree, so the tests link the same
# optimised pool/config/server objects as slabd. Only the binaries and the unit tests are built
# (the target unit_tests), not the integration or fuzz-corpus binaries.
RUN cmake --preset release -DSLABD_BUILD_TESTS=ON >/dev/null \
 && cmake --build --preset release -j "$(nproc)" --target slabd slabd-load unit_tests

# Every doctest case (ctest label "unit"); a failure fails the build.
RUN ctest --test-dir build/release -L unit -j "$(nproc)" --output-on-failure --timeout 120 \
 && echo "unit tests run: $(ctest --test-dir build/release -N -L unit | tail -n 1)"

# Installed stripped of their symbol tables (the unstripped binaries stay in the build stage:
# podman build --target build).
# The image's config: deploy/slabd.toml, every key documented, with one change: the data port
# listens on every interface of the container, since a published port (-p) arrives on the
# container's network interface, not its loopback. The admin endpoint stays on the container's
# loopback (see the runtime stage). --check-config proves the result loads and says that.
RUN cmake --install build/release --prefix /opt/slabd --strip >/dev/null \
 && mkdir -p /opt/slabd/etc \
 && { printf '%s\n' \
        '# slabd in a container (the image'"'"'s /etc/slabd/slabd.toml): deploy/slabd.toml with' \
        '# [server] listen on every interface of the container. [admin] listen stays on the' \
        '# container'"'"'s loopback: the HEALTHCHECK (slabd --probe, run inside the container) reads this' \
        '# file too and reaches it there, and nothing outside does. To publish the admin port, run' \
        '# the image with --admin 0.0.0.0:9100 (same port) or mount a file with [admin] listen set.' \
        ''; \
      sed '0,/^listen = "127.0.0.1:7000"$/s//listen = "0.0.0.0:7000"/' deploy/slabd.toml; } \
      > /opt/slabd/etc/slabd.toml \
 && /opt/slabd/bin/slabd --check-config --config /opt/slabd/etc/slabd.toml > /tmp/effective.toml \
 && grep -qx 'listen = "0.0.0.0:7000"' /tmp/effective.toml \
 && grep -qx 'listen = "127.0.0.1:9100"' /tmp/effective.toml

# The installed binaries, with the image's config: --version, --help, --check-config, start,
# --probe /healthz (the HEALTHCHECK's command), three echoes with slabd-load, SIGTERM, exit 0.
RUN tests/container/smoke.sh /opt/slabd/bin /opt/slabd/etc/slabd.toml

# ---------------------------------------------------------------------------------------------
# Runtime stage: the binaries, their shared libraries and the config, nothing else.
FROM debian:bookworm-slim

# The shared libraries slabd links (ldd on the release binary, mapped to packages with dpkg -S):
# libtomlplusplus.so.3, libspdlog.so.1.10, libfmt.so.9, libhttp_parser.so.2.9, libsystemd.so.0
# (sd_notify; linked whenever libsystemd-dev is in the build stage; apt depends on it, so it is
# in the base already), and libstdc++/libgcc_s/libc, which are in every Debian image. slabd-load
# needs only libfmt. `apt-get clean` drops the .debs and apt's package caches, which a base
# image without the official image's docker-clean hook would otherwise keep in this layer. The
# ldd line fails the build if a library is missing (a target gained one: add its package here).
COPY --from=build /opt/slabd/bin/ /usr/local/bin/
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libtomlplusplus3 libspdlog1.10 libfmt9 libhttp-parser2.9 libsystemd0 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* \
 && ! ldd /usr/local/bin/slabd /usr/local/bin/slabd-load | grep 'not found' \
 && slabd --version

# An unprivileged system user with no home and no login shell; the ports are above 1024, so
# slabd needs no capability.
# UID 10001, as deploy/kubernetes/ runs it (runAsUser), so that both name the same user.
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin slabd

COPY --from=build /opt/slabd/etc/slabd.toml /etc/slabd/slabd.toml

USER slabd

# 7000: echo/proxy data, on every interface of the container. 9100: admin HTTP (/, /stats,
# /metrics, /healthz, /readyz, /config), on the container's loopback unless the operator opts in
# (`--admin 0.0.0.0:9100`, or a mounted config): it has no token by default, so it is not
# reachable through a published port until someone decides it should be.
EXPOSE 7000 9100

# The server and the probe read the same file, so the probe asks the address the server listens
# on (an unspecified address, 0.0.0.0, is probed on loopback); run inside the container, it
# reaches the admin endpoint on the container's loopback, and sends [admin] token if one is set.
# Change the admin port in the file, not by flag: a flag reaches the server, not the HEALTHCHECK.
# --probe gives up after 5 s itself, within the 6 s timeout.
HEALTHCHECK --interval=30s --timeout=6s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/slabd", "--config", "/etc/slabd/slabd.toml", "--probe", "/healthz"]

# slabd is PID 1 and handles SIGTERM itself (signal handlers, so the kernel's PID 1 protection
# does not swallow it): it closes its listeners, gives open connections [timeouts]
# shutdown_grace (10 s) to finish, closes the rest with a FIN and exits 0. Docker's and podman's
# default stop timeout is also 10 s, so give the container more: `run --stop-timeout 15` or
# `stop -t 15` (Kubernetes' default terminationGracePeriodSeconds, 30 s, is enough).
STOPSIGNAL SIGTERM

# Arguments after the image name are flags on top of the file (`... slabd:0.1.0 --threads 2`).
# Another config: mount it over /etc/slabd/slabd.toml (-v ./my.toml:/etc/slabd/slabd.toml:ro),
# which the HEALTHCHECK then reads too; a second --config is an error.
ENTRYPOINT ["/usr/local/bin/slabd", "--config", "/etc/slabd/slabd.toml"]
