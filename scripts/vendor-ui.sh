#!/bin/sh
# Copies the web UI's chart library (uPlot, MIT) from the npm package pinned by
# tests/browser/package-lock.json into web/vendor/, with its license. The copies are committed:
# the gateway serves them from web/ and never needs the network. Run after changing the
# pinned version:  scripts/vendor-ui.sh   (runs `npm ci` in tests/browser when needed).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PKG="$ROOT/tests/browser"
OUT="$ROOT/web/vendor"
if [ ! -f "$PKG/node_modules/uplot/package.json" ]; then
    (cd "$PKG" && npm ci --no-audit --no-fund)
fi
SRC="$PKG/node_modules/uplot"
VERSION=$(node -p "require('$SRC/package.json').version")
mkdir -p "$OUT"
cp "$SRC/dist/uPlot.iife.min.js" "$OUT/uPlot.iife.min.js"
cp "$SRC/dist/uPlot.min.css" "$OUT/uPlot.min.css"
cp "$SRC/LICENSE" "$OUT/uPlot.LICENSE"
printf 'uPlot %s (MIT, https://github.com/leeoniya/uPlot), copied from npm by scripts/vendor-ui.sh\n' \
    "$VERSION" > "$OUT/README"
echo "vendor-ui: uPlot $VERSION -> $OUT"
