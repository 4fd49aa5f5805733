#!/usr/bin/python3
"""End-to-end test of the daemon's metrics: the real tinybms-gw with the simulator, a private
mosquitto and the CAN log; SIGUSR2 with --metrics-dump writes the Prometheus text, which is
parsed by the strict parser of the Prometheus Python client (Debian python3-prometheus-client)
and checked against the naming rules; every metric the daemon exports must be there, and the
counters must move under load (the BMS polled every 200 ms) and never go back."""
import os
import re
import signal
import sys
import time
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gwtest  # noqa: E402
from gwtest import GatewayTestCase, Mosquitto, wait_for  # noqa: E402

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # pragma: no cover
    text_string_to_metric_families = None

NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
NOT_BASE_UNITS = ("ms", "us", "ns", "millis", "milliseconds", "microseconds", "kb", "kib", "mb", "mib", "percent",
                  "pct", "mv", "ma")
# Labels are only ever these, with values fixed by the code (never addresses or free text).
# le_ms: the bucket bounds of tinybms_gw_can_data_age_frames_total, fixed by the code.
ALLOWED_LABELS = {"version", "thread", "pack", "module", "subscriber", "event", "limit", "phase", "id", "code", "le_ms"}

# Every family the daemon writes with the simulator, CAN (log) and MQTT on (the family names as
# the parser gives them: counters without _total).
EXPECTED = {
    "process": ["process_cpu_seconds", "process_resident_memory_bytes", "process_virtual_memory_bytes",
                "process_open_fds", "process_max_fds", "process_start_time_seconds",
                "tinybms_gw_process_cpu_usage_ratio", "tinybms_gw_process_resident_memory_peak_bytes",
                "tinybms_gw_uptime_seconds", "tinybms_gw_process_threads", "tinybms_gw_build_info",
                "tinybms_gw_thread_cpu_seconds", "tinybms_gw_thread_cpu_usage_ratio", "tinybms_gw_thread_count"],
    "system": ["tinybms_gw_system_load1", "tinybms_gw_system_load5", "tinybms_gw_system_load15",
               "tinybms_gw_system_uptime_seconds", "tinybms_gw_system_memory_total_bytes",
               "tinybms_gw_system_memory_free_bytes", "tinybms_gw_data_dir_free_bytes",
               "tinybms_gw_data_dir_size_bytes"],
    "monitoring": ["tinybms_gw_monitoring_collections", "tinybms_gw_monitoring_collect_seconds",
                   "tinybms_gw_monitoring_collect_last_seconds", "tinybms_gw_monitoring_sample_period_seconds",
                   "tinybms_gw_monitoring_source_last_seconds",
                   "tinybms_gw_monitoring_dropped", "tinybms_gw_monitoring_rejected"],
    "event_bus": ["tinybms_gw_event_bus_published", "tinybms_gw_event_bus_dropped", "tinybms_gw_event_bus_dispatched",
                  "tinybms_gw_event_bus_queue_depth", "tinybms_gw_event_bus_queue_high_water",
                  "tinybms_gw_event_bus_handler_calls", "tinybms_gw_event_bus_handler_seconds",
                  "tinybms_gw_event_bus_handler_max_seconds"],
    "uart": ["tinybms_gw_uart_polls", "tinybms_gw_uart_samples", "tinybms_gw_uart_transactions",
             "tinybms_gw_uart_timeouts", "tinybms_gw_uart_resends", "tinybms_gw_uart_crc_errors",
             "tinybms_gw_uart_nacks", "tinybms_gw_uart_garbage_bytes", "tinybms_gw_uart_reopens",
             "tinybms_gw_uart_poll_cycle_seconds", "tinybms_gw_uart_sample_age_seconds", "tinybms_gw_uart_comm_ok",
             "tinybms_gw_uart_device_open"],
    "battery": ["tinybms_gw_battery_steps", "tinybms_gw_battery_samples_taken",
                "tinybms_gw_battery_samples_implausible", "tinybms_gw_battery_samples_frozen",
                "tinybms_gw_battery_samples_unknown_pack", "tinybms_gw_battery_views_dropped",
                "tinybms_gw_battery_saves", "tinybms_gw_battery_save_errors", "tinybms_gw_battery_caps_applied",
                "tinybms_gw_battery_caps_without_effect", "tinybms_gw_battery_step_seconds",
                "tinybms_gw_battery_step_max_seconds", "tinybms_gw_battery_packs_online", "tinybms_gw_battery_packs",
                "tinybms_gw_battery_limits_valid", "tinybms_gw_battery_limit_changes",
                "tinybms_gw_battery_phase_seconds", "tinybms_gw_battery_pack_online",
                "tinybms_gw_battery_pack_bad_samples"],
    "can": ["tinybms_gw_can_frames_sent", "tinybms_gw_can_frames_failed", "tinybms_gw_can_live_cycles",
            "tinybms_gw_can_identity_cycles", "tinybms_gw_can_rx_frames", "tinybms_gw_can_bus_errors",
            "tinybms_gw_can_bus_off", "tinybms_gw_can_bus_off_transitions",
            "tinybms_gw_can_tx_queue_full", "tinybms_gw_can_transport_open",
            "tinybms_gw_can_stale", "tinybms_gw_can_stale_transitions", "tinybms_gw_can_view_age_seconds",
            "tinybms_gw_can_data_age_frames", "tinybms_gw_can_data_age_counted_frames",
            "tinybms_gw_can_data_age_seconds", "tinybms_gw_can_data_age_max_seconds",
            "tinybms_gw_can_inverter_link", "tinybms_gw_can_inverter_last_seen_seconds",
            "tinybms_gw_can_id_frames_sent", "tinybms_gw_can_id_frames_failed"],
    "mqtt": ["tinybms_gw_mqtt_connects", "tinybms_gw_mqtt_disconnects", "tinybms_gw_mqtt_connected",
             "tinybms_gw_mqtt_views_received", "tinybms_gw_mqtt_sample_rounds", "tinybms_gw_mqtt_status_published",
             "tinybms_gw_mqtt_alerts_published", "tinybms_gw_mqtt_limit_rounds", "tinybms_gw_mqtt_discovery_rounds",
             "tinybms_gw_mqtt_commands_accepted", "tinybms_gw_mqtt_commands_rejected",
             "tinybms_gw_mqtt_publish_errors", "tinybms_gw_mqtt_round_seconds"],
    "history": ["tinybms_gw_history_samples_queued", "tinybms_gw_history_rows_written",
                "tinybms_gw_history_samples_dropped", "tinybms_gw_history_write_errors",
                "tinybms_gw_history_rows_deleted", "tinybms_gw_history_queue_depth", "tinybms_gw_history_storage_ok",
                "tinybms_gw_history_database_bytes"],
    "alerts": ["tinybms_gw_alerts_active", "tinybms_gw_alerts_raised"],
    "network": ["tinybms_gw_network_watching", "tinybms_gw_network_connected", "tinybms_gw_network_link_up",
                "tinybms_gw_network_addresses", "tinybms_gw_network_connects", "tinybms_gw_network_disconnects",
                "tinybms_gw_network_reconnects", "tinybms_gw_network_link_downs",
                "tinybms_gw_network_address_changes", "tinybms_gw_network_netlink_errors",
                "tinybms_gw_network_wpa_requests", "tinybms_gw_network_wpa_failures",
                "tinybms_gw_network_connected_seconds", "tinybms_gw_network_wireless"],
}

