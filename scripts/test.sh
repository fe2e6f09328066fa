#!/usr/bin/env bash
# Installs what is missing, checks the formatting of every C and C++ file against .clang-format,
# then builds and runs every test: the normal build first, then the same
# tests under ASan+UBSan and under TSan (each runs the fuzz corpora as regression tests), then a
# build of everything with clang (its warnings differ from g++'s; the tests already ran), then the
# Debian package built and installed into a clean Debian root (tests/package/test_deb.py), then a
# bounded libFuzzer run of every fuzz target (scripts/fuzz.sh, SLABD_FUZZ_SECONDS each, default
# 60). Pass step names to run only those: test.sh dev asan; test.sh fuzz runs only the fuzzing;
# test.sh format only checks the formatting.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh test
presets=("$@")
((${#presets[@]})) || presets=(format dev asan tsan clang package fuzz)
jobs=$(nproc)

for preset in "${presets[@]}"; do
  if [[ ${preset} == format ]]; then
    echo "=== format: clang-format --dry-run --Werror"
    find pool config server loadtest tests bench -regextype egrep -regex '.*\.(c|h|cpp|hpp)' -print0 |
      xargs -0 clang-format --dry-run --Werror
    continue
  fi
  if [[ ${preset} == package ]]; then
    echo "=== package: cpack -G DEB, installed into a clean root"
    deb=$(./scripts/package.sh | tail -n 1)
    as_root=()
    ((EUID == 0)) || as_root=(sudo)
    "${as_root[@]}" env PYTHONDONTWRITEBYTECODE=1 python3 tests/package/test_deb.py "${deb}"
    continue
  fi
  if [[ ${preset} == fuzz ]]; then
    ./scripts/fuzz.sh "${SLABD_FUZZ_SECONDS:-60}"
    continue
  fi
  echo "=== ${preset}: configure, build, test"
  cmake --preset "${preset}" >/dev/null
  cmake --build --preset "${preset}" -j "${jobs}"
  [[ ${preset} == clang ]] && continue
  ctest --preset "${preset}" -j "${jobs}"
done
