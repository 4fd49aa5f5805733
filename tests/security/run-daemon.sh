#!/bin/sh
# The daemon on its built-in simulator, with the web server and CAN to a log, under a tool (the
# prefix: valgrind and its options, or nothing for a TSan build), kept busy by exercise.py for
# SECONDS, then stopped with SIGTERM. Used by run-valgrind and run-tsan.
#   run-daemon.sh BUILD_DIR SECONDS LOG PREFIX...
# Prints the exercise's line; exit status: the daemon's (or 1 when it never served).
set -u
build=$1 seconds=$2 log=$3
shift 3
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gw-tool.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/data"
printf '{"history":{"period_s":1},"web":{"request_timeout_ms":60000}}\n' > "$tmp/data/config.json"
chmod 600 "$tmp/data/config.json"
password=tool-run-pass-1
printf '%s\n' "$password" | "$build/tinybms-gw" --set-password --data-dir "$tmp/data" >/dev/null 2>&1 || {
    echo "run-daemon: --set-password failed" >&2; exit 1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$@" "$build/tinybms-gw" --simulate --data-dir "$tmp/data" --http "$port" --can "log:$tmp/can.log" -q \
    >"$tmp/gw.stdout" 2>"$log" &
pid=$!
# Up when it logs that it serves (a tool makes the start slow: up to 5 minutes).
i=0
until grep -q "web: serving" "$log" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 300 ] || ! kill -0 $pid 2>/dev/null; then
        echo "run-daemon: the gateway did not start (see $log)" >&2
        kill -KILL $pid 2>/dev/null
        exit 1
    fi
    sleep 1
done
python3 "$here/exercise.py" "$port" "$password" "$seconds"
ex=$?
kill -TERM $pid
wait $pid
rc=$?
[ $ex -eq 0 ] || [ $rc -ne 0 ] || rc=1
exit $rc
