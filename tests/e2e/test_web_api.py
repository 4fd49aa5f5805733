#!/usr/bin/python3
"""End-to-end tests of the web server against the real daemon on its built-in simulator: every
endpoint and method, each error status (401, 403 CSRF/Origin, 404, 405, 409, 413, 415, 429 and
its per-address scope, 400 with field paths, 501, 503), the JSON shape of each answer, secrets
never returned nor logged, the update upload (every refusal, then an install the gateway restarts
into), the metrics (Prometheus text and JSON, web.metrics_public), the network link in /api/status,
path traversal, slow clients, the first-run flow, the WebSocket
channels (formats, Origin, cap, the drop of a client that does not read) and the restart."""
import gzip
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gwtest  # noqa: E402
from gwtest import wait_for  # noqa: E402
from webclient import WebSocket, http, parse_response, raw_request  # noqa: E402

PASSWORD = "e2e-web-pass-1"
MQTT_SECRET = "mqtt-secret-xyz"
ADMIN = ("admin", PASSWORD)
UI_FILES = {
    "index.html": b"<!doctype html><title>ui index</title>",
    "first-run.html": b"<!doctype html><title>first run page</title>",
    "app.js": b"console.log('x');",
    "style.css": b"body{}",
    "logo.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>",
    "sub/data.json": b"{\"a\":1}",
    ".hidden": b"hidden",
}
BIG_TEXT = b"tinybms " * 4096

MAKE_KEYS = os.path.join(gwtest.SOURCE_DIR, "scripts", "make-keys.sh")
SIGN = os.path.join(gwtest.SOURCE_DIR, "scripts", "sign-update.sh")
MAKE_BUNDLE = os.path.join(gwtest.SOURCE_DIR, "packaging", "make-bundle.sh")
BOUNDARY = "----gwTestBoundary7MA4YWxkTrZu0gW"


def sh(args):
    return subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=120, check=True)


def multipart(parts, boundary=BOUNDARY):
    """(body, Content-Type) of a form as a browser's FormData sends it; parts: (name, filename, bytes)."""
    out = b""
    for name, filename, data in parts:
        disp = 'form-data; name="%s"' % name + ('; filename="%s"' % filename if filename else "")
        out += ("--%s\r\nContent-Disposition: %s\r\nContent-Type: application/octet-stream\r\n\r\n"
                % (boundary, disp)).encode() + data + b"\r\n"
    out += ("--%s--\r\n" % boundary).encode()
    return out, "multipart/form-data; boundary=" + boundary


def gw_version():
    return subprocess.run([gwtest.TINYBMS_GW, "--version"], stdout=subprocess.PIPE, check=True).stdout.decode().split()[-1]


def next_version(v):
    parts = v.split("-")[0].split(".")
    parts[-1] = str(int(parts[-1]) + 1)
    return ".".join(parts)


def bundle_arch():
    import platform
    m = platform.machine()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m, "armhf" if m.startswith("arm") else m)


def set_password(data_dir, password, extra=()):
    return subprocess.run([gwtest.TINYBMS_GW, "--set-password", "--data-dir", data_dir] + list(extra),
                          input=(password + "\n").encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=120)


def make_ui(root):
    for name, data in UI_FILES.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    with open(os.path.join(root, "big.txt"), "wb") as f:
        f.write(BIG_TEXT)
    with open(os.path.join(root, "big.txt.gz"), "wb") as f:
        f.write(gzip.compress(BIG_TEXT))


