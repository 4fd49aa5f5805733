#!/usr/bin/python3
"""End-to-end tests of the web server against the real daemon on its built-in simulator: every
endpoint and method, each error status (401, 403 CSRF/Origin, 404, 405, 409, 413, 415, 429 and
its per-address scope, 400 with field paths, 501, 503), the JSON shape of each answer, secrets
never returned nor logged, path traversal, slow clients, the first-run flow, the WebSocket
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

    def __init__(self, name, web=None, password=True, args=(), config=None):
        self.tmp = tempfile.mkdtemp(prefix="gw-web-")
        self.data = os.path.join(self.tmp, "data")
        self.ui = os.path.join(self.tmp, "ui")
        os.makedirs(self.data)
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
            self.daemon.wait_log(r"web: serving https?://", 60)
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

    def test_ota_not_implemented(self):
        s, h, b = self.post("/api/ota/upload", b"\0" * 1000, headers={"Content-Type": "application/octet-stream"})
        doc = check_error(self, s, h, b, 501, "not_implemented")
        self.assertIn("not available", doc["message"])

    def test_static_files_mime_gzip_and_traversal(self):
        for path, mime in (("/", "text/html"), ("/app.js", "text/javascript"), ("/style.css", "text/css"),
                           ("/logo.svg", "image/svg+xml"), ("/sub/data.json", "application/json")):
            s, h, b = self.get(path, auth=None)
            self.assertEqual(s, 200, path)
            self.assertTrue(h["content-type"].startswith(mime), (path, h["content-type"]))
            check_security_headers(self, h, api=False)
        s, h, b = self.get("/big.txt", auth=None, headers={"Accept-Encoding": "gzip"})
        self.assertEqual(s, 200)
        self.assertEqual(h.get("content-encoding"), "gzip")
        self.assertEqual(gzip.decompress(b), BIG_TEXT)
        self.assertTrue(h["content-type"].startswith("text/plain"))
        s, h, b = self.get("/big.txt", auth=None)
        self.assertEqual(b, BIG_TEXT)
        self.assertNotIn("content-encoding", h)
        etag = h["etag"]
        s, h, b = self.get("/big.txt", auth=None, headers={"If-None-Match": etag})
        self.assertEqual(s, 304)
        s, h, b = http(self.port, "HEAD", "/app.js")
        self.assertEqual(s, 200)
        self.assertEqual(b, b"")
        # Traversal, plain, encoded and double-encoded; hidden files; listings.
        for path in ("/../../../../etc/passwd", "/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/%252e%252e/%252e%252e/etc/passwd",
                     "/..%2f..%2f..%2fetc%2fpasswd", "/sub/../../data/config.json", "/.hidden", "/%2ehidden",
                     "/sub/", "/sub", "//etc/passwd", "/..\\..\\etc\\passwd"):
            raw = raw_request(self.port, ("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
            s, h, b = parse_response(raw)
            self.assertIn(s, (400, 404), path)
            self.assertNotIn(b"root:", b, path)
            self.assertNotIn(b"hidden", b, path)
            self.assertNotIn(b"pbkdf2", b, path)

    def test_header_and_slow_clients(self):
        # Headers over the limit: a JSON 413/431, not a crash.
        raw = raw_request(self.port, b"GET /api/status HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        s, h, b = parse_response(raw)
        check_error(self, s, h, b, s)
        self.assertIn(s, (400, 413, 431), raw[:200])
        # A few clients that connect and never send do not block the others; each is closed.
        idle = [socket.create_connection(("127.0.0.1", self.port), timeout=60) for _ in range(4)]
        try:
            s, h, b = self.get("/api/status")
            self.assertEqual(s, 200)
            for sock in idle:
                self.assertEqual(sock.recv(100), b"")  # closed by the server (request timeout 2 s)
        finally:
            for sock in idle:
                sock.close()
        # A client that sends half a request and stops is closed too.
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        sock.sendall(b"GET /api/status HTTP/1.1\r\nHost: x\r\n")
        data = sock.recv(1000)
        sock.close()
        self.assertFalse(data.startswith(b"HTTP/1.1 200"), data)

    # -- WebSockets

    def test_ws_live_format(self):
        ws = WebSocket(self.port, "/ws/live", auth=ADMIN, origin="http://127.0.0.1:%d" % self.port)
        self.assertEqual(ws.status, 101)
        try:
            first = ws.recv_json()
            second = ws.recv_json()
            for m in (first, second):
                self.assertEqual(set(m), {"seq", "timestamp", "pack_count", "online_count", "bank", "limits",
                                          "packs"})
            self.assertGreater(second["seq"], first["seq"])
        finally:
            ws.close()

    def test_ws_refusals(self):
        ws = WebSocket(self.port, "/ws/live")
        self.assertEqual(ws.status, 401)
        check_error(self, ws.status, ws.headers, ws.body, 401)
        ws = WebSocket(self.port, "/ws/live", auth=ADMIN, origin="http://evil.example")
        check_error(self, ws.status, ws.headers, ws.body, 403, "bad_origin")
        ws = WebSocket(self.port, "/ws/nope", auth=ADMIN)
        self.assertEqual(ws.status, 404)

    def test_ws_events_on_config_save(self):
        ws = WebSocket(self.port, "/ws/events", auth=ADMIN)
        self.assertEqual(ws.status, 101)
        try:
            s, h, b = self.post("/api/config", {"history": {"retention_days": 8}})
            self.assertEqual(s, 200, b)
            m = ws.recv_json()
            while m.get("type") != "config_saved":
                m = ws.recv_json()
            self.assertIn("history.retention_days", m["changed"])
            self.assertIn("timestamp", m)
            self.assertNotIn(PASSWORD, json.dumps(m))
        finally:
            ws.close()

    def test_ws_client_cap_answers_503(self):
        clients = []
        try:
            wait_for(lambda: json.loads(self.get("/api/status")[2])["web"]["ws_clients"] == 0, 60,
                     "no WebSocket client left from other tests")
            for _ in range(6):
                c = WebSocket(self.port, "/ws/events", auth=ADMIN)
                self.assertEqual(c.status, 101)
                clients.append(c)
            extra = WebSocket(self.port, "/ws/events", auth=ADMIN)
            check_error(self, extra.status, extra.headers, extra.body, 503, "too_many_clients")
        finally:
            for c in clients:
                c.close()
        def free_slot():
            c = WebSocket(self.port, "/ws/events", auth=ADMIN)
            c.close()
            return c.status == 101
        wait_for(free_slot, 60, "a free slot again")

    def test_ws_client_that_does_not_read_is_dropped(self):
        before = json.loads(self.get("/api/status")[2])["web"]["ws_dropped"]
        good = WebSocket(self.port, "/ws/live", auth=ADMIN)
        slow = WebSocket(self.port, "/ws/live", auth=ADMIN, rcvbuf=2048)
        self.assertEqual(good.status, 101)
        self.assertEqual(slow.status, 101)
        try:
            got = []

            def dropped():
                got.append(good.recv_json(timeout=30)["seq"])  # the reader keeps reading meanwhile
                return json.loads(self.get("/api/status")[2])["web"]["ws_dropped"] > before
            wait_for(dropped, 120, "the non-reading client to be dropped", interval=0)
            self.assertRegex(self.d.daemon.stderr(), r"does not read|stopped reading")
            # The reader was never slowed: its messages keep coming, in order.
            more = [good.recv_json(timeout=30)["seq"] for _ in range(5)]
            seqs = got + more
            self.assertEqual(seqs, sorted(seqs))
            self.assertEqual(len(set(seqs)), len(seqs))
            # The dropped client, reading at last, finds its connection ended.
            slow.sock.settimeout(60)
            ended = False
            try:
                while True:
                    op, _ = slow.recv_frame()
                    if op == 8:
                        ended = True
                        break
            except (EOFError, ConnectionError):
                ended = True
            self.assertTrue(ended)
        finally:
            good.close()
            slow.close()

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
        self.d.daemon.wait_log(r"web: serving https?://", 60, start=start)
        wait_for(lambda: gwtest.port_open(self.port), 30, "the web port after the restart")
        self.assertEqual(self.d.daemon.proc.pid, pid)
        self.assertIsNone(self.d.daemon.proc.poll())
        s, h, b = self.get("/api/status")
        self.assertEqual(s, 200)


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
            m = d.wait_log(r"web: serving https://|HTTPS refused: .*", 60)
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


if __name__ == "__main__":
    gwtest.main()