# Counters that must move between two dumps while the BMS is polled (key: family, labels).
MUST_MOVE = [
    ("process_cpu_seconds", {}),
    ("tinybms_gw_uptime_seconds", {}),
    ("tinybms_gw_monitoring_collections", {}),
    ("tinybms_gw_event_bus_published", {}),
    ("tinybms_gw_event_bus_dispatched", {}),
    ("tinybms_gw_uart_polls", {"pack": "0"}),
    ("tinybms_gw_uart_samples", {"pack": "0"}),
    ("tinybms_gw_uart_transactions", {"pack": "0"}),
    ("tinybms_gw_battery_steps", {}),
    ("tinybms_gw_battery_samples_taken", {}),
    ("tinybms_gw_can_frames_sent", {}),
    ("tinybms_gw_can_live_cycles", {}),
    ("tinybms_gw_can_id_frames_sent", {"id": "0x35A"}),  # after the first sample, even while 0x351 is withheld
    ("tinybms_gw_mqtt_views_received", {}),
    ("tinybms_gw_mqtt_sample_rounds", {}),
    ("tinybms_gw_history_samples_queued", {}),
    ("tinybms_gw_battery_phase_seconds", {"phase": "bulk"}),
    ("tinybms_gw_event_bus_handler_calls", {"subscriber": "metrics", "event": "battery_update"}),
]


