#!/bin/sh
# Installs tinybms-gw on a Venus OS device (Cerbo GX, Venus GX, Raspberry Pi with Venus OS) from
# /data/tinybms-gw, the directory that survives firmware updates:
#   /data/tinybms-gw/install.sh           install (again), and let serial-starter rescan the ports
#   /data/tinybms-gw/install.sh --boot    what /data/rc.local runs at each boot (after an update the
#                                         root filesystem is new: the service template is put back)
#   /data/tinybms-gw/install.sh --remove  undo everything (the data in /data/tinybms-gw/var stays)
# ROOT (default empty) installs into another tree, for tests.
set -eu
ROOT=${ROOT:-}
HOME_DIR=$ROOT/data/tinybms-gw
TEMPLATE=$ROOT/opt/victronenergy/service-templates/tinybms-gw
SS_CONF=$ROOT/etc/venus/serial-starter.conf
SS_DROPIN=$ROOT/data/conf/serial-starter.d/tinybms-gw.conf
RC_LOCAL=$ROOT/data/rc.local
RC_LINE="/data/tinybms-gw/install.sh --boot"
mode=${1:-install}

say() { [ "$mode" = "--boot" ] || echo "tinybms-gw: $*"; }

remount_rw() {
    # Newer Venus OS mount the root filesystem read-only.
    if [ -z "$ROOT" ] && [ -x /opt/victronenergy/swupdate-scripts/remount-rw.sh ]; then
        /opt/victronenergy/swupdate-scripts/remount-rw.sh
    fi
}

rescan() {
    if [ -z "$ROOT" ] && [ "$mode" != "--boot" ] && [ -d /service/serial-starter ]; then
        svc -t /service/serial-starter
    fi
}

# The stock alias of serial-starter with our service appended: it tries the other drivers first.
alias_with_us() {
    stock=$(awk -v a="$1" '$1 == "alias" && $2 == a { v = $3 } END { print v }' "$SS_CONF" 2>/dev/null || true)
    case ":$stock:" in
        *:tinybms:*) echo "$stock" ;;
        ::) echo "tinybms" ;;
        *) echo "$stock:tinybms" ;;
    esac
}

case "$mode" in
install|--boot)
    # bin/tinybms-gw: the tarball of `make venus`; tinybms-gw: a program copied by hand.
    [ -x "$HOME_DIR/bin/tinybms-gw" ] || [ -x "$HOME_DIR/tinybms-gw" ] ||
        { echo "tinybms-gw: $HOME_DIR/bin/tinybms-gw is missing" >&2; exit 1; }
    remount_rw
    mkdir -p "$TEMPLATE/log" "$HOME_DIR/var" "$(dirname "$SS_DROPIN")"
    cp "$HOME_DIR/service/run" "$TEMPLATE/run"
    cp "$HOME_DIR/service/log/run" "$TEMPLATE/log/run"
    chmod 755 "$TEMPLATE/run" "$TEMPLATE/log/run"
    {
        echo "# tinybms-gw: written by /data/tinybms-gw/install.sh"
        echo "service tinybms tinybms-gw"
        echo "alias default $(alias_with_us default)"
        echo "alias rs485 $(alias_with_us rs485)"
    } >"$SS_DROPIN"
    if [ ! -f "$RC_LOCAL" ]; then
        printf '#!/bin/sh\n' >"$RC_LOCAL"
    fi
    grep -qxF "$RC_LINE" "$RC_LOCAL" || echo "$RC_LINE" >>"$RC_LOCAL"
    chmod 755 "$RC_LOCAL"
    rescan
    say "installed: serial-starter now tries a TinyBMS on USB serial ports (log: /var/log/tinybms-gw.<tty>/current)"
    ;;
--remove)
    remount_rw
    rm -rf "$TEMPLATE"
    rm -f "$SS_DROPIN"
    if [ -f "$RC_LOCAL" ]; then
        grep -vxF "$RC_LINE" "$RC_LOCAL" >"$RC_LOCAL.tmp" || true
        cat "$RC_LOCAL.tmp" >"$RC_LOCAL"
        rm -f "$RC_LOCAL.tmp"
    fi
    for s in "$ROOT"/service/tinybms-gw.*; do
        [ -e "$s" ] || continue
        [ -z "$ROOT" ] && svc -d "$s" 2>/dev/null || true
        rm -rf "$s"
    done
    rescan
    say "removed (the data in $HOME_DIR/var is kept)"
    ;;
*)
    echo "usage: $0 [--boot|--remove]" >&2
    exit 2
    ;;
esac
