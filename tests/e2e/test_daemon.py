#!/usr/bin/python3
"""End-to-end tests of the tinybms-gw process itself: command line, start-up without the
device, simulate mode, signals, the data directory, configuration recovery and CLI overrides,
and robustness against a noisy, silent or unplugged BMS (tinybms-sim on a pty)."""
import glob
import json
import os
import re
import signal
import sqlite3
import stat
import sys
import time
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gwtest  # noqa: E402
from gwtest import GatewayTestCase, run_gw, wait_for  # noqa: E402


def child_pids(pid):
    out = []
    for path in glob.glob("/proc/%d/task/*/children" % pid):
        out += [int(x) for x in gwtest.read_text(path).split()]
    return sorted(set(out))


def pid_running(pid):
    """True while pid exists and is not a zombie."""
    stat_text = gwtest.read_text("/proc/%d/stat" % pid)
    if not stat_text:
        return False
    return stat_text.rsplit(")", 1)[1].split()[0] != "Z"


FULL_SUMMARY_RE = re.compile(
    r"^\d\d:\d\d:\d\d bat0 +(?P<v>[\d.]+) V +(?P<i>-?[\d.]+) A +(?P<p>-?[\d.]+) W  SOC +(?P<soc>[\d.]+)% "
    r"SOH (?P<soh>\d+)%  cells (?P<n>\d+): (?P<vmin>[\d.]+) \(#(?P<imin>\d+)\)\.\.(?P<vmax>[\d.]+) "
    r"\(#(?P<imax>\d+)\) V spread (?P<spread>[\d.]+) mV  T (?P<tmin>-?[\d.]+)\.\.(?P<tmax>-?[\d.]+) C  (?P<status>.+)$")


def check_summary_line(tc, line, st):
    """The daemon's own summary line against the simulator's state (frozen model)."""
    m = FULL_SUMMARY_RE.match(line)
    tc.assertIsNotNone(m, "summary line format: %r" % line)
    temps = [t for t in (st["temp_internal_c"], st["temp_ext1_c"], st["temp_ext2_c"]) if t is not None]
    tc.assertAlmostEqual(float(m["v"]), st["pack_v"], delta=0.0051)
    tc.assertAlmostEqual(float(m["i"]), st["current_a"], delta=0.0051)
    tc.assertAlmostEqual(float(m["p"]), st["pack_v"] * st["current_a"], delta=0.051 + 0.01 * abs(st["current_a"]))
    tc.assertAlmostEqual(float(m["soc"]), st["soc_pct"], delta=0.051)
    tc.assertAlmostEqual(float(m["soh"]), st["soh_pct"], delta=0.51)
    tc.assertEqual(int(m["n"]), st["cell_count"])
    tc.assertAlmostEqual(float(m["vmin"]) * 1000, min(st["cells_mv"]), delta=1.0)
    tc.assertAlmostEqual(float(m["vmax"]) * 1000, max(st["cells_mv"]), delta=1.0)
    tc.assertEqual(int(m["imin"]), st["min_cell"])
    tc.assertEqual(int(m["imax"]), st["max_cell"])
    tc.assertAlmostEqual(float(m["spread"]), max(st["cells_mv"]) - min(st["cells_mv"]), delta=0.11)
    tc.assertAlmostEqual(float(m["tmin"]), min(temps), delta=0.051)
    tc.assertAlmostEqual(float(m["tmax"]), max(temps), delta=0.051)
    want = "charging" if st["current_a"] > 0.5 else "discharging" if st["current_a"] < -0.5 else "idle"
    tc.assertEqual(m["status"], want)


class CommandLine(GatewayTestCase):
    def test_help_and_version_exit_0(self):
        r = run_gw(["--help"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"Usage: tinybms-gw", r.stdout)
        for opt in (b"--uart", b"--simulate", b"--can", b"--mqtt", b"--data-dir", b"--poll-ms"):
            self.assertIn(opt, r.stdout)
        r = run_gw(["-h"])
        self.assertEqual(r.returncode, 0)
        r = run_gw(["--version"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout.decode(), r"^tinybms-gw \d+\.\d+\.\d+\n$")
        self.assertEqual(run_gw(["-V"]).returncode, 0)

    def test_bad_flags_exit_2_with_a_message(self):
        cases = [
            (["--no-such-option"], rb"no-such-option"),
            (["--poll-ms", "5"], rb"--poll-ms needs 100\.\.10000, got '5'"),
            (["--poll-ms", "12x"], rb"--poll-ms needs 100\.\.10000"),
            (["--poll-ms", "20000"], rb"--poll-ms needs"),
            (["--simulate", "stray"], rb"unexpected argument 'stray'"),
            (["--uart"], rb"requires an argument"),
        ]
        for args, message in cases:
            with self.subTest(args=args):
                r = run_gw(["--data-dir", self.data_dir] + args)
                self.assertEqual(r.returncode, 2, "args %r: stderr %r" % (args, r.stderr))
                self.assertRegex(r.stderr, message)
        # Nothing was started, so nothing was created.
        self.assertFalse(os.path.exists(os.path.join(self.data_dir, "config.json")))

    def test_uart_and_simulate_are_refused_together(self):
        r = run_gw(["--uart", "/dev/null", "--simulate", "--data-dir", self.data_dir])
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"--uart and --simulate exclude each other", r.stderr)

    def test_mqtt_uri_with_credentials_is_refused(self):
        # Credentials in a URI would be visible to every user in `ps`: a start failure, exit 1.
        r = run_gw(["--uart", os.path.join(self.tmp, "bms"), "--mqtt", "mqtt://u:p@127.0.0.1:1",
                    "--data-dir", self.data_dir])
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"not in the URI", r.stderr)


