#!/usr/bin/python3
"""Security tests of the real daemon (docs/reliability.md "Security"): an attacker on the network
against the web server, and the gateway's secrets against every output.

One gateway runs on its built-in simulator with the web server, MQTT to a real mosquitto that
requires a login, the Venus OS battery service on a private dbus-daemon and CAN to a candump log,
configured with recognisable secrets (web password, MQTT password, Wi-Fi passphrase). A second
gateway only issues a CSRF token of another gateway.

- brute force: the lockout holds for its whole time (even the right password is refused), is per
  source address (127.0.0.2.. as sources), ignores X-Forwarded-For, doubles when the attacker
  comes back, and never locks out the owner from another address;
- CSRF: every state-changing endpoint refuses a missing token, a token of another gateway, a
  forged one and (last test, when its 30 s are over) an expired one;
- static files: traversal (plain, percent-encoded, double-encoded, backslash, NUL, overlong
  UTF-8) never leaves the UI folder nor shows a hidden file;
- oversized headers and bodies, malformed JSON, malformed multipart, ambiguous or broken body
  framing: a 4xx JSON error, and a refused framing closes the connection (the bytes after it are
  never parsed as a next request);
- WebSocket: a foreign Origin is refused on every channel, the same origin accepted;
- secrets: never in an API answer, a WebSocket message (frame taps included), the log, an MQTT
  topic or payload, a D-Bus path or value, the CAN log.

Already covered elsewhere, not repeated: 401/429 shapes and per-address lockout
(tests/e2e/test_web_api.py Api.test_lockout_per_address), upload refusals: tampered signature,
changed file, untrusted key, same version, too large (test_web_api.py Updates), older versions,
traversal, absolute, symlink and hard-link entries (tests/unit/test_ota_bundle.c), both here
through the upload endpoint only for what those miss (a downgrade, a traversal entry)."""
import base64
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import unittest

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import gwtest  # noqa: E402
from gwtest import Daemon, stop_process, wait_for  # noqa: E402
from webclient import WebSocket, basic, http, parse_response  # noqa: E402

USER = "admin"
WEB_SECRET = "SECRET-web-Kx7q2Lm9"
MQTT_SECRET = "SECRET-mqtt-Vb4n8Tz1"
WIFI_SECRET = "SECRET-wifi-Hd3s6Wq0"
SECRETS = (WEB_SECRET, MQTT_SECRET, WIFI_SECRET)
ADMIN = (USER, WEB_SECRET)
OUTSIDE = b"OUTSIDE-THE-UI-FOLDER-7c1e"
HIDDEN = b"HIDDEN-FILE-3f9a"
BOUNDARY = "----secTestBoundary0aZ"
# State-changing endpoints behind the login (every POST route but the public first-run one).
WRITES = ("/api/config", "/api/config/import", "/api/config/test-mqtt", "/api/alerts/ack", "/api/alerts/clear",
          "/api/bms/settings", "/api/bms/settings/restore", "/api/bms/restart", "/api/ota/upload",
          "/api/system/restart")
READS = ("/api/status", "/api/config", "/api/config/export", "/api/data", "/api/limits", "/api/alerts",
         "/api/history", "/api/history.csv", "/api/security/csrf", "/api/bms/settings",
         "/api/bms/settings/backup", "/api/ota/status", "/metrics", "/api/metrics", "/index.html")
CHANNELS = ("/ws/live", "/ws/alerts", "/ws/events", "/ws/uart", "/ws/can")


MAKE_KEYS = os.path.join(gwtest.SOURCE_DIR, "scripts", "make-keys.sh")
SIGN = os.path.join(gwtest.SOURCE_DIR, "scripts", "sign-update.sh")
MAKE_BUNDLE = os.path.join(gwtest.SOURCE_DIR, "packaging", "make-bundle.sh")


def sh(args, env=None):
    return subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=120, check=True, env=dict(os.environ, **(env or {})))


def bundle_arch():
    import platform
    m = platform.machine()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m, "armhf" if m.startswith("arm") else m)


def multipart(parts):
    out = b""
    for name, filename, data in parts:
        out += ('--%s\r\nContent-Disposition: form-data; name="%s"; filename="%s"\r\n\r\n'
                % (BOUNDARY, name, filename)).encode() + data + b"\r\n"
    return out + ("--%s--\r\n" % BOUNDARY).encode(), "multipart/form-data; boundary=" + BOUNDARY


