# slabd container image: a build stage that proves the quick start on a pristine Debian 12 and
# builds the release binary, and a runtime stage with only the binary and its shared libraries.
#
#   podman build -t localhost/slabd:dev .          # or: docker build -t slabd:dev .
#   podman run -d -p 127.0.0.1:7000:7000 -p 127.0.0.1:9100:9100 localhost/slabd:dev

# ---------------------------------------------------------------------------------------------
# Build stage: exactly the project's set-up and test steps on a pristine bookworm-slim.
FROM debian:bookworm-slim AS build

WORKDIR /src
COPY . .

# scripts/test.sh installs whatever is missing with apt itself (scripts/install-deps.sh), then
# configures, builds and runs every test for the dev, asan and tsan presets. A failing test fails
# the image build. Nothing is installed before it on purpose: this step is the proof that the
# quick start works on a machine that has nothing but Debian.
RUN ./scripts/test.sh

# The release binary (RelWithDebInfo, as scripts/run.sh builds it), installed under /opt/slabd.
RUN cmake --preset release \
 && cmake --build --preset release \
 && cmake --install build/release --prefix /opt/slabd

# ---------------------------------------------------------------------------------------------
# Runtime stage: the binary, its shared libraries and the sample config, nothing else.
FROM debian:bookworm-slim

# The shared libraries slabd links (readelf -d / ldd on the release binary, mapped to packages
# with dpkg -S): libtomlplusplus.so.3, libspdlog.so.1.10, libfmt.so.9, libhttp_parser.so.2.9,
# libsystemd.so.0 (sd_notify readiness; linked whenever libsystemd-dev is in the build stage),
# libstdc++.so.6, libgcc_s.so.1, libc.so.6/libm.so.6. libsystemd0 (apt depends on it) and the
# last three are already in the base image; they are listed so that the list stays complete if
# the base changes. apt pulls libsystemd0's own dependencies (libzstd, liblz4, libgcrypt, ...).
# Re-check this list with ldd whenever a target gains a library. `apt-get clean`
# drops the downloaded .debs and apt's ~80 MB package caches (/var/cache/apt/*.bin), which a base
# image without the official image's docker-clean apt hook would otherwise keep in this layer.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libtomlplusplus3 libspdlog1.10 libfmt9 libhttp-parser2.9 libsystemd0 \
      libstdc++6 libgcc-s1 libc6 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*

# An unprivileged system user with no home and no login shell; the ports are above 1024, so
# slabd needs no capability.
RUN useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin slabd

COPY --from=build /opt/slabd/bin/slabd /usr/local/bin/slabd
# Every setting at its default, for `--config /etc/slabd/slabd.toml` (mount your own over it).
# slabd does not read it unless told to; command-line flags override it.
COPY deploy/slabd.toml /etc/slabd/slabd.toml

USER slabd

# 7000: echo/proxy data port; 9100: admin HTTP (/, /stats, /metrics, /healthz, /readyz, /config).
EXPOSE 7000 9100

# No HEALTHCHECK: probing /healthz from inside the container would need an HTTP client (curl,
# wget or python3), none of which is in this image, and adding one only for the probe would pull
# in more packages than slabd itself needs. Point the orchestrator's HTTP probes at :9100/healthz
# (liveness) and :9100/readyz (readiness) instead; with [admin] token set they need the header.

# slabd runs as PID 1 in the foreground (its default) and handles SIGTERM itself: it stops
# accepting and gives open connections [timeouts] shutdown_grace (10 s) to finish. Keep
# `podman stop -t` / terminationGracePeriodSeconds above that.
ENTRYPOINT ["/usr/local/bin/slabd"]
# slabd's built-in defaults listen on 127.0.0.1 only. Inside a container that is the container's
# own loopback, which a published port (-p) cannot reach, because the forwarded traffic arrives
# on the container's network interface. So listen on all interfaces here, and restrict exposure
# where the port is published (e.g. -p 127.0.0.1:9100:9100 for the unauthenticated admin port,
# or set [admin] token in a config file).
CMD ["--listen", "0.0.0.0:7000", "--admin", "0.0.0.0:9100"]