class Lifecycle(GatewayTestCase):
    def test_missing_device_then_simulator_appears(self):
        link = os.path.join(self.tmp, "bms")
        gw = self.start_daemon(["--uart", link, "--poll-ms", "200"])
        gw.wait_log(r"cannot open %s" % link, 30)
        gw.wait_log(r"running \(data in", 30)
        self.assertTrue(gw.alive())
        self.assertEqual(gw.summary_lines(), [])
        # The device appears later (USB adapter plugged in): picked up without a restart.
        sim = self.start_sim(["--speed", "0"], link=link)
        gw.wait_log(r"opened %s" % link, 60)
        gw.wait_summaries(3, 60)
        st = sim.state()
        self.assertGreater(st["replies"], 0)
        check_summary_line(self, gw.summary_lines()[-1], st)
        self.stop_daemon_cleanly(gw)

    def test_simulate_mode_prints_samples_and_sigint_stops_cleanly(self):
        gw = self.start_daemon(["--simulate", "--sim-arg=--scenario", "--sim-arg=discharge", "--poll-ms", "200"])
        gw.wait_summaries(3, 60)
        lines = gw.summary_lines()
        # Discharge scenario: 0.2 C of 280 Ah = 56 A out of the battery, negative current.
        m = gwtest.SUMMARY_RE.match(lines[-1])
        self.assertLess(float(m.group(3)), -40.0, lines[-1])
        self.assertIn("discharging", lines[-1])
        children = child_pids(gw.proc.pid)
        self.assertEqual(len(children), 1, "expected the built-in simulator as the only child: %r" % children)
        self.stop_daemon_cleanly(gw, signal.SIGINT)
        self.assertIn("signal 2: stopping", gw.stderr())
        # The simulator went with it (not left running as an orphan).
        wait_for(lambda: not any(pid_running(p) for p in children), 20, "the built-in simulator to exit")

    # `tinybms-gw --help` and README.md give --sim-arg=--scenario=charge as the way to pass
    # options to the simulator: the simulator takes --option=value.
    def test_simulate_with_sim_arg_in_the_documented_equals_form(self):
        gw = self.start_daemon(["--simulate", "--sim-arg=--scenario=discharge", "--poll-ms", "200"])
        gw.wait_summaries(2, 60)
        self.assertIn("discharging", gw.summary_lines()[-1])
        self.stop_daemon_cleanly(gw)

    def test_ctrl_c_to_the_process_group_in_simulate_mode(self):
        # A terminal's Ctrl-C reaches the daemon and its simulator at once (`make run`).
        gw = self.start_daemon(["--simulate", "--poll-ms", "200"], new_session=True)
        gw.wait_summaries(2, 60)
        children = child_pids(gw.proc.pid)
        os.killpg(gw.proc.pid, signal.SIGINT)
        self.stop_daemon_cleanly(gw, None)  # already signalled: waits and checks
        self.assertIn("signal 2: stopping", gw.stderr())
        wait_for(lambda: not any(pid_running(p) for p in children), 20, "the built-in simulator to exit")

    # SIGHUP (systemd ExecReload, `kill -HUP`) reloads config.json: a valid edit applies live, an
    # invalid one is refused with the running configuration kept; the daemon never dies of it.
    def test_sighup_reloads_the_configuration(self):
        sim = self.start_sim(["--speed", "0"])
        gw = self.start_daemon(["--uart", sim.link, "--poll-ms", "200"])
        gw.wait_summaries(2, 60)
        path = os.path.join(self.data_dir, "config.json")
        with open(path) as f:
            doc = json.load(f)
        doc["history"]["period_s"] = 2  # (bms.poll_interval_ms would be hidden by --poll-ms)
        with open(path, "w") as f:
            json.dump(doc, f)
        gw.proc.send_signal(signal.SIGHUP)
        gw.wait_log(r"configuration reloaded from .*history\.period_s", 30)
        with open(path, "w") as f:
            f.write('{"bms": {"poll_interval_ms": 5}}')
        gw.proc.send_signal(signal.SIGHUP)
        gw.wait_log(r"reload of .* refused .*poll_interval_ms", 30)
        n = len(gw.summary_lines())
        gw.wait_summaries(n + 2, 60)  # still running and polling
        self.stop_daemon_cleanly(gw)

    # The built-in simulator follows its daemon (--exit-on-eof): a SIGKILL, crash or OOM kill of
    # the daemon must not leave it running.
    def test_simulator_does_not_outlive_a_killed_daemon(self):
        gw = self.start_daemon(["--simulate", "-q"])
        pid = int(gw.wait_log(r"TinyBMS simulator \(pid (\d+)\)", 60).group(1))
        gw.wait_log(r"opened", 60)
        try:
            gw.stop(signal.SIGKILL)
            wait_for(lambda: not pid_running(pid), 10, "the orphaned simulator (pid %d) to exit" % pid)
        finally:
            if pid_running(pid):  # our own test's leftover: end it by its pid
                os.kill(pid, signal.SIGTERM)
                try:
                    wait_for(lambda: not pid_running(pid), 10, "simulator %d to stop" % pid)
                except AssertionError:
                    os.kill(pid, signal.SIGKILL)

    def test_sigterm_stops_cleanly_and_data_dir_holds_the_stores(self):
        sim = self.start_sim(["--speed", "0", "--current", "30"])
        gw = self.start_daemon(["--uart", os.path.join(self.tmp, "bms"), "--poll-ms", "200"])
        gw.wait_summaries(3, 60)
        # history.period_s is 5 s: wait for a row to be due before stopping (the stop flushes).
        gw.wait_summaries(30, 90)
        st = sim.state()
        check_summary_line(self, gw.summary_lines()[-1], st)
        self.stop_daemon_cleanly(gw, signal.SIGTERM)
        self.assertIn("signal 15: stopping", gw.stderr())

        cfg = os.path.join(self.data_dir, "config.json")
        mode = stat.S_IMODE(os.stat(cfg).st_mode)
        self.assertEqual(mode, 0o600, "config.json mode %o" % mode)
        with open(cfg) as f:
            doc = json.load(f)
        self.assertEqual(doc["schema_version"], 1)
        for name in ("history.db", "alerts.db"):
            self.assertTrue(os.path.isfile(os.path.join(self.data_dir, name)), name)
        db = sqlite3.connect(os.path.join(self.data_dir, "history.db"))
        try:
            rows = db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
            last = db.execute("SELECT ts_ms, battery_id, voltage, current, soc, cell_min_mv, cell_max_mv "
                              "FROM samples WHERE battery_id = 0 ORDER BY ts_ms DESC LIMIT 1").fetchone()
        finally:
            db.close()
        self.assertGreater(rows, 0, "no sample recorded in history.db")
        ts_ms, battery, volts, amps, soc, cmin, cmax = last
        self.assertLess(abs(ts_ms / 1000.0 - time.time()), 300)
        self.assertEqual(battery, 0)
        self.assertAlmostEqual(volts, st["pack_v"], delta=0.01)
        self.assertAlmostEqual(amps, 30.0, delta=0.01)
        self.assertAlmostEqual(soc, st["soc_pct"], delta=0.1)
        self.assertAlmostEqual(cmin, min(st["cells_mv"]), delta=1.0)
        self.assertAlmostEqual(cmax, max(st["cells_mv"]), delta=1.0)
        db = sqlite3.connect(os.path.join(self.data_dir, "alerts.db"))
        try:
            db.execute("SELECT COUNT(*) FROM alert_history").fetchone()
        finally:
            db.close()

    def test_start_failures_exit_1_with_a_reason(self):
        cases = [
            ([], r"no BMS serial device"),
            (["--uart", os.path.join(self.tmp, "bms"), "--can", "bogus:x"], r"command-line values rejected"),
            (["--uart", os.path.join(self.tmp, "bms"), "--mqtt", "http://127.0.0.1"], r"command-line values rejected"),
        ]
        for args, reason in cases:
            with self.subTest(args=args):
                r = run_gw(args + ["--data-dir", self.data_dir])
                self.assertEqual(r.returncode, 1, r.stderr[-2000:])
                self.assertRegex(r.stderr.decode(), reason)
                for marker in gwtest.SANITIZER_MARKERS:
                    self.assertNotIn(marker.encode(), r.stderr)
        # A bare start fails before it creates or generates anything.
        fresh = os.path.join(self.tmp, "fresh")
        r = run_gw(["--data-dir", fresh])
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"no BMS serial device", r.stderr)
        self.assertFalse(os.path.exists(fresh), "a failed start created its data directory")

    def test_a_second_gateway_on_the_same_data_directory_is_refused(self):
        gw = self.start_daemon(["--simulate"])
        gw.wait_summaries(1, 60)
        r = run_gw(["--simulate", "--data-dir", self.data_dir])
        self.assertEqual(r.returncode, 1)
        self.assertIn(("another tinybms-gw (PID %d)" % gw.proc.pid).encode(), r.stderr)
        self.stop_daemon_cleanly(gw)
        # The lock goes with the process, even killed: the next one starts.
        gw = self.start_daemon(["--simulate"], name="gw2")
        gw.wait_summaries(1, 60)
        gw.proc.kill()
        gw.proc.wait()
        gw = self.start_daemon(["--simulate"], name="gw3")
        gw.wait_summaries(1, 60)
        self.stop_daemon_cleanly(gw)

    def test_uncreatable_data_directory_runs_unsaved_like_a_read_only_one(self):
        gw = self.start_daemon(["--simulate", "--data-dir", "/proc/no/such/dir"], with_data_dir=False)
        gw.wait_summaries(2, 60)
        err = gw.stderr()
        self.assertIn("cannot create data directory /proc/no/such/dir", err)
        self.assertIn("running unsaved", err)
        self.assertRegex(err, r"raised STORAGE_ERROR/config")
        self.stop_daemon_cleanly(gw)

    def test_stops_cleanly_while_the_device_is_missing_or_silent(self):
        gw = self.start_daemon(["--uart", os.path.join(self.tmp, "bms")], name="gw-missing")
        gw.wait_log(r"cannot open", 30)
        self.stop_daemon_cleanly(gw)
        sim = self.start_sim(["--speed", "0"])
        gw = self.start_daemon(["--uart", sim.link, "--poll-ms", "10000"], name="gw-silent")
        gw.wait_summaries(1, 60)
        sim.cmd("silence on")
        requests = sim.state()["requests"]
        # The poller is now waiting for an answer (or its 10 s period): a signal must not wait it out.
        wait_for(lambda: sim.state()["requests"] > requests, 60, "a request to the silent BMS")
        self.stop_daemon_cleanly(gw)

    def test_quiet_prints_no_samples_but_polls(self):
        sim = self.start_sim(["--speed", "0"])
        gw = self.start_daemon(["--uart", sim.link, "--poll-ms", "200", "-q"])
        gw.wait_log(r"opened", 30)
        replies = sim.state()["replies"]
        wait_for(lambda: sim.state()["replies"] >= replies + 10, 60, "10 more answers to the daemon")
        self.stop_daemon_cleanly(gw)
        self.assertEqual(gw.summary_lines(), [])


