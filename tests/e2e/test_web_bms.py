#!/usr/bin/python3
"""End-to-end tests of the web server's BMS endpoints, frame taps and MQTT test against the real
daemon and the simulator on a pty:

- a BMS settings round trip: backup, change three registers, compare, restore, and a second
  daemon on the same simulator reads every register back from the BMS equal to the backup;
- refusals: out of the documented range and out of the BMS's own min/max (with the range in the
  answer), unknown keys, non-integers, a state setter in a restore, a foreign backup, no CSRF,
  a missing pack, the restart's confirmation and its once-a-minute guard;
- /ws/uart and /ws/can: the frame taps, decoded, in batches, no secret in them;
- POST /api/config/test-mqtt against a real mosquitto, a closed port and bad settings, the
  saved password kept behind "********" and never echoed."""
import json
import os
import subprocess
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gwtest  # noqa: E402
from gwtest import wait_for  # noqa: E402
from webclient import WebSocket, http  # noqa: E402

PASSWORD = "e2e-bms-pass-1"
ADMIN = ("admin", PASSWORD)
MQTT_SECRET = "mqtt-secret-bms-42"
CHANGES = {"over_voltage_cutoff_mv": 3600, "under_voltage_cutoff_mv": 2700, "low_temp_charge_cutoff_c": -5}


class WebGw:
    """A daemon on an external simulator's pty, with a web port and a password."""

    def __init__(self, tc, link, name, extra=(), config=None):
        self.tc = tc
        self.port = gwtest.free_port()
        doc = {"web": {"ui_dir": tc.tmp, "ws_queue_len": 16}, "history": {"enabled": False}}
        for k, v in (config or {}).items():
            doc.setdefault(k, {}).update(v)
        if not os.path.exists(os.path.join(tc.data_dir, "config.json")):
            tc.write_config(doc)
            r = subprocess.run([gwtest.TINYBMS_GW, "--set-password", "--data-dir", tc.data_dir],
                               input=(PASSWORD + "\n").encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=120)
            tc.assertEqual(r.returncode, 0, r.stderr)
        self.d = tc.start_daemon(["--uart", link, "--http", str(self.port), "--poll-ms", "200", "-q"] + list(extra),
                                 name=name)
        self.d.wait_log(r"web_server: serving http://", 60)
        wait_for(self.limits_read, 60, "the BMS settings and their min/max read")

    def limits_read(self):
        s, h, b = self.get("/api/bms/settings")
        return s == 200 and json.loads(b)["bms_limits"] == "read"

    def get(self, path, auth=ADMIN):
        return http(self.port, "GET", path, auth=auth)

    def post(self, path, body=None, token=True, auth=ADMIN):
        h = {}
        if token:
            s, _, b = self.get("/api/security/csrf")
            self.tc.assertEqual(s, 200, b)
            h["X-CSRF-Token"] = json.loads(b)["token"]
        return http(self.port, "POST", path, body=body, headers=h, auth=auth)

    def settings(self):
        s, h, b = self.get("/api/bms/settings")
        self.tc.assertEqual(s, 200, b)
        return {e["key"]: e for e in json.loads(b)["settings"]}


def check_error(tc, status, body, want_status, want_code=None):
    tc.assertEqual(status, want_status, body)
    doc = json.loads(body)
    tc.assertTrue({"error", "status", "message", "fields"} <= set(doc), doc)
    tc.assertEqual(doc["status"], want_status)
    tc.assertTrue(doc["message"])
    if want_code:
        tc.assertEqual(doc["error"], want_code, doc)
    return doc


