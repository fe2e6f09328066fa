#!/usr/bin/env bash
# Installs what is missing, builds and runs every test: the normal build first, then the same
# tests under ASan+UBSan and under TSan (each runs the fuzz corpora as regression tests), then a
# build of everything with clang (its warnings differ from g++'s; the tests already ran), then a
# bounded libFuzzer run of every fuzz target (scripts/fuzz.sh, SLABD_FUZZ_SECONDS each, default
# 60). Pass preset names to run only those: test.sh dev asan; test.sh fuzz runs only the fuzzing.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh test
presets=("$@")
((${#presets[@]})) || presets=(dev asan tsan clang fuzz)
jobs=$(nproc)

for preset in "${presets[@]}"; do
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