class Configuration(GatewayTestCase):
    def _first_run(self, extra=()):
        """Runs the daemon once so it writes its own config.json; returns the document."""
        sim = self.start_sim(["--speed", "0"])
        gw = self.start_daemon(["--uart", sim.link] + list(extra), name="gw-first")
        gw.wait_summaries(1, 60)
        self.stop_daemon_cleanly(gw)
        with open(os.path.join(self.data_dir, "config.json")) as f:
            return json.load(f)

    def test_cli_overrides_are_not_written_to_config_json(self):
        doc = self._first_run(["--poll-ms", "250", "--can", "log:" + os.path.join(self.tmp, "can.log")])
        self.assertEqual(doc["bms"]["poll_interval_ms"], 1000)
        self.assertEqual(doc["bms"]["uart_device"], "")
        self.assertFalse(doc["can"]["enabled"])
        self.assertEqual(doc["can"]["interface"], "")
        gw_log = gwtest.read_text(os.path.join(self.tmp, "gw-first.stderr"))
        self.assertRegex(gw_log, r"every 250 ms")
        self.assertIn("override applied (not saved)", gw_log)

    def test_stored_device_is_used_and_cli_wins_over_it(self):
        sim = self.start_sim(["--speed", "0"])
        self.write_config({"schema_version": 1, "bms": {"uart_device": sim.link}})
        gw = self.start_daemon([], name="gw-stored")
        gw.wait_summaries(2, 60)
        self.stop_daemon_cleanly(gw)
        # A stored device that does not exist, the right one on the command line.
        cfg = os.path.join(self.data_dir, "config.json")
        with open(cfg) as f:
            doc = json.load(f)
        doc["bms"]["uart_device"] = os.path.join(self.tmp, "wrong-device")
        with open(cfg, "w") as f:
            json.dump(doc, f)
        gw = self.start_daemon(["--uart", sim.link], name="gw-cli")
        gw.wait_summaries(2, 60)
        self.assertNotIn("wrong-device", gw.stderr())
        self.stop_daemon_cleanly(gw)
        with open(cfg) as f:
            self.assertEqual(json.load(f)["bms"]["uart_device"], os.path.join(self.tmp, "wrong-device"))

    def test_config_option_puts_the_file_elsewhere(self):
        sim = self.start_sim(["--speed", "0"])
        other = os.path.join(self.tmp, "etc")
        os.makedirs(other)
        cfg = os.path.join(other, "gw.json")
        gw = self.start_daemon(["--uart", sim.link, "--config", cfg])
        gw.wait_summaries(1, 60)
        self.stop_daemon_cleanly(gw)
        self.assertTrue(os.path.isfile(cfg))
        self.assertEqual(stat.S_IMODE(os.stat(cfg).st_mode), 0o600)
        with open(cfg) as f:
            self.assertEqual(json.load(f)["schema_version"], 1)
        self.assertFalse(os.path.exists(os.path.join(self.data_dir, "config.json")))

    def test_missing_config_with_backup_and_nothing_usable(self):
        doc = self._first_run()
        doc["bms"]["poll_interval_ms"] = 800
        cfg = os.path.join(self.data_dir, "config.json")
        with open(cfg + ".bak", "w") as f:
            json.dump(doc, f)
        os.unlink(cfg)
        os.unlink(cfg + ".applied")
        gw = self.start_daemon(["--uart", os.path.join(self.tmp, "bms")], name="gw-nobak")
        gw.wait_log(r"missing but a recovery copy exists", 30)
        gw.wait_log(r"raised STORAGE_ERROR/config", 30)
        gw.wait_log(r"every 800 ms", 30)
        self.stop_daemon_cleanly(gw)
        # Nothing usable: no silent start on the defaults...
        def spoil():
            with open(cfg, "w") as f:
                f.write("not json")
            with open(cfg + ".bak", "w") as f:
                f.write('{"bms": {"poll_interval_ms": 5}}')  # valid JSON, invalid value
            if os.path.exists(cfg + ".applied"):
                os.unlink(cfg + ".applied")
        spoil()
        r = run_gw(["--uart", os.path.join(self.tmp, "bms"), "--data-dir", self.data_dir])
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"refusing to start on the defaults", r.stderr)
        self.assertIn(b"--allow-defaults", r.stderr)
        # ... unless asked: defaults, alert, nothing deleted.
        spoil()
        gw = self.start_daemon(["--uart", os.path.join(self.tmp, "bms"), "--allow-defaults"], name="gw-none")
        gw.wait_log(r"using defaults", 30)
        gw.wait_log(r"raised STORAGE_ERROR/config", 30)
        gw.wait_log(r"every 1000 ms", 30)
        self.assertTrue(gw.alive())
        self.stop_daemon_cleanly(gw)
        self.assertTrue(glob.glob(cfg + ".corrupt-*"))
        with open(cfg + ".bak") as f:
            self.assertIn("poll_interval_ms", f.read())

    def test_corrupt_config_recovers_from_backup_and_raises_storage_alert(self):
        doc = self._first_run()
        # A good backup from a "previous run", recognisable by its poll interval.
        doc["bms"]["poll_interval_ms"] = 700
        bak = os.path.join(self.data_dir, "config.json.bak")
        with open(bak, "w") as f:
            json.dump(doc, f)
        cfg = os.path.join(self.data_dir, "config.json")
        with open(cfg, "w") as f:
            f.write('{"schema_version": 1, "bms": {"poll_interval_ms": ')  # torn write
        os.unlink(cfg + ".applied")  # the last applied copy lost too: the one before it
        gw = self.start_daemon(["--uart", os.path.join(self.tmp, "bms")])
        gw.wait_log(r"recovered from config\.json\.bak", 30)
        gw.wait_log(r"raised STORAGE_ERROR/config", 30)
        gw.wait_log(r"every 700 ms", 30)
        gw.wait_summaries(2, 60)
        self.assertTrue(glob.glob(cfg + ".corrupt-*"), "the unusable file was not kept")
        with open(cfg) as f:
            self.assertEqual(json.load(f)["bms"]["poll_interval_ms"], 700)
        self.assertEqual(stat.S_IMODE(os.stat(cfg).st_mode), 0o600)
        self.stop_daemon_cleanly(gw)
        # The transition is in the alert history too.
        db = sqlite3.connect(os.path.join(self.data_dir, "alerts.db"))
        try:
            rows = db.execute("SELECT event, level FROM alert_history WHERE code = 'STORAGE_ERROR'").fetchall()
            recovered = db.execute("SELECT event, level FROM alert_history WHERE code = 'CONFIG_RECOVERED'").fetchall()
        finally:
            db.close()
        # level is stored as its number (app_events.h: ALERT_LEVEL_ERROR = 2).
        self.assertIn(("raised", 2), rows)
        self.assertIn(("raised", 2), recovered)


