#!/usr/bin/env bash
# Builds the Debian package: installs what packaging needs, builds the release binaries installed
# under /usr (the package preset) and runs CPack. Prints the path of the .deb.
#   sudo apt-get install ./build/package/slabd_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh package
cmake --preset package >/dev/null
cmake --build --preset package -j "$(nproc)"
(cd build/package && cpack -G DEB >/dev/null)
ls build/package/slabd_*.deb
