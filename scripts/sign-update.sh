#!/bin/sh
# Signs an update bundle: writes BUNDLE.sig, the detached Ed25519 signature of the bundle's
# manifest.json (its first entry), with the id of the key that made it (openssl CLI).
#   scripts/sign-update.sh build/bundle/tinybms-gw-0.2.0-x86_64.tar keys/update.key
set -eu
[ $# -eq 2 ] || { echo "usage: $0 BUNDLE KEY" >&2; exit 2; }
bundle=$1
key=$2
[ -f "$bundle" ] || { echo "$0: no bundle $bundle" >&2; exit 1; }
[ -f "$key" ] || { echo "$0: no private key $key" >&2; exit 1; }
first=$(tar -tf "$bundle" | head -n 1)
case "$first" in
    manifest.json|./manifest.json) ;;
    *) echo "$0: the first entry of $bundle is '$first', not manifest.json: not a bundle" >&2; exit 1 ;;
esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tar -xOf "$bundle" "$first" > "$tmp/manifest.json"
openssl pkeyutl -sign -rawin -inkey "$key" -in "$tmp/manifest.json" -out "$tmp/sig.bin"
id=$(openssl pkey -in "$key" -pubout -outform DER | tail -c 32 | sha256sum | cut -c1-16)
sha=$(sha256sum "$tmp/manifest.json" | cut -c1-64)
sig=$(base64 -w0 "$tmp/sig.bin")
printf '{"format":"tinybms-gw-signature-1","algorithm":"ed25519","key_id":"%s","manifest_sha256":"%s","signature":"%s"}\n' \
    "$id" "$sha" "$sig" > "$bundle.sig"
echo "signed $bundle with key $id: $bundle.sig"
