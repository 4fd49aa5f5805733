#!/usr/bin/python3
"""End-to-end: tinybms-sim -> tinybms-gw -> slcan on a socat pty pair -> python-can (the GX peer,
tests/integration/can_peer.py, decoding the Victron frames with its own code). Periods, values
against the frozen simulator, the stale-data safety (0x351 withheld while the BMS is silent) and
the candump log transport read back with python-can."""
import json
import os
import statistics
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gwtest  # noqa: E402
from gwtest import CanPeer, GatewayTestCase, Socat, wait_for  # noqa: E402

LIVE_IDS = (0x351, 0x355, 0x356, 0x35A)
IDENTITY_IDS = (0x35E, 0x35F, 0x370)
ALL_OK_ONLINE = bytes.fromhex("aaaaaa02aaaaaa0a")  # docs/can-frames.md
STALE_TIMEOUT_S = 5.0      # can.stale_timeout_ms default
LIVE_PERIOD_S = 1.0        # can.live_period_ms default
LOAD_ALLOWANCE_S = 1.0     # scheduling on a loaded 2-core machine, pty and python-can latency


def median_period(frames):
    walls = [f["wall"] for f in frames]
    return statistics.median(b - a for a, b in zip(walls, walls[1:]))


class CanSlcan(GatewayTestCase):
    def test_victron_frames_periods_values_and_stale_safety(self):
        socat = self.track(Socat(self.tmp))
        # Frozen model (speed 0): every value the peer decodes must equal the simulator's state.
        # +25 A = charging (positive on the Victron side too).
        sim = self.start_sim(["--speed", "0", "--current", "25"])
        gw = self.start_daemon(["--uart", sim.link, "--can", "slcan:" + socat.a, "--poll-ms", "500"])
        gw.wait_log(r"can_publisher: publishing on slcan:", 60)
        peer = self.track(CanPeer(self.tmp, socat.b))

        first = wait_for(lambda: peer.frames(0x351), 60, "a first 0x351 at the peer")[0]
        t0 = first["wall"]
        # ~25 s of traffic, and at least 3 identity frames of each id (period 10 s).
        wait_for(lambda: all(len(peer.frames(i, after=t0 - 12)) >= 3 for i in IDENTITY_IDS)
                 and peer.frames(0x35A) and peer.frames(0x35A)[-1]["wall"] >= t0 + 25,
                 90, "25 s of frames including 3 of each identity frame")
        st = sim.state()
        window = [f for f in peer.frames() if f["wall"] >= t0 - 12]

        for fid in LIVE_IDS:
            with self.subTest(period=hex(fid)):
                fr = [f for f in window if f["id"] == fid and f["wall"] >= t0]
                self.assertGreaterEqual(len(fr), 20, "0x%03X: %d frames in 25 s" % (fid, len(fr)))
                self.assertAlmostEqual(median_period(fr), 1.0, delta=0.3)
        for fid in IDENTITY_IDS:
            with self.subTest(period=hex(fid)):
                fr = [f for f in window if f["id"] == fid]
                self.assertAlmostEqual(median_period(fr), 10.0, delta=2.0)

        # The GX keep-alives reached the gateway.
        gw.wait_log(r"inverter \(GX\) link present", 30)

        last = {fid: peer.frames(fid)[-1]["decoded"] for fid in (0x351, 0x355, 0x356, 0x373)}
        raw35a = peer.frames(0x35A)[-1]["data"]
        n = st["cell_count"]
        with self.subTest("0x356"):
            self.assertAlmostEqual(last[0x356]["voltage"], st["pack_v"], delta=0.0051 + 1e-9)
            self.assertAlmostEqual(last[0x356]["current"], st["current_a"], delta=0.051)
            self.assertGreater(last[0x356]["current"], 0, "charging must be positive")
            ext = st["temp_ext1_c"] if st["temp_ext1_c"] is not None else st["temp_internal_c"]
            self.assertAlmostEqual(last[0x356]["temperature"], ext, delta=0.051)
        with self.subTest("0x355"):
            self.assertAlmostEqual(last[0x355]["soc"], st["soc_pct"], delta=0.5 + 1e-9)
            self.assertAlmostEqual(last[0x355]["soc_hires"], st["soc_pct"], delta=0.0051)
            self.assertAlmostEqual(last[0x355]["soh"], st["soh_pct"], delta=0.5 + 1e-9)
        with self.subTest("0x373"):
            self.assertAlmostEqual(last[0x373]["min_cell_mv"], min(st["cells_mv"]), delta=1.0)
            self.assertAlmostEqual(last[0x373]["max_cell_mv"], max(st["cells_mv"]), delta=1.0)
            self.assertAlmostEqual(last[0x373]["min_cell_mv"], st["min_cell_mv"], delta=1.0)
            self.assertAlmostEqual(last[0x373]["max_cell_mv"], st["max_cell_mv"], delta=1.0)
        with self.subTest("0x374/0x375 cell ids"):
            self.assertEqual(peer.frames(0x374)[-1]["decoded"]["text"], "C%d" % st["min_cell"])
            self.assertEqual(peer.frames(0x375)[-1]["decoded"]["text"], "C%d" % st["max_cell"])
        with self.subTest("0x373 temperatures, 0x376/0x377 sensor ids"):
            # The external cell sensor when present (the simulator has ext1, no ext2), in kelvin.
            self.assertAlmostEqual(last[0x373]["min_temp_k"], st["temp_ext1_c"] + 273.15, delta=0.51)
            self.assertAlmostEqual(last[0x373]["max_temp_k"], st["temp_ext1_c"] + 273.15, delta=0.51)
            self.assertEqual(peer.frames(0x376)[-1]["decoded"]["text"], "T1")
            self.assertEqual(peer.frames(0x377)[-1]["decoded"]["text"], "T1")
        with self.subTest("identity: names, serial, capacity, modules, energy"):
            def text(fid):
                return peer.frames(fid)[-1]["decoded"]["text"]
            self.assertEqual(text(0x35E), "Enepaq")                      # can.manufacturer default
            self.assertEqual(text(0x370) + text(0x371), "TinyBMS")       # can.battery_name default
            self.assertEqual(text(0x382), "TinyBMS")                     # can.family default
            serial = gw.wait_log(r"serial ([0-9A-F]{24})", 30).group(1)  # the BMS's own, logged
            self.assertEqual(text(0x380) + text(0x381), serial[-16:])
            self.assertEqual(peer.frames(0x35F)[-1]["decoded"]["capacity_ah"], 280)  # simulator default
            self.assertEqual(peer.frames(0x379)[-1]["decoded"]["installed_ah"], 280)
            modules = peer.frames(0x372)[-1]["decoded"]
            self.assertEqual((modules["ok"], modules["blocking_charge"], modules["blocking_discharge"],
                              modules["offline"]), (1, 0, 0, 0))
            energy = peer.frames(0x378)[-1]["decoded"]
            self.assertGreaterEqual(energy["energy_in_wh"], 0)
            self.assertEqual(energy["energy_in_wh"] % 100, 0)
        with self.subTest("0x35A"):
            self.assertEqual(raw35a.hex(), ALL_OK_ONLINE.hex())
        with self.subTest("0x351"):
            self.assertGreater(last[0x351]["cvl"], 0)
            self.assertLessEqual(last[0x351]["cvl"], n * 3.65 + 1e-6)
            self.assertGreaterEqual(last[0x351]["ccl"], 0)
            self.assertGreaterEqual(last[0x351]["dcl"], 0)

        # --- The BMS goes silent: 0x351 must stop within stale timeout + one live period (+ load
        # allowance); everything else goes on, 0x35A reports offline with the general alarm.
        t_silence = time.time()
        sim.cmd("silence on")
        offline = wait_for(lambda: [f for f in peer.frames(0x35A, after=t_silence) if f["decoded"]["offline"]],
                           30, "0x35A reporting the battery offline")[0]
        self.assertEqual((offline["data"][7] >> 2) & 3, 1, "byte 7 system status = offline")
        self.assertEqual(offline["decoded"]["alarms"]["general"], "active")
        # Watch 4 more live periods after the flip.
        wait_for(lambda: len(peer.frames(0x35A, after=offline["wall"])) >= 4, 30, "0x35A frames after the flip")
        t_watch_end = peer.frames(0x35A)[-1]["wall"]
        during = peer.frames(0x351, after=t_silence)
        last_351 = during[-1]["wall"] if during else t_silence
        sys.stderr.write("\n  last 0x351 %.2f s after 'silence on'; 0x35A offline after %.2f s\n"
                         % (last_351 - t_silence, offline["wall"] - t_silence))
        self.assertLessEqual(last_351 - t_silence, STALE_TIMEOUT_S + 2 * LIVE_PERIOD_S + LOAD_ALLOWANCE_S,
                             "0x351 still sent %.1f s after the BMS went silent" % (last_351 - t_silence))
        self.assertEqual([f for f in during if f["wall"] >= offline["wall"]], [],
                         "0x351 sent while 0x35A says offline")
        # The battery stays visible (alarms, module counts), but no stale measurement goes out
        # as if fresh: 0x355/0x356 are withheld with 0x351 (docs/can.md).
        for fid in (0x35A, 0x372):
            got = [f for f in peer.frames(fid, after=offline["wall"]) if f["wall"] <= t_watch_end]
            self.assertGreaterEqual(len(got), 3, "0x%03X stopped while the BMS was silent" % fid)
        for fid in (0x355, 0x356):
            got = [f for f in peer.frames(fid, after=offline["wall"] + LIVE_PERIOD_S) if f["wall"] <= t_watch_end]
            self.assertEqual(got, [], "0x%03X sent with stale values while the BMS was silent" % fid)
        gw.wait_log(r"battery offline: .*withholding 0x351", 10)
        wait_for(lambda: "0x351 withheld" in gw.stderr(), 10, "'0x351 withheld' in the log")

        # --- The BMS answers again: 0x351 resumes, 0x35A back to all-OK online.
        t_on = time.time()
        sim.cmd("silence off")
        wait_for(lambda: peer.frames(0x351, after=t_on), 30, "0x351 again after silence off")
        wait_for(lambda: [f for f in peer.frames(0x35A, after=t_on) if f["data"] == ALL_OK_ONLINE], 30,
                 "0x35A all OK and online again")
        gw.wait_log(r"battery online again .*sending 0x351", 10)

        # --- One cell high (3.62 V, above cutoff - 50 mV = 3.60 V, under the 3.65 V cutoff): the
        # high-voltage warning (not the alarm) is raised and charge control drops CCL to 0 at
        # once (charge_by_cell_v reaches 0 at 3.60 V; decreases are immediate).
        t_cell = time.time()
        sim.cmd("set-cell 1 3620")
        st = sim.state()
        self.assertLess(st["max_cell_mv"], 3650, "the BMS cutoff must not trip in this step")

        def high_cell_seen():
            a = [f for f in peer.frames(0x35A, after=t_cell) if f["decoded"]["warnings"]["high_voltage"] == "active"]
            c = [f for f in peer.frames(0x351, after=t_cell) if f["decoded"]["ccl"] == 0]
            m = [f for f in peer.frames(0x373, after=t_cell) if abs(f["decoded"]["max_cell_mv"] - st["max_cell_mv"]) <= 1]
            return a and c and m and (a[-1], c[-1], m[-1])
        a35a, c351, _ = wait_for(high_cell_seen, 30, "high-voltage warning, CCL 0 and the new max cell")
        self.assertEqual(a35a["decoded"]["alarms"]["high_voltage"], "ok")
        self.assertEqual(a35a["decoded"]["warnings"]["general"], "active")
        self.assertTrue(a35a["decoded"]["online"])
        self.assertLessEqual(c351["decoded"]["cvl"], n * 3.65 + 1e-6)

        peer.stop()
        self.stop_daemon_cleanly(gw)
        self.assertFalse(peer.summary is None, "can_peer.py printed no summary")
        self.assertGreater(peer.summary["keepalives_sent"], 20)

    def test_slcan_adapter_unplugged_and_plugged_back(self):
        socat = self.track(Socat(self.tmp))
        sim = self.start_sim(["--speed", "0"])
        gw = self.start_daemon(["--uart", sim.link, "--can", "slcan:" + socat.a, "--poll-ms", "500"])
        peer = CanPeer(self.tmp, socat.b, name="peer1")
        try:
            wait_for(lambda: len(peer.frames(0x351)) >= 2, 60, "0x351 at the first peer")
        finally:
            peer.stop()
        # The adapter goes away (both pty ends close).
        log_at = len(gw.stderr())
        socat.stop()
        self._children.remove(socat)
        n = len(gw.summary_lines())
        gw.wait_summaries(4, 60, after=n)  # the BMS side goes on
        self.assertTrue(gw.alive())
        # And comes back under the same names: the publisher reopens it by itself.
        socat = self.track(Socat(self.tmp))
        gw.wait_log(r"CAN transport slcan:.* reopened", 90, start=log_at)
        peer = self.track(CanPeer(self.tmp, socat.b, name="peer2"))
        wait_for(lambda: len(peer.frames(0x351)) >= 2 and len(peer.frames(0x356)) >= 2, 60,
                 "0x351 and 0x356 at the peer after the adapter came back")
        peer.stop()
        self.stop_daemon_cleanly(gw)

    def test_slcan_adapter_missing_at_start_is_picked_up_later(self):
        # Like a missing UART: the daemon runs, the BMS side works, and the adapter is used as
        # soon as it appears (USB plugged after boot).
        sim = self.start_sim(["--speed", "0"])
        adapter = os.path.join(self.tmp, "canA")
        gw = self.start_daemon(["--uart", sim.link, "--can", "slcan:" + adapter, "--poll-ms", "500"])
        gw.wait_log(r"CAN transport slcan:.* unavailable .*starting anyway", 60)
        gw.wait_summaries(2, 60)
        socat = self.track(Socat(self.tmp))
        gw.wait_log(r"CAN transport slcan:.* reopened", 120)
        peer = self.track(CanPeer(self.tmp, socat.b, name="late-peer"))
        wait_for(lambda: len(peer.frames(0x351)) >= 2, 60, "0x351 at the peer once the adapter appeared")
        peer.stop()
        self.stop_daemon_cleanly(gw)


