#!/usr/bin/env bash
# ctest deploy_kubernetes: installs the validator pinned by package-lock.json into WORK_DIR (the
# only step that needs the network: the npm registry), then validates deploy/kubernetes/ offline.
#   test_kubernetes.sh SLABD WORK_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
slabd=$1 work=$2
mkdir -p "$work"
# npm ci wipes node_modules before installing, so run it only when the pins changed.
stamp=$work/node_modules/.slabd-pins
if ! cat "$here/package.json" "$here/package-lock.json" | cmp -s - "$stamp"; then
  cp "$here/package.json" "$here/package-lock.json" "$work/"
  (cd "$work" && npm ci --ignore-scripts --no-audit --no-fund)
  cat "$here/package.json" "$here/package-lock.json" > "$stamp"
fi
exec node "$here/validate_kubernetes.js" "$work" "$here/../../deploy/kubernetes" "$slabd" "$work"