class Robustness(GatewayTestCase):
    def test_impossible_and_frozen_samples_are_refused_and_two_packs_run(self):
        # A BMS stand-in answering valid CRCs with impossible values: nothing it says is shown
        # as a reading, the pack turns stale, the log says why (rate-limited).
        sim = self.start_sim(["--speed", "0", "--current", "-10"])
        gw = self.start_daemon(["--uart", sim.link, "--poll-ms", "200"])
        gw.wait_summaries(2, 60)
        good = len(gw.summary_lines())
        sim.cmd("fault impossible pack-negative")
        gw.wait_log(r"battery 0: implausible sample refused \(pack at -53\.00 V", 30)
        wait_for(lambda: "pack 1: stale (last refused sample: pack at -53.00 V" in gw.stdout(), 30,
                 "'pack 1: stale' with the reason on stdout")
        for line in gw.summary_lines():
            self.assertNotIn("-53.00 V", line)
        sim.cmd("fault impossible cell-max")
        gw.wait_log(r"cell 1 at 6\.55\d V", 30)
        sim.cmd("fault none")
        wait_for(lambda: len(gw.summary_lines()) > good + 2, 30, "readings again after the fault")
        # Frozen: the BMS answers, but the same sample over and over (lifetime counter stopped).
        sim.cmd("fault frozen")
        gw.wait_log(r"repeats the same sample .* treated as stale", 40)
        sim.cmd("fault none")
        self.stop_daemon_cleanly(gw)
        # Two simulated packs: one line per pack sample, both online.
        gw = self.start_daemon(["--simulate=2", "--poll-ms", "500"], name="gw2")
        wait_for(lambda: any(l.split()[1] == "bat1" for l in gw.summary_lines())
                 and any(l.split()[1] == "bat0" for l in gw.summary_lines()), 60, "samples of both packs")
        wait_for(lambda: "pack 2: online" in gw.stdout(), 30, "'pack 2: online'")
        self.assertEqual(len(child_pids(gw.proc.pid)), 2, "two simulators")
        self.stop_daemon_cleanly(gw)

    def test_noise_silence_unplug_replug(self):
        # comm_timeout_ms 2000 (>= 2 x the 200 ms poll) so "communication lost" comes quickly.
        self.write_config({"schema_version": 1, "bms": {"comm_timeout_ms": 2000}})
        sim = self.start_sim(["--speed", "0"])
        gw = self.start_daemon(["--uart", sim.link, "--poll-ms", "200"])
        gw.wait_summaries(3, 60)

        # Noise: 5 % of the answer bytes corrupted, so nearly every 117-byte answer fails its CRC
        # (0.95^117 = 0.25 % arrive intact). The daemon must keep polling, report the link lost
        # after comm_timeout_ms and come back by itself once the line is clean.
        log_at = len(gw.stderr())
        requests = sim.state()["requests"]
        sim.cmd("noise 0.05")
        gw.wait_log(r"CRC error|timeout|bad|invalid", 30, start=log_at)
        wait_for(lambda: "communication LOST" in gw.stdout(), 30, "'communication LOST' on stdout (noise)")
        wait_for(lambda: sim.state()["requests"] >= requests + 30, 60, "the daemon polling on through the noise")
        self.assertGreater(sim.state()["corrupted_bytes"], 0)
        self.assertTrue(gw.alive())
        sim.cmd("noise 0")
        wait_for(lambda: "communication restored" in gw.stdout(), 30, "'communication restored' on stdout (noise)")
        gw.wait_summaries(3, 60, after=len(gw.summary_lines()))

        # Silence: lost after comm_timeout_ms, restored when the BMS answers again.
        log_at = len(gw.stderr())
        lost_before = gw.stdout().count("communication LOST")
        restored_before = gw.stdout().count("communication restored")
        sim.cmd("silence on")
        wait_for(lambda: gw.stdout().count("communication LOST") > lost_before, 30, "'communication LOST' on stdout")
        gw.wait_log(r"no valid data for 2 s \(", 30, start=log_at)
        gw.wait_log(r"raised BMS_COMM_LOST", 30, start=log_at)
        sim.cmd("silence off")
        wait_for(lambda: gw.stdout().count("communication restored") > restored_before, 30,
                 "'communication restored' on stdout")
        gw.wait_log(r"cleared BMS_COMM_LOST", 30, start=log_at)
        gw.wait_summaries(3, 60, after=len(gw.summary_lines()))

        # Unplug: the daemon's fd hangs up; it keeps running and reopens the new pty on replug.
        log_at = len(gw.stderr())
        sim.cmd("unplug")
        gw.wait_log(r"closed|cannot open|reopening", 30, start=log_at)
        self.assertTrue(gw.alive())
        before = len(gw.summary_lines())
        sim.cmd("replug")
        gw.wait_log(r"opened %s" % sim.link, 60, start=log_at)
        gw.wait_summaries(5, 60, after=before)
        self.stop_daemon_cleanly(gw)


