#!/bin/sh
# Builds an update bundle (a plain tar, manifest.json first) from built programs:
#   packaging/make-bundle.sh OUT.tar VERSION ARCH PLATFORM GATEWAY SIMULATOR [UI_DIR]
# Environment: MIN_FROM_VERSION (oldest version it may update, default none),
#   ALLOW_DOWNGRADE=1 (may replace a newer version), CHANGELOG (one line).
# `make bundle` calls it for the current tree; sign the result with scripts/sign-update.sh.
set -eu
[ $# -ge 6 ] || { echo "usage: $0 OUT.tar VERSION ARCH PLATFORM GATEWAY SIMULATOR [UI_DIR]" >&2; exit 2; }
out=$1 version=$2 arch=$3 platform=$4 gw=$5 sim=$6 ui=${7:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"
cp "$gw" "$tmp/bin/tinybms-gw"
cp "$sim" "$tmp/bin/tinybms-sim"
if [ -n "$ui" ] && [ -d "$ui" ]; then
    mkdir -p "$tmp/share"
    cp -R "$ui" "$tmp/share/ui"
fi
files=$(cd "$tmp" && find . -type f | sed 's|^\./||' | LC_ALL=C sort)
{
    printf '{\n  "format": 1,\n  "name": "tinybms-gw",\n  "version": "%s",\n' "$version"
    printf '  "compatible": { "architecture": "%s", "platform": "%s" },\n' "$arch" "$platform"
    [ -n "${MIN_FROM_VERSION:-}" ] && printf '  "min_from_version": "%s",\n' "$MIN_FROM_VERSION"
    [ "${ALLOW_DOWNGRADE:-0}" = 1 ] && printf '  "allow_downgrade": true,\n'
    [ -n "${CHANGELOG:-}" ] && printf '  "changelog": "%s",\n' "$(printf '%s' "$CHANGELOG" | tr -d '"\\')"
    printf '  "files": [\n'
    sep=""
    for f in $files; do
        size=$(stat -c %s "$tmp/$f")
        sha=$(sha256sum "$tmp/$f" | cut -c1-64)
        if [ -x "$tmp/$f" ]; then mode=0755; else mode=0644; fi
        printf '%s    { "path": "%s", "size": %s, "sha256": "%s", "mode": "%s" }' "$sep" "$f" "$size" "$sha" "$mode"
        sep=",
"
    done
    printf '\n  ]\n}\n'
} > "$tmp/manifest.json"
mkdir -p "$(dirname "$out")"
# manifest.json first: the gateway checks its signature before it reads anything else
# shellcheck disable=SC2086
tar --owner=0 --group=0 --numeric-owner -cf "$out" -C "$tmp" manifest.json $files
echo "bundle $out: version $version for $arch/$platform, $(echo "$files" | wc -l) files"
