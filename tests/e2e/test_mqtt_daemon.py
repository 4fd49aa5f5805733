#!/usr/bin/python3
"""End-to-end: tinybms-sim -> tinybms-gw -> a real mosquitto -> mosquitto_sub (an independent
client). Topic values against the frozen simulator, retain and QoS as a subscriber sees them,
the status document, Home Assistant discovery, charge limits (CAN on, log transport),
availability and last will, and alerts that survive a broker restart."""
import json
import os
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gwtest  # noqa: E402
import webclient  # noqa: E402
from gwtest import GatewayTestCase, Mosquitto, Subscriber, retained_snapshot, wait_for  # noqa: E402

P = "tinybms"
HA = "homeassistant"
CLIENT_ID = "e2e-gw"          # mqtt.client_id: makes the discovery node id known
NODE = CLIENT_ID              # only [A-Za-z0-9_-]: unchanged
ALL = [P + "/#", HA + "/#"]


class MqttCase(GatewayTestCase):
    def start_all(self, sim_args=("--speed", "0", "--current", "-12.5")):
        """Broker, a persistent subscriber (QoS 1, so alerts wait for it across a broker restart),
        the simulator and the daemon with MQTT and CAN (log) on."""
        self.write_config({
            "schema_version": 1,
            "mqtt": {"client_id": CLIENT_ID, "status_interval_ms": 1000},
            "alerts": {"raise_delay_ms": 1000, "clear_delay_ms": 1000},
        })
        self.broker = self.track(Mosquitto(self.tmp))
        sub_id = "e2e-sub-%d" % os.getpid()
        self.sub = self.track(Subscriber(self.tmp, self.broker.port, ALL, client_id=sub_id))
        self.broker.wait_client(sub_id)
        self.sim = self.start_sim(list(sim_args))
        self.can_log = os.path.join(self.tmp, "can.log")
        self.gw = self.start_daemon(["--uart", self.sim.link, "--mqtt", "mqtt://127.0.0.1:%d" % self.broker.port,
                                     "--can", "log:" + self.can_log, "--poll-ms", "500"])
        self.broker.wait_client(CLIENT_ID, 60)

    def alerts(self, after=0.0):
        """Alert documents received by the live subscriber: list of (qos, retained, doc)."""
        out = []
        for t, r, q, topic, payload in self.sub.messages():
            if topic == P + "/alerts" and t >= after:
                out.append((q, r, json.loads(payload)))
        return out

    def wait_alert(self, code, event, timeout, after=0.0):
        def find():
            for q, r, doc in self.alerts(after):
                if doc.get("code") == code and doc.get("event") == event:
                    return q, r, doc
            return None
        return wait_for(find, timeout, "alert %s %s on %s/alerts" % (code, event, P))