class WiringLogs(GatewayTestCase):
    """Logs a person can debug wiring with: -v shows the poll cycle, -vv every frame (hex and
    meaning), and a line that stays silent or returns only garbage gets one hint."""

    def test_verbose_levels(self):
        sim = self.start_sim(["--speed", "0"])
        runs = {}
        for name, flags in (("plain", []), ("v", ["-v"]), ("vv", ["-vv"])):
            gw = self.start_daemon(["--uart", sim.link, "--poll-ms", "200"] + flags, name="gw-" + name)
            gw.wait_summaries(3, 60)
            gw.wait_log(r"TinyBMS hw \d+\.\d+ fw", 30)
            self.stop_daemon_cleanly(gw)
            runs[name] = gw.stderr()
        poll = re.compile(r"DEBUG uart_bms: battery 0: poll \d+: live registers read in [\d.]+ ms")
        frame_tx = re.compile(r"DEBUG uart_bms: battery 0: TX 8 bytes AA 03 00 00 00 38 [0-9A-F]{2} [0-9A-F]{2}: \S")
        frame_rx = re.compile(r"DEBUG uart_bms: battery 0: RX 117 bytes AA 03 70( [0-9A-F]{2}){114}: \S")
        self.assertIsNone(poll.search(runs["plain"]), "the poll cycle without -v")
        self.assertIsNotNone(poll.search(runs["v"]), "-v must show the poll cycle")
        self.assertIn("slow read of the version: ok", runs["v"])
        self.assertIsNone(frame_tx.search(runs["v"]), "-v must not show every frame")
        self.assertIsNotNone(frame_tx.search(runs["vv"]), "-vv must show every request")
        self.assertIsNotNone(frame_rx.search(runs["vv"]), "-vv must show every answer in hex")

    def test_silent_line_hint_once(self):
        sim = self.start_sim(["--speed", "0"])
        sim.cmd("silence on")
        gw = self.start_daemon(["--uart", sim.link, "--poll-ms", "200"])
        gw.wait_log(r"not one byte came back\. Check: .*crossed.*common ground.*115200 baud.*registers 342/343", 60)
        # Keeps polling, says it once.
        requests = sim.state()["requests"]
        wait_for(lambda: sim.state()["requests"] >= requests + 20, 60, "20 more requests into the silence")
        self.assertEqual(gw.stderr().count("not one byte came back"), 1)
        sim.cmd("silence off")
        gw.wait_log(r"the TinyBMS answers again after \d+ failed transactions", 60)
        self.stop_daemon_cleanly(gw)

    def test_garbage_line_hint_with_the_first_answers(self):
        sim = self.start_sim(["--speed", "0"])
        sim.cmd("noise 1")
        gw = self.start_daemon(["--uart", sim.link, "--poll-ms", "200"])
        gw.wait_log(r"got bytes back but never a valid TinyBMS frame .*broadcast off", 60)
        gw.wait_log(r"battery 0:   answer 1: \d+ bytes: [0-9A-F]{2}( [0-9A-F]{2})*", 10)
        self.assertNotIn("not one byte came back", gw.stderr())
        self.stop_daemon_cleanly(gw)