class WebDaemon:
    """One daemon (built-in simulator) with a web port, in its own temp dir."""

    def __init__(self, name, web=None, password=True, args=(), config=None, trusted_key=None):
        self.tmp = tempfile.mkdtemp(prefix="gw-web-")
        self.data = os.path.join(self.tmp, "data")
        self.ui = os.path.join(self.tmp, "ui")
        os.makedirs(self.data)
        if trusted_key:
            os.makedirs(os.path.join(self.data, "keys"))
            shutil.copy(trusted_key, os.path.join(self.data, "keys", "update.pub"))
        make_ui(self.ui)
        self.port = gwtest.free_port()
        doc = {"web": dict({"ui_dir": self.ui, "request_timeout_ms": 2000, "ws_max_clients": 6,
                            "ws_queue_len": 4}, **(web or {})),
               "history": {"period_s": 1}}
        for k, v in (config or {}).items():
            doc.setdefault(k, {}).update(v)
        path = os.path.join(self.data, "config.json")
        with open(path, "w") as f:
            json.dump(doc, f)
        os.chmod(path, 0o600)
        if password:
            r = set_password(self.data, PASSWORD)
            assert r.returncode == 0, r.stderr
        self.daemon = gwtest.Daemon(self.tmp, ["--simulate", "--http", str(self.port), "--data-dir", self.data,
                                               "-q"] + list(args), name=name)
        try:
            self.daemon.wait_log(r"web_server: serving https?://", 60)
            wait_for(lambda: gwtest.port_open(self.port), 30, "the web port")
        except BaseException:
            sys.stderr.write(self.daemon.stderr()[-3000:])
            self.stop()
            raise

    def stop(self, tc=None):
        rc, in_time = self.daemon.stop()
        report = self.daemon.sanitizer_report()
        text = self.daemon.stderr()
        if tc is not None:
            tc.assertTrue(in_time, "daemon did not stop in time")
            tc.assertEqual(rc, 0, text[-3000:])
            tc.assertIn("stopped cleanly", text)
            tc.assertIsNone(report, report)
        if os.environ.get("GW_E2E_KEEP"):
            sys.stderr.write("kept %s\n" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return text


def check_security_headers(tc, headers, api=True):
    csp = headers.get("content-security-policy", "")
    tc.assertIn("default-src 'self'", csp)
    tc.assertIn("script-src 'self'", csp)
    tc.assertNotIn("unsafe-inline", csp)
    tc.assertIn("frame-ancestors 'none'", csp)
    tc.assertEqual(headers.get("x-frame-options"), "DENY")
    tc.assertEqual(headers.get("x-content-type-options"), "nosniff")
    tc.assertEqual(headers.get("referrer-policy"), "no-referrer")
    if api:
        tc.assertEqual(headers.get("cache-control"), "no-store")


def check_error(tc, status, headers, body, want_status, want_code=None):
    tc.assertEqual(status, want_status, body)
    tc.assertTrue(headers.get("content-type", "").startswith("application/json"), headers)
    doc = json.loads(body)
    tc.assertEqual(set(doc), {"error", "status", "message", "fields"}, doc)
    tc.assertEqual(doc["status"], want_status)
    tc.assertIsInstance(doc["message"], str)
    tc.assertTrue(doc["message"])
    tc.assertIsInstance(doc["fields"], list)
    if want_code:
        tc.assertEqual(doc["error"], want_code, doc)
    check_security_headers(tc, headers)
    return doc


class FirstRun(unittest.TestCase):
    """No password yet: only the UI files and the first-run call answer."""

    def test_first_run_flow(self):
        d = WebDaemon("gw-first", password=False)
        try:
            port = d.port
            self.assertNotRegex(d.daemon.stderr(), r"generated one|password.*:\s*\S{12,}")
            s, h, b = http(port, "GET", "/")
            self.assertEqual(s, 200)
            self.assertIn(b"first run page", b)  # the home page is the first-run page
            check_security_headers(self, h, api=False)
            for method, path in (("GET", "/api/status"), ("GET", "/api/data"), ("GET", "/api/config"),
                                 ("GET", "/api/security/csrf"), ("POST", "/api/alerts/clear")):
                s, h, b = http(port, method, path, auth=ADMIN)
                doc = check_error(self, s, h, b, 401, "no_password")
                self.assertIn("--set-password", doc["message"])
            ws = WebSocket(port, "/ws/live")
            self.assertEqual(ws.status, 401)
            # Bad requests first: wrong type, too short, another site.
            s, h, b = http(port, "POST", "/api/security/first-password", body=b"password=x",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
            check_error(self, s, h, b, 415)
            s, h, b = http(port, "POST", "/api/security/first-password", body={"password": "short"})
            doc = check_error(self, s, h, b, 400)
            self.assertEqual(doc["fields"][0]["path"], "password")
            s, h, b = http(port, "POST", "/api/security/first-password", body={"password": PASSWORD},
                           headers={"Origin": "http://evil.example"})
            check_error(self, s, h, b, 403, "bad_origin")
            # The real one, then never again.
            s, h, b = http(port, "POST", "/api/security/first-password", body={"password": PASSWORD},
                           headers={"Origin": "http://127.0.0.1:%d" % port, "Host": "127.0.0.1:%d" % port})
            self.assertEqual(s, 200, b)
            self.assertEqual(json.loads(b), {"ok": True, "user": "admin"})
            s, h, b = http(port, "POST", "/api/security/first-password", body={"password": "another-pass-2"})
            check_error(self, s, h, b, 409, "password_exists")
            s, h, b = http(port, "GET", "/api/status")
            check_error(self, s, h, b, 401, "login_required")
            self.assertIn("Basic", h.get("www-authenticate", ""))
            s, h, b = http(port, "GET", "/api/status", auth=ADMIN)
            self.assertEqual(s, 200, b)
            self.assertTrue(json.loads(b)["web"]["password_set"])
            s, h, b = http(port, "GET", "/")
            self.assertIn(b"ui index", b)
            conf = gwtest.read_text(os.path.join(d.data, "config.json"))
            self.assertNotIn(PASSWORD, conf)
            self.assertIn("pbkdf2-sha256$", conf)
        finally:
            text = d.stop(self)
        self.assertNotIn(PASSWORD, text)

    def test_set_password_command(self):
        tmp = tempfile.mkdtemp(prefix="gw-setpw-")
        try:
            r = set_password(tmp, "short")
            self.assertEqual(r.returncode, 1)
            self.assertIn(b"8..128", r.stderr)
            r = set_password(tmp, PASSWORD)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(b"web password set", r.stdout)
            self.assertNotIn(PASSWORD.encode(), r.stdout + r.stderr)
            conf = gwtest.read_text(os.path.join(tmp, "config.json"))
            self.assertIn("pbkdf2-sha256$", conf)
            self.assertNotIn(PASSWORD, conf)
            r = subprocess.run([gwtest.TINYBMS_GW, "--set-password", "--data-dir", tmp], input=b"",
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
            self.assertEqual(r.returncode, 1)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class Api(unittest.TestCase):
    """One daemon for every endpoint test (password set with --set-password before the start)."""

    @classmethod
    def setUpClass(cls):
        cls.d = WebDaemon("gw-api", args=["--poll-ms", "200"],
                          config={"alerts": {"raise_delay_ms": 0, "clear_delay_ms": 0}})
        cls.port = cls.d.port
        try:
            wait_for(lambda: http(cls.port, "GET", "/api/data", auth=ADMIN)[0] == 200, 60, "a battery view")
        except BaseException:
            cls.d.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        tc = unittest.TestCase()
        text = cls.d.stop(tc)
        assert PASSWORD not in text and MQTT_SECRET not in text, "a secret in the log"

    def get(self, path, auth=ADMIN, **kw):
        return http(self.port, "GET", path, auth=auth, **kw)

    def csrf(self):
        s, h, b = self.get("/api/security/csrf")
        self.assertEqual(s, 200, b)
        doc = json.loads(b)
        self.assertEqual(doc["header"], "X-CSRF-Token")
        self.assertEqual(doc["expires_in_s"], 300)
        return doc["token"]

    def post(self, path, body=None, token=True, headers=None, auth=ADMIN, **kw):
        h = dict(headers or {})
        if token:
            h["X-CSRF-Token"] = token if isinstance(token, str) else self.csrf()
        return http(self.port, "POST", path, body=body, headers=h, auth=auth, **kw)

    # -- reading

    def test_status_shape(self):
        s, h, b = self.get("/api/status")
        self.assertEqual(s, 200)
        check_security_headers(self, h)
        doc = json.loads(b)
        for k in ("version", "uptime_s", "time", "web", "config", "battery", "alerts", "history", "event_bus"):
            self.assertIn(k, doc)
        self.assertRegex(doc["version"], r"^\d+\.\d+\.\d+$")
        self.assertEqual(doc["config"]["status"], "ok")
        self.assertEqual(doc["battery"]["pack_count"], 1)
        self.assertEqual(doc["battery"]["packs"][0]["state"], "online")
        self.assertTrue(doc["history"]["enabled"])
        self.assertTrue(doc["web"]["password_set"])
        self.assertFalse(doc["web"]["public_read"])

    def test_data_shape_and_packs(self):
        s, h, b = self.get("/api/data")
        self.assertEqual(s, 200)
        doc = json.loads(b)
        self.assertEqual(set(doc), {"seq", "timestamp", "pack_count", "online_count", "bank", "limits", "packs"})
        bank = doc["bank"]
        self.assertTrue(bank["online"])
        self.assertGreater(bank["voltage_v"], 40)
        self.assertEqual(bank["cell_count"], 16)
        self.assertIn("cell", bank["min_cell"])
        p = doc["packs"][0]
        self.assertEqual(p["name"], "pack 1")
        self.assertEqual(len(p["live"]["cells_v"]), 16)
        self.assertAlmostEqual(sum(p["live"]["cells_v"]), p["live"]["voltage_v"], delta=0.1)
        self.assertIn("internal", p["live"]["temperatures_c"])
        s, h, b = self.get("/api/data?pack=0")
        self.assertEqual(s, 200)
        self.assertEqual(json.loads(b)["pack"]["id"], 0)
        s, h, b = self.get("/api/data?pack=bank")
        self.assertEqual(set(json.loads(b)), {"seq", "timestamp", "bank", "limits"})
        s, h, b = self.get("/api/data?pack=3")
        doc = check_error(self, s, h, b, 404, "no_such_pack")
        self.assertEqual(doc["fields"][0]["path"], "pack")
        s, h, b = self.get("/api/data?pack=x")
        check_error(self, s, h, b, 400)

    def test_limits_with_reasons(self):
        s, h, b = self.get("/api/limits")
        self.assertEqual(s, 200)
        doc = json.loads(b)
        self.assertTrue(doc["valid"])
        self.assertFalse(doc["sent"])  # no CAN in this run: nothing sends them
        self.assertEqual(doc["sent_by"], [])
        for k, unit in (("cvl", "V"), ("ccl", "A"), ("dcl", "A")):
            self.assertEqual(doc[k]["unit"], unit)
            self.assertIsInstance(doc[k]["value"], (int, float))
            self.assertTrue(doc[k]["reason"])
        self.assertEqual(doc["packs"][0]["limits"]["ccl"]["reason"], doc["ccl"]["reason"])
        self.assertIn(doc["phase"], ("bulk", "absorption", "float"))

    def test_history_json_and_errors(self):
        wait_for(lambda: json.loads(self.get("/api/status")[2])["history"]["samples_written"] >= 2, 60,
                 "history rows")
        now = int(time.time() * 1000)
        s, h, b = self.get("/api/history?from=%d&to=%d&points=10&fields=voltage,soc" % (now - 600000, now + 1000))
        self.assertEqual(s, 200, b)
        doc = json.loads(b)
        self.assertEqual(doc["points"], 10)
        self.assertEqual(doc["pack"], "bank")
        self.assertEqual(len(doc["time"]), 10)
        self.assertEqual(set(doc["series"]), {"voltage", "soc"})
        v = doc["series"]["voltage"]
        self.assertEqual(v["unit"], "V")
        filled = [i for i, c in enumerate(doc["count"]) if c]
        self.assertTrue(filled)
        i = filled[-1]
        self.assertLessEqual(v["min"][i], v["avg"][i])
        self.assertLessEqual(v["avg"][i], v["max"][i])
        self.assertIsNone(v["avg"][0] if not doc["count"][0] else None)
        s, h, b = self.get("/api/history")
        self.assertEqual(s, 200)
        self.assertEqual(len(json.loads(b)["series"]), 7)
        for q, path in (("from=5&to=4", "from"), ("points=0", "points"), ("points=abc", "points"),
                        ("fields=voltage,bogus", "fields"), ("pack=99", "pack"), ("to=-3", "to")):
            s, h, b = self.get("/api/history?" + q)
            doc = check_error(self, s, h, b, 400)
            self.assertEqual(doc["fields"][0]["path"], path, q)

    def test_history_csv(self):
        wait_for(lambda: json.loads(self.get("/api/status")[2])["history"]["samples_written"] >= 2, 60,
                 "history rows")
        s, h, b = self.get("/api/history.csv")
        self.assertEqual(s, 200)
        self.assertTrue(h["content-type"].startswith("text/csv"))
        self.assertIn("attachment", h.get("content-disposition", ""))
        lines = b.decode().splitlines()
        self.assertTrue(lines[0].startswith("timestamp,voltage,current,soc,temp_max,temp_min"), lines[0])
        self.assertGreaterEqual(len(lines), 2)
        self.assertRegex(lines[1], r"^\d{10},\d")
        s, h, b = self.get("/api/history.csv?day=2025-01-17")
        self.assertEqual(s, 200)
        self.assertEqual(len(b.decode().splitlines()), 1)  # the header only: no rows that day
        for day in ("2025-13-45", "yesterday", "2025-1-1"):
            s, h, b = self.get("/api/history.csv?day=" + day)
            check_error(self, s, h, b, 400)

    def test_alerts_list_ack_clear_and_ws_format(self):
        ws = WebSocket(self.port, "/ws/alerts", auth=ADMIN)
        self.assertEqual(ws.status, 101)
        try:
            # An alert the simulator's 50 % SOC raises at once.
            s, h, b = self.post("/api/config", {"alerts": {"soc_low": {"enabled": True, "value": 90,
                                                                        "hysteresis": 1, "level": "warning"}}})
            self.assertEqual(s, 200, b)
            deadline = time.monotonic() + 60
            while True:
                m = ws.recv_json(timeout=max(1, deadline - time.monotonic()))
                if m.get("code") == "SOC_LOW" and m.get("event") in ("raised", "active"):
                    break
            self.assertEqual(list(m)[:4], ["timestamp", "level", "code", "message"])
            self.assertIsInstance(m["timestamp"], int)
            self.assertLess(abs(m["timestamp"] - time.time()), 3600)
            self.assertEqual(m["level"], "warning")
            self.assertTrue(m["message"])
            s, h, b = self.get("/api/alerts?limit=2")
            self.assertEqual(s, 200)
            doc = json.loads(b)
            self.assertEqual({"active", "history", "offset", "limit", "more"} - set(doc), set())
            self.assertIn("SOC_LOW", [a["code"] for a in doc["active"]])
            self.assertLessEqual(len(doc["history"]), 2)
            s, h, b = self.get("/api/alerts?limit=0")
            check_error(self, s, h, b, 400)
            s, h, b = self.post("/api/alerts/ack", {"code": "SOC_LOW"})
            self.assertEqual(s, 200, b)
            self.assertGreaterEqual(json.loads(b)["acknowledged"], 1)
            s, h, b = self.post("/api/alerts/ack", {"code": "NO_SUCH_CODE"})
            check_error(self, s, h, b, 404)
            s, h, b = self.post("/api/alerts/ack", {"code": 5})
            doc = check_error(self, s, h, b, 400)
            self.assertEqual(doc["fields"][0]["path"], "code")
            s, h, b = self.post("/api/config", {"alerts": {"soc_low": {"enabled": False}}})
            self.assertEqual(s, 200, b)
            s, h, b = self.post("/api/alerts/clear")
            self.assertEqual(s, 200, b)
            self.assertIn("cleared", json.loads(b))
        finally:
            ws.close()

    # -- configuration

    def test_config_get_post_field_errors_and_secrets(self):
        s, h, b = self.post("/api/config", {"mqtt": {"username": "gw", "password": MQTT_SECRET}})
        self.assertEqual(s, 200, b)
        doc = json.loads(b)
        self.assertTrue(doc["ok"])
        self.assertIn("mqtt.password", doc["changed"])
        self.assertEqual(doc["config"]["mqtt"]["password"], "********")
        s, h, b = self.get("/api/config")
        self.assertEqual(s, 200)
        check_security_headers(self, h)
        self.assertNotIn(MQTT_SECRET.encode(), b)
        self.assertNotIn(b"password_hash", b)
        self.assertNotIn(b"pbkdf2", b)
        self.assertEqual(json.loads(b)["mqtt"]["password"], "********")
        s, h, b = self.post("/api/config", {"bms": {"poll_interval_ms": 5}, "web": {"http_port": 0},
                                            "mqtt": {"keepalive_s": "x"}})
        doc = check_error(self, s, h, b, 400, "invalid_config")
        paths = {f["path"] for f in doc["fields"]}
        self.assertTrue({"bms.poll_interval_ms", "web.http_port", "mqtt.keepalive_s"} <= paths, paths)
        for f in doc["fields"]:
            self.assertEqual(set(f), {"path", "reason"})
        s, h, b = self.post("/api/config", b"{not json", headers={"Content-Type": "application/json"})
        check_error(self, s, h, b, 400, "bad_json")
        s, h, b = self.post("/api/config", b"[1,2]", headers={"Content-Type": "application/json"})
        check_error(self, s, h, b, 400)
        s, h, b = self.post("/api/config", b"a=b", headers={"Content-Type": "text/plain"})
        check_error(self, s, h, b, 415)
        big = b"{\"x\":\"" + b"a" * (70 * 1024) + b"\"}"
        s, h, b = self.post("/api/config", big, headers={"Content-Type": "application/json"})
        check_error(self, s, h, b, 413)
        s, h, b = self.post("/api/config", b"", headers={"Content-Type": "application/json"})
        check_error(self, s, h, b, 400)

    def test_config_schema_covers_every_field_with_the_daemons_ranges(self):
        s, h, b = self.get("/api/config/schema")
        self.assertEqual(s, 200, b)
        check_security_headers(self, h)
        schema = {f["path"]: f for f in json.loads(b)["fields"]}
        cfg = json.loads(self.get("/api/config")[2])
        paths = {"%s.%s" % (sec, k) for sec, fields in cfg.items() if isinstance(fields, dict) for k in fields}
        self.assertEqual(paths - set(schema), set(), "fields of GET /api/config without a schema entry")
        self.assertEqual(set(schema) - paths, set(), "schema entries GET /api/config does not have")
        kinds = {"bool": bool, "integer": int, "number": (int, float), "string": str, "enum": str, "curve": dict,
                 "threshold": dict, "packs": list}
        for path, f in schema.items():
            sec, key = path.split(".", 1)
            v = cfg[sec][key]
            self.assertIsInstance(v, kinds[f["type"]], path)
            self.assertIsInstance(f["restart"], bool, path)
            if f["type"] in ("integer", "number"):
                self.assertTrue(f["min"] <= v <= f["max"], "%s = %s outside %s..%s" % (path, v, f["min"], f["max"]))
            if f["type"] == "enum":
                self.assertIn(v, f["values"], path)
            if f["type"] == "string":
                self.assertLessEqual(len(v), f["max_length"], path)
        # Units from the names, flags from the table.
        self.assertEqual(schema["bms.poll_interval_ms"]["unit"], "ms")
        self.assertEqual(schema["charge.target_cell_v"]["unit"], "V")
        self.assertEqual(schema["charge.increase_ramp_a_per_s"]["unit"], "A/s")
        self.assertEqual(schema["alerts.temp_high"]["unit"], "°C")
        self.assertEqual(schema["charge.charge_by_soc"]["unit"], "%")
        self.assertTrue(schema["can.enabled"]["restart"])
        self.assertFalse(schema["bms.poll_interval_ms"]["restart"])
        self.assertTrue(schema["mqtt.password"]["secret"])
        self.assertEqual(schema["dbus.capacity"]["values"], ["remaining", "installed", "none"])
        self.assertEqual((schema["bms.poll_interval_ms"]["min"], schema["bms.poll_interval_ms"]["max"]), (100, 10000))
        self.assertIn("update.pause_charge_on_switch", schema)
        # Each number's max is where the gateway's own check starts refusing (nothing is saved).
        token = self.csrf()
        for path, f in schema.items():
            if f["type"] not in ("integer", "number"):
                continue
            sec, key = path.split(".", 1)
            over = f["max"] + 1
            s, h, b = self.post("/api/config", {sec: {key: over}}, token=token)
            self.assertEqual(s, 400, "%s = %s accepted (schema max %s): %s" % (path, over, f["max"], b))
            self.assertIn(path, {e["path"] for e in json.loads(b)["fields"]}, b)
        self.assertEqual(json.loads(self.get("/api/config")[2]), cfg)
        check_error(self, *self.get("/api/config/schema", auth=None), 401)

    def test_static_gzip_twin_only_when_accepted(self):
        # The twins `make` builds (scripts/build-ui.sh) are served as they are: copy one pair.
        built = os.path.join(gwtest.BUILD_DIR, "web", "js")
        os.makedirs(os.path.join(self.d.ui, "js"), exist_ok=True)
        for name in ("config.js", "config.js.gz"):
            shutil.copy2(os.path.join(built, name), os.path.join(self.d.ui, "js", name))
        with open(os.path.join(built, "config.js"), "rb") as f:
            plain = f.read()
        with open(os.path.join(built, "config.js.gz"), "rb") as f:
            twin = f.read()
        for path, want_plain, want_gz in (("/js/config.js", plain, twin), ("/big.txt", BIG_TEXT, None)):
            s, h, b = self.get(path, headers={"Accept-Encoding": "gzip, deflate, br"})
            self.assertEqual(s, 200)
            self.assertEqual(h.get("content-encoding"), "gzip", h)
            self.assertEqual(h.get("vary"), "Accept-Encoding")
            self.assertEqual(int(h["content-length"]), len(b))
            self.assertEqual(gzip.decompress(b), want_plain)
            if want_gz:
                self.assertEqual(b, want_gz)
            s, h, b = self.get(path)
            self.assertEqual(s, 200)
            self.assertNotIn("content-encoding", h)
            self.assertEqual(h.get("vary"), "Accept-Encoding")
            self.assertEqual(b, want_plain)
            s, h, b = self.get(path, headers={"Accept-Encoding": "identity"})
            self.assertNotIn("content-encoding", h)
            self.assertEqual(b, want_plain)
        # A file without a twin is sent plain to a browser that accepts gzip.
        s, h, b = self.get("/app.js", headers={"Accept-Encoding": "gzip"})
        self.assertEqual(s, 200)
        self.assertNotIn("content-encoding", h)
        self.assertEqual(b, UI_FILES["app.js"])

    def test_built_ui_has_reproducible_gzip_twins(self):
        built = os.path.join(gwtest.BUILD_DIR, "web")
        src = os.path.join(gwtest.SOURCE_DIR, "web")
        self.assertTrue(os.path.isdir(built), "no %s: the build makes it (target web_ui)" % built)
        twins = 0
        for root, _, files in os.walk(src):
            for name in files:
                rel = os.path.relpath(os.path.join(root, name), src)
                with open(os.path.join(src, rel), "rb") as f:
                    data = f.read()
                with open(os.path.join(built, rel), "rb") as f:
                    self.assertEqual(f.read(), data, rel)
                gz = os.path.join(built, rel + ".gz")
                if os.path.splitext(name)[1] not in (".js", ".css", ".html", ".svg"):
                    self.assertFalse(os.path.exists(gz), rel)
                    continue
                if not os.path.exists(gz):  # only when gzip would not make it smaller
                    self.assertGreaterEqual(len(gzip.compress(data, 9, mtime=0)), len(data), rel)
                    continue
                with open(gz, "rb") as f:
                    z = f.read()
                self.assertEqual(gzip.decompress(z), data, rel)
                self.assertEqual(z[3] & 0x08, 0, rel + ".gz names its file (not reproducible)")
                self.assertEqual(z[4:8], b"\0\0\0\0", rel + ".gz carries a time stamp (not reproducible)")
                self.assertLess(len(z), len(data), rel)
                twins += 1
        self.assertGreaterEqual(twins, 10)
        # The same sources give the same bytes.
        again = tempfile.mkdtemp(prefix="gw-ui-build-")
        try:
            sh(["sh", os.path.join(gwtest.SOURCE_DIR, "scripts", "build-ui.sh"), src, os.path.join(again, "web")])
            for root, _, files in os.walk(built):
                for name in files:
                    rel = os.path.relpath(os.path.join(root, name), built)
                    with open(os.path.join(root, name), "rb") as a, open(os.path.join(again, "web", rel), "rb") as b:
                        self.assertEqual(a.read(), b.read(), rel)
        finally:
            shutil.rmtree(again, ignore_errors=True)

    def test_export_import(self):
        s, h, b = self.get("/api/config/export")
        self.assertEqual(s, 200)
        self.assertIn("attachment", h.get("content-disposition", ""))
        self.assertNotIn(b"password", b)
        doc = json.loads(b)
        doc["history"]["retention_days"] = 9
        s, h, b2 = self.post("/api/config/import", doc)
        self.assertEqual(s, 200, b2)
        self.assertEqual(json.loads(b2)["config"]["history"]["retention_days"], 9)
        doc["history"]["retention_days"] = 0
        s, h, b2 = self.post("/api/config/import", doc)
        doc2 = check_error(self, s, h, b2, 400)
        self.assertIn("history.retention_days", [f["path"] for f in doc2["fields"]])

    # -- security

    def test_login_required_and_wrong_password(self):
        for path in ("/api/status", "/api/data", "/api/config", "/api/history", "/api/alerts"):
            s, h, b = self.get(path, auth=None)
            check_error(self, s, h, b, 401, "login_required")
        s, h, b = self.get("/api/status", headers={"Authorization": "Basic !!!"}, auth=None, source="127.0.0.5")
        check_error(self, s, h, b, 401)

    def test_lockout_per_address(self):
        attacker, owner = "127.0.0.3", "127.0.0.4"
        for i in range(5):
            s, h, b = self.get("/api/status", auth=("admin", "wrong-%d-pass" % i), source=attacker)
            check_error(self, s, h, b, 401, "login_failed")
        s, h, b = self.get("/api/status", auth=ADMIN, source=attacker)  # even the right password
        doc = check_error(self, s, h, b, 429, "locked_out")
        self.assertGreaterEqual(int(h["retry-after"]), 55)
        self.assertLessEqual(int(h["retry-after"]), 60)
        s, h, b = self.get("/api/status", auth=ADMIN, source=owner)
        self.assertEqual(s, 200)
        self.assertGreaterEqual(json.loads(b)["web"]["lockouts"], 1)

    def test_csrf_required_on_posts(self):
        for path, body in (("/api/config", {}), ("/api/alerts/clear", None), ("/api/alerts/ack", None),
                           ("/api/config/import", {}), ("/api/system/restart", None), ("/api/ota/upload", None)):
            s, h, b = self.post(path, body, token=False)
            doc = check_error(self, s, h, b, 403, "csrf")
            self.assertIn("X-CSRF-Token", doc["message"])
        s, h, b = self.post("/api/config", {}, token="1234.%s" % ("ab" * 32))
        check_error(self, s, h, b, 403, "csrf")
        s, h, b = self.post("/api/config", {}, token="garbage")
        check_error(self, s, h, b, 403, "csrf")
        # A token is bound to the session's user: without login the request stops at 401.
        s, h, b = self.post("/api/config", {}, token=self.csrf(), auth=None)
        check_error(self, s, h, b, 401)

    def test_methods_and_unknown_paths(self):
        s, h, b = http(self.port, "DELETE", "/api/status", auth=ADMIN)
        check_error(self, s, h, b, 405, "method_not_allowed")
        self.assertEqual(h.get("allow"), "GET")
        s, h, b = http(self.port, "PUT", "/api/config", auth=ADMIN, headers={"X-CSRF-Token": self.csrf()})
        check_error(self, s, h, b, 405)
        self.assertEqual(h.get("allow"), "GET, POST")
        s, h, b = http(self.port, "GET", "/api/alerts/clear", auth=ADMIN)
        check_error(self, s, h, b, 405)
        s, h, b = http(self.port, "POST", "/index.html", auth=ADMIN)
        check_error(self, s, h, b, 405)
        s, h, b = self.get("/api/nope")
        check_error(self, s, h, b, 404)
        s, h, b = self.get("/nope.html", auth=None)
        check_error(self, s, h, b, 404)
        s, h, b = self.get("/ws/live")
        check_error(self, s, h, b, 426)
        s, h, b = http(self.port, "OPTIONS", "/api/config", headers={"Origin": "http://evil.example",
                                                                      "Access-Control-Request-Method": "POST"})
        self.assertNotIn("access-control-allow-origin", h)
        self.assertGreaterEqual(s, 400)

    def test_metrics_prometheus_and_json(self):
        # /metrics needs the login (web.metrics_public is off), as every other endpoint here.
        s, h, b = self.get("/metrics", auth=None)
        check_error(self, s, h, b, 401, "login_required")
        s, h, b = self.get("/metrics")
        self.assertEqual(s, 200, b)
        self.assertEqual(h["content-type"], "text/plain; version=0.0.4; charset=utf-8")
        check_security_headers(self, h)
        from prometheus_client.parser import text_string_to_metric_families
        families = {f.name: f for f in text_string_to_metric_families(b.decode())}
        self.assertIn("tinybms_gw_build_info", families)
        self.assertIn("process_cpu_seconds", families)
        self.assertGreater(len(families), 20)
        s, h, b = self.get("/api/metrics")
        self.assertEqual(s, 200, b)
        doc = json.loads(b)
        self.assertIn("process", doc)
        self.assertGreater(doc["process"]["rss_bytes"], 0)
        self.assertEqual(doc["version"], json.loads(self.get("/api/status")[2])["version"])
        check_error(self, *self.get("/api/metrics", auth=None), 401)
        for path in ("/metrics", "/api/metrics"):
            s, h, b = self.post(path, b"{}", headers={"Content-Type": "application/json"})
            check_error(self, s, h, b, 405)

    def test_network_link_in_status(self):
        doc = json.loads(self.get("/api/status")[2])
        n = doc["network"]
        self.assertTrue(n["watching"], n)
        self.assertEqual(n["watched"], "any")
        for k in ("connected", "link_up", "wireless"):
            self.assertIsInstance(n[k], bool)
        for k in ("addresses", "connects", "disconnects", "link_downs", "address_changes"):
            self.assertIsInstance(n[k], int)
        # What the kernel says about this machine's links (a container has at least one up).
        ip = json.loads(subprocess.run(["ip", "-j", "addr"], stdout=subprocess.PIPE, check=True).stdout)
        usable = [a["local"] for i in ip if i["ifname"] != "lo" and "UP" in i.get("flags", [])
                  for a in i.get("addr_info", []) if a.get("scope") == "global"]
        if usable:
            self.assertTrue(n["connected"], n)
            self.assertIn(n["address"], usable)
            self.assertGreaterEqual(n["connects"], 1)
            self.assertIsInstance(n["connected_for_s"], int)

    def test_ota_status_is_the_update_status_document(self):
        s, h, b = self.get("/api/ota/status")
        self.assertEqual(s, 200, b)
        check_security_headers(self, h)
        web = json.loads(b)
        r = subprocess.run([gwtest.TINYBMS_GW, "--data-dir", self.d.data, "--update-status"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(web, json.loads(r.stdout))
        self.assertEqual(web["update"]["state"], "none")
        self.assertEqual(web["running_version"], json.loads(self.get("/api/status")[2])["version"])
        check_error(self, *self.get("/api/ota/status", auth=None), 401)

    # -- last: the restart (alphabetical order)

    def test_zz_restart(self):
        pid = self.d.daemon.proc.pid
        ev = WebSocket(self.port, "/ws/events", auth=ADMIN)
        self.assertEqual(ev.status, 101)
        s, h, b = self.post("/api/system/restart")
        self.assertEqual(s, 202, b)
        self.assertEqual(json.loads(b), {"restarting": True})
        m = ev.recv_json()
        while m.get("type") != "restart":
            m = ev.recv_json()
        ev.close()
        self.d.daemon.wait_log(r"stopped cleanly \(restarting\)", 60)
        start = self.d.daemon.stderr().index("stopped cleanly (restarting)")
        self.d.daemon.wait_log(r"web_server: serving https?://", 60, start=start)
        wait_for(lambda: gwtest.port_open(self.port), 30, "the web port after the restart")
        self.assertEqual(self.d.daemon.proc.pid, pid)
        self.assertIsNone(self.d.daemon.proc.poll())
        s, h, b = self.get("/api/status")
        self.assertEqual(s, 200)


class Updates(unittest.TestCase):
    """POST /api/ota/upload on a daemon that trusts one key: every refusal is a 4xx JSON error with
    its reason in the log and changes nothing; then a good bundle is installed and the gateway
    restarts into it, runs it on trial and keeps it (GET /api/ota/status follows)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="gw-upload-")
        cls.keys = os.path.join(cls.tmp, "signing")
        cls.other = os.path.join(cls.tmp, "other")
        sh([MAKE_KEYS, cls.keys])
        sh([MAKE_KEYS, cls.other])
        cls.base = gw_version()
        cls.new = next_version(cls.base)
        # Small bundles for the refusals (a script as the program), the real program for the install.
        tiny = os.path.join(cls.tmp, "tiny-gw")
        with open(tiny, "w") as f:
            f.write("#!/bin/sh\nexit 3\n")
        os.chmod(tiny, 0o755)
        cls.small = cls.bundle("small", cls.new, tiny, cls.keys)
        cls.foreign = cls.bundle("foreign", cls.new, tiny, cls.other)
        cls.good = cls.bundle("good", cls.new, gwtest.TINYBMS_GW, cls.keys)
        cls.same = cls.bundle("same", cls.base, gwtest.TINYBMS_GW, cls.keys)
        cls.can_log = os.path.join(cls.tmp, "can.log")
        cls.d = WebDaemon("gw-upload", trusted_key=os.path.join(cls.keys, "update.pub"),
                          args=["--can", "log:" + cls.can_log], config={"update": {"health_can_s": 1}})
        cls.port = cls.d.port

    @classmethod
    def tearDownClass(cls):
        cls.d.stop(unittest.TestCase())
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def bundle(cls, name, version, program, keydir):
        out = os.path.join(cls.tmp, "%s-%s.tar" % (name, version))
        sh([MAKE_BUNDLE, out, version, bundle_arch(), "linux", program, gwtest.TINYBMS_SIM])
        sh([SIGN, out, os.path.join(keydir, "update.key")])
        return out

    @staticmethod
    def read(path):
        with open(path, "rb") as f:
            return f.read()

    def csrf(self):
        return json.loads(http(self.port, "GET", "/api/security/csrf", auth=ADMIN)[2])["token"]

    def upload(self, parts=None, body=None, ctype=None, token=True, timeout=120):
        if parts is not None:
            body, ctype = multipart(parts)
        h = {"Content-Type": ctype} if ctype else {}
        if token:
            h["X-CSRF-Token"] = self.csrf()
        return http(self.port, "POST", "/api/ota/upload", body=body, headers=h, auth=ADMIN, timeout=timeout)

    def refused(self, want_status, want_code, log_re, **kw):
        start = len(self.d.daemon.stderr())
        s, h, b = self.upload(**kw)
        doc = check_error(self, s, h, b, want_status, want_code)
        self.d.daemon.wait_log(log_re, 30, start=start)
        return doc

    def test_a_refusals_are_clear_and_change_nothing(self):
        bundle, sig = self.read(self.small), self.read(self.small + ".sig")
        good = [("signature", "b.tar.sig", sig), ("firmware", "b.tar", bundle)]
        # The login and the CSRF token come first.
        s, h, b = http(self.port, "POST", "/api/ota/upload", body=multipart(good)[0],
                       headers={"Content-Type": multipart(good)[1]})
        check_error(self, s, h, b, 401)
        s, h, b = self.upload(parts=good, token=False)
        check_error(self, s, h, b, 403, "csrf")
        # Not a form, or a form without its boundary.
        self.refused(415, "unsupported_media_type", r"update upload from 127\.0\.0\.1 refused: Content-Type "
                     r"application/octet-stream", body=bundle, ctype="application/octet-stream")
        self.refused(400, "bad_multipart", r"no usable boundary", body=b"x" * 10, ctype="multipart/form-data")
        self.refused(400, "body_required", r"", body=b"", ctype=multipart(good)[1])
        # A form cut before its end, one with a part of another name, one without the signature.
        body, ctype = multipart(good)
        doc = self.refused(400, "bad_multipart", r"refused \(400 bad_multipart\): .*ended inside a part",
                           body=body[:-60], ctype=ctype)
        self.assertIn("no closing boundary", doc["message"])
        doc = self.refused(400, "bad_multipart", r"unknown part 'readme'",
                           parts=[("readme", None, b"hello")] + good)
        doc = self.refused(400, "bad_signature", r"no 'signature' part", parts=[("firmware", "b.tar", bundle)])
        self.assertIn("BUNDLE.sig", doc["message"])
        doc = self.refused(400, "bad_multipart", r"no 'firmware' part", parts=[("signature", "b.tar.sig", sig)])
        # Not a bundle at all; a signature whose bytes were changed; a bundle whose file was changed
        # (the signature after the bundle); a bundle signed by a key this gateway does not trust.
        doc = self.refused(400, "bad_bundle", r"ota_update: update refused: ", parts=[("signature", "s", sig),
                                                                                  ("firmware", "f", b"\x00" * 5000)])
        tampered = json.loads(sig)
        raw = bytearray(__import__("base64").b64decode(tampered["signature"]))
        raw[5] ^= 1
        tampered["signature"] = __import__("base64").b64encode(bytes(raw)).decode()
        doc = self.refused(403, "bad_signature", r"ota_update: update refused: .*signature",
                           parts=[("signature", "s", json.dumps(tampered).encode()), ("firmware", "f", bundle)])
        flipped = bytearray(bundle)
        # A byte of the last file's data (found with tarfile: where the padding ends depends on the
        # build's binary size, so a fixed offset from the end may be tar padding, which no hash covers).
        import io
        import tarfile
        with tarfile.open(fileobj=io.BytesIO(bundle)) as tar:
            last = [m for m in tar.getmembers() if m.isfile() and m.size > 0][-1]
        flipped[last.offset_data + last.size // 2] ^= 0xFF
        doc = self.refused(400, None, r"ota_update: update refused: ", parts=[("firmware", "f", bytes(flipped)),
                                                                      ("signature", "s", sig)])
        self.assertRegex(doc["message"], r"SHA-256|hash|size|truncated|manifest|checksum")
        foreign_id = json.loads(self.read(self.foreign + ".sig"))["key_id"]
        doc = self.refused(403, "bad_signature", r"ota_update: update refused: .*%s" % foreign_id,
                           parts=[("signature", "s", self.read(self.foreign + ".sig")),
                                  ("firmware", "f", self.read(self.foreign))])
        self.assertIn(foreign_id, doc["message"])
        # A body larger than any bundle: refused from its Content-Length, before a byte is read.
        token = self.csrf()
        raw = raw_request(self.port, ("POST /api/ota/upload HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
                                      "X-CSRF-Token: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
                                      % (__import__("webclient").basic(*ADMIN), token, multipart(good)[1],
                                         300 * 1024 * 1024)).encode() + b"--" + BOUNDARY.encode(), timeout=30)
        s, h, b = parse_response(raw)
        doc = check_error(self, s, h, b, 413, "too_large")
        self.assertIn("at most", doc["message"])
        # Nothing changed: no new release, no staging directory left, the gateway runs as before.
        st = json.loads(http(self.port, "GET", "/api/ota/status", auth=ADMIN)[2])
        self.assertEqual(st["update"]["state"], "none")
        self.assertEqual(st["running_version"], self.base)
        releases = os.path.join(self.d.data, "releases")
        self.assertEqual(os.listdir(releases) if os.path.isdir(releases) else [], [])
        self.assertEqual(http(self.port, "GET", "/api/data", auth=ADMIN)[0], 200)
        self.assertIsNone(self.d.daemon.proc.poll())
        self.assertIsNone(self.d.daemon.sanitizer_report())

    def test_a_rollback_refused_without_a_previous_release(self):
        s, h, b = http(self.port, "POST", "/api/ota/rollback", body={}, auth=ADMIN)
        check_error(self, s, h, b, 403, "csrf")
        start = len(self.d.daemon.stderr())
        s, h, b = http(self.port, "POST", "/api/ota/rollback", body={}, auth=ADMIN,
                       headers={"X-CSRF-Token": self.csrf()})
        doc = check_error(self, s, h, b, 409, "no_previous_release")
        self.assertIn("no previous release", doc["message"])
        self.d.daemon.wait_log(r"web_server: rollback from 127\.0\.0\.1 refused: no previous release", 30, start=start)
        s, h, b = http(self.port, "GET", "/api/ota/rollback", auth=ADMIN)
        check_error(self, s, h, b, 405)
        st = json.loads(http(self.port, "GET", "/api/ota/status", auth=ADMIN)[2])
        self.assertEqual(st["update"]["state"], "none")
        self.assertIsNone(self.d.daemon.proc.poll())

    def test_b_the_running_version_is_refused(self):
        doc = self.refused(409, "conflict", r"ota_update: update refused: .*already running",
                           parts=[("signature", "s", self.read(self.same + ".sig")),
                                  ("firmware", "f", self.read(self.same))])
        self.assertIn("already running", doc["message"])

    def test_c_upload_progress_in_the_status(self):
        bundle, sig = self.read(self.good), self.read(self.good + ".sig")
        body, ctype = multipart([("signature", "g.tar.sig", sig), ("firmware", "g.tar", bundle)])
        head = ("POST /api/ota/upload HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nX-CSRF-Token: %s\r\n"
                "Content-Type: %s\r\nContent-Length: %d\r\n\r\n"
                % (__import__("webclient").basic(*ADMIN), self.csrf(), ctype, len(body))).encode()
        sent = len(body) // 3
        conn = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        try:
            conn.sendall(head + body[:sent])
            # While the upload waits for the rest: what was received of how much.
            def receiving():
                st = json.loads(http(self.port, "GET", "/api/ota/status", auth=ADMIN)[2])
                up = st.get("upload") or {}
                # (files: once the manifest, the bundle's first entry, was read)
                return st if st["phase"] == "receiving" and up.get("bytes", 0) > 0 and up.get("files", 0) >= 2 else None
            st = wait_for(receiving, 60, "the upload in /api/ota/status")
            up = st["upload"]
            self.assertEqual(up["phase"], "receiving")
            self.assertEqual(up["total"], len(body))
            self.assertLessEqual(up["bytes"], sent)
        finally:
            conn.close()  # cut: the session is dropped, nothing installed
        wait_for(lambda: "upload" not in json.loads(http(self.port, "GET", "/api/ota/status", auth=ADMIN)[2]), 60,
                 "the cut upload dropped")
        st = json.loads(http(self.port, "GET", "/api/ota/status", auth=ADMIN)[2])
        self.assertEqual(st["update"]["state"], "none")
        self.assertNotIn(st["phase"], ("receiving", "verifying", "installing", "switching"))

    def test_z_install_restarts_into_it(self):
        daemon = self.d.daemon
        start = len(daemon.stderr())
        t0 = time.monotonic()
        s, h, b = self.upload(parts=[("signature", "tinybms-gw.tar.sig", self.read(self.good + ".sig")),
                                     ("firmware", "tinybms-gw.tar", self.read(self.good))])
        took = time.monotonic() - t0
        self.assertEqual(s, 200, b)
        doc = json.loads(b)
        self.assertTrue(doc["ok"])
        self.assertEqual(doc["version"], self.new)
        self.assertEqual(doc["key_id"], json.loads(self.read(self.good + ".sig"))["key_id"])
        self.assertEqual(doc["bytes"], os.path.getsize(self.good))
        self.assertTrue(doc["restarting"])
        self.assertIn("installed", doc["message"])
        sys.stderr.write("figure: upload of a %.1f MB bundle (sanitized build) answered in %.2f s\n"
                         % (doc["bytes"] / 1e6, took))
        daemon.wait_log(r"update upload from 127\.0\.0\.1: version %s installed" % re.escape(self.new), 30,
                        start=start)
        m = daemon.wait_log(r"launcher: starting (\S+) \(%s\) on trial" % re.escape(self.new), 90, start=start)
        daemon.wait_log(r"tinybms-gw %s running" % re.escape(self.new), 90, start=start)
        daemon.wait_log(r"launcher: %s \(%s\) is healthy: kept" % (re.escape(m.group(1)), re.escape(self.new)), 120,
                        start=start)
        self.assertIn("HTTP", daemon.stderr()[start:])  # the web page is part of the health on trial
        wait_for(lambda: gwtest.port_open(self.port), 30, "the web port of the new release")
        st = json.loads(http(self.port, "GET", "/api/ota/status", auth=ADMIN)[2])
        self.assertEqual(st["update"]["state"], "good")
        self.assertEqual(st["running_version"], self.new)
        self.assertEqual(st["previous_version"], self.base)
        self.assertTrue(st["can_roll_back"])
        self.assertEqual(st["phase"], "done")
        self.assertEqual(json.loads(http(self.port, "GET", "/api/status", auth=ADMIN)[2])["version"], self.new)

    def test_zz_rollback_from_the_web(self):
        daemon = self.d.daemon
        s, h, b = http(self.port, "POST", "/api/ota/rollback", body={}, auth=ADMIN)
        check_error(self, s, h, b, 403, "csrf")
        start = len(daemon.stderr())
        s, h, b = http(self.port, "POST", "/api/ota/rollback", body={}, auth=ADMIN,
                       headers={"X-CSRF-Token": self.csrf()})
        self.assertEqual(s, 200, b)
        doc = json.loads(b)
        self.assertEqual(doc["version"], self.base)
        self.assertTrue(doc["restarting"])
        self.assertIn("rolled back from %s to %s" % (self.new, self.base), doc["message"])
        daemon.wait_log(r"launcher: running the installed program", 90, start=start)
        daemon.wait_log(r"tinybms-gw %s running" % re.escape(self.base), 90, start=start)
        wait_for(lambda: gwtest.port_open(self.port), 30, "the web port of the previous version")
        st = json.loads(http(self.port, "GET", "/api/ota/status", auth=ADMIN)[2])
        self.assertEqual(st["running_version"], self.base)
        self.assertEqual(st["update"]["state"], "rolled_back")
        self.assertFalse(st["can_roll_back"])
        self.assertEqual(st["phase"], "rolled_back")
        s, h, b = http(self.port, "POST", "/api/ota/rollback", body={}, auth=ADMIN,
                       headers={"X-CSRF-Token": self.csrf()})
        check_error(self, s, h, b, 409, "no_previous_release")


class Https(unittest.TestCase):
    """scripts/make-cert.sh makes a pair the gateway serves HTTPS with; a bad key stops the start."""

    def _start_once(self, crt, key):
        """Starts the gateway with HTTPS; returns the refusal line when the web server refused
        HTTPS (the gateway itself runs on), b"" when it served HTTPS. Stops it either way."""
        tmp = tempfile.mkdtemp(prefix="gw-tls-")
        try:
            with open(os.path.join(tmp, "config.json"), "w") as f:
                json.dump({"web": {"https_enabled": True, "cert_file": crt, "key_file": key}}, f)
            port = gwtest.free_port()
            d = gwtest.Daemon(tmp, ["--simulate", "--http", str(port), "--data-dir", tmp, "-q"], name="gw-tls-probe")
            m = d.wait_log(r"web_server: serving https://|HTTPS refused: .*", 60)
            refused = "HTTPS refused" in m.group(0)
            if refused:
                # The battery side runs on without the web page, and says so.
                d.wait_log(r"runs without it", 30)
                self.assertRegex(m.group(0), r"OpenSSL")
                self.assertFalse(gwtest.port_open(port))
            rc, _ = d.stop()
            self.assertEqual(rc, 0)
            self.assertIsNone(d.sanitizer_report())
            return m.group(0).encode() if refused else b""
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_https_with_generated_certificate(self):
        import http.client
        import ssl
        certs = tempfile.mkdtemp(prefix="gw-cert-")
        try:
            r = subprocess.run([os.path.join(gwtest.SOURCE_DIR, "scripts", "make-cert.sh"), certs, "localhost"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            crt, key = os.path.join(certs, "tinybms-gw.crt"), os.path.join(certs, "tinybms-gw.key")
            self.assertEqual(os.stat(key).st_mode & 0o777, 0o600)
            self.assertIn(b'"https_enabled": true', r.stdout)
            # Debian 12's CivetWeb 1.15 crashes on HTTPS with OpenSSL 3: the gateway must refuse to
            # start with the reason instead (and serve HTTPS normally with a CivetWeb that works).
            if b"HTTPS refused" in self._start_once(crt, key):
                return  # the refusal was checked (reason, exit 1, no crash)
            d = WebDaemon("gw-https", web={"https_enabled": True, "cert_file": crt, "key_file": key})
            try:
                ctx = ssl.create_default_context(cafile=crt)
                conn = http.client.HTTPSConnection("localhost", d.port, context=ctx, timeout=60)
                conn.request("GET", "/api/status", headers={"Authorization": __import__("webclient").basic(*ADMIN)})
                resp = conn.getresponse()
                self.assertEqual(resp.status, 200)
                self.assertTrue(json.loads(resp.read())["web"]["https"])
                conn.close()
                raw = raw_request(d.port, b"GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n", timeout=10)
                self.assertNotIn(b"200 OK", raw)
            finally:
                d.stop(self)
            # The key of another pair: refused at start with the reason.
            other = tempfile.mkdtemp(prefix="gw-cert2-")
            subprocess.run([os.path.join(gwtest.SOURCE_DIR, "scripts", "make-cert.sh"), other, "x"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, check=True)
            tmp = tempfile.mkdtemp(prefix="gw-badtls-")
            with open(os.path.join(tmp, "config.json"), "w") as f:
                json.dump({"web": {"https_enabled": True, "cert_file": crt,
                                   "key_file": os.path.join(other, "tinybms-gw.key")}}, f)
            d = gwtest.Daemon(tmp, ["--simulate", "--http", str(gwtest.free_port()), "--data-dir", tmp, "-q"],
                              name="gw-badkey")
            d.wait_log(r"does not match the certificate", 60)
            d.wait_log(r"runs without it", 30)
            self.assertEqual(d.stop()[0], 0)
            shutil.rmtree(other, ignore_errors=True)
            shutil.rmtree(tmp, ignore_errors=True)
        finally:
            shutil.rmtree(certs, ignore_errors=True)


class PublicRead(unittest.TestCase):
    """web.public_read opens the read-only endpoints, never the others."""

    def test_public_read(self):
        d = WebDaemon("gw-public", web={"public_read": True})
        try:
            wait_for(lambda: http(d.port, "GET", "/api/data")[0] == 200, 60, "open /api/data")
            for path in ("/api/status", "/api/history", "/api/limits", "/api/alerts"):
                self.assertEqual(http(d.port, "GET", path)[0], 200, path)
            ws = WebSocket(d.port, "/ws/live")
            self.assertEqual(ws.status, 101)
            ws.close()
            for path in ("/api/config", "/api/config/export", "/api/security/csrf"):
                s, h, b = http(d.port, "GET", path)
                check_error(self, s, h, b, 401)
            self.assertEqual(WebSocket(d.port, "/ws/events").status, 401)
        finally:
            d.stop(self)


class MetricsPublic(unittest.TestCase):
    """web.metrics_public opens GET /metrics alone, for a scraper without a password."""

    def test_metrics_public(self):
        d = WebDaemon("gw-metrics-public", web={"metrics_public": True})
        try:
            s, h, b = http(d.port, "GET", "/metrics")
            self.assertEqual(s, 200, b)
            self.assertIn(b"tinybms_gw_build_info", b)
            for path in ("/api/metrics", "/api/status", "/api/data", "/api/ota/status"):
                s, h, b = http(d.port, "GET", path)
                check_error(self, s, h, b, 401)
        finally:
            d.stop(self)


if __name__ == "__main__":
    gwtest.main()
