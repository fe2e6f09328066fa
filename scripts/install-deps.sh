#!/usr/bin/env bash
# Installs the Debian 12 packages slabd builds, tests and benchmarks with.
# Idempotent: it asks dpkg first and touches apt only for what is missing.
set -euo pipefail

packages=(
  # toolchain
  g++ clang cmake ninja-build pkg-config git
  # clang's runtimes: libFuzzer and the sanitizers for scripts/fuzz.sh
  libclang-rt-14-dev
  # libraries (see shared/TOOLCHAIN.md for their CMake targets)
  libasio-dev libspdlog-dev libfmt-dev doctest-dev libcli11-dev
  libtomlplusplus-dev nlohmann-json3-dev libhttp-parser-dev libsystemd-dev
  # micro-benchmarks and the allocators they compare against
  libbenchmark-dev libjemalloc-dev libmimalloc-dev
  # tests that drive the real binary: a real Prometheus (and promtool) scrapes /metrics,
  # headless Chromium renders the admin page, and HAProxy in front and nginx behind speak the
  # PROXY protocol with it
  python3 procps prometheus chromium haproxy nginx-light libnginx-mod-stream
)

if [[ ! -r /etc/debian_version ]] || ! command -v dpkg-query >/dev/null 2>&1; then
  echo "install-deps: this script knows Debian 12 (bookworm) and its derivatives only." >&2
  echo "install-deps: on another system install the equivalents of:" >&2
  printf '  %s\n' "${packages[@]}" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [[ "$status" == installed ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=()
if ((EUID != 0)); then
  command -v sudo >/dev/null 2>&1 || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# A fresh machine or container has no package lists yet; refresh them once.
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
