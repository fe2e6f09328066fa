# shellcheck shell=bash
# Sourced by the scripts beside it: podman on a machine with no Docker engine and no image
# registry (see the project's container notes: vfs storage, runc, cgroupfs, a debootstrap base).
# Idempotent: every step checks first. Everything lives under $SLABD_CTR (default /tmp/slabd-ctr);
# `rm -rf "$SLABD_CTR"` (after `podman rm -af` / `podman rmi -af` with the same variables set)
# removes it all.
#
#   . tests/container/podman-env.sh && ctr_setup     # then plain `podman ...` commands work
#
# On a machine with a working podman or Docker set-up, set SLABD_CTR_SYSTEM=1 to use it as it is.

SLABD_CTR=${SLABD_CTR:-/tmp/slabd-ctr}
# The name the Dockerfile's FROM asks for; built locally when no registry is reachable.
SLABD_BASE_IMAGE=${SLABD_BASE_IMAGE:-docker.io/library/debian:bookworm-slim}

ctr_setup() {
  if [[ ${SLABD_CTR_SYSTEM:-0} == 1 ]]; then
    command -v podman >/dev/null || { echo "podman-env: podman is not installed" >&2; return 1; }
    return 0
  fi
  local missing=()
  for tool in podman buildah runc debootstrap; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  if ((${#missing[@]})); then
    echo "podman-env: installing podman buildah runc debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah runc debootstrap >/dev/null
  fi
  mkdir -p "$SLABD_CTR/tmp"
  if [[ ! -f $SLABD_CTR/storage.conf ]]; then
    cat >"$SLABD_CTR/storage.conf" <<CONF
[storage]
driver = "vfs"
runroot = "$SLABD_CTR/runroot"
graphroot = "$SLABD_CTR/root"
CONF
  fi
  if [[ ! -f $SLABD_CTR/containers.conf ]]; then
    # crun cannot set podman's default 1M open-file limit here and does not support hybrid
    # cgroups; runc with cgroupfs does.
    cat >"$SLABD_CTR/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
  fi
  export CONTAINERS_STORAGE_CONF=$SLABD_CTR/storage.conf
  export CONTAINERS_CONF=$SLABD_CTR/containers.conf
  export TMPDIR=$SLABD_CTR/tmp
  if ! podman image exists "$SLABD_BASE_IMAGE"; then
    ctr_base_image || return 1
  fi
}

# debootstrap --variant=minbase bookworm from the mirror this machine's apt uses, imported under
# the name the Dockerfile's FROM uses. About 30 s.
ctr_base_image() {
  local mirror
  # The first "deb URL" or "URIs: URL" (not comments) that is Debian's main archive.
  mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
           | sed -n -E 's,^(deb|URIs:)[[:space:]]+(\[[^]]*\][[:space:]]+)?(https?://[^[:space:]]*/debian/?)([[:space:]].*)?$,\3,p' \
           | head -n 1)
  mirror=${mirror:-http://deb.debian.org/debian}
  echo "podman-env: building the base image $SLABD_BASE_IMAGE with debootstrap from $mirror"
  rm -rf "$SLABD_CTR/rootfs"
  debootstrap --variant=minbase bookworm "$SLABD_CTR/rootfs" "$mirror" >"$SLABD_CTR/debootstrap.log" 2>&1 \
    || { echo "podman-env: debootstrap failed, see $SLABD_CTR/debootstrap.log" >&2; return 1; }
  # debootstrap's apt caches and .debs are not part of a slim image.
  rm -rf "$SLABD_CTR"/rootfs/var/cache/apt/archives/*.deb "$SLABD_CTR"/rootfs/var/lib/apt/lists/*
  tar -C "$SLABD_CTR/rootfs" -c . | podman import -q - "$SLABD_BASE_IMAGE" >/dev/null
  rm -rf "$SLABD_CTR/rootfs"
}
