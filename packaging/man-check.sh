#!/bin/sh
# The manual pages describe every long option the programs' --help lists (so a new option
# cannot ship undocumented in tinybms-gw(8) / tinybms-sim(1)).
#   man-check.sh GATEWAY SIMULATOR MAN_DIR   (GW_RUN: an emulator prefix for cross builds)
set -eu
GW=$1 SIM=$2 MAN=$3
fail=0
check() { # program page
    # shellcheck disable=SC2086
    opts=$(${GW_RUN:-} "$1" --help | grep -o -- '--[a-z0-9][a-z0-9-]*' | sort -u)
    [ -n "$opts" ] || { echo "FAIL: no option found in $1 --help"; fail=1; return; }
    text=$(sed 's/\\-/-/g; s/\\f[BIRP]//g' "$2")
    n=0
    for o in $opts; do
        n=$((n + 1))
        if ! printf '%s\n' "$text" | grep -q -- "$o\([^a-z0-9-]\|$\)"; then
            echo "FAIL: $(basename "$2") does not describe $o (listed by $(basename "$1") --help)"
            fail=1
        fi
    done
    echo "$(basename "$2"): $n options of --help described"
}
check "$GW" "$MAN/tinybms-gw.8"
check "$SIM" "$MAN/tinybms-sim.1"
exit $fail