class CanLog(GatewayTestCase):
    def test_candump_log_reads_back_with_python_can(self):
        import warnings
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # python-can 4.1 on 3.11
        import can  # Debian python3-can (run with /usr/bin/python3)
        log = os.path.join(self.tmp, "frames.log")
        sim = self.start_sim(["--speed", "0", "--current", "-12.5"])
        gw = self.start_daemon(["--uart", sim.link, "--can", "log:" + log, "--poll-ms", "500"])

        def enough():
            text = gwtest.read_text(log)
            return text.count(" can0 351#") >= 3 and text.count(" can0 35E#") >= 1
        wait_for(enough, 60, "3 x 0x351 and a 0x35E in the log file")
        self.stop_daemon_cleanly(gw)
        st = sim.state()

        msgs = list(can.CanutilsLogReader(log))
        self.assertGreater(len(msgs), 10)
        ids = [m.arbitration_id for m in msgs]
        self.assertGreaterEqual(ids.count(0x351), 3)
        for fid in (0x355, 0x356, 0x35A, 0x35E):
            self.assertIn(fid, ids)
        stamps = [m.timestamp for m in msgs]
        self.assertEqual(stamps, sorted(stamps), "timestamps go backwards")
        self.assertLess(abs(stamps[-1] - time.time()), 120, "timestamps are not wall-clock seconds")
        self.assertTrue(all(m.channel == "can0" for m in msgs))
        self.assertTrue(all(not m.is_extended_id for m in msgs))
        m356 = [m for m in msgs if m.arbitration_id == 0x356][-1]
        v = int.from_bytes(m356.data[0:2], "little", signed=True) * 0.01
        i = int.from_bytes(m356.data[2:4], "little", signed=True) * 0.1
        self.assertAlmostEqual(v, st["pack_v"], delta=0.0051 + 1e-9)
        self.assertAlmostEqual(i, -12.5, delta=0.051)
        m351 = [m for m in msgs if m.arbitration_id == 0x351][-1]
        cvl = int.from_bytes(m351.data[0:2], "little") * 0.1
        self.assertGreater(cvl, 0)
        self.assertLessEqual(cvl, st["cell_count"] * 3.65 + 1e-6)

    def test_a_normal_start_raises_no_alarm_and_sends_no_zero_identity(self):
        # The BMS answers from the start: every 0x35A the GX ever gets says online with the
        # general alarm OK (none says "offline" for the moment before the first sample), and
        # the identity read from the BMS is never sent as zeros: 0x35F carries firmware 90.0
        # (the simulator's public version 90; not "90.68" from the internal version 580).
        import warnings
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        import can
        log = os.path.join(self.tmp, "frames.log")
        sim = self.start_sim(["--speed", "0"])
        gw = self.start_daemon(["--uart", sim.link, "--can", "log:" + log, "--poll-ms", "500"])
        wait_for(lambda: gwtest.read_text(log).count(" can0 351#") >= 3 and " can0 35F#" in gwtest.read_text(log),
                 60, "3 x 0x351 and a 0x35F in the log")
        gw.wait_log(r"identity for the GX \(battery 0\): firmware 90\.0 in 0x35F", 30)
        self.stop_daemon_cleanly(gw)
        msgs = list(can.CanutilsLogReader(log))
        status = [m for m in msgs if m.arbitration_id == 0x35A]
        self.assertTrue(status)
        for m in status:
            self.assertEqual((m.data[7] >> 2) & 3, 2, "0x35A not online: %s" % bytes(m.data).hex())
            self.assertEqual(m.data[0] & 3, 2, "general alarm in 0x35A: %s" % bytes(m.data).hex())
        first_351 = next(i for i, m in enumerate(msgs) if m.arbitration_id == 0x351)
        first_35a = next(i for i, m in enumerate(msgs) if m.arbitration_id == 0x35A)
        self.assertGreater(first_35a, first_351, "0x35A before the first 0x351: status before any sample")
        for m in msgs:
            if m.arbitration_id == 0x372:
                self.assertEqual(int.from_bytes(m.data[6:8], "little"), 0, "a module reported offline")
            if m.arbitration_id == 0x35F:
                self.assertEqual((m.data[2], m.data[3]), (90, 0), "0x35F firmware %s" % bytes(m.data).hex())
            if m.arbitration_id in (0x380, 0x381):
                self.assertNotEqual(bytes(m.data), bytes(8), "empty serial frame 0x%03X" % m.arbitration_id)

    def test_no_limits_and_no_measurements_before_the_first_sample(self):
        import warnings
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        import can
        log = os.path.join(self.tmp, "frames.log")
        link = os.path.join(self.tmp, "bms")  # no BMS yet
        gw = self.start_daemon(["--uart", link, "--can", "log:" + log, "--poll-ms", "500"])
        wait_for(lambda: gwtest.read_text(log).count(" can0 35A#") >= 4, 60, "4 x 0x35A without a BMS")
        before = list(can.CanutilsLogReader(log))
        ids = {m.arbitration_id for m in before}
        for fid in (0x351, 0x355, 0x356, 0x373, 0x374, 0x375, 0x376, 0x377):
            self.assertNotIn(fid, ids, "0x%03X sent before any BMS sample" % fid)
        self.assertIn(0x35E, ids)  # identity frames go on
        for m in before:
            if m.arbitration_id == 0x35A:
                self.assertEqual((m.data[7] >> 2) & 3, 1, "0x35A must say offline: %s" % bytes(m.data).hex())
                self.assertEqual(m.data[0] & 3, 1, "general alarm must be active while offline")
        # The BMS appears: limits and measurements start.
        self.start_sim(["--speed", "0"], link=link)
        wait_for(lambda: gwtest.read_text(log).count(" can0 351#") >= 2, 90, "0x351 once the BMS answers")
        self.stop_daemon_cleanly(gw)
        ids = {m.arbitration_id for m in can.CanutilsLogReader(log)}
        for fid in (0x355, 0x356, 0x373):
            self.assertIn(fid, ids)


