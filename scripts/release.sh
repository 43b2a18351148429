#!/bin/sh
# Builds a release tarball for one platform and prints its path on the last line:
#
#   scripts/release.sh linux-x64|linux-arm64 [--core] [--out DIR]
#
# With production dependencies only and only that platform's native binaries (the pinned Node included), without
# what a running agent never reads; --core leaves out node-av and onnxruntime-node (boxes without cameras or
# models). The tarball and a cache of what it fetched go to .release/ (or --out DIR). Install a tarball on a box
# with `sudo scripts/install.sh --release FILE`. The work is done by scripts/release.ts, on the pinned Node.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
exec "$root/node_modules/node/bin/node" "$root/scripts/release.ts" "$@"