class NotifyListener:
    """The systemd end of $NOTIFY_SOCKET: a unix datagram socket; every message received is kept
    with its arrival time (monotonic)."""

    def __init__(self, path):
        import socket
        import threading
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(path)
        self._sock.settimeout(0.2)
        self._lock = threading.Lock()
        self._messages = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        import socket
        while not self._stop:
            try:
                data = self._sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                break
            with self._lock:
                self._messages.append((time.monotonic(), data.decode(errors="replace")))

    def messages(self):
        with self._lock:
            return [m for _, m in self._messages]

    def count(self, prefix):
        return sum(1 for m in self.messages() if m.startswith(prefix))

    def stop(self):
        self._stop = True
        self._thread.join(5)
        self._sock.close()


def thread_id(pid, name):
    """The kernel id of the thread of pid named `name` (pthread_setname_np), or None."""
    for task in glob.glob("/proc/%d/task/*" % pid):
        if gwtest.read_text(os.path.join(task, "comm")).strip() == name:
            return int(os.path.basename(task))
    return None


class Ptrace:
    """Stops ONE thread of another process (PTRACE_SEIZE + PTRACE_INTERRUPT act per thread, unlike
    SIGSTOP which stops them all): a hung BMS poller, without any hook in the gateway."""
    SEIZE, INTERRUPT, DETACH = 0x4206, 0x4207, 17
    WALL = 0x40000000

    def __init__(self, tid):
        import ctypes
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        self.tid = tid
        self.attached = False

    def _call(self, req):
        import ctypes
        if self._libc.ptrace(req, self.tid, None, None) != 0:
            raise OSError(ctypes.get_errno(), "ptrace(%#x, %d)" % (req, self.tid))

    def stop(self):
        self._call(self.SEIZE)
        self.attached = True
        self._call(self.INTERRUPT)
        os.waitpid(self.tid, self.WALL)  # the thread is in its ptrace stop now

    def resume(self):
        if self.attached:
            self._call(self.DETACH)
            self.attached = False


