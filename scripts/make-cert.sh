#!/bin/sh
# Generates a self-signed certificate and key for the gateway's HTTPS, and prints the settings to
# put in config.json. Usage: scripts/make-cert.sh [DIR] [HOSTNAME]
#   DIR       where to write tinybms-gw.crt and tinybms-gw.key (default /var/lib/tinybms-gw)
#   HOSTNAME  name in the certificate (default: this machine's host name); its IP addresses are
#             added too, so https://<ip>:<port>/ matches.
set -eu
DIR=${1:-/var/lib/tinybms-gw}
NAME=${2:-$(hostname)}
DAYS=3650
command -v openssl >/dev/null || { echo "make-cert: openssl is missing (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$DIR"
CRT="$DIR/tinybms-gw.crt"
KEY="$DIR/tinybms-gw.key"
SAN="DNS:$NAME,DNS:localhost,IP:127.0.0.1"
for ip in $(hostname -I 2>/dev/null || true); do
    case "$ip" in *:*) ;; *) SAN="$SAN,IP:$ip" ;; esac
done
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days "$DAYS" \
    -subj "/CN=$NAME" -addext "subjectAltName=$SAN" -keyout "$KEY" -out "$CRT" 2>/dev/null
chmod 600 "$KEY"
chmod 644 "$CRT"
echo "make-cert: wrote $CRT and $KEY (valid $DAYS days, $SAN)"
echo "Add to config.json, then restart the gateway:"
echo "  \"web\": { \"https_enabled\": true, \"cert_file\": \"$CRT\", \"key_file\": \"$KEY\" }"
