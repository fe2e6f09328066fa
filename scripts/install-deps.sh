#!/usr/bin/env bash
# Installs the Debian 12 packages slabd needs, by purpose:
#   install-deps.sh run     building and running slabd and slabd-load (scripts/run.sh)
#   install-deps.sh test    and every test: sanitizers, fuzzers, Prometheus, Chromium, HAProxy,
#                           nginx, tmux (scripts/test.sh)
#   install-deps.sh bench   and the benchmarks' libraries (bench/*.sh; compare.sh adds its peers)
#   install-deps.sh package and the Debian package's tools (scripts/package.sh); test includes it
# Several purposes may be named; none means all three. Idempotent: it asks dpkg first and
# touches apt only for what is missing.
set -euo pipefail

run_packages=(
  # toolchain
  g++ cmake ninja-build pkg-config
  # libraries (see shared/TOOLCHAIN.md for their CMake targets)
  libasio-dev libspdlog-dev libfmt-dev libcli11-dev
  libtomlplusplus-dev nlohmann-json3-dev libhttp-parser-dev libsystemd-dev
)
bench_packages=(
  # micro-benchmarks and the allocators they compare against; the scripts' helpers
  libbenchmark-dev libjemalloc-dev libmimalloc-dev python3 procps git
)
package_packages=(
  # man pages from --help; dpkg-shlibdeps (and file, which CPack asks first) for the runtime
  # dependencies; debootstrap for the clean root the package test installs into
  help2man dpkg-dev file debootstrap
)
test_packages=(
  "${package_packages[@]}"
  doctest-dev
  # the formatting check (.clang-format)
  clang-format
  # clang and its runtimes: libFuzzer and the sanitizers for scripts/fuzz.sh
  clang libclang-rt-14-dev
  # the dev build compiles the benchmarks too, so that they never rot
  "${bench_packages[@]}"
  # tests that drive the real binary: a real Prometheus (and promtool) scrapes /metrics,
  # headless Chromium renders the admin page, and HAProxy in front and nginx behind speak the
  # PROXY protocol with it
  prometheus chromium haproxy nginx-light libnginx-mod-stream
  # a real terminal for slabd top: a detached tmux session, read back with capture-pane
  tmux
  nodejs $(command -v npm >/dev/null || echo npm) # deploy_kubernetes's validator; NodeSource's nodejs bundles npm and conflicts with Debian's
)

purposes=("$@")
((${#purposes[@]})) || purposes=(run test bench)
packages=("${run_packages[@]}")
for purpose in "${purposes[@]}"; do
  case $purpose in
    run) ;;
    test) packages+=("${test_packages[@]}") ;;
    bench) packages+=("${bench_packages[@]}") ;;
    package) packages+=("${package_packages[@]}") ;;
    *) echo "install-deps: unknown purpose '$purpose' (run, test, bench or package)" >&2; exit 2 ;;
  esac
done
mapfile -t packages < <(printf '%s\n' "${packages[@]}" | awk '!seen[$0]++')

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