def secret_forms():
    """Each secret as it could leak: plain, base64 (alone and in a Basic header), hex, JSON-escaped."""
    out = []
    for s in SECRETS:
        out += [s.encode(), base64.b64encode(s.encode()), s.encode().hex().encode(),
                base64.b64encode(("%s:%s" % (USER, s)).encode())]
    return out


def find_secret(data):
    if isinstance(data, str):
        data = data.encode("utf-8", "replace")
    for form in secret_forms():
        if form in data:
            return form
    return None


def raw(port, data, source=None, timeout=20):
    """Sends data on one connection, reads until the server closes it; (bytes, closed_by_server)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                 source_address=(source, 0) if source else None)
    out = b""
    try:
        s.sendall(data)
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return out, False
            except ConnectionResetError:
                return out, True
            if not chunk:
                return out, True
            out += chunk
    finally:
        s.close()


def answers(data):
    """The HTTP answers in a byte stream: [(status, headers, body)]."""
    out = []
    while data.startswith(b"HTTP/1."):
        status, headers, rest = parse_response(data)
        n = int(headers.get("content-length", "0"))
        out.append((status, headers, rest[:n]))
        data = rest[n:]
    return out


class Bus:
    """A private dbus-daemon --session for the gateway's battery service."""

    def __init__(self, workdir):
        self.err = open(os.path.join(workdir, "dbus-daemon.stderr"), "wb")
        self.proc = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--nopidfile", "--print-address=1"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.err)
        self.address = self.proc.stdout.readline().decode().strip()
        if not self.address.startswith("unix:"):
            raise AssertionError("dbus-daemon printed %r" % self.address)

    def send(self, dest, path, method, *args):
        return subprocess.run(["dbus-send", "--bus=" + self.address, "--print-reply", "--dest=" + dest, path,
                               method] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)

    def stop(self):
        stop_process(self.proc)
        self.proc.stdout.close()
        self.err.close()


