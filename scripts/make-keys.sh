#!/bin/sh
# Creates an Ed25519 key pair for signing update bundles (openssl CLI):
#   DIR/update.key  the private key: keep it on the build machine, never on a gateway
#   DIR/update.pub  the public key: copy it into a gateway's keyring (DATA_DIR/keys/) to trust it
# Prints the key id that signatures made with it carry. Refuses to overwrite an existing key.
set -eu
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
dir=$1
mkdir -p "$dir"
if [ -e "$dir/update.key" ] || [ -e "$dir/update.pub" ]; then
    echo "$0: $dir/update.key or $dir/update.pub exists already: not overwritten" >&2
    exit 1
fi
umask 077
openssl genpkey -algorithm ed25519 -out "$dir/update.key"
umask 022
openssl pkey -in "$dir/update.key" -pubout -out "$dir/update.pub"
# key id: the first 8 bytes of SHA-256 over the raw 32-byte public key (the end of its DER form)
id=$(openssl pkey -pubin -in "$dir/update.pub" -outform DER | tail -c 32 | sha256sum | cut -c1-16)
echo "key id $id: private key $dir/update.key, public key $dir/update.pub"
