#!/usr/bin/env bash
# Builds the Debian package: installs what packaging needs, builds the release binaries installed
# under /usr (the package preset) and runs CPack. Prints the path of the .deb.
#   sudo apt-get install ./build/package/slabd_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh package
# Progress and errors go to stderr: stdout is only the .deb's path, for a caller to take.
cmake --preset package >/dev/null
cmake --build --preset package -j "$(nproc)" >&2
(cd build/package && cpack -G DEB >&2)
ls build/package/slabd_*.deb