class Publishing(MqttCase):
    def test_values_status_discovery_limits_and_availability(self):
        self.start_all()
        serial = self.gw.wait_log(r"TinyBMS hw \d+\.\d+ fw \d+ \(internal \d+\) serial (\w+)", 60).group(1)
        # Discovery is re-published once the version (serial) is known; limits come from CAN.
        for obj in ("voltage", "online_status", "cell_16_voltage"):  # first, middle, last of the burst
            self.sub.wait(lambda m, o=obj: m[3] == "%s/sensor/%s/%s/config" % (HA, NODE, o)
                          and ("tinybms_" + serial) in m[4], 60, "discovery of %s with the BMS serial" % obj)
        # Before the first sample the gateway says "None" (unavailable): wait for real values.
        for topic in ("charge/cvl", "cells/16/voltage", "temperature/min", "voltage", "current", "power", "soc"):
            self.sub.wait(lambda m, t=topic: m[3] == P + "/" + t and m[4] != "None", 60, "%s/%s" % (P, topic))
        self.sub.wait(lambda m: m[3] == P + "/status" and '"online_count":1' in m[4], 60, P + "/status with data")
        st = self.sim.state()
        snap = retained_snapshot(self.broker.port, ALL)

        def retained_value(topic, decimals):
            self.assertIn(topic, snap, "%s not retained" % topic)
            retained, qos, payload = snap[topic]
            self.assertTrue(retained, topic)
            self.assertRegex(payload, r"^-?\d+\.\d{%d}$" % decimals, "%s = %r" % (topic, payload))
            return float(payload)

        # Cell temperatures: the external sensors only (the BMS board sensor is no cell).
        temps = [t for t in (st["temp_ext1_c"], st["temp_ext2_c"]) if t is not None]
        cells_v = [mv / 1000.0 for mv in st["cells_mv"]]
        checks = [
            ("voltage", 2, st["pack_v"], 0.0051),
            ("current", 2, st["current_a"], 0.0051),
            ("power", 1, st["pack_v"] * st["current_a"], 0.051 + 0.01 * abs(st["current_a"])),
            ("soc", 1, st["soc_pct"], 0.051),
            ("temperature/max", 1, max(temps), 0.051),
            ("temperature/min", 1, min(temps), 0.051),
            ("cells/voltage/max", 3, max(cells_v), 0.0011),
            ("cells/voltage/min", 3, min(cells_v), 0.0011),
        ]
        for name, decimals, want, tol in checks:
            with self.subTest(topic=name):
                self.assertAlmostEqual(retained_value("%s/%s" % (P, name), decimals), want, delta=tol)
        self.assertLess(float(snap[P + "/current"][2]), 0, "discharge must be negative")
        for n in range(1, st["cell_count"] + 1):
            with self.subTest(cell=n):
                self.assertAlmostEqual(retained_value("%s/cells/%d/voltage" % (P, n), 3), cells_v[n - 1], delta=0.0006)
        self.assertNotIn("%s/cells/%d/voltage" % (P, st["cell_count"] + 1), snap)
        self.assertEqual(snap[P + "/online_status"][2], "discharging")
        # Numeric topics are QoS 0 (the subscriber asked for 1: it gets the publisher's 0).
        self.assertEqual(self.sub.last(P + "/voltage")[1], 0)

        # status: the module reference's fields first, with the same values.
        self.assertTrue(snap[P + "/status"][0])
        status = json.loads(snap[P + "/status"][2])
        self.assertLess(abs(status["timestamp"] - time.time()), 120)
        b, c, t = status["battery"], status["cells"], status["temperature"]
        self.assertEqual(sorted(b), sorted(["voltage", "current", "power", "soc", "soh", "status"]))
        self.assertAlmostEqual(b["voltage"], st["pack_v"], delta=0.0051)
        self.assertAlmostEqual(b["current"], st["current_a"], delta=0.0051)
        self.assertAlmostEqual(b["soc"], st["soc_pct"], delta=0.051)
        self.assertAlmostEqual(b["soh"], st["soh_pct"], delta=0.051)
        self.assertEqual(b["status"], "discharging")
        self.assertEqual(c["count"], st["cell_count"])
        self.assertAlmostEqual(c["voltage_max"], max(cells_v), delta=0.0011)
        self.assertAlmostEqual(c["voltage_min"], min(cells_v), delta=0.0011)
        self.assertAlmostEqual(c["voltage_delta"], max(cells_v) - min(cells_v), delta=0.0011)
        self.assertEqual(len(c["voltages"]), st["cell_count"])
        self.assertEqual(c["max_index"], st["max_cell"])
        self.assertEqual(c["min_index"], st["min_cell"])
        self.assertEqual(t["sensor_count"], len(temps))
        self.assertAlmostEqual(t["max"], max(temps), delta=0.051)
        self.assertAlmostEqual(t["min"], min(temps), delta=0.051)
        self.assertAlmostEqual(t["avg"], sum(temps) / len(temps), delta=0.051)
        self.assertIsNone(t["external2"])  # absent sensor: null, never NaN
        self.assertEqual(status["pack_count"], 1)
        self.assertEqual(status["online_count"], 1)
        self.assertAlmostEqual(t["internal"], st["temp_internal_c"], delta=0.051)

        # availability: online, retained, QoS 1.
        self.assertEqual(snap[P + "/availability"], (True, 1, "online"))

        # Home Assistant discovery.
        expected = {"voltage": ("voltage", "V", "voltage"), "current": ("current", "A", "current"),
                    "soc": ("battery", "%", "soc"), "temperature_max": ("temperature", "°C", "temperature/max"),
                    "temperature_min": ("temperature", "°C", "temperature/min"),
                    "cell_voltage_max": ("voltage", "V", "cells/voltage/max"),
                    "cell_voltage_min": ("voltage", "V", "cells/voltage/min"),
                    "charge_cvl": ("voltage", "V", "charge/cvl"), "charge_ccl": ("current", "A", "charge/ccl"),
                    "charge_dcl": ("current", "A", "charge/dcl"), "cell_1_voltage": ("voltage", "V", "cells/1/voltage")}
        for obj, (dev_class, unit, state) in expected.items():
            with self.subTest(discovery=obj):
                topic = "%s/sensor/%s/%s/config" % (HA, NODE, obj)
                self.assertIn(topic, snap)
                self.assertTrue(snap[topic][0], "discovery not retained")
                cfg = json.loads(snap[topic][2])
                self.assertEqual(cfg["device_class"], dev_class)
                self.assertEqual(cfg["unit_of_measurement"], unit)
                self.assertEqual(cfg["state_topic"], "%s/%s" % (P, state))
                self.assertEqual(cfg["availability_topic"], P + "/availability")
                self.assertTrue(cfg["unique_id"])
                self.assertIn("tinybms_" + serial, cfg["device"]["identifiers"])
                # Every state topic announced exists (retained) on the broker.
                self.assertIn(cfg["state_topic"], snap)
        online = json.loads(snap["%s/sensor/%s/online_status/config" % (HA, NODE)][2])
        self.assertNotIn("unit_of_measurement", online)

        # Charge limits (CAN on): present, retained, sane.
        cvl = retained_value(P + "/charge/cvl", 2)
        self.assertGreater(cvl, 0)
        self.assertLessEqual(cvl, st["cell_count"] * 3.65 + 1e-6)
        self.assertGreaterEqual(retained_value(P + "/charge/ccl", 1), 0)
        self.assertGreaterEqual(retained_value(P + "/charge/dcl", 1), 0)
        for r in ("cvl_reason", "ccl_reason", "dcl_reason"):
            self.assertTrue(snap[P + "/charge/" + r][2], r)

        # Clean stop: availability "offline", retained.
        self.stop_daemon_cleanly(self.gw)
        self.sub.wait(lambda m: m[3] == P + "/availability" and m[4] == "offline", 30, "availability offline")
        self.assertEqual(retained_snapshot(self.broker.port, [P + "/availability"]).get(P + "/availability"),
                         (True, 1, "offline"))

    def test_reversed_cell_order(self):
        # bms.cell_order "reversed": register 15 is cell 1 (the simulator's user order is the
        # documented one, so its cell n is our cell count + 1 - n).
        self.write_config({"schema_version": 1, "bms": {"cell_order": "reversed"}, "mqtt": {"client_id": CLIENT_ID}})
        broker = self.track(Mosquitto(self.tmp))
        sim = self.start_sim(["--speed", "0"])
        gw = self.start_daemon(["--uart", sim.link, "--mqtt", "mqtt://127.0.0.1:%d" % broker.port, "--poll-ms", "500"])
        def ready(s):  # values, not the "None" said before the first sample
            return (P + "/status" in s and '"online_count":1' in s[P + "/status"][2]
                    and all(s.get("%s/cells/%d/voltage" % (P, c), (0, 0, "None"))[2] != "None" for c in range(1, 17)))
        snap = wait_for(lambda: (lambda s: s if ready(s) else None)(
            retained_snapshot(broker.port, [P + "/#"], seconds=2)), 60, "status and cell topics with values")
        st = sim.state()
        n = st["cell_count"]
        for cell in range(1, n + 1):
            self.assertAlmostEqual(float(snap["%s/cells/%d/voltage" % (P, cell)][2]),
                                   st["cells_mv"][n - cell] / 1000.0, delta=0.0006)
        status = json.loads(snap[P + "/status"][2])
        self.assertEqual(status["cells"]["max_index"], n + 1 - st["max_cell"])
        self.assertEqual(status["cells"]["min_index"], n + 1 - st["min_cell"])
        self.stop_daemon_cleanly(gw)


