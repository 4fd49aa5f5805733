#!/bin/sh
# ctest browser_ui: the web UI in headless Chromium against the real daemon (test_ui.js).
# Installs the pinned npm packages (package-lock.json: playwright-core, uplot) with `npm ci` into
# the build directory when they are missing or the lock file changed; a build that already has
# them needs no network. Skipped (exit 77) only when Debian's chromium is not installed.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${GW_BUILD_DIR:-$(pwd)}
CHROMIUM=${GW_CHROMIUM:-/usr/bin/chromium}

if [ ! -x "$CHROMIUM" ]; then
    echo "SKIP browser_ui: $CHROMIUM is not installed (scripts/install-deps test installs Debian's chromium)"
    exit 77
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "browser_ui: node and npm are needed (scripts/install-deps test)" >&2
    exit 1
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
    echo "browser_ui: playwright-core needs node >= 20, this is $(node --version)" >&2
    exit 1
fi

NODE_DIR="$BUILD/browser-node"
if [ ! -f "$NODE_DIR/node_modules/playwright-core/package.json" ] || ! cmp -s "$HERE/package-lock.json" "$NODE_DIR/package-lock.json"; then
    mkdir -p "$NODE_DIR"
    cp "$HERE/package.json" "$HERE/package-lock.json" "$NODE_DIR/"
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund --prefer-offline --loglevel=error)
fi

export NODE_PATH="$NODE_DIR/node_modules"
export GW_CHROMIUM="$CHROMIUM"
exec node --test --test-reporter=spec "$HERE/test_ui.js"
