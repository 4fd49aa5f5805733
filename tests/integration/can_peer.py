#!/usr/bin/python3
"""Independent Victron GX peer for tests: python-can (slcan interface) on one end of a pty pair.

It receives the battery frames, decodes them from the spec page (shared/spec/victron-can-bms.md)
with its own code (not the gateway's), sends the GX keep-alive 0x305 (and 0x307 once), and
prints one JSON line per received frame plus a final summary line. Optional expectations turn it
into a checker (exit status 1 when one fails).

Run with Debian's python (/usr/bin/python3, which has python-can):

  can_peer.py --channel /tmp/ptyB --duration 15 \
      --expect-period 0x351=1.0:0.3 --expect-period 0x35E=10:2 \
      --expect-value 0x355.soc=80 --expect-value 0x356.voltage=52.8:0.01 --expect-min-count 0x35A=5

Output lines (JSON): {"wall": 1700000000.123, "id": "0x356", "dlc": 8, "data": "a014c800fb000000",
"decoded": {"voltage": 52.8, "current": 20.0, "temperature": 25.1}}, and at the end
{"summary": {"counts": {...}, "periods": {"0x351": {"median": 1.0, "min": .., "max": .., "n": ..}},
"last": {"0x356": {...}}, "keepalives_sent": N, "failures": [...]}}.
"""
import argparse
import json
import os
import statistics
import struct
import sys
import time

try:
    import can
except ImportError:  # pragma: no cover - reported clearly, the test then fails
    sys.stderr.write("can_peer: python-can not found; run with /usr/bin/python3 (Debian python3-can)\n")
    sys.exit(2)

FLAG_NAMES = ["general", "high_voltage", "low_voltage", "high_temp", "low_temp", "high_temp_charge",
              "low_temp_charge", "high_discharge_current", "high_charge_current", "contactor",
              "short_circuit", "bms_internal", "cell_imbalance"]


def _text(data):
    """ASCII text of a name frame: up to 8 chars, zero padding stripped."""
    return bytes(data).split(b"\0", 1)[0].decode("ascii", "replace").rstrip(" ")