class Broker:
    """mosquitto that requires a login: the gateway's MQTT password must reach it (and only it)."""

    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "mosquitto")
        os.makedirs(self.dir)
        self.port = gwtest.free_port()
        pw = os.path.join(self.dir, "passwd")
        for user, secret in (("gw", MQTT_SECRET), ("spy", "spy-pass-1")):
            subprocess.run(["mosquitto_passwd", "-b"] + (["-c"] if user == "gw" else []) + [pw, user, secret],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        os.chmod(pw, 0o600)
        conf = os.path.join(self.dir, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write("listener %d 127.0.0.1\nallow_anonymous false\npassword_file %s\npersistence false\n"
                    "log_dest stderr\nlog_type all\n" % (self.port, pw))
            if os.geteuid() == 0:
                f.write("user root\n")
        self.log_path = os.path.join(self.dir, "broker.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([gwtest.GW_MOSQUITTO, "-c", conf], stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        wait_for(lambda: gwtest.port_open(self.port), 30, "mosquitto on port %d" % self.port)

    def log(self):
        return gwtest.read_text(self.log_path)

    def stop(self):
        stop_process(self.proc)
        self._log.close()


class Security(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.t0 = time.monotonic()
        cls.tmp = tempfile.mkdtemp(prefix="gw-sec-")
        cls.children = []
        try:
            cls._start()
        except BaseException:
            cls._cleanup()
            raise

    @classmethod
    def _start(cls):
        tmp = cls.tmp
        ui = os.path.join(tmp, "www", "ui")
        os.makedirs(os.path.join(ui, "sub"))
        for name, data in (("index.html", b"<!doctype html><title>ui</title>"), ("app.js", b"1;"),
                           ("sub/page.html", b"<p>sub</p>"), (".hidden", HIDDEN)):
            with open(os.path.join(ui, name), "wb") as f:
                f.write(data)
        with open(os.path.join(tmp, "www", "outside.txt"), "wb") as f:
            f.write(OUTSIDE)
        with open(os.path.join(ui, "..", "ui-secret"), "wb") as f:  # a sibling named like the folder
            f.write(OUTSIDE)
        cls.bus = Bus(tmp)
        cls.children.append(cls.bus)
        cls.broker = Broker(tmp)
        cls.children.append(cls.broker)
        cls.spy = gwtest.Subscriber(tmp, cls.broker.port, ["#"], name="spy", extra=["-u", "spy", "-P", "spy-pass-1"])
        cls.children.append(cls.spy)
        cls.can_log = os.path.join(tmp, "can.log")
        cls.keys = os.path.join(tmp, "signing")
        sh([MAKE_KEYS, cls.keys])
        cls.gw, cls.port, cls.data = cls._daemon("gw", {
            "mqtt": {"enabled": True, "broker_uri": "mqtt://127.0.0.1:%d" % cls.broker.port, "username": "gw",
                     "password": MQTT_SECRET, "client_id": "sec-gw", "publish_interval_ms": 500,
                     "status_interval_ms": 1000},
            "network": {"wifi_ssid": "sec-test-ssid", "wifi_password": WIFI_SECRET},
            "web": {"ui_dir": ui, "auth_max_attempts": 5, "auth_lockout_s": 2, "csrf_ttl_s": 30,
                    "request_timeout_ms": 3000},
            "history": {"period_s": 1}},
            ["--can", "log:" + cls.can_log, "--dbus", "--poll-ms", "300"], {"DBUS_SESSION_BUS_ADDRESS": cls.bus.address},
            trusted_key=os.path.join(cls.keys, "update.pub"))
        cls.other, cls.other_port, _ = cls._daemon("other", {"web": {"ui_dir": ui}, "mqtt": {"enabled": False}}, [], {})
        for d, port in ((cls.gw, cls.port), (cls.other, cls.other_port)):
            d.wait_log(r"web_server: serving http://", 90)
            wait_for(lambda: gwtest.port_open(port), 30, "the web port")
        # The token that expires during the run (checked by the last test).
        doc = json.loads(http(cls.port, "GET", "/api/security/csrf", auth=ADMIN)[2])
        cls.old_token, cls.old_token_until = doc["token"], time.monotonic() + doc["expires_in_s"]
        cls.service = cls.gw.wait_log(r"on D-Bus as (com\.victronenergy\.battery\.[\w.]+)", 90).group(1)
        wait_for(lambda: http(cls.port, "GET", "/api/data", auth=ADMIN)[0] == 200, 90, "a battery view")

    @classmethod
    def _daemon(cls, name, config, args, env, trusted_key=None):
        data = os.path.join(cls.tmp, name + "-data")
        os.makedirs(data)
        if trusted_key:
            os.makedirs(os.path.join(data, "keys"))
            shutil.copy(trusted_key, os.path.join(data, "keys", "update.pub"))
        path = os.path.join(data, "config.json")
        with open(path, "w") as f:
            json.dump(config, f)
        os.chmod(path, 0o600)
        r = subprocess.run([gwtest.TINYBMS_GW, "--set-password", "--data-dir", data], input=(WEB_SECRET + "\n").encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        assert r.returncode == 0, r.stderr
        port = gwtest.free_port()
        d = Daemon(cls.tmp, ["--simulate", "--http", str(port), "--data-dir", data, "-q"] + args, name=name, env=env)
        cls.children.append(d)
        return d, port, data

    @classmethod
    def _cleanup(cls):
        for c in reversed(cls.children):
            try:
                c.stop()
            except Exception:  # noqa: BLE001 - best effort, the rest must stop too
                pass
        if os.environ.get("GW_E2E_KEEP"):
            sys.stderr.write("kept %s\n" % cls.tmp)
        else:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def tearDownClass(cls):
        tc = unittest.TestCase()
        try:
            for d in (cls.gw, cls.other):
                rc, in_time = d.stop()
                tc.assertTrue(in_time, "%s did not stop in time" % d.name)
                tc.assertEqual(rc, 0, d.stderr()[-3000:])
                tc.assertIsNone(d.sanitizer_report(), d.sanitizer_report())
                # Every log line of the run, the refused logins included: no secret.
                for text in (d.stderr(), d.stdout()):
                    tc.assertIsNone(find_secret(text), "a secret in the log of %s" % d.name)
            sys.stderr.write("security: %.1f s in all\n" % (time.monotonic() - cls.t0))
        finally:
            cls._cleanup()

    # -- helpers

    def token(self, port=None):
        s, h, b = http(port or self.port, "GET", "/api/security/csrf", auth=ADMIN)
        self.assertEqual(s, 200, b)
        return json.loads(b)["token"]

    def check_error(self, status, headers, body, want_status, want_code=None):
        self.assertEqual(status, want_status, body[:300])
        self.assertTrue(headers.get("content-type", "").startswith("application/json"), headers)
        doc = json.loads(body)
        self.assertEqual(doc["status"], want_status)
        self.assertTrue(doc["message"])
        if want_code:
            self.assertEqual(doc["error"], want_code, doc)
        self.assertIsNone(find_secret(body))
        return doc

    def still_serving(self):
        s, h, b = http(self.port, "GET", "/api/status", auth=ADMIN)
        self.assertEqual(s, 200)
        self.assertIsNone(self.gw.proc.poll())

    def request(self, method, path, body=b"", headers=(), auth=True, token=None):
        lines = ["%s %s HTTP/1.1" % (method, path), "Host: 127.0.0.1:%d" % self.port]
        if auth:
            lines.append("Authorization: " + basic(*ADMIN))
        if token:
            lines.append("X-CSRF-Token: " + token)
        lines += list(headers)
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    # -- brute force

    def test_brute_force_lockout_holds_and_is_per_address(self):
        attacker, other_attacker, owner = "127.0.0.2", "127.0.0.3", "127.0.0.4"
        t_fifth = None
        for i in range(5):
            if i == 4:
                t_fifth = time.monotonic()
            s, h, b = http(self.port, "GET", "/api/status", auth=(USER, "wrong-%d" % i), source=attacker)
            self.check_error(s, h, b, 401, "login_failed")
        # Locked: every attempt inside the lockout is refused, the right password and other user
        # names too. An answer that came back before the 5th failure's send time + 2 s was
        # decided inside the lockout, whatever the load of the machine.
        tries = [ADMIN, (USER, "wrong-x"), ("root", WEB_SECRET), ADMIN]
        decided_inside = 0
        for cred in tries:
            s, h, b = http(self.port, "GET", "/api/status", auth=cred, source=attacker)
            if time.monotonic() < t_fifth + 2.0:
                decided_inside += 1
                self.check_error(s, h, b, 429, "locked_out")
                self.assertGreaterEqual(int(h["retry-after"]), 1)
            else:
                self.assertIn(s, (401, 429, 200), b)
        sys.stderr.write("lockout: %d of %d attempts decided inside the 2 s lockout\n" % (decided_inside, len(tries)))
        # X-Forwarded-For is not trusted: it neither frees the attacker nor blames the owner.
        s, h, b = http(self.port, "GET", "/api/status", auth=ADMIN, source=attacker,
                       headers={"X-Forwarded-For": owner, "X-Real-IP": owner})
        if time.monotonic() < t_fifth + 2.0:
            self.check_error(s, h, b, 429, "locked_out")
        # The owner logs in and changes something from other addresses meanwhile.
        for src in ("127.0.0.1", owner):
            s, h, b = http(self.port, "GET", "/api/status", auth=ADMIN, source=src)
            self.assertEqual(s, 200, b)
        tok = json.loads(http(self.port, "GET", "/api/security/csrf", auth=ADMIN, source=owner)[2])["token"]
        s, h, b = http(self.port, "POST", "/api/alerts/ack", body={}, auth=ADMIN, source=owner,
                       headers={"X-CSRF-Token": tok})
        self.assertEqual(s, 200, b)
        # Another address fails 4 times and then logs in: its own count, never the attacker's.
        for i in range(4):
            s, h, b = http(self.port, "GET", "/api/status", auth=(USER, "typo-%d" % i), source=other_attacker)
            self.check_error(s, h, b, 401, "login_failed")
        self.assertEqual(http(self.port, "GET", "/api/status", auth=ADMIN, source=other_attacker)[0], 200)
        # The attacker comes back when the lockout ends: 5 more failures lock it again for twice as long.
        wait_for(lambda: http(self.port, "GET", "/api/status", auth=(USER, "probe"), source=attacker)[0] == 401,
                 30, "the end of the first lockout")
        last = None
        for i in range(5):
            last = http(self.port, "GET", "/api/status", auth=(USER, "again-%d" % i), source=attacker)
        s, h, b = http(self.port, "GET", "/api/status", auth=ADMIN, source=attacker)
        if s == 429:
            self.assertGreaterEqual(int(h["retry-after"]), 2)
        self.assertIn(last[0], (401, 429))
        s, h, b = http(self.port, "GET", "/api/status", auth=ADMIN)
        self.assertEqual(s, 200)
        self.assertGreaterEqual(json.loads(b)["web"]["lockouts"], 2)

    # -- CSRF

    def csrf_refused(self, token, want_in_message):
        for path in WRITES:
            h = {"Content-Type": "application/json"}
            if token is not None:
                h["X-CSRF-Token"] = token
            s, hd, b = http(self.port, "POST", path, body=b"{}", headers=h, auth=ADMIN)
            doc = self.check_error(s, hd, b, 403, "csrf")
            self.assertIn(want_in_message, doc["message"], path)

    def test_csrf_missing_foreign_forged(self):
        self.csrf_refused(None, "needs an X-CSRF-Token")
        foreign = self.token(self.other_port)
        self.assertNotEqual(foreign, self.token())
        self.csrf_refused(foreign, "not issued for this user by this gateway")
        mine = self.token()
        expiry, _, mac = mine.partition(".")  # expiry: hexadecimal ms; mac: HMAC of user and expiry
        self.csrf_refused("%x.%s" % (int(expiry, 16) + 3600000, mac), "not issued")  # extended by an hour
        self.csrf_refused("%x.%s" % (int(expiry, 16) - 60000, mac), "not issued")
        self.csrf_refused(mine[:-2] + ("00" if not mine.endswith("00") else "11"), "not issued")
        self.csrf_refused("", "X-CSRF-Token")
        # The PUT and DELETE forms of a write are refused by method before anything else.
        s, h, b = http(self.port, "PUT", "/api/config", body=b"{}", auth=ADMIN)
        self.check_error(s, h, b, 405)
        self.still_serving()

    def test_zz_csrf_expired(self):
        # The token fetched at the start was valid for 30 s: wait until it is over (a condition
        # on the clock, not a synchronisation), then it is refused on every write.
        wait_for(lambda: time.monotonic() > self.old_token_until + 1.0, 60, "the first CSRF token's expiry")
        self.csrf_refused(self.old_token, "expired")

    # -- static files

    def test_static_traversal(self):
        attempts = ["/../outside.txt", "/..%2foutside.txt", "/%2e%2e/outside.txt", "/%2e%2e%2foutside.txt",
                    "/%252e%252e/outside.txt", "/%252e%252e%252foutside.txt", "/..\\outside.txt",
                    "/..%5coutside.txt", "/%5c..%5coutside.txt", "/sub/../../outside.txt",
                    "/sub/%2e%2e/%2e%2e/outside.txt", "/%c0%ae%c0%ae/outside.txt", "/..;/outside.txt",
                    "/../ui-secret", "/..%00/outside.txt", "/index.html%00.txt", "/%00", "/sub/..%2f..%2foutside.txt",
                    "//outside.txt", "/.hidden", "/%2ehidden", "/sub/../.hidden", "/../../../../../../etc/passwd",
                    "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/....//outside.txt", "/.%2e/outside.txt"]
        raw_attempts = [b"/..\x00/outside.txt", b"/index.html\x00.txt", b"/sub/..\\..\\outside.txt"]
        statuses = {}
        for p in [a.encode() for a in attempts] + raw_attempts:
            data, closed = raw(self.port, b"GET " + p + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            got = answers(data)
            self.assertTrue(got or closed, p)
            if not got:
                statuses[p] = "closed"
                continue
            s, h, b = got[0]
            statuses[p] = s
            self.assertNotIn(OUTSIDE, data, p)
            self.assertNotIn(HIDDEN, data, p)
            self.assertNotIn(b"root:x:", data, p)
            if s == 200:
                # The server decodes %00 to a NUL that ends the path: what is served is then the
                # file the part before it names, through the same checks (here the UI's index).
                self.assertTrue(b"\x00" in p or b"%00" in p, p)
                self.assertEqual(b, b"<!doctype html><title>ui</title>", p)
                continue
            self.assertIn(s, (400, 403, 404), (p, s, b[:200]))
            self.assertTrue(h.get("content-type", "").startswith("application/json"), (p, h))
            json.loads(b)
        # A plain file in a subfolder is served: the checks did not just refuse everything.
        s, h, b = http(self.port, "GET", "/sub/page.html")
        self.assertEqual((s, b), (200, b"<p>sub</p>"))
        sys.stderr.write("traversal: %d attempts, answers %s\n"
                         % (len(statuses), sorted({str(v) for v in statuses.values()})))
        self.still_serving()

    # -- oversized and malformed input

    def test_oversized_and_malformed(self):
        tok = self.token()
        # Headers over 16 KiB, and too many of them: refused by the server itself, JSON, closed.
        for name, req in (("long header", self.request("GET", "/api/status", headers=["X-Big: " + "a" * 20000])),
                          ("many headers", self.request("GET", "/api/status",
                                                        headers=["X-H%d: v" % i for i in range(200)])),
                          ("long request line", b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")):
            data, closed = raw(self.port, req)
            got = answers(data)
            self.assertTrue(got, name)
            s, h, b = got[0]
            self.assertIn(s, (400, 413, 414, 431), (name, s, b[:200]))
            self.assertTrue(h.get("content-type", "").startswith("application/json"), (name, h))
            self.assertTrue(closed, name)
        # A JSON body over the endpoint's limit, by Content-Length and by chunks.
        big = b'{"a":"' + b"x" * 70000 + b'"}'
        s, h, b = http(self.port, "POST", "/api/config", body=big, auth=ADMIN,
                       headers={"Content-Type": "application/json", "X-CSRF-Token": tok})
        self.check_error(s, h, b, 413)
        # Malformed JSON on every JSON write: 400 bad_json, nothing changed.
        before = http(self.port, "GET", "/api/config", auth=ADMIN)[2]
        for path in ("/api/config", "/api/config/import", "/api/alerts/ack", "/api/alerts/clear",
                     "/api/bms/settings", "/api/bms/settings/restore", "/api/config/test-mqtt"):
            for bad in (b"{", b'{"a":', b"\xff\xfe{}", b'{"a":1}}', b"[1]", b"nul", b'{"a":tru}'):
                s, h, b = http(self.port, "POST", path, body=bad, auth=ADMIN,
                               headers={"Content-Type": "application/json", "X-CSRF-Token": tok})
                self.assertGreaterEqual(s, 400, (path, bad, b))
                self.assertLess(s, 500, (path, bad, b))
                self.check_error(s, h, b, s)
        self.assertEqual(json.loads(http(self.port, "GET", "/api/config", auth=ADMIN)[2]), json.loads(before))
        self.still_serving()

    def test_refused_framing_closes_the_connection(self):
        """Bytes after a request whose body framing is refused must never be read as a next
        request: each case hides a second request ("smuggled") where only a wrong reading of
        the framing would find it."""
        tok = self.token()
        smuggled = b"GET /api/smuggled-request HTTP/1.1\r\nHost: x\r\n\r\n"
        jh = ["Content-Type: application/json"]
        big = b'{"a":"' + b"x" * 5000 + b'"}'
        cases = {
            "Content-Length and Transfer-Encoding": self.request(
                "POST", "/api/alerts/ack", b"0\r\n\r\n" + smuggled, jh + ["Transfer-Encoding: chunked",
                                                                         "Content-Length: %d" % (5 + len(smuggled))],
                token=tok),
            "two Content-Lengths": self.request(
                "POST", "/api/alerts/ack", b"{}" + smuggled, jh + ["Content-Length: 2",
                                                                   "Content-Length: %d" % (2 + len(smuggled))],
                token=tok),
            "Content-Length not a number": self.request(
                "POST", "/api/alerts/ack", b"{}" + smuggled, jh + ["Content-Length: 2abc"], token=tok),
            "broken chunk size": self.request(
                "POST", "/api/alerts/ack", b"zz\r\n" + smuggled, jh + ["Transfer-Encoding: chunked"], token=tok),
            "body over the limit, then a request": self.request(
                "POST", "/api/alerts/ack", big, jh + ["Content-Length: %d" % len(big)], token=tok) + smuggled,
            "chunked body over the limit": self.request(
                "POST", "/api/alerts/ack", b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(big), big, len(smuggled), smuggled),
                jh + ["Transfer-Encoding: chunked"], token=tok) + smuggled,
            "multipart without a boundary": self.request(
                "POST", "/api/ota/upload", b"abc", ["Content-Type: multipart/form-data", "Content-Length: 3"],
                token=tok) + smuggled,
            "upload over 256 MiB": self.request(
                "POST", "/api/ota/upload", b"--" + BOUNDARY.encode() + b"\r\n" + smuggled,
                ["Content-Type: multipart/form-data; boundary=" + BOUNDARY, "Content-Length: %d" % (300 << 20)],
                token=tok),
        }
        for name, req in cases.items():
            data, closed = raw(self.port, req)
            got = answers(data)
            self.assertEqual(len(got), 1, (name, data[:600]))
            s, h, b = got[0]
            self.assertIn(s, (400, 413), (name, b))
            self.check_error(s, h, b, s)
            self.assertNotIn(b"smuggled-request", data, name)
            self.assertEqual(h.get("connection", "").lower(), "close", (name, h))
            self.assertTrue(closed, "%s: the connection stayed open" % name)
        # A well-framed request is kept alive and the next one answered (the check is not "close always").
        data, closed = raw(self.port, self.request("POST", "/api/alerts/ack", b"{}", jh + ["Content-Length: 2"],
                                                   token=tok) + b"GET /api/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertEqual([a[0] for a in answers(data)], [200, 404])
        # Malformed multipart inside a well-framed body: 400 bad_multipart with the reason.
        body = ("--%s\r\nContent-Disposition: form-data; filename=\"x\"\r\n\r\nx\r\n--%s--\r\n"
                % (BOUNDARY, BOUNDARY)).encode()
        s, h, b = http(self.port, "POST", "/api/ota/upload", body=body, auth=ADMIN,
                       headers={"Content-Type": "multipart/form-data; boundary=" + BOUNDARY, "X-CSRF-Token": tok})
        doc = self.check_error(s, h, b, 400, "bad_multipart")
        self.assertIn("without a name", doc["message"])
        self.still_serving()

    # -- WebSocket Origin

    def test_websocket_origin(self):
        host = "127.0.0.1:%d" % self.port
        for path in CHANNELS:
            for origin in ("http://evil.example", "null", "http://%s.evil.example" % host, "http://127.0.0.1:1",
                           "file://"):
                ws = WebSocket(self.port, path, auth=ADMIN, origin=origin)
                self.assertEqual(ws.status, 403, (path, origin))
                self.assertEqual(json.loads(ws.body)["error"], "bad_origin")
            ws = WebSocket(self.port, path, auth=ADMIN, origin="http://" + host)
            self.assertEqual(ws.status, 101, path)
            ws.close()
            # Without the login the channel stays closed whatever the Origin.
            ws = WebSocket(self.port, path, origin="http://" + host)
            self.assertEqual(ws.status, 401, path)

    # -- update attacks through the upload endpoint (what tests/e2e/test_web_api.py does not send)

    def upload(self, bundle, sig):
        body, ctype = multipart([("signature", "b.tar.sig", sig), ("firmware", "b.tar", bundle)])
        return http(self.port, "POST", "/api/ota/upload", body=body, auth=ADMIN,
                    headers={"Content-Type": ctype, "X-CSRF-Token": self.token()}, timeout=120)

    def test_update_downgrade_and_traversal_entry(self):
        tiny = os.path.join(self.tmp, "tiny-gw")
        with open(tiny, "w") as f:
            f.write("#!/bin/sh\nexit 3\n")
        os.chmod(tiny, 0o755)
        key = os.path.join(self.keys, "update.key")
        # A genuine, signed, older release replayed: refused as a downgrade.
        old = os.path.join(self.tmp, "old.tar")
        sh([MAKE_BUNDLE, old, "0.0.1", bundle_arch(), "linux", tiny, tiny])
        sh([SIGN, old, key])
        with open(old, "rb") as f, open(old + ".sig", "rb") as g:
            s, h, b = self.upload(f.read(), g.read())
        doc = self.check_error(s, h, b, 422, "incompatible")
        self.assertIn("older", doc["message"])
        # A newer bundle, its manifest signed by the trusted key, with an extra entry that climbs
        # out of the release folder (the signature covers the manifest, not the tar's other entries).
        new = os.path.join(self.tmp, "new.tar")
        sh([MAKE_BUNDLE, new, "99.0.0", bundle_arch(), "linux", tiny, tiny])
        evil = io.BytesIO()
        with tarfile.open(new) as src, tarfile.open(fileobj=evil, mode="w", format=tarfile.USTAR_FORMAT) as dst:
            for m in src.getmembers():
                dst.addfile(m, src.extractfile(m) if m.isfile() else None)
            for name in ("../../evil-entry", "bin/../../evil-entry2", "/tmp/evil-entry3"):
                ti = tarfile.TarInfo(name)
                ti.size = 5
                dst.addfile(ti, io.BytesIO(b"evil\n"))
        with open(new, "wb") as f:
            f.write(evil.getvalue())
        sh([SIGN, new, key])
        with open(new + ".sig", "rb") as g:
            s, h, b = self.upload(evil.getvalue(), g.read())
        doc = self.check_error(s, h, b, 400, "bad_bundle")
        for root, dirs, files in os.walk(self.tmp):
            self.assertFalse([f for f in files if f.startswith("evil-entry")], root)
        self.assertFalse(os.path.exists("/tmp/evil-entry3"))
        st = json.loads(http(self.port, "GET", "/api/ota/status", auth=ADMIN)[2])
        self.assertEqual(st["update"]["state"], "none")
        releases = os.path.join(self.data, "releases")
        self.assertEqual(os.listdir(releases) if os.path.isdir(releases) else [], [])

    # -- secrets

    def test_secrets_nowhere(self):
        # Use every secret: logins (right and wrong), the MQTT test with the saved password, an
        # update whose body holds the password, a refused config change that carries them.
        tok = self.token()
        http(self.port, "GET", "/api/status", auth=(USER, WEB_SECRET + "x"), source="127.0.0.9")
        http(self.port, "POST", "/api/config/test-mqtt", body={}, auth=ADMIN, headers={"X-CSRF-Token": tok})
        s, h, b = http(self.port, "POST", "/api/config", auth=ADMIN, headers={"X-CSRF-Token": tok},
                       body={"mqtt": {"password": MQTT_SECRET, "keepalive_s": "bad"},
                             "network": {"wifi_password": WIFI_SECRET + "\x01"}})
        self.check_error(s, h, b, 400)
        # Every read endpoint.
        for path in READS:
            s, h, b = http(self.port, "GET", path, auth=ADMIN)
            self.assertLess(s, 500, path)
            self.assertIsNone(find_secret(b), path)
            self.assertIsNone(find_secret(json.dumps(h)), path)
        cfg = json.loads(http(self.port, "GET", "/api/config", auth=ADMIN)[2])
        self.assertEqual(cfg["mqtt"]["password"], "********")
        self.assertEqual(cfg["network"]["wifi_password"], "********")
        # Every WebSocket channel, frame taps included: a few messages each.
        for path in CHANNELS:
            ws = WebSocket(self.port, path, auth=ADMIN, origin="http://127.0.0.1:%d" % self.port)
            self.assertEqual(ws.status, 101, path)
            # live and the taps stream by themselves: wait for 3 messages; alerts and events
            # speak only when something happens: what they send in 2 s is scanned.
            streams = path in ("/ws/live", "/ws/uart", "/ws/can")
            got = b""
            n = 0
            try:
                deadline = time.monotonic() + (60 if streams else 2)
                while n < 3 and time.monotonic() < deadline:
                    try:
                        got += json.dumps(ws.recv_json(timeout=max(0.1, deadline - time.monotonic()))).encode()
                        n += 1
                    except socket.timeout:
                        break
            finally:
                ws.close()
            if streams:
                self.assertEqual(n, 3, path)
            self.assertIsNone(find_secret(got), path)
        # MQTT: the broker accepted the gateway's login (so the password was sent, to it only);
        # no topic or payload holds a secret.
        self.broker_login_seen()
        self.spy.wait(lambda m: m[3].endswith("/status") or "/status" in m[3], 60, "the gateway's MQTT status")
        for t, retained, qos, topic, payload in self.spy.messages():
            self.assertIsNone(find_secret(topic), topic)
            self.assertIsNone(find_secret(payload), topic)
        # D-Bus: every path and value of the battery service.
        r = self.bus.send(self.service, "/", "com.victronenergy.BusItem.GetItems")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"/Soc", r.stdout)
        self.assertIsNone(find_secret(r.stdout))
        r = self.bus.send("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus.ListNames")
        self.assertIsNone(find_secret(r.stdout))
        # The CAN output.
        wait_for(lambda: os.path.exists(self.can_log) and os.path.getsize(self.can_log) > 0, 60, "CAN frames")
        with open(self.can_log, "rb") as f:
            self.assertIsNone(find_secret(f.read()))
        # The log so far (tearDown checks the whole run too).
        self.assertIsNone(find_secret(self.gw.stderr()))

    def broker_login_seen(self):
        wait_for(lambda: re.search(r"New client connected from .* as sec-gw .*u'gw'", self.broker.log()), 60,
                 "the gateway logged in to mosquitto as gw")


if __name__ == "__main__":
    gwtest.main()
