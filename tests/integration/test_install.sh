#!/bin/sh
# `make install` puts only what running needs in place, the unit is sandboxed (systemd-analyze
# security under 3.0) and its system user is created in dialout. Staged into a temporary DESTDIR.
set -eu
BUILD_DIR=$1
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT INT TERM
fail() { echo "FAIL: $*" >&2; exit 1; }

DESTDIR="$STAGE/root" cmake --install "$BUILD_DIR" --prefix /usr/local >"$STAGE/install.log" 2>&1 ||
    { cat "$STAGE/install.log"; fail "cmake --install failed"; }
ROOT="$STAGE/root/usr/local"

for f in bin/tinybms-gw bin/tinybms-sim lib/systemd/system/tinybms-gw.service \
         lib/sysusers.d/tinybms-gw.conf share/tinybms-gw/tinybms-gw.default \
         share/doc/tinybms-gw/README.md share/doc/tinybms-gw/docs/install.md; do
    [ -e "$ROOT/$f" ] || fail "missing $f"
done
# Nothing of the test suite or the benchmarks.
if find "$STAGE/root" -name 'test_*' -o -name 'bench_*' -o -name '*.py' | grep -q .; then
    find "$STAGE/root" -name 'test_*' -o -name 'bench_*' -o -name '*.py'
    fail "test or bench files installed"
fi
UNIT="$ROOT/lib/systemd/system/tinybms-gw.service"
grep -q '^ExecStart=/usr/local/bin/tinybms-gw ' "$UNIT" || fail "ExecStart does not point at the installed binary"
grep -q '^User=tinybms-gw$' "$UNIT" || fail "the unit does not run as its own user"
grep -q '@[A-Z_]*@' "$UNIT" && fail "unsubstituted @VAR@ in the unit"
# systemd restarts a hung gateway: readiness and keep-alives from the daemon itself.
grep -q '^Type=notify$' "$UNIT" || fail "the unit is not Type=notify"
grep -q '^WatchdogSec=[1-9]' "$UNIT" || fail "the unit has no WatchdogSec"
grep -q '^NotifyAccess=main$' "$UNIT" || fail "NotifyAccess is not main"

if command -v systemd-analyze >/dev/null 2>&1 &&
   systemd-analyze security --offline=true "$UNIT" >"$STAGE/security.txt" 2>&1; then
    score=$(sed -n 's/.*exposure level for tinybms-gw.service: \([0-9.]*\).*/\1/p' "$STAGE/security.txt")
    [ -n "$score" ] || { cat "$STAGE/security.txt"; fail "no exposure score"; }
    echo "systemd-analyze security: $score"
    awk -v s="$score" 'BEGIN { exit !(s < 3.0) }' || fail "exposure $score is not under 3.0"
else
    echo "SKIP systemd-analyze security: systemd-analyze --offline not available"
fi

if command -v systemd-sysusers >/dev/null 2>&1; then
    mkdir -p "$STAGE/sys/etc"
    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$STAGE/sys/etc/passwd"
    printf 'root:x:0:\ndialout:x:20:\n' >"$STAGE/sys/etc/group"
    systemd-sysusers --root="$STAGE/sys" "$ROOT/lib/sysusers.d/tinybms-gw.conf" >/dev/null 2>&1 ||
        fail "systemd-sysusers refused the sysusers file"
    grep -q '^tinybms-gw:' "$STAGE/sys/etc/passwd" || fail "no tinybms-gw user created"
    grep -q '^dialout:x:20:tinybms-gw$' "$STAGE/sys/etc/group" || fail "tinybms-gw not in dialout"
else
    echo "SKIP sysusers: systemd-sysusers not available"
fi
echo "install: ok"