class CanSpecErrors(GatewayTestCase):
    """A CAN spec that cannot work fails the start at once with the reason, instead of being
    taken for an adapter to wait for (or for a kernel without CAN)."""

    def test_unknown_word_is_not_understood_and_the_forms_are_shown(self):
        r = gwtest.run_gw(["--uart", os.path.join(self.tmp, "bms"), "--can", "nonsense",
                           "--data-dir", self.data_dir])
        err = r.stderr.decode(errors="replace")
        self.assertEqual(r.returncode, 1, err)
        self.assertIn("CAN spec 'nonsense' not understood", err)
        for form in ("can0", "socketcan:IFACE", "slcan:/dev/ttyACM0", "log:FILE"):
            self.assertIn(form, err)
        self.assertNotIn("no CAN sockets", err)

    def test_interface_that_is_not_can_is_refused(self):
        r = gwtest.run_gw(["--uart", os.path.join(self.tmp, "bms"), "--can", "lo", "--data-dir", self.data_dir])
        err = r.stderr.decode(errors="replace")
        self.assertEqual(r.returncode, 1, err)
        self.assertIn("lo is a network interface but not a CAN one", err)

    def test_log_in_a_missing_directory_fails_at_start(self):
        missing = os.path.join(self.tmp, "no", "such", "dir")
        r = gwtest.run_gw(["--uart", os.path.join(self.tmp, "bms"), "--can", "log:" + missing + "/frames.log",
                           "--data-dir", self.data_dir])
        err = r.stderr.decode(errors="replace")
        self.assertEqual(r.returncode, 1, err)
        self.assertIn("the directory '%s' does not exist" % missing, err)
        self.assertNotIn("retrying", err)