class SettingsRoundTrip(gwtest.GatewayTestCase):
    def test_backup_change_compare_restore_read_back(self):
        sim = self.start_sim(["--speed", "0"])
        gw = WebGw(self, sim.link, "gw1")
        before = gw.settings()
        # Every register of the table with its unit, documented range and the BMS's own min/max.
        self.assertGreaterEqual(len(before), 38)
        ov = before["over_voltage_cutoff_mv"]
        self.assertEqual((ov["reg"], ov["unit"], ov["min"], ov["max"]), (315, "mV", 1200, 4500))
        self.assertEqual((ov["bms_min"], ov["bms_max"]), (1200, 4500))
        self.assertIsInstance(ov["value"], int)
        self.assertEqual(before["low_temp_charge_cutoff_c"]["kind"], "int16")
        self.assertIn("allowed", before["precharge_pin"])
        self.assertNotIn(1, before["precharge_pin"]["allowed"])

        s, h, backup_text = gw.get("/api/bms/settings/backup")
        self.assertEqual(s, 200, backup_text)
        self.assertIn("attachment", h.get("content-disposition", ""))
        backup = json.loads(backup_text)
        self.assertEqual(backup["format"], "tinybms-gw-bms-settings")
        self.assertEqual(backup["pack"], 0)
        self.assertTrue(backup["bms"]["serial"])
        self.assertNotIn("set_soc_x002pct", backup["settings"])  # a state, not a setting
        self.assertEqual(backup["settings"]["over_voltage_cutoff_mv"], {"reg": 315, "value": ov["value"], "unit": "mV"})

        # Change three registers (one of them signed); every one written and read back.
        for k, v in CHANGES.items():
            self.assertNotEqual(before[k]["value"], v, k)
        s, h, b = gw.post("/api/bms/settings", {"settings": CHANGES})
        self.assertEqual(s, 200, b)
        doc = json.loads(b)
        self.assertTrue(doc["ok"])
        self.assertEqual((doc["written"], doc["failed"]), (3, 0))
        for r in doc["results"]:
            self.assertEqual(r["result"], "written", r)
            self.assertEqual(r["read_back"], CHANGES[r["key"]])
        after = gw.settings()
        for k, e in after.items():
            want = CHANGES.get(k, before[k]["value"])
            if not e.get("sets_state"):
                self.assertEqual(e["value"], want, k)
        # The same again: nothing to write.
        s, h, b = gw.post("/api/bms/settings", {"settings": CHANGES})
        self.assertEqual(json.loads(b)["unchanged"], 3, b)

        # Restore: validated whole, then only the three registers that differ are written.
        s, h, b = gw.post("/api/bms/settings/restore", backup)
        self.assertEqual(s, 200, b)
        doc = json.loads(b)
        self.assertEqual(doc["written"], 3, b)
        self.assertEqual(doc["unchanged"], len(backup["settings"]) - 3)
        restored = gw.settings()
        for k, e in backup["settings"].items():
            self.assertEqual(restored[k]["value"], e["value"], k)
        self.stop_daemon_cleanly(gw.d)

        # A second gateway on the same BMS reads everything from the BMS itself: equal to the backup.
        gw2 = WebGw(self, sim.link, "gw2")
        fresh = gw2.settings()
        for k, e in backup["settings"].items():
            self.assertEqual(fresh[k]["value"], e["value"], k)
        s, h, b = gw2.get("/api/bms/settings/backup")
        self.assertEqual(json.loads(b)["settings"], backup["settings"])
        self.stop_daemon_cleanly(gw2.d)