def parse(text):
    """{family: (type, documentation, {frozenset(labels): (sample name, value)})}; the parser raises on
    anything that is not the exposition format."""
    out = {}
    for fam in text_string_to_metric_families(text):
        series = {}
        for s in fam.samples:
            key = frozenset(s.labels.items())
            if key in series:
                raise AssertionError("series %s%s written twice" % (s.name, s.labels))
            series[key] = (s.name, s.value)
        if fam.name in out:
            raise AssertionError("family %s written in two blocks" % fam.name)
        out[fam.name] = (fam.type, fam.documentation, series)
    return out


def check_rules(tc, text, fams):
    """The naming rules, on the raw text and the parsed families."""
    helps = re.findall(r"^# HELP (\S+) ", text, re.M)
    types = re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M)
    tc.assertEqual(len(helps), len(set(helps)), "a HELP line twice")
    tc.assertEqual([n for n, _ in types], helps, "every family has HELP then TYPE, in the same order")
    for name, kind in types:
        tc.assertRegex(name, NAME_RE)
        tc.assertIn(kind, ("counter", "gauge"))
        tc.assertEqual(name.endswith("_total"), kind == "counter", "%s: _total iff counter" % name)
        for word in NOT_BASE_UNITS:
            tc.assertNotRegex(name, r"(^|_)%s(_|$)" % word, "%s: not a base unit" % name)
    for fname, (kind, doc, series) in fams.items():
        tc.assertTrue(doc, "%s: empty HELP" % fname)
        for labels, (sname, value) in series.items():
            if kind == "counter":
                tc.assertTrue(sname.endswith("_total"), sname)
                tc.assertGreaterEqual(value, 0, sname)
            for k, v in labels:
                tc.assertRegex(k, LABEL_RE)
                tc.assertIn(k, ALLOWED_LABELS, "%s: label %s" % (sname, k))
                tc.assertLess(len(v), 32, "%s: label value %r" % (sname, v))


def value(fams, name, labels):
    fam = fams.get(name)
    if not fam:
        return None
    got = fam[2].get(frozenset(labels.items()))
    return got[1] if got else None