class SystemdWatchdog(GatewayTestCase):
    """Type=notify with WatchdogSec: READY=1 once the first sample is in (or the BMS declared
    absent), WATCHDOG=1 while the BMS poller and the CAN scheduler run, none while the poller is
    hung, and STOPPING=1 at the end. The notify socket is this test's own datagram socket."""
    WATCHDOG_USEC = 6000000  # pings every 2 s, a thread 2 s late past its deadline is hung

    def start_notified(self, args, name="gw"):
        listener = NotifyListener(os.path.join(self.tmp, name + ".notify"))
        self.addCleanup(listener.stop)
        env = {"NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": str(self.WATCHDOG_USEC)}
        gw = self.track(gwtest.Daemon(self.tmp, list(args) + ["--data-dir", self.data_dir], name, env=env))
        return gw, listener

    def test_ready_pings_and_a_hung_poller_stops_them(self):
        sim = self.start_sim(["--speed", "0"])
        log = os.path.join(self.tmp, "frames.log")
        gw, nl = self.start_notified(["--uart", sim.link, "--can", "log:" + log, "--poll-ms", "200", "-v"])
        wait_for(lambda: nl.count("READY=1"), 60, "READY=1")
        ready = [m for m in nl.messages() if m.startswith("READY=1")]
        self.assertEqual(len(ready), 1)
        self.assertIn("STATUS=running: first sample of every pack", ready[0])
        gw.wait_summaries(1, 30)
        wait_for(lambda: nl.count("WATCHDOG=1") >= 3, 60, "3 x WATCHDOG=1")
        self.assertNotIn("past its deadline (hung?)", gw.stderr())

        # The BMS poller thread hangs (stopped by ptrace, the rest of the process runs on).
        tid = thread_id(gw.proc.pid, "bms-poll0")
        self.assertIsNotNone(tid, "no thread named bms-poll0")
        hang = Ptrace(tid)
        try:
            hang.stop()
        except OSError as e:
            self.skipTest("ptrace not permitted here: %s" % e)
        try:
            log_at = len(gw.stderr())
            gw.wait_log(r"(bms-poll0|can-tx) is \d+ ms past its deadline \(hung\?\): no keep-alive to systemd", 30,
                        start=log_at)
            pings = nl.count("WATCHDOG=1")
            # Three ping periods pass (the daemon says so at debug level): not one keep-alive.
            wait_for(lambda: gw.stderr().count("keep-alive withheld:", log_at) >= 3, 30,
                     "three withheld keep-alives")
            self.assertEqual(nl.count("WATCHDOG=1"), pings, "WATCHDOG=1 sent while the poller was hung")
        finally:
            hang.resume()
        gw.wait_log(r"runs again: keep-alives to systemd resumed", 30, start=log_at)
        pings = nl.count("WATCHDOG=1")
        wait_for(lambda: nl.count("WATCHDOG=1") >= pings + 2, 30, "WATCHDOG=1 again")
        self.stop_daemon_cleanly(gw)
        wait_for(lambda: nl.count("STOPPING=1"), 10, "STOPPING=1")

    def test_ready_when_the_bms_is_absent_and_pings_go_on(self):
        # No BMS at all: ready once it is declared absent (communication lost), and the gateway
        # is not "hung": the keep-alives go on (a restart would not bring the BMS back).
        self.write_config({"schema_version": 1, "bms": {"comm_timeout_ms": 2000}})
        gw, nl = self.start_notified(["--uart", os.path.join(self.tmp, "no-bms"), "--poll-ms", "200"])
        wait_for(lambda: nl.count("READY=1"), 60, "READY=1 without a BMS")
        self.assertIn("STATUS=running: BMS absent or silent", [m for m in nl.messages() if m.startswith("READY=1")][0])
        pings = nl.count("WATCHDOG=1")
        wait_for(lambda: nl.count("WATCHDOG=1") >= pings + 3, 60, "keep-alives while the BMS is absent")
        self.assertNotIn("past its deadline (hung?)", gw.stderr())
        self.stop_daemon_cleanly(gw)

    def test_children_do_not_inherit_the_notify_socket(self):
        gw, nl = self.start_notified(["--simulate", "--poll-ms", "200"])
        wait_for(lambda: nl.count("READY=1"), 60, "READY=1 in simulate mode")
        kids = child_pids(gw.proc.pid)
        self.assertTrue(kids)
        for pid in kids:
            with open("/proc/%d/environ" % pid, "rb") as f:
                environ = f.read().split(b"\0")
            self.assertFalse([e for e in environ if e.startswith((b"NOTIFY_SOCKET=", b"WATCHDOG_USEC="))])
        self.stop_daemon_cleanly(gw)


if __name__ == "__main__":
    gwtest.main()
