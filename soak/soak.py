#!/usr/bin/python3
"""`make soak`: the gateway under the load of a busy installation for SOAK_SECONDS (default 600),
then a table of figures with PASS/FAIL for each promised one (docs/reliability.md "Load and soak").

What runs, all on loopback, in a temporary directory, every child stopped at the end:
  two tinybms-sim packs polled every 100 ms (--poll-ms 100), discharging 20 A each;
  CAN: slcan on a socat pty pair, read by python-can in a process of its own (GX keep-alive 0x305
  every second, each frame timestamped on arrival);
  MQTT: a private mosquitto, mosquitto_sub counting every message under the prefix;
  D-Bus: a private dbus-daemon session bus (--dbus), dbus-monitor counting the signals;
  web: 100 WebSocket clients (half /ws/live, half /ws/alerts) read by one process, and REST
  GET requests at a fixed rate (200/s) over keep-alive connections by another, each answer's
  latency measured from the moment it was due (a late answer delays the next ones' send, and
  that wait is counted in their latency: no coordinated omission).
The daemon is the release build; RSS and CPU are read from /proc every 10 s.

Environment: SOAK_SECONDS (600), SOAK_WS_CLIENTS (100), SOAK_REST_RATE (200), SOAK_POLL_MS (100),
SOAK_SMOKE=1 (no figure asserted: only "everything answers and the daemon exits 0"),
SOAK_GW_NICE=N renices every thread of the daemon once the clients are connected (what a unit's
Nice=N would do; negative values need root), to tell the gateway's timing from the machine's load,
TINYBMS_GW / TINYBMS_SIM / GW_MOSQUITTO (set by the Makefile), SOAK_KEEP=1 keeps the work dir.
Exit status 0 when every target figure passes (smoke: when everything answered), 1 otherwise.
"""
import json
import multiprocessing as mp
import os
import re
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
import gwtest  # noqa: E402
from gwtest import Daemon, Mosquitto, Sim, Socat, free_port, port_open, stop_process, wait_for  # noqa: E402
from webclient import WebSocket, basic  # noqa: E402

SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
WS_CLIENTS = int(os.environ.get("SOAK_WS_CLIENTS", "100"))
REST_RATE = float(os.environ.get("SOAK_REST_RATE", "200"))
POLL_MS = int(os.environ.get("SOAK_POLL_MS", "100"))
SMOKE = os.environ.get("SOAK_SMOKE") == "1"
KEEP = os.environ.get("SOAK_KEEP") == "1"
GW_NICE = os.environ.get("SOAK_GW_NICE")
RSS_PERIOD_S = 10.0
PASSWORD = "soak-password-1"
AUTH = ("admin", PASSWORD)
REST_PATHS = ["/api/status", "/api/data", "/api/limits", "/api/alerts", "/api/metrics"]
REST_CONNECTIONS = 8
RSS_PEAK_MAX = 16 * 1024 * 1024
RSS_GROWTH_MAX = 256 * 1024  # allocator noise, not a leak: a leak of one event a poll is 6000x more