class Alerts(MqttCase):
    def test_alerts_qos1_and_delivery_after_a_broker_restart(self):
        self.start_all()
        self.sub.wait(lambda m: m[3] == P + "/voltage", 60, "a first sample on MQTT")

        # A cell above cell_v_high (3.60 V) but under the BMS over-voltage cutoff (3.65 V).
        t_raise = time.monotonic()
        self.sim.cmd("set-cell 1 3630")
        q, retained, doc = self.wait_alert("OVER_VOLTAGE", "raised", 60, after=t_raise)
        self.assertEqual(q, 1, "alerts are QoS 1")
        self.assertFalse(retained)
        self.assertEqual(doc["level"], "error")
        self.assertEqual(doc["battery_id"], 0)
        self.assertAlmostEqual(doc["threshold"], 3.6, delta=1e-6)
        self.assertAlmostEqual(doc["value"], 3.63, delta=0.015)
        self.assertRegex(doc["message"], r"pack 1: cell 1 high")
        self.assertGreaterEqual(doc["last_seen_ms"], doc["first_seen_ms"])
        self.assertLess(abs(doc["first_seen_ms"] / 1000.0 - time.time()), 120)
        self.assertNotIn(P + "/alerts", retained_snapshot(self.broker.port, [P + "/alerts"]))

        # Broker down; an alert is raised meanwhile; broker back on the same port.
        log_at = len(self.gw.stderr())
        self.broker.stop()
        self.gw.wait_log(r"mqtt: connection lost", 60, start=log_at)
        self.sim.cmd("set-cell 2 2750")  # below cell_v_low (2.80 V)
        self.gw.wait_log(r"raised UNDER_VOLTAGE", 60, start=log_at)
        t_restart = time.monotonic()
        self.broker.start()
        m = self.gw.wait_log(r"mqtt: connected to 127\.0\.0\.1:%d \((\d+) queued" % self.broker.port,
                             90, start=log_at)
        self.assertGreaterEqual(int(m.group(1)), 1, "the alert was not queued while the broker was down")
        q, retained, doc = self.wait_alert("UNDER_VOLTAGE", "raised", 60)
        self.assertEqual(q, 1)
        self.assertRegex(doc["message"], r"pack 1: cell 2 low")
        # Reconnected by itself: online again and fresh values flow.
        self.sub.wait(lambda m: m[0] > t_restart and m[3] == P + "/availability" and m[4] == "online", 60,
                      "availability online after the restart")
        self.sub.wait(lambda m: m[0] > t_restart and m[3] == P + "/voltage", 60, "values after the restart")

        # Back to normal: the cleared events flow too.
        t_clear = time.monotonic()
        self.sim.cmd("set-cell 1 3305")
        self.sim.cmd("set-cell 2 3305")
        self.wait_alert("OVER_VOLTAGE", "cleared", 60, after=t_clear)

        # A crash (SIGKILL): the broker publishes the last will "offline".
        t_kill = time.monotonic()
        self.assertIsNone(self.gw.sanitizer_report())
        self.gw.stop(signal.SIGKILL)
        self.sub.wait(lambda m: m[0] > t_kill and m[3] == P + "/availability" and m[4] == "offline", 30,
                      "last will 'offline' after SIGKILL")
        self.assertEqual(retained_snapshot(self.broker.port, [P + "/availability"]).get(P + "/availability"),
                         (True, 1, "offline"))

    def test_config_recovered_from_backup_reaches_mqtt_alerts(self):
        # The recovery alert is raised while the MQTT client may still be connecting: it must
        # wait in the offline queue, not be lost.
        os.makedirs(self.data_dir)
        cfg = os.path.join(self.data_dir, "config.json")
        with open(cfg + ".bak", "w") as f:
            json.dump({"schema_version": 1, "mqtt": {"client_id": CLIENT_ID}}, f)
        with open(cfg, "w") as f:
            f.write("\x00\x00garbage")
        broker = self.track(Mosquitto(self.tmp))
        self.sub = self.track(Subscriber(self.tmp, broker.port, [P + "/alerts"], client_id="e2e-sub-cfg"))
        broker.wait_client("e2e-sub-cfg")
        sim = self.start_sim(["--speed", "0"])
        gw = self.start_daemon(["--uart", sim.link, "--mqtt", "mqtt://127.0.0.1:%d" % broker.port])
        q, retained, doc = self.wait_alert("STORAGE_ERROR", "raised", 60)
        self.assertEqual(q, 1)
        self.assertEqual(doc["level"], "error")
        self.assertIn("recovered from config.json.bak", doc["message"])
        self.stop_daemon_cleanly(gw)


    def test_config_save_failing_at_start_reaches_mqtt_and_the_api(self):
        # A read-only data directory (bind-mounted read-only in the daemon's own mount
        # namespace: root ignores file modes) holding a torn config.json and a good backup: the
        # configuration manager recovers the backup and cannot save it, so the storage error is
        # raised while it is created, before any service listens. It must still reach MQTT and
        # /api/alerts: the start-up announcement, made once every service listens, must be the
        # alert's first raise (a copy of the early event dispatched late, between the alert
        # manager's subscription and the MQTT gateway's, raised it where MQTT never saw it).
        os.makedirs(self.data_dir)
        cfg = os.path.join(self.data_dir, "config.json")
        password = "start-up-race-pw"
        r = subprocess.run([gwtest.TINYBMS_GW, "--set-password", "--data-dir", self.data_dir],
                           input=(password + "\n").encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(cfg) as f:
            doc = json.load(f)
        doc.setdefault("mqtt", {})["client_id"] = CLIENT_ID
        with open(cfg + ".bak", "w") as f:
            json.dump(doc, f)
        for name in os.listdir(self.data_dir):
            if name.startswith("config.json.applied"):
                os.unlink(os.path.join(self.data_dir, name))
        with open(cfg, "w") as f:
            f.write('{"schema_version": 1, "bms": ')  # a torn write
        read_only = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                     'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"', self.data_dir]
        probe = subprocess.run(read_only + ["true"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if probe.returncode != 0:
            self.skipTest("no read-only bind mount here (needs root): %s" % probe.stderr.decode().strip())
        broker = self.track(Mosquitto(self.tmp))
        self.sub = self.track(Subscriber(self.tmp, broker.port, [P + "/alerts"], client_id="e2e-sub-ro"))
        broker.wait_client("e2e-sub-ro")
        sim = self.start_sim(["--speed", "0"])
        port = gwtest.free_port()
        real_gw = gwtest.TINYBMS_GW
        gwtest.TINYBMS_GW = read_only[0]  # Daemon runs TINYBMS_GW + args: the wrapper execs the daemon
        try:
            gw = self.start_daemon(read_only[1:] + [real_gw, "--uart", sim.link, "--mqtt",
                                                    "mqtt://127.0.0.1:%d" % broker.port, "--http", str(port)])
        finally:
            gwtest.TINYBMS_GW = real_gw
        gw.wait_log(r"cannot save|running on an unsaved configuration", 60)
        def config_alert():  # history.db and alerts.db cannot open either: their own alerts
            for q, r, doc in self.alerts():
                if doc.get("code") == "STORAGE_ERROR" and doc.get("event") == "raised" \
                        and "Storage error (config)" in doc["message"]:
                    return q, doc
            return None
        q, doc = wait_for(config_alert, 60, "STORAGE_ERROR (config) raised on %s/alerts" % P)
        self.assertEqual(q, 1)
        # the history and alert databases cannot open either: raised while they open, before the
        # battery service and the outputs start; MQTT listens already (it starts first)
        for module in ("history", "alerts"):
            wait_for(lambda: any(d.get("code") == "STORAGE_ERROR" and d.get("event") == "raised"
                                 and "Storage error (%s)" % module in d["message"] for _, _, d in self.alerts()),
                     60, "STORAGE_ERROR (%s) raised on %s/alerts" % (module, P))
        self.assertEqual(doc["level"], "error")
        self.assertIn("recovered from config.json.bak", doc["message"])
        gw.wait_log(r"web_server: serving https?://", 60)

        def active():
            status, _, body = webclient.http(port, "GET", "/api/alerts", auth=("admin", password))
            if status != 200:
                return None
            codes = [a for a in json.loads(body)["active"] if a["code"] == "STORAGE_ERROR"
                     and "(config)" in a["message"]]
            return codes or None
        self.assertTrue(wait_for(active, 30, "STORAGE_ERROR (config) in /api/alerts"))
        self.stop_daemon_cleanly(gw)
        with open(cfg) as f:
            self.assertEqual(f.read(), '{"schema_version": 1, "bms": ', "the read-only directory was written")

class Reconnection(GatewayTestCase):
    def test_broker_absent_at_start_then_restarted_without_persistence(self):
        self.write_config({"schema_version": 1, "mqtt": {"client_id": CLIENT_ID},
                           "alerts": {"raise_delay_ms": 1000, "clear_delay_ms": 1000}})
        broker = self.track(Mosquitto(self.tmp, persistence=False, start=False))
        sim = self.start_sim(["--speed", "0"])
        gw = self.start_daemon(["--uart", sim.link, "--mqtt", "mqtt://127.0.0.1:%d" % broker.port,
                                "--can", "log:" + os.path.join(self.tmp, "can.log"), "--poll-ms", "500"])
        # No broker: the daemon runs on, retries, and says why.
        gw.wait_log(r"mqtt: .*(refused|failed)", 60)
        n = gw.wait_summaries(3, 60)
        gw.wait_summaries(2, 60, after=n)

        must = [P + "/availability", P + "/voltage", P + "/status", P + "/charge/cvl", P + "/cells/1/voltage",
                "%s/sensor/%s/voltage/config" % (HA, NODE), "%s/sensor/%s/cell_16_voltage/config" % (HA, NODE)]

        def all_retained():
            snap = retained_snapshot(broker.port, ALL, seconds=2)
            return snap if all(t in snap and snap[t][0] for t in must) else None

        for run in (1, 2):
            log_at = len(gw.stderr())
            broker.start()
            gw.wait_log(r"mqtt: connected to 127\.0\.0\.1:%d" % broker.port, 90, start=log_at)
            snap = wait_for(all_retained, 60, "every retained topic on the fresh broker (run %d)" % run)
            self.assertEqual(snap[P + "/availability"][2], "online")
            if run == 1:
                # Restarted without persistence: the broker forgets every retained message; the
                # daemon must publish them all again by itself.
                broker.stop()
                gw.wait_log(r"mqtt: connection lost", 60, start=log_at)
        self.assertTrue(gw.alive())
        self.stop_daemon_cleanly(gw)


if __name__ == "__main__":
    gwtest.main()
