#!/usr/bin/env bash
# Installs what is missing, builds and runs every test: the normal build first, then the same
# tests under ASan+UBSan and under TSan. Pass preset names to run only those: test.sh dev asan
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
presets=("$@")
((${#presets[@]})) || presets=(dev asan tsan)
jobs=$(nproc)

for preset in "${presets[@]}"; do
  echo "=== ${preset}: configure, build, test"
  cmake --preset "${preset}" >/dev/null
  cmake --build --preset "${preset}" -j "${jobs}"
  ctest --preset "${preset}" -j "${jobs}"
done