class Endpoints(gwtest.GatewayTestCase):
    """One daemon (external simulator, CAN to a candump log) for the refusals, the taps and the
    MQTT test."""

    def test_refusals_restart_taps_and_mqtt_test(self):
        sim = self.start_sim(["--speed", "0"])
        log = os.path.join(self.tmp, "frames.log")
        gw = WebGw(self, sim.link, "gw", extra=["--can", "log:" + log],
                   config={"mqtt": {"username": "gw", "password": MQTT_SECRET}})
        self.check_refusals(gw)
        self.check_restore_refusals(gw)
        self.check_taps(gw)
        self.check_mqtt_test(gw)
        self.check_restart(gw)  # last: the BMS restarts
        text = gw.d.stderr()
        self.stop_daemon_cleanly(gw.d)
        self.assertNotIn(PASSWORD, text)
        self.assertNotIn(MQTT_SECRET, text)

    def check_refusals(self, gw):
        cur = gw.settings()
        # Out of the documented range: refused with the register's range, nothing written.
        s, h, b = gw.post("/api/bms/settings", {"settings": {"over_voltage_cutoff_mv": 4600,
                                                             "under_voltage_cutoff_mv": 2650}})
        doc = check_error(self, s, b, 400, "invalid_settings")
        self.assertEqual(doc["fields"], [{"path": "settings.over_voltage_cutoff_mv",
                                          "reason": "must be an integer in 1200..4500 mV (this BMS: 1200..4500) "
                                                    "(got 4600)"}])
        self.assertEqual(gw.settings()["under_voltage_cutoff_mv"]["value"], cur["under_voltage_cutoff_mv"]["value"])
        # Inside the documented range (0..65535) but outside the BMS's own min/max (1..750).
        s, h, b = gw.post("/api/bms/settings", {"settings": {"305": 800}})
        doc = check_error(self, s, b, 400, "invalid_settings")
        self.assertIn("this BMS: 1..750", doc["fields"][0]["reason"])
        self.assertEqual(doc["fields"][0]["path"], "settings.305")
        # Several problems at once, each with its path.
        s, h, b = gw.post("/api/bms/settings", {"settings": {"bogus": 1, "precharge_pin": 1, "316": 2.5,
                                                             "low_temp_charge_cutoff_c": -41}})
        doc = check_error(self, s, b, 400, "invalid_settings")
        paths = {f["path"]: f["reason"] for f in doc["fields"]}
        self.assertEqual(set(paths), {"settings.bogus", "settings.precharge_pin", "settings.316",
                                      "settings.low_temp_charge_cutoff_c"})
        self.assertIn("one of 0, 2..10", paths["settings.precharge_pin"])
        self.assertIn("-40..10", paths["settings.low_temp_charge_cutoff_c"])
        for body in ({}, {"settings": []}, {"settings": {}}, {"settings": {"315": 3600}, "dry_run": "yes"}):
            s, h, b = gw.post("/api/bms/settings", body)
            check_error(self, s, b, 400)
        # dry_run: validated, nothing written.
        s, h, b = gw.post("/api/bms/settings", {"settings": {"315": 3610}, "dry_run": True})
        self.assertEqual(s, 200, b)
        self.assertEqual(json.loads(b)["results"][0]["result"], "valid")
        self.assertEqual(gw.settings()["over_voltage_cutoff_mv"]["value"], cur["over_voltage_cutoff_mv"]["value"])
        # No CSRF token, no login, no such pack, wrong method.
        s, h, b = gw.post("/api/bms/settings", {"settings": {"315": 3600}}, token=False)
        check_error(self, s, b, 403, "csrf")
        s, h, b = gw.get("/api/bms/settings", auth=None)
        check_error(self, s, b, 401)
        s, h, b = gw.get("/api/bms/settings?pack=3")
        check_error(self, s, b, 404, "no_such_pack")
        s, h, b = gw.get("/api/bms/settings?pack=x")
        check_error(self, s, b, 400)
        s, h, b = http(gw.port, "GET", "/api/bms/restart", auth=ADMIN)
        check_error(self, s, b, 405)

    def check_restore_refusals(self, gw):
        s, h, b = gw.get("/api/bms/settings/backup")
        backup = json.loads(b)
        bad = dict(backup, format="something-else")
        s, h, b = gw.post("/api/bms/settings/restore", bad)
        check_error(self, s, b, 400, "invalid_backup")
        bad = json.loads(json.dumps(backup))
        bad["settings"]["set_soc_x002pct"] = {"reg": 328, "value": 100}
        bad["settings"]["over_voltage_cutoff_mv"]["value"] = 9999
        bad["settings"]["fully_charged_mv"]["reg"] = 301
        s, h, b = gw.post("/api/bms/settings/restore", bad)
        doc = check_error(self, s, b, 400, "invalid_settings")
        self.assertEqual({f["path"] for f in doc["fields"]},
                         {"settings.set_soc_x002pct", "settings.over_voltage_cutoff_mv", "settings.fully_charged_mv"})
        other = json.loads(json.dumps(backup))
        other["bms"]["serial"] = "0123456789ABCDEF01234567"
        s, h, b = gw.post("/api/bms/settings/restore", other)
        check_error(self, s, b, 409, "other_bms")
        other["allow_other_bms"] = True
        s, h, b = gw.post("/api/bms/settings/restore", other)
        self.assertEqual(s, 200, b)
        self.assertEqual(json.loads(b)["written"], 0)

    def check_taps(self, gw):
        ws = WebSocket(gw.port, "/ws/uart", auth=ADMIN)
        self.assertEqual(ws.status, 101, ws.body)
        try:
            frames = []
            deadline = time.monotonic() + 30
            while not (any(f["dir"] == "tx" for f in frames) and any(f["dir"] == "rx" for f in frames)):
                m = ws.recv_json(timeout=max(1, deadline - time.monotonic()))
                self.assertEqual(m["type"], "uart")
                frames += m["frames"]
            tx = [f for f in frames if f["dir"] == "tx"][-1]
            self.assertEqual(set(tx), {"pack", "seq", "timestamp", "dir", "len", "hex", "meaning"})
            self.assertTrue(tx["hex"].startswith("AA "), tx)
            self.assertEqual(len(tx["hex"].split()), tx["len"])
            self.assertTrue(any(f["meaning"].startswith("read regs 0..55") for f in frames), frames[-3:])
            seqs = [f["seq"] for f in frames]
            self.assertEqual(seqs, sorted(seqs))
            self.assertEqual(len(seqs), len(set(seqs)))
            self.assertLess(abs(tx["timestamp"] / 1000 - time.time()), 600)
        finally:
            ws.close()
        ws = WebSocket(gw.port, "/ws/can", auth=ADMIN)
        self.assertEqual(ws.status, 101, ws.body)
        try:
            frames = []
            deadline = time.monotonic() + 30
            while not any(f["id"] == "0x351" for f in frames):
                m = ws.recv_json(timeout=max(1, deadline - time.monotonic()))
                self.assertEqual(m["type"], "can")
                frames += m["frames"]
                self.assertNotIn(MQTT_SECRET, json.dumps(m))
            f351 = [f for f in frames if f["id"] == "0x351"][-1]
            self.assertEqual(f351["dir"], "tx")
            self.assertEqual(f351["dlc"], 8)
            self.assertEqual(len(f351["data"].split()), 8)
            self.assertIn("CVL", f351["text"])
        finally:
            ws.close()
        # Login always (these are not read-only data channels), and another site's page is refused.
        ws = WebSocket(gw.port, "/ws/uart")
        self.assertEqual(ws.status, 401)
        ws = WebSocket(gw.port, "/ws/can", auth=ADMIN, origin="http://evil.example")
        self.assertEqual(ws.status, 403)
        s, h, b = gw.get("/ws/uart")
        self.assertEqual(s, 426)

    def check_mqtt_test(self, gw):
        if not os.path.exists(gwtest.GW_MOSQUITTO):
            sys.stderr.write("mosquitto not installed: the successful MQTT test is skipped\n")
        else:
            broker = self.track(gwtest.Mosquitto(self.tmp, persistence=False))
            s, h, b = gw.post("/api/config/test-mqtt", {"mqtt": {"broker_uri": "mqtt://127.0.0.1:%d" % broker.port,
                                                                 "password": "********"}})
            self.assertEqual(s, 200, b)
            doc = json.loads(b)
            self.assertTrue(doc["ok"], doc)
            self.assertEqual(doc["result"], "ok")
            self.assertTrue(doc["message"])
            self.assertNotIn(MQTT_SECRET, b.decode())
        closed = gwtest.free_port()
        s, h, b = gw.post("/api/config/test-mqtt", {"mqtt": {"broker_uri": "mqtt://127.0.0.1:%d" % closed}})
        self.assertEqual(s, 200, b)
        doc = json.loads(b)
        self.assertFalse(doc["ok"])
        self.assertEqual(doc["result"], "refused")
        self.assertIn(str(closed), doc["message"])
        s, h, b = gw.post("/api/config/test-mqtt", {"mqtt": {"broker_uri": "ftp://x", "keepalive_s": "x"}})
        doc = check_error(self, s, b, 400, "invalid_config")
        self.assertTrue({"mqtt.broker_uri", "mqtt.keepalive_s"} <= {f["path"] for f in doc["fields"]}, doc)
        s, h, b = gw.post("/api/config/test-mqtt", {"mqtt": 5})
        check_error(self, s, b, 400)
        # Nothing was saved by the tests.
        s, h, b = gw.get("/api/config")
        self.assertEqual(json.loads(b)["mqtt"]["broker_uri"], "mqtt://localhost:1883")

    def check_restart(self, gw):
        for body in ({}, {"restart": True}, {"confirm": True}, {"restart": "yes", "confirm": True}):
            s, h, b = gw.post("/api/bms/restart", body)
            doc = check_error(self, s, b, 400, "confirmation_required")
            self.assertTrue(doc["fields"])
        s, h, b = gw.post("/api/bms/restart", {"restart": True, "confirm": True})
        self.assertEqual(s, 200, b)
        self.assertTrue(json.loads(b)["ok"])
        s, h, b = gw.post("/api/bms/restart", {"restart": True, "confirm": True})
        check_error(self, s, b, 409, "restart_too_soon")
        self.assertEqual(h.get("retry-after"), "60")
        wait_for(lambda: gw.get("/api/bms/settings")[0] == 200, 60, "the BMS back after its restart")


if __name__ == "__main__":
    gwtest.main()
