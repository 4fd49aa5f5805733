#!/bin/sh
# The web page's files as served: a copy of SRC in OUT with a precompressed twin FILE.gz
# (gzip -9n: no name, no time stamp, so the same sources give the same bytes) beside every
# .js, .css, .html and .svg file (unless the twin would be no smaller). The gateway sends the
# twin with Content-Encoding: gzip to a browser that accepts it, the plain file otherwise.
#   scripts/build-ui.sh SRC OUT
set -eu
[ $# -eq 2 ] || { echo "usage: $0 SRC OUT" >&2; exit 2; }
src=$1 out=$2
[ -d "$src" ] || { echo "$0: no folder $src" >&2; exit 1; }
tmp="$out.tmp.$$"
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$(dirname "$out")"
cp -R "$src" "$tmp"
# A .gz in the sources would be served in place of its file's newer bytes: drop it, make ours.
find "$tmp" -type f -name '*.gz' -delete
find "$tmp" -type f \( -name '*.js' -o -name '*.css' -o -name '*.html' -o -name '*.svg' \) | while read -r f; do
    gzip -9n -c "$f" > "$f.gz"
    # A twin no smaller than its file would only cost bytes: not kept.
    if [ "$(stat -c %s "$f.gz")" -ge "$(stat -c %s "$f")" ]; then
        rm "$f.gz"
    else
        touch -r "$f" "$f.gz"
    fi
done
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