class EnergyCounters(GatewayTestCase):
    def test_energy_counters_saved_at_stop_restored_at_start_and_corrupt_file_alerts(self):
        log = os.path.join(self.tmp, "frames.log")
        sim = self.start_sim(["--speed", "0", "--current", "-12.5"])
        args = ["--uart", sim.link, "--can", "log:" + log, "--poll-ms", "500"]
        t_start = time.monotonic()
        gw = self.start_daemon(args, name="gw1")
        gw.wait_log(r"no .*energy\.json yet: energy counters start at 0", 60)
        gw.wait_summaries(8, 60)
        self.stop_daemon_cleanly(gw)
        elapsed = time.monotonic() - t_start
        energy = os.path.join(self.data_dir, "energy.json")
        with open(energy) as f:
            doc = json.load(f)
        # Discharging only: nothing charged; the discharged energy is V x I over (at most) the
        # time the daemon ran.
        power_w = 52.9 * 12.5
        self.assertEqual(doc["energy_in_wh"], 0)
        self.assertGreater(doc["energy_out_wh"], 0)
        self.assertLessEqual(doc["energy_out_wh"], power_w * (elapsed + 1) / 3600.0 * 1.05)

        gw = self.start_daemon(args, name="gw2")
        m = gw.wait_log(r"energy counters restored from .*: in ([\d.]+) Wh, out ([\d.]+) Wh", 60)
        self.assertAlmostEqual(float(m.group(2)), doc["energy_out_wh"], delta=0.051)
        gw.wait_summaries(2, 60)
        self.stop_daemon_cleanly(gw)
        with open(energy) as f:
            self.assertGreater(json.load(f)["energy_out_wh"], doc["energy_out_wh"])

        # A damaged file: kept aside, counting restarts at 0, storage alert raised.
        with open(energy, "w") as f:
            f.write('{"version":1,"energy_in_wh":')
        gw = self.start_daemon(args, name="gw3")
        gw.wait_log(r"energy counters in .* unreadable .*starting from 0", 60)
        gw.wait_log(r"raised STORAGE_ERROR/\w+", 30)
        gw.wait_summaries(2, 60)
        self.assertTrue(os.path.exists(energy + ".corrupt"))
        self.stop_daemon_cleanly(gw)


if __name__ == "__main__":
    gwtest.main()