def _flags(data, base):
    """Flag states of 4 bytes: 'active' (lower bit of the pair), 'ok' (upper bit), 'n/a', 'reserved'."""
    out = {}
    for i, name in enumerate(FLAG_NAMES):
        pair = (data[base + i // 4] >> (2 * (i % 4))) & 0x3
        out[name] = {0: "n/a", 1: "active", 2: "ok", 3: "reserved"}[pair]
    return out


def decode(arbitration_id, data):
    """Decodes one frame of the Victron CAN-bus BMS protocol (little-endian, per the spec table)."""
    d = bytes(data)
    n = len(d)

    def u16(o):
        return struct.unpack_from("<H", d, o)[0]

    def s16(o):
        return struct.unpack_from("<h", d, o)[0]

    i = arbitration_id
    if i == 0x351 and n >= 6:
        out = {"cvl": round(u16(0) * 0.1, 2), "ccl": round(s16(2) * 0.1, 2), "dcl": round(s16(4) * 0.1, 2)}
        if n >= 8:
            out["discharge_voltage"] = round(u16(6) * 0.1, 2)
        return out
    if i == 0x355 and n >= 4:
        out = {"soc": u16(0), "soh": u16(2)}
        if n >= 6:
            out["soc_hires"] = round(u16(4) * 0.01, 2)
        return out
    if i == 0x356 and n >= 6:
        return {"voltage": round(s16(0) * 0.01, 3), "current": round(s16(2) * 0.1, 2),
                "temperature": round(s16(4) * 0.1, 2)}
    if i == 0x35A and n >= 8:
        status = (d[7] >> 2) & 0x3
        return {"alarms": _flags(d, 0), "warnings": _flags(d, 4),
                "online": status == 2, "offline": status == 1,
                "raw": d.hex()}
    if i in (0x35E, 0x370, 0x371, 0x374, 0x375, 0x376, 0x377, 0x380, 0x381, 0x382):
        return {"text": _text(d)}
    if i == 0x35F and n >= 6:
        out = {"model": u16(0), "fw_major": d[2], "fw_minor": d[3], "capacity_ah": u16(4)}
        if n >= 8:
            out["hw_version"] = u16(6)
        return out
    if i == 0x372 and n >= 8:
        return {"ok": u16(0), "blocking_charge": u16(2), "blocking_discharge": u16(4), "offline": u16(6)}
    if i == 0x373 and n >= 4:
        out = {"min_cell_mv": u16(0), "max_cell_mv": u16(2)}
        if n >= 8:
            out["min_temp_k"] = u16(4)
            out["max_temp_k"] = u16(6)
        return out
    if i == 0x378 and n >= 8:
        e_in, e_out = struct.unpack_from("<II", d, 0)
        return {"energy_in_wh": e_in * 100, "energy_out_wh": e_out * 100}
    if i == 0x379 and n >= 2:
        return {"installed_ah": u16(0)}
    return {}


def parse_id(text):
    return int(text, 16) if text.lower().startswith("0x") else int(text, 16)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--channel", required=True, help="serial device / pty of the peer end")
    p.add_argument("--tty-baud", type=int, default=115200)
    p.add_argument("--bitrate", type=int, default=500000)
    p.add_argument("--duration", type=float, default=60.0, help="maximum run time, s")
    p.add_argument("--until-file", help="stop as soon as this file exists")
    p.add_argument("--ready-file", help="created once the bus is open")
    p.add_argument("--keepalive", type=float, default=1.0, help="0x305 period, s (0 = never send)")
    p.add_argument("--keepalive-stop-file", help="stop the keep-alives once this file exists")
    p.add_argument("--out", help="JSON lines go here (default stdout)")
    p.add_argument("--quiet", action="store_true", help="only the summary line")
    p.add_argument("--expect-period", action="append", default=[], metavar="ID=SEC[:TOL]",
                   help="median interval between frames of ID (default tolerance 30 %%)")
    p.add_argument("--expect-min-count", action="append", default=[], metavar="ID=N")
    p.add_argument("--expect-absent", action="append", default=[], metavar="ID")
    p.add_argument("--expect-value", action="append", default=[], metavar="ID.FIELD=VALUE[:TOL]",
                   help="field of the last decoded frame of ID (numbers with tolerance, or text)")
    return p.parse_args(argv)


def check(args, counts, times, last):
    failures = []
    for spec in args.expect_period:
        key, _, rest = spec.partition("=")
        want, _, tol = rest.partition(":")
        want = float(want)
        tol = float(tol) if tol else 0.3 * want
        ts = times.get(hex(parse_id(key)), [])
        if len(ts) < 3:
            failures.append(f"{key}: {len(ts)} frames, cannot measure a period")
            continue
        med = statistics.median(b - a for a, b in zip(ts, ts[1:]))
        if abs(med - want) > tol:
            failures.append(f"{key}: median period {med:.3f} s, expected {want} +/- {tol}")
    for spec in args.expect_min_count:
        key, _, n = spec.partition("=")
        got = counts.get(hex(parse_id(key)), 0)
        if got < int(n):
            failures.append(f"{key}: {got} frames, expected at least {n}")
    for key in args.expect_absent:
        got = counts.get(hex(parse_id(key)), 0)
        if got:
            failures.append(f"{key}: {got} frames, expected none")
    for spec in args.expect_value:
        lhs, _, rhs = spec.partition("=")
        key, _, field = lhs.partition(".")
        frame = last.get(hex(parse_id(key)))
        if frame is None or field not in frame:
            failures.append(f"{lhs}: not received")
            continue
        got = frame[field]
        value, _, tol = rhs.partition(":")
        try:
            ok = abs(float(got) - float(value)) <= (float(tol) if tol else 1e-6)
        except (TypeError, ValueError):
            ok = str(got) == value
        if not ok:
            failures.append(f"{lhs} = {got!r}, expected {rhs}")
    return failures


def main(argv):
    args = parse_args(argv)
    out = open(args.out, "w", buffering=1) if args.out else sys.stdout
    bus = can.interface.Bus(interface="slcan", channel=args.channel, ttyBaudrate=args.tty_baud,
                            bitrate=args.bitrate, sleep_after_open=0)
    if args.ready_file:
        open(args.ready_file, "w").close()
    counts, times, last = {}, {}, {}
    keepalives = 0
    start = time.monotonic()
    next_keepalive = start
    sent_identification = False
    try:
        while time.monotonic() - start < args.duration:
            if args.until_file and os.path.exists(args.until_file):
                break
            now = time.monotonic()
            stop_ka = args.keepalive_stop_file and os.path.exists(args.keepalive_stop_file)
            if args.keepalive > 0 and not stop_ka and now >= next_keepalive:
                bus.send(can.Message(arbitration_id=0x305, data=bytes(8), is_extended_id=False))
                keepalives += 1
                if not sent_identification:
                    bus.send(can.Message(arbitration_id=0x307, is_extended_id=False,
                                         data=bytes([0x12, 0x34, 0x56, 0x78]) + b"VIC\0"))
                    sent_identification = True
                next_keepalive = now + args.keepalive
            msg = bus.recv(timeout=0.05)
            if msg is None or msg.is_error_frame or msg.is_remote_frame:
                continue
            wall = time.time()
            key = hex(msg.arbitration_id)
            decoded = decode(msg.arbitration_id, msg.data)
            counts[key] = counts.get(key, 0) + 1
            times.setdefault(key, []).append(wall)
            last[key] = decoded
            if not args.quiet:
                out.write(json.dumps({"wall": round(wall, 6), "id": "0x%03X" % msg.arbitration_id,
                                      "dlc": msg.dlc, "data": bytes(msg.data).hex(),
                                      "decoded": decoded}) + "\n")
    finally:
        bus.shutdown()
    periods = {}
    for key, ts in times.items():
        if len(ts) >= 2:
            gaps = [b - a for a, b in zip(ts, ts[1:])]
            periods[key] = {"median": round(statistics.median(gaps), 4), "min": round(min(gaps), 4),
                            "max": round(max(gaps), 4), "n": len(gaps)}
    failures = check(args, counts, times, last)
    out.write(json.dumps({"summary": {"counts": counts, "periods": periods, "last": last,
                                      "keepalives_sent": keepalives, "failures": failures}}) + "\n")
    out.flush()
    for f in failures:
        sys.stderr.write("can_peer: FAILED " + f + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