def pct(values, p):
    """The p-th percentile (nearest rank) of values, None when empty."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


# ------------------------------------------------------------------ the load, each a process

def can_reader(channel, stop, out):
    """The GX: python-can slcan on the bus end of the pty pair. Keep-alive 0x305 each second,
    0x307 once; every received frame counted, 0x351 arrival times kept."""
    import can
    bus = can.interface.Bus(interface="slcan", channel=channel, ttyBaudrate=115200, bitrate=500000,
                            sleep_after_open=0)
    counts, t351 = {}, []
    next_ka, sent307 = time.monotonic(), False
    try:
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_ka:
                bus.send(can.Message(arbitration_id=0x305, data=bytes(8), is_extended_id=False))
                if not sent307:
                    bus.send(can.Message(arbitration_id=0x307, data=bytes([0x12, 0x34, 0x56, 0x78]) + b"VIC\0",
                                         is_extended_id=False))
                    sent307 = True
                next_ka = now + 1.0
            msg = bus.recv(timeout=0.05)
            if msg is None or msg.is_error_frame or msg.is_remote_frame:
                continue
            t = time.monotonic()
            counts[msg.arbitration_id] = counts.get(msg.arbitration_id, 0) + 1
            if msg.arbitration_id == 0x351:
                t351.append(t)
    finally:
        bus.shutdown()
        out.put({"counts": {"0x%03X" % k: v for k, v in counts.items()}, "t351": t351})


class WsConn:
    def __init__(self, ws, path):
        self.ws, self.path = ws, path
        self.buf = bytearray()
        self.messages = 0
        self.closed_by_server = None  # close code, or "eof"
        self.tx351 = None             # /ws/can: the gateway's own send times of 0x351 (wall s)
        self.seqs = set() if path == "/ws/live" else None  # the battery views' seq received

    def pong(self, payload):
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.ws.sock.sendall(struct.pack("!BB", 0x8A, 0x80 | len(payload)) + mask + masked)

    def feed(self, data):
        self.buf += data
        while True:
            if len(self.buf) < 2:
                return
            b0, b1 = self.buf[0], self.buf[1]
            n, off = b1 & 0x7F, 2
            if n == 126:
                if len(self.buf) < 4:
                    return
                n, off = struct.unpack_from("!H", self.buf, 2)[0], 4
            elif n == 127:
                if len(self.buf) < 10:
                    return
                n, off = struct.unpack_from("!Q", self.buf, 2)[0], 10
            if len(self.buf) < off + n:
                return
            payload = bytes(self.buf[off:off + n])
            del self.buf[:off + n]
            op = b0 & 0x0F
            if op == 9:
                self.pong(payload)
            elif op == 8:
                self.closed_by_server = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else "none"
            elif op in (0, 1, 2) and b0 & 0x80:
                self.messages += 1
                if self.seqs is not None:
                    try:
                        self.seqs.add(json.loads(payload)["seq"])
                    except (ValueError, KeyError, TypeError):
                        pass
                if self.tx351 is not None:
                    try:
                        doc = json.loads(payload)
                    except ValueError:
                        continue
                    for f in doc.get("frames", []):
                        if f.get("dir") == "tx" and f.get("id") == "0x351" and not f.get("error"):
                            self.tx351.append(f["timestamp"] / 1000.0)


def ws_clients(port, n, stop, ready, out):
    """n WebSocket clients, half on /ws/live and half on /ws/alerts, all read by one selector loop
    (a client that reads, as a browser does)."""
    conns, refused = [], []
    for i in range(n):
        path = "/ws/live" if i % 2 == 0 else "/ws/alerts"
        ws = WebSocket(port, path, auth=AUTH, timeout=60)
        if ws.status != 101:
            refused.append({"path": path, "status": ws.status, "body": ws.body[:200].decode("utf-8", "replace")})
            continue
        c = WsConn(ws, path)
        if ws.buf:
            c.feed(ws.buf)
        ws.sock.setblocking(False)
        conns.append(c)
    # One more: the CAN frame tap (/ws/can, admin), for the gateway's own 0x351 send times.
    tap = None
    ws = WebSocket(port, "/ws/can", auth=AUTH, timeout=60)
    if ws.status == 101:
        tap = WsConn(ws, "/ws/can")
        tap.tx351 = []
        if ws.buf:
            tap.feed(ws.buf)
        ws.sock.setblocking(False)
    ready.set()
    sel = selectors.DefaultSelector()
    for c in conns + ([tap] if tap else []):
        sel.register(c.ws.sock, selectors.EVENT_READ, c)
    while not stop.is_set() and sel.get_map():
        for key, _ in sel.select(timeout=0.2):
            c = key.data
            try:
                data = c.ws.sock.recv(262144)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                c.closed_by_server = c.closed_by_server or "eof"
                sel.unregister(c.ws.sock)
                continue
            c.feed(data)
            if c.closed_by_server is not None:
                sel.unregister(c.ws.sock)
    # A view one client got and another did not, between that one's first and last: lost for it
    # (a view no client got was never sent: the server sends the newest, coalescing under load).
    union = set()
    for c in conns:
        union |= c.seqs or set()
    missing = []
    for c in conns:
        if c.seqs:
            lo, hi = min(c.seqs), max(c.seqs)
            missing.append(sum(1 for q in union if lo <= q <= hi) - len(c.seqs))
    result = {"refused": refused, "clients": [{"path": c.path, "messages": c.messages,
                                                "closed": c.closed_by_server} for c in conns],
              "live_missing": missing, "live_sent": len(union),
              "tx351": tap.tx351 if tap else None}
    for c in conns + ([tap] if tap else []):
        try:
            c.ws.sock.setblocking(True)
            c.ws.close()
        except OSError:
            pass
    out.put(result)


def rest_worker(port, rate, offset, stop, out):
    """GET requests due at fixed times (rate per second, this connection's share), on one
    keep-alive connection (reopened after an error). Latency from the due time to the answer."""
    import http.client as httpclient
    hdr = {"Authorization": basic(*AUTH)}
    period = 1.0 / rate
    lat, errors, statuses = [], [], {}
    conn = None
    k = 0
    t0 = time.monotonic() + offset
    while not stop.is_set():
        due = t0 + k * period
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)  # pacing the load generator, not synchronisation
        path = REST_PATHS[k % len(REST_PATHS)]
        k += 1
        try:
            if conn is None:
                conn = httpclient.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", path, headers=hdr)
            r = conn.getresponse()
            r.read()
            done = time.monotonic()
            statuses[r.status] = statuses.get(r.status, 0) + 1
            if r.status != 200:
                errors.append("%s %d" % (path, r.status))
            lat.append(done - due)
            if r.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, httpclient.HTTPException) as e:
            errors.append("%s %s" % (path, type(e).__name__))
            lat.append(time.monotonic() - due)
            try:
                conn.close()
            except Exception:
                pass
            conn = None
    out.put({"lat": lat, "errors": errors[:50], "error_count": len(errors), "statuses": statuses})


# ------------------------------------------------------------------ peers counted by line

class LineCounter:
    """A child whose stdout lines are counted (by a regex) on a thread, not stored."""

    def __init__(self, argv, pattern, env=None, err_path=None):
        self.n = 0
        self.rx = re.compile(pattern)
        self._err = open(err_path, "wb") if err_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._err,
                                     env=env)
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        for line in iter(self.proc.stdout.readline, b""):
            if self.rx.search(line.decode("utf-8", "replace")):
                self.n += 1

    def stop(self):
        stop_process(self.proc)
        self._t.join(10)
        if self._err is not subprocess.DEVNULL:
            self._err.close()


class DbusDaemon:
    def __init__(self, workdir):
        self._err = open(os.path.join(workdir, "dbus-daemon.stderr"), "wb")
        self.proc = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--nopidfile", "--print-address=1"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._err)
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("unix:"):
            raise AssertionError("dbus-daemon printed %r" % line)
        self.address = line

    def stop(self):
        stop_process(self.proc)
        self._err.close()


# ------------------------------------------------------------------ /proc

def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
                out[k] = int(v.split()[0]) * (1024 if k != "Threads" else 1)
    return out


def cpu_ticks(stat_text):
    """utime + stime (clock ticks) of a /proc/<pid>[/task/<tid>]/stat line."""
    rest = stat_text[stat_text.rindex(")") + 2:].split()
    return int(rest[11]) + int(rest[12])


def thread_ticks(pid):
    """{thread name: ticks} summed over the threads of each name."""
    out = {}
    base = "/proc/%d/task" % pid
    for tid in os.listdir(base):
        try:
            with open(os.path.join(base, tid, "comm")) as f:
                name = f.read().strip()
            with open(os.path.join(base, tid, "stat")) as f:
                ticks = cpu_ticks(f.read())
        except OSError:
            continue  # a thread that ended meanwhile
        out[name] = out.get(name, 0) + ticks
    return out


def process_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        return cpu_ticks(f.read())


# ------------------------------------------------------------------ metrics

def metrics_text(port):
    import http.client as httpclient
    c = httpclient.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("GET", "/metrics", headers={"Authorization": basic(*AUTH)})
        r = c.getresponse()
        return r.read().decode()
    finally:
        c.close()


def metric(text, name, labels=None):
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if not m or m.group(1) != name:
            continue
        if labels and (m.group(2) or "") != labels:
            continue
        return float(m.group(3))
    return None


def age_buckets(text):
    """[(le_ms, cumulative frames)] of tinybms_gw_can_data_age_frames_total."""
    out = []
    for m in re.finditer(r'^tinybms_gw_can_data_age_frames_total\{le_ms="([^"]+)"\}\s+(\S+)$', text, re.M):
        le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
        out.append((le, float(m.group(2))))
    return sorted(out)


def bucket_quantile(buckets, q):
    """Quantile q (0..1) of a cumulative histogram by linear interpolation inside its bucket (as
    Prometheus' histogram_quantile); None when empty."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    prev_le, prev_n = 0.0, 0.0
    for le, n in buckets:
        if n >= rank:
            if le == float("inf"):
                return prev_le
            if n == prev_n:
                return le
            return prev_le + (le - prev_le) * (rank - prev_n) / (n - prev_n)
        prev_le, prev_n = le, n
    return prev_le


# ------------------------------------------------------------------ the run

def main():
    gw_bin, sim_bin = gwtest.TINYBMS_GW, gwtest.TINYBMS_SIM
    for b in (gw_bin, sim_bin):
        if not os.access(b, os.X_OK):
            print("soak: %s not found: build it first (make build)" % b)
            return 2
    work = tempfile.mkdtemp(prefix="tinybms-soak-")
    data = os.path.join(work, "data")
    os.makedirs(data)
    cleanup = []
    results = {}
    rows = []      # (figure, value text, target text, PASS/FAIL/"")
    failed = []

    def row(name, value, target="", ok=None):
        verdict = "" if ok is None or SMOKE else ("PASS" if ok else "FAIL")
        rows.append((name, value, target if not SMOKE else "", verdict))
        if verdict == "FAIL":
            failed.append(name)

    ctx = mp.get_context("fork")
    stop = ctx.Event()
    procs = []
    gw = None
    try:
        http_port = free_port()
        with open(os.path.join(data, "config.json"), "w") as f:
            json.dump({"web": {"ws_max_clients": max(32, WS_CLIENTS + 8)}}, f)
        r = subprocess.run([gw_bin, "--set-password", "--data-dir", data], input=(PASSWORD + "\n").encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        if r.returncode != 0:
            print("soak: --set-password failed: %s" % r.stderr.decode()[-500:])
            return 1
        sims = []
        for i in (1, 2):
            s = Sim(work, os.path.join(work, "bms%d" % i), ["--seed", str(i), "--capacity", "280", "--soc", "80",
                                                           "--current", "-20"], name="sim%d" % i)
            cleanup.append(s.stop)
            sims.append(s)
        broker = Mosquitto(work, persistence=False)
        cleanup.append(lambda: stop_process(broker.proc))
        bus = DbusDaemon(work)
        cleanup.append(bus.stop)
        socat = Socat(work)
        cleanup.append(socat.stop)
        env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS=bus.address)
        dbusmon = LineCounter(["dbus-monitor", "--address", bus.address, "type='signal',interface='com.victronenergy.BusItem'"],
                              r"^signal ", env=env, err_path=os.path.join(work, "dbus-monitor.stderr"))
        cleanup.append(dbusmon.stop)
        mqttsub = LineCounter(["mosquitto_sub", "-p", str(broker.port), "-t", "tinybms/#", "-v"], r"^tinybms/",
                              err_path=os.path.join(work, "mosquitto_sub.stderr"))
        cleanup.append(mqttsub.stop)

        gw = Daemon(work, ["--uart", sims[0].link, "--uart", sims[1].link, "--poll-ms", str(POLL_MS),
                           "--data-dir", data, "--http", str(http_port), "-q", "--dbus",
                           "--can", "slcan:" + socat.a, "--mqtt", "mqtt://127.0.0.1:%d" % broker.port],
                    env={"DBUS_SESSION_BUS_ADDRESS": bus.address})
        gw.wait_log(r"app: tinybms-gw \S+ running", 60)
        gw.wait_log(r"can_publisher: battery online", 60)
        wait_for(lambda: port_open(http_port), 30, "the web port")

        q_can, q_ws, q_rest = ctx.Queue(), ctx.Queue(), ctx.Queue()
        p = ctx.Process(target=can_reader, args=(socat.b, stop, q_can), daemon=True)
        p.start()
        procs.append(p)
        ws_ready = ctx.Event()
        p = ctx.Process(target=ws_clients, args=(http_port, WS_CLIENTS, stop, ws_ready, q_ws), daemon=True)
        p.start()
        procs.append(p)
        wait_for(lambda: ws_ready.is_set() or not procs[-1].is_alive(), 120, "the WebSocket clients connected")
        per_conn = REST_RATE / REST_CONNECTIONS
        for i in range(REST_CONNECTIONS):
            p = ctx.Process(target=rest_worker, args=(http_port, per_conn, i / REST_RATE, stop, q_rest),
                            daemon=True)
            p.start()
            procs.append(p)
        wait_for(lambda: mqttsub.n > 0, 60, "the first MQTT message")
        if GW_NICE:
            for tid in os.listdir("/proc/%d/task" % gw.proc.pid):
                os.setpriority(os.PRIO_PROCESS, int(tid), int(GW_NICE))  # nice is per thread on Linux

        # The run: RSS and CPU every 10 s.
        pid = gw.proc.pid
        hz = os.sysconf("SC_CLK_TCK")
        t_start = time.monotonic()
        ticks0, threads0 = process_ticks(pid), thread_ticks(pid)
        mqtt0, dbus0 = mqttsub.n, dbusmon.n
        rss = []
        print("soak: %d s under load (%d WebSocket clients, %.0f REST requests/s, 2 packs every %d ms); "
              "work dir %s" % (SECONDS, WS_CLIENTS, REST_RATE, POLL_MS, work), flush=True)
        next_sample = t_start
        while True:
            now = time.monotonic()
            if now >= next_sample:
                if not gw.alive():
                    raise AssertionError("the daemon exited (%s) during the run:\n%s"
                                         % (gw.proc.returncode, gw.stderr()[-3000:]))
                st = proc_status(pid)
                load1 = float(open("/proc/loadavg").read().split()[0])
                rss.append((now - t_start, st["VmRSS"], st["Threads"], st["RssAnon"], st["RssFile"], load1))
                if len(rss) % 6 == 1:
                    print("soak: t=%4.0f s RSS %.2f MiB, %d threads, MQTT %d, D-Bus signals %d"
                          % (now - t_start, st["VmRSS"] / 1048576, st["Threads"], mqttsub.n - mqtt0,
                             dbusmon.n - dbus0), flush=True)
                next_sample += RSS_PERIOD_S
            if now - t_start >= SECONDS:
                break
            wake = min(next_sample, t_start + SECONDS)
            time.sleep(max(0.0, wake - now))  # the sampling period, not synchronisation
        elapsed = time.monotonic() - t_start
        ticks1, threads1 = process_ticks(pid), thread_ticks(pid)
        hwm = proc_status(pid)["VmHWM"]
        mqtt_n, dbus_n = mqttsub.n - mqtt0, dbusmon.n - dbus0
        text = metrics_text(http_port)
        status_doc = None
        try:
            import http.client as httpclient
            c = httpclient.HTTPConnection("127.0.0.1", http_port, timeout=30)
            c.request("GET", "/api/status", headers={"Authorization": basic(*AUTH)})
            status_doc = json.loads(c.getresponse().read())
            c.close()
        except (OSError, ValueError):
            pass

        stop.set()
        can_res = q_can.get(timeout=60)
        ws_res = q_ws.get(timeout=60)
        rest_res = [q_rest.get(timeout=60) for _ in range(REST_CONNECTIONS)]
        for p in procs:
            p.join(30)
        rc, in_time = gw.stop()

        # ---------------------------------------------------------- figures
        t351 = can_res["t351"]
        periods = [b - a for a, b in zip(t351, t351[1:])]
        dev = [abs(x - 1.0) for x in periods]
        if periods:
            row("CAN 0x351 period p50 / p99 / max", "%.4f / %.4f / %.4f s (%d periods)"
                % (pct(periods, 50), pct(periods, 99), max(periods), len(periods)))
            row("CAN 0x351 period, p99 of |period - 1 s|", "%.1f ms" % (pct(dev, 99) * 1000), "<= 20 ms (2 %)",
                pct(dev, 99) <= 0.020)
        else:
            row("CAN 0x351 frames", "none", ">= 1", False)
        tx = ws_res.get("tx351")
        if tx and len(tx) > 2:
            txp = [b - a for a, b in zip(tx, tx[1:])]
            row("  the same as the gateway sent them (its frame tap)", "%.4f / %.4f / %.4f s, p99 |period - 1 s| %.1f ms"
                % (pct(txp, 50), pct(txp, 99), max(txp), pct([abs(x - 1.0) for x in txp], 99) * 1000))
        row("CAN frames received (all ids)", "%d" % sum(can_res["counts"].values()))
        buckets = age_buckets(text)
        age_max = metric(text, "tinybms_gw_can_data_age_max_seconds")
        age_p50, age_p99 = bucket_quantile(buckets, 0.5), bucket_quantile(buckets, 0.99)
        if age_max is not None and age_p50 is not None:  # interpolation never past the true max
            age_p50, age_p99 = min(age_p50, age_max * 1000), min(age_p99, age_max * 1000)
        limit_ms = POLL_MS + 5
        within = dict(buckets).get(float(limit_ms))
        frac = within / buckets[-1][1] if buckets and buckets[-1][1] and within is not None else None
        if age_p50 is not None:
            row("CAN data age at send p50 / p99 / max", "%.0f / %.0f / %.0f ms (%d frames)"
                % (age_p50, age_p99, (age_max or 0) * 1000, buckets[-1][1]))
            row("CAN frames with data <= one poll + 5 ms", "%.3f %%" % (100 * frac) if frac is not None else "n/a",
                ">= 99 %% (p99 <= %d ms)" % limit_ms, frac is not None and frac >= 0.99)
        else:
            row("CAN data age at send", "no frame counted", "counted", False)

        warm = [r for r in rss if r[0] >= min(60.0, SECONDS / 5)]
        if len(warm) >= 4:
            half = len(warm) // 2
            first, last = max(r[1] for r in warm[:half]), max(r[1] for r in warm[half:])
            growth = last - first
            row("RSS after warm-up: max 1st half -> 2nd half", "%.2f -> %.2f MiB (%+d KiB; %d samples)"
                % (first / 1048576, last / 1048576, growth // 1024, len(warm)), "growth <= %d KiB"
                % (RSS_GROWTH_MAX // 1024), growth <= RSS_GROWTH_MAX)
        row("RSS peak (VmHWM)", "%.2f MiB" % (hwm / 1048576), "<= 16 MiB", hwm <= RSS_PEAK_MAX)
        if rss:
            row("RSS at the end: anonymous / files (shared libraries)", "%.2f / %.2f MiB"
                % (rss[-1][3] / 1048576, rss[-1][4] / 1048576))
        row("threads", "%d" % (rss[-1][2] if rss else 0))
        cpu = (ticks1 - ticks0) / hz / elapsed
        row("daemon CPU (utime+stime / wall)", "%.1f %% of one core" % (100 * cpu))
        per = sorted(((threads1.get(k, 0) - threads0.get(k, 0), k) for k in threads1), reverse=True)
        row("  per thread name", ", ".join("%s %.1f %%" % (k, 100 * t / hz / elapsed) for t, k in per if t > 0)
            or "(none measurable)")

        lat = [x for r in rest_res for x in r["lat"]]
        errs = sum(r["error_count"] for r in rest_res)
        rate = len(lat) / elapsed
        row("REST requests answered / rate", "%d / %.1f per s" % (len(lat), rate), ">= 95 %% of %.0f/s" % REST_RATE,
            rate >= 0.95 * REST_RATE)
        if lat:
            row("REST latency p50 / p99 / max", "%.1f / %.1f / %.1f ms" % (pct(lat, 50) * 1000, pct(lat, 99) * 1000,
                                                                        max(lat) * 1000))
        row("REST errors", "%d%s" % (errs, (" (" + "; ".join(sorted({e for r in rest_res for e in r["errors"]})[:5])
                                           + ")") if errs else ""), "0", errs == 0)
        clients = ws_res["clients"]
        for path in ("/ws/live", "/ws/alerts"):
            m = [c["messages"] for c in clients if c["path"] == path]
            if m:
                row("WebSocket %s messages per client min / max" % path, "%d / %d (%d clients)"
                    % (min(m), max(m), len(m)))
        live = [c["messages"] for c in clients if c["path"] == "/ws/live"]
        closed = [c for c in clients if c["closed"] is not None]
        ws_dropped = (status_doc or {}).get("web", {}).get("ws_dropped")
        row("WebSocket clients connected", "%d of %d" % (len(clients), WS_CLIENTS), "all",
            len(clients) == WS_CLIENTS and not ws_res["refused"])
        row("WebSocket clients closed by the server / dropped", "%d / %s" % (len(closed), ws_dropped), "0 / 0",
            not closed and ws_dropped == 0)
        miss = ws_res.get("live_missing") or []
        row("WebSocket /ws/live: views lost per client (of those sent)", "max %d (of %d views; %d to %d received)"
            % (max(miss) if miss else -1, ws_res.get("live_sent", 0), min(live) if live else 0, max(live) if live else 0),
            "0", bool(live) and min(live) > 0 and bool(miss) and max(miss) == 0)
        row("MQTT messages received", "%d (%.1f per s)" % (mqtt_n, mqtt_n / elapsed), "> 0", mqtt_n > 0)
        row("D-Bus signals (BusItem)", "%d (%.1f per s)" % (dbus_n, dbus_n / elapsed), "> 0", dbus_n > 0)
        drops = metric(text, "tinybms_gw_event_bus_dropped_total")
        row("event bus drops", "%s" % (int(drops) if drops is not None else "n/a"), "0", drops == 0)
        row("daemon exit on SIGTERM", "%s%s (%.1f s)" % (rc, "" if in_time else " (killed)", gw.stop_seconds), "0",
            rc == 0 and in_time)
        if SMOKE:
            answered = (len(clients) == WS_CLIENTS and lat and mqtt_n > 0 and dbus_n > 0 and periods
                        and rc == 0 and in_time and errs == 0)
            if not answered:
                failed.append("smoke: something did not answer")
        results["rss"] = rss
        with open(os.path.join(work, "soak.json"), "w") as f:
            json.dump({"rows": rows, "rss": rss, "can_counts": can_res["counts"],
                       "rest_statuses": [r["statuses"] for r in rest_res]}, f, indent=1)
    except Exception as e:  # reported as a failure with what happened, then everything is stopped
        failed.append("run: %s" % e)
        print("soak: %s" % e, flush=True)
    finally:
        stop.set()
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
        if gw is not None and gw.alive():
            gw.stop()
        for fn in reversed(cleanup):
            try:
                fn()
            except Exception:
                pass

    load = open("/proc/loadavg").read().split()[:3]
    if results.get("rss"):
        loads = [r[5] for r in results["rss"]]
        load = ["1-min mean %.1f, max %.1f over the run, %d cores" % (sum(loads) / len(loads), max(loads),
                                                                      os.cpu_count() or 0)]
    print("\nsoak: %.0f s, 2 packs every %d ms, %d WebSocket clients, REST %.0f/s, MQTT, CAN slcan, D-Bus%s; "
          "machine load %s (shared: other builds may run)" % (SECONDS, POLL_MS, WS_CLIENTS, REST_RATE,
                                                              ", daemon at nice %s" % GW_NICE if GW_NICE else "",
                                                              " ".join(load)))
    w = max([len(r[0]) for r in rows] + [10])
    for name, value, target, verdict in rows:
        print("%-*s  %-44s %-22s %s" % (w, name, value, target, verdict))
    if failed:
        print("\nsoak: FAIL (%s); logs in %s" % ("; ".join(failed), work))
        return 1
    print("\nsoak: %s" % ("smoke PASS: everything answered, the daemon exited 0" if SMOKE else "PASS"))
    if not KEEP:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print("soak: work dir kept: %s" % work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