@unittest.skipIf(text_string_to_metric_families is None, "python3-prometheus-client is not installed")
class Metrics(GatewayTestCase):
    def dump(self, gw, n):
        """SIGUSR2, then waits for the n-th "metrics written" line; returns the file's text."""
        gw.proc.send_signal(signal.SIGUSR2)
        wait_for(lambda: gw.stderr().count("metrics written to") >= n or not gw.alive(), 60,
                 "metrics dump number %d" % n)
        self.assertTrue(gw.alive(), gw.stderr()[-3000:])
        with open(self.dump_path) as f:
            return f.read()

    def test_every_metric_present_parsed_and_moving(self):
        self.write_config({"schema_version": 1, "mqtt": {"client_id": "gw-metrics-e2e", "status_interval_ms": 1000},
                           "history": {"period_s": 1}})
        broker = self.track(Mosquitto(self.tmp))
        sim = self.start_sim(["--scenario", "charge"])
        self.dump_path = os.path.join(self.tmp, "metrics.prom")
        gw = self.start_daemon(["--uart", sim.link, "--mqtt", "mqtt://127.0.0.1:%d" % broker.port,
                                "--can", "log:" + os.path.join(self.tmp, "can.log"), "--poll-ms", "200",
                                "--metrics-dump", self.dump_path, "--http", str(gwtest.free_port())])
        broker.wait_client("gw-metrics-e2e", 60)
        gw.wait_log(r"web_server: serving http://", 60)  # its threads are the last to start
        gw.wait_summaries(3, 60)
        # 0x35A (alarms) goes out only once the first sample is in: wait for it on the wire, so
        # its counter exists in the first dump (which takes a fresh sample).
        can_log = os.path.join(self.tmp, "can.log")
        wait_for(lambda: " 35A#" in (gwtest.read_text(can_log) or ""), 60, "0x35A in the CAN log")

        first_text = self.dump(gw, 1)
        first = parse(first_text)
        check_rules(self, first_text, first)
        for module, names in EXPECTED.items():
            missing = [n for n in names if n not in first]
            self.assertEqual(missing, [], "%s metrics missing" % module)
        extra = sorted(set(first) - {n for names in EXPECTED.values() for n in names})
        self.assertEqual(extra, [], "metrics not listed in the test (add them, and to docs/monitoring.md)")
        self.assertEqual(value(first, "tinybms_gw_uart_comm_ok", {"pack": "0"}), 1)
        self.assertEqual(value(first, "tinybms_gw_monitoring_rejected", {}), 0, "a metric breaks the naming rules")
        self.assertEqual(value(first, "tinybms_gw_monitoring_dropped", {}), 0)
        self.assertEqual(value(first, "tinybms_gw_mqtt_connected", {}), 1)
        self.assertGreaterEqual(value(first, "tinybms_gw_mqtt_connects", {}), 1)
        self.assertEqual(value(first, "tinybms_gw_can_transport_open", {}), 1)
        self.assertGreater(value(first, "process_resident_memory_bytes", {}), 1 << 20)
        self.assertGreater(value(first, "process_open_fds", {}), 3)
        self.assertGreater(value(first, "tinybms_gw_data_dir_free_bytes", {}), 0)
        threads = {dict(k)["thread"]: v[1] for k, v in first["tinybms_gw_thread_count"][2].items()}
        for named in ("monitoring", "bms-poll0", "battery", "event-bus", "alert-ticker", "store-history",
                      "store-alert", "can-tx", "can-rx", "mqtt-net", "net-link", "civetweb-master"):
            self.assertIn(named, threads)
        unnamed = threads.get("tinybms-gw", 0)
        sys.stderr.write("[threads by name: %s; %d without a name of their own] "
                         % (", ".join("%s x%d" % (k, v) for k, v in sorted(threads.items())), unnamed))
        # Every thread but the main one names itself, so the CPU table says who spends it.
        self.assertEqual(unnamed, 1, "threads without a name: the CPU per thread cannot tell them apart")

        # load: more polls, CAN cycles, MQTT rounds, history rows; dump again until every counter
        # of MUST_MOVE moved (a condition with a deadline, not a time), and none ever goes back
        n, second = 1, None
        deadline = time.monotonic() + 90
        while True:
            seen = len(gw.summary_lines())
            gw.wait_summaries(3, 60, after=seen)
            n += 1
            second_text = self.dump(gw, n)
            second = parse(second_text)
            check_rules(self, second_text, second)
            self.assertEqual(set(first), set(second), "the same families in every dump")
            for fname, (kind, _, series) in first.items():
                if kind != "counter":
                    continue
                for key, (sname, v) in series.items():
                    later = second[fname][2].get(key)
                    self.assertIsNotNone(later, "%s%s vanished" % (sname, dict(key)))
                    self.assertGreaterEqual(later[1], v, "counter %s%s went back" % (sname, dict(key)))
            still = []
            for name, labels in MUST_MOVE:
                a, b = value(first, name, labels), value(second, name, labels)
                self.assertIsNotNone(a, "%s%s missing" % (name, labels))
                self.assertIsNotNone(b, "%s%s missing" % (name, labels))
                if not b > a:
                    still.append("%s%s (%s -> %s)" % (name, labels, a, b))
            if not still:
                break
            self.assertLess(time.monotonic(), deadline, "did not move under load: " + ", ".join(still))
        sys.stderr.write("[every counter moved after %d dumps] " % n)

        # the task stats went to the log: a process line, a line per thread name and per module
        err = gw.stderr()
        self.assertRegex(err, r"monitoring: process: cpu [\d.]+%")
        self.assertRegex(err, r"monitoring: thread monitoring +x1: cpu")
        for module in ("event_bus", "uart", "battery", "can", "mqtt", "history", "alerts", "network"):
            self.assertRegex(err, r"monitoring: module %s: " % module)
        cost = value(second, "tinybms_gw_monitoring_collect_seconds", {})
        up = value(second, "tinybms_gw_uptime_seconds", {})
        sys.stderr.write("[collection cost %.1f us per second of uptime, sanitizers on] " % (cost * 1e6 / up))
        self.stop_daemon_cleanly(gw)

    def test_sigusr1_without_dump_file_only_logs(self):
        sim = self.start_sim()
        gw = self.start_daemon(["--uart", sim.link])
        gw.wait_summaries(1, 60)
        gw.proc.send_signal(signal.SIGUSR2)
        gw.wait_log(r"monitoring: module uart: ", 60)
        self.assertNotIn("metrics written", gw.stderr())
        self.stop_daemon_cleanly(gw)

    def test_unwritable_dump_file_is_a_logged_error(self):
        sim = self.start_sim()
        path = os.path.join(self.tmp, "no-such-dir", "metrics.prom")
        gw = self.start_daemon(["--uart", sim.link, "--metrics-dump", path])
        gw.wait_summaries(1, 60)
        gw.proc.send_signal(signal.SIGUSR2)
        gw.wait_log(r"cannot write the metrics to .*no-such-dir", 60)
        self.assertTrue(gw.alive())
        self.stop_daemon_cleanly(gw)


if __name__ == "__main__":
    gwtest.main()
