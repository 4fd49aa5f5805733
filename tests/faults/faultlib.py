"""Support for the fault-injection tests (tests/faults): the e2e helpers (tests/e2e/gwtest.py:
Daemon, Sim, Socat, CanPeer, Mosquitto) plus what every fault test reads back from the real
daemon: its metrics and alerts over the web API (a password set with --set-password, Basic
login), and the CAN frames a GX would see.

Every wait is a condition with a deadline; figures (times to recover, counters) are printed to
stderr as "FIGURE name value" lines for docs/reliability.md, never asserted against a clock."""
import json
import os
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import gwtest  # noqa: E402
from gwtest import GatewayTestCase, wait_for  # noqa: E402,F401
from webclient import http  # noqa: E402

USER, PASSWORD = "admin", "faults-pass-1"

# Short timeouts so a loss is declared in seconds, not the defaults' 30 s (the daemon allows
# them: the ranges of docs/configuration.md).
FAST_FAULTS = {
    "bms": {"comm_timeout_ms": 3000},
    "battery": {"stale_after_ms": 2000, "frozen_after_ms": 3000},
    "can": {"stale_timeout_ms": 2000},
}


def figure(name, value):
    sys.stderr.write("FIGURE %s %s\n" % (name, value))
    sys.stderr.flush()


def merge(a, b):
    out = json.loads(json.dumps(a))
    for k, v in (b or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


class FaultCase(GatewayTestCase):
    """A GatewayTestCase with a daemon reachable over HTTP and helpers to read its state."""

    def start_gateway(self, uarts, config=None, args=(), name="gw", fresh=True):
        """Writes config (merged over FAST_FAULTS), sets the web password, starts the daemon on
        the given serial links and waits for its web server. fresh=False: a restart on the data
        directory as it is (same port)."""
        if fresh:
            self.port = gwtest.free_port()
            self.write_config(merge(merge(FAST_FAULTS, {"web": {"http_port": self.port}}), config))
            r = subprocess.run([gwtest.TINYBMS_GW, "--set-password", "--data-dir", self.data_dir],
                               input=(PASSWORD + "\n").encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
        full = []
        for u in uarts:
            full += ["--uart", u]
        for attempt in range(3):
            gw = self.start_daemon(full + list(args), name=name if not attempt else "%s-retry%d" % (name, attempt))
            gw.wait_log(r"app: tinybms-gw .* running", 60)
            if "cannot serve http" not in gw.stderr():
                break
            # The free port was taken by another test between the choice and the bind (tests
            # run two at a time): another port.
            gw.stop()
            self.port = gwtest.free_port()
            path = os.path.join(self.data_dir, "config.json")
            with open(path) as f:
                doc = json.load(f)
            doc.setdefault("web", {})["http_port"] = self.port
            with open(path + ".tmp", "w") as f:
                json.dump(doc, f)
            os.chmod(path + ".tmp", 0o600)
            os.rename(path + ".tmp", path)
        wait_for(lambda: gwtest.port_open(self.port), 30, "the web server")
        return gw

    def api(self, path, timeout=30):
        status, _, body = http(self.port, "GET", path, auth=(USER, PASSWORD), timeout=timeout)
        self.assertEqual(status, 200, "%s: %s" % (path, body[:300]))
        return json.loads(body)

    def post(self, path, body):
        """A logged-in POST with a fresh CSRF token; returns (status, parsed body or text)."""
        status, _, b = http(self.port, "GET", "/api/security/csrf", auth=(USER, PASSWORD), timeout=30)
        self.assertEqual(status, 200, b)
        token = json.loads(b)["token"]
        status, _, b = http(self.port, "POST", path, body=body, headers={"X-CSRF-Token": token},
                            auth=(USER, PASSWORD), timeout=60)
        try:
            return status, json.loads(b)
        except ValueError:
            return status, b.decode(errors="replace")

    def metrics(self, fresh=True):
        """The modules of /api/metrics. The daemon collects them every 5 s: fresh waits for a
        collection made after this call, so counters include everything before it."""
        t = time.time()
        if not fresh:
            return self.api("/api/metrics")["modules"]
        doc = wait_for(lambda: (lambda d: d if d["timestamp_ms"] / 1000.0 > t else None)(self.api("/api/metrics")),
                       30, "a metrics collection", interval=0.25)
        return doc["modules"]

    def uart(self, pack=0, fresh=True):
        """{counter: value} of one pack's serial link."""
        out = {}
        for k, series in self.metrics(fresh)["uart"].items():
            for s in series:
                if s.get("pack") == str(pack):
                    out[k] = s["value"]
        return out

    def battery(self, fresh=False):
        return self.metrics(fresh)["battery"]

    def alerts(self):
        return self.api("/api/alerts?limit=200")

    def active(self, code, battery_id=None):
        return [a for a in self.alerts()["active"] if a["code"] == code
                and (battery_id is None or a.get("battery_id") == battery_id)]

    def history(self, code, event):
        return [h for h in self.alerts()["history"] if h["code"] == code and h["event"] == event]

    def wait_samples(self, gw, n, pack=0, timeout=60, what=None):
        """Waits until the daemon printed n more summary lines of the pack (one per battery view
        with the pack in it); returns the seconds it took."""
        t0 = time.monotonic()

        def count():
            return sum(1 for l in gw.summary_lines() if gwtest.SUMMARY_RE.match(l).group(1) == str(pack))
        base = count()
        wait_for(lambda: gw.alive() and count() >= base + n, timeout, what or "%d new samples from pack %d" % (n, pack))
        return time.monotonic() - t0

    def wait_uart(self, counter, at_least, pack=0, timeout=60):
        """Waits until a serial counter of /api/metrics reaches at_least (for samples no summary
        line shows: the daemon prints one per battery view, none while the pack is out)."""
        return wait_for(lambda: self.uart(pack, fresh=False)[counter] >= at_least, timeout,
                        "uart %s >= %d" % (counter, at_least), interval=0.5)

    def assert_alive(self, gw):
        self.assertTrue(gw.alive(), "%s exited (%s): %s" % (gw.name, gw.proc.returncode, gw.stderr()[-3000:]))
        self.assertIsNone(gw.sanitizer_report(), "sanitizer report in %s stderr" % gw.name)
