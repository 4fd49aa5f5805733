#!/usr/bin/python3
"""Fault injection on the BMS's serial line, against the real daemon and the simulator on a pty,
with a GX on CAN (python-can over a socat pty pair, tests/integration/can_peer.py).

One daemon lives through every line fault in turn (corrupted bytes, garbage bursts, replies split
and delayed, a BMS answering only NACKs, a silent BMS, a BMS coming back with impossible values,
a frozen sample, impossible values, the serial device removed and re-created). After each: the
daemon is alive, the counters of /api/metrics moved as the fault says, data flows again,
BMS_COMM_LOST was raised and cleared where the link was lost, and the GX never received a 0x351
(charge limits) while the data was stale or implausible."""
import os
import re
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib  # noqa: E402
from faultlib import FaultCase, figure, wait_for  # noqa: E402
from gwtest import CanPeer, Socat  # noqa: E402

POLL_S = 0.2
# After a fault starts, the limits may still go out for: the battery's stale_after_ms (2 s) or
# frozen_after_ms (3 s), one CAN live period (1 s), and scheduling on a loaded 2-core machine.
STALE_ALLOWANCE_S = 2.0 + 1.0 + 1.5
FROZEN_ALLOWANCE_S = 3.0 + 1.0 + 1.5
CVL_MAX = 16 * 3.65


class UartFaults(FaultCase):
    def setUp(self):
        super().setUp()
        self.windows = []  # (name, start wall, end wall): no 0x351 may arrive inside

    def no_limits_window(self, name, start, end):
        self.windows.append((name, start, end))

    def recover(self, gw, what):
        """Waits for the first sample after a fault ended; prints the time it took."""
        took = self.wait_samples(gw, 1, timeout=30, what="a sample after %s" % what)
        figure("recovery_s.%s" % what, "%.2f" % took)
        self.assert_alive(gw)
        return took

    def test_line_faults(self):
        socat = self.track(Socat(self.tmp))
        sim = self.start_sim(["--speed", "0", "--current", "20", "--no-sleep"])
        gw = self.start_gateway([sim.link], args=["--can", "slcan:" + socat.a, "--poll-ms", str(int(POLL_S * 1000))])
        peer = self.track(CanPeer(self.tmp, socat.b))
        wait_for(lambda: len(peer.frames(0x351)) >= 2, 60, "0x351 at the GX")
        self.wait_samples(gw, 5)
        # Each phase: the fault, its end, then one fresh read of the counters (the next phase's
        # "before"): the polls between the end and the read are healthy ones.
        m = self.uart()
        self.assertEqual(m["timeouts"], 0)

        # --- 1 % of the answer bytes corrupted: CRC errors counted, data keeps flowing (an
        # answer of 117 bytes is hit 2 times in 3, its resend too about half the time).
        sim.cmd("noise 0.01")
        self.wait_samples(gw, 15, timeout=90, what="15 samples through 1 % noise")
        corrupted = sim.state()["corrupted_bytes"]
        sim.cmd("noise 0")
        self.recover(gw, "noise")
        before, m = m, self.uart()
        self.assertGreater(corrupted, 0)
        self.assertGreater(m["crc_errors"], before["crc_errors"], "corruption not counted")
        self.assertGreater(m["resends"], before["resends"], "a corrupted answer is resent")
        figure("noise_1pct.polls", m["polls"] - before["polls"])
        figure("noise_1pct.samples", m["samples"] - before["samples"])
        figure("noise_1pct.crc_errors", m["crc_errors"] - before["crc_errors"])
        figure("noise_1pct.corrupted_bytes", corrupted)

        # --- Garbage bursts before the answers: skipped and counted, every answer still found.
        sent = sim.state()["garbage_bytes"]
        bursts = [64 + 40 * i for i in range(8)]
        for i, n in enumerate(bursts):
            sim.cmd("garbage %d" % n)
            self.wait_samples(gw, 1, what="a sample after garbage burst %d" % i)
        wait_for(lambda: sim.state()["garbage_bytes"] - sent == sum(bursts), 20, "the simulator to send every burst")
        before, m = m, self.uart()
        self.assertGreater(m["garbage_bytes"], before["garbage_bytes"], "garbage not counted")
        self.assertEqual(m["timeouts"], before["timeouts"], "a garbage burst cost an answer")
        figure("garbage.bytes_sent", sum(bursts))
        figure("garbage.bytes_counted", m["garbage_bytes"] - before["garbage_bytes"])

        # --- Replies split, the tail 30 ms late (more than the 15 ms idle gap, as a USB
        # adapter's 16 ms latency timer on a loaded host): no answer lost (fault 3).
        split_before = sim.state()["split_replies"]
        sim.cmd("split 30")
        self.wait_samples(gw, 15, what="15 samples with split replies")
        sim.cmd("split 0")
        before, m = m, self.uart()
        self.assertGreaterEqual(sim.state()["split_replies"] - split_before, 15)
        self.assertEqual(m["timeouts"], before["timeouts"], "a split reply timed out")
        self.assertEqual(m["resends"], before["resends"], "a split reply needed a resend")
        # (the two counters are copied one after the other: one poll may be in flight)
        self.assertGreaterEqual(m["samples"] - before["samples"], m["polls"] - before["polls"] - 1,
                                "split replies lost samples")
        figure("split_30ms.polls", m["polls"] - before["polls"])
        figure("split_30ms.samples", m["samples"] - before["samples"])

        # --- A BMS answering only NACKs: counted, the link declared bad (BMS_COMM_LOST), no
        # switch to the old-firmware reading (fault 1); back to normal when it answers.
        log_at = len(gw.stderr())
        t0 = time.time()
        sim.cmd("nack on")
        lost = wait_for(lambda: self.active("BMS_COMM_LOST", 0), 30, "BMS_COMM_LOST while the BMS refuses everything")
        self.assertIn("negative acknowledge", lost[0]["message"])
        wait_for(lambda: time.time() >= t0 + STALE_ALLOWANCE_S + 2, 30, "two seconds of refusals")
        t1 = time.time()
        sim.cmd("nack off")
        self.no_limits_window("nack_only", t0 + STALE_ALLOWANCE_S, t1)
        self.recover(gw, "nack_only")
        wait_for(lambda: not self.active("BMS_COMM_LOST", 0), 30, "BMS_COMM_LOST cleared")
        before, m = m, self.uart()
        self.assertGreater(m["nacks"], before["nacks"])
        log = gw.stderr()[log_at:]
        self.assertIn("refuses every live read", log)
        self.assertNotIn("older firmware", log, "a NACKing BMS taken for old firmware")
        self.assertNotIn("register by register", log)
        figure("nack_only.nacks", m["nacks"] - before["nacks"])

        # --- A silent BMS (the 40 s of the issue, shortened by bms.comm_timeout_ms = 3 s):
        # timeouts counted, BMS_COMM_LOST raised; it comes back with impossible values (valid
        # CRC): not restored by those (fault 4); restored by a proving sample.
        raised_before = len(self.history("BMS_COMM_LOST", "raised"))
        t0 = time.time()
        sim.cmd("silence on")
        wait_for(lambda: len(self.history("BMS_COMM_LOST", "raised")) > raised_before, 30,
                 "BMS_COMM_LOST raised for the silent BMS")
        figure("silent.comm_lost_after_s", "%.2f" % (time.time() - t0))
        sim.cmd("fault impossible cell-max")
        base = self.uart()["samples"]
        sim.cmd("silence off")
        self.wait_uart("samples", base + 10)
        self.assertTrue(self.active("BMS_COMM_LOST", 0), "an impossible sample restored the link")
        gw.wait_log(r"sample is impossible .*communication not restored", 10)
        t1 = time.time()
        sim.cmd("fault none")
        self.no_limits_window("silent_then_impossible", t0 + STALE_ALLOWANCE_S, t1)
        self.recover(gw, "silence")
        wait_for(lambda: not self.active("BMS_COMM_LOST", 0), 30, "BMS_COMM_LOST cleared by a proving sample")
        wait_for(lambda: peer.frames(0x351, after=t1), 30, "0x351 again after the silence")
        before, m = m, self.uart()
        self.assertGreater(m["timeouts"], before["timeouts"])
        self.assertEqual(m["comm_ok"], 1)

        # --- A frozen BMS (answers, but the same sample, lifetime counter included): stale.
        frozen_before = self.battery()["samples_frozen"]
        t0 = time.time()
        sim.cmd("fault frozen")
        wait_for(lambda: time.time() >= t0 + FROZEN_ALLOWANCE_S + 2, 30, "two seconds frozen")
        t1 = time.time()
        sim.cmd("fault none")
        self.no_limits_window("frozen", t0 + FROZEN_ALLOWANCE_S, t1)
        wait_for(lambda: peer.frames(0x351, after=t1), 30, "0x351 again after the frozen BMS")
        self.assertGreater(self.battery(fresh=True)["samples_frozen"], frozen_before, "frozen samples not detected")

        # --- Impossible values on a working link: refused, no limits on them.
        bad_before = self.battery()["samples_implausible"]
        t0 = time.time()
        sim.cmd("fault impossible pack-huge")
        wait_for(lambda: time.time() >= t0 + STALE_ALLOWANCE_S + 2, 30, "two seconds of impossible values")
        t1 = time.time()
        sim.cmd("fault none")
        self.no_limits_window("impossible", t0 + STALE_ALLOWANCE_S, t1)
        wait_for(lambda: peer.frames(0x351, after=t1), 30, "0x351 again after the impossible values")
        self.assertGreaterEqual(self.battery(fresh=True)["samples_implausible"], bad_before + 5)

        # --- The serial device removed, then re-created (a new pty behind the same link):
        # reopened with backoff (fault 2: not on every poll), counted, data flows again.
        log_at = len(gw.stderr())
        t0 = time.time()
        sim.cmd("unplug")
        gw.wait_log(r"serial device .* closed", 30, start=log_at)
        wait_for(lambda: time.time() >= t0 + 6, 30, "six seconds unplugged")
        closed_log = gw.stderr()[log_at:]
        sim.cmd("replug")
        self.recover(gw, "replug")
        t1 = time.time()
        self.no_limits_window("unplugged", t0 + STALE_ALLOWANCE_S, t1)
        before, m = m, self.uart()
        self.assertEqual(m["reopens"], before["reopens"] + 1)
        self.assertEqual(m["device_open"], 1)
        # 6 s unplugged at a 200 ms poll would be 30 attempts; the backoff (0.5, 1, 2, 4 s)
        # makes at most 4, and the log says it at most twice.
        opens = len(re.findall(r"cannot open|closed \(", closed_log))
        figure("unplugged_6s.open_failure_log_lines", opens)
        self.assertLessEqual(opens, 3, "the missing device logged on every poll:\n" + closed_log[-2000:])

        # --- Counters right over the whole run: every NACK the BMS sent was counted as one.
        self.assertEqual(m["nacks"], sim.state()["nacks_sent"])
        figure("total.nacks", m["nacks"])

        # --- The GX: no 0x351 inside any stale or implausible window, frames around them,
        # every limit ever sent in range.
        peer.stop()
        frames = peer.frames()
        for name, start, end in self.windows:
            with self.subTest(window=name):
                self.assertGreater(end - start, 1.0, "window %s too short to mean anything" % name)
                inside = [f for f in frames if f["id"] == 0x351 and start <= f["wall"] <= end]
                alive = [f for f in frames if f["id"] == 0x35A and start <= f["wall"] <= end]
                self.assertGreaterEqual(len(alive), 1, "the GX heard nothing during %s" % name)
                self.assertEqual(inside, [], "0x351 sent on stale or implausible data (%s)" % name)
        for f in frames:
            if f["id"] == 0x351:
                d = f["decoded"]
                self.assertTrue(0 < d["cvl"] <= CVL_MAX + 1e-6 and d["ccl"] >= 0 and d["dcl"] >= 0, d)
        figure("can.frames_351", len([f for f in frames if f["id"] == 0x351]))
        self.stop_daemon_cleanly(gw)
        # The limits are logged when they start, stop or reach 0 A, else at most every 30 s:
        # not on every poll of a ramp (fault 5). Seven recoveries here, each a ramp from 0 A.
        limit_lines = len(re.findall(r"app: CAN limits", gw.stderr()))
        figure("limits_log_lines", limit_lines)
        self.assertLessEqual(limit_lines, 4 * (len(self.windows) + 2), "limits logged on every poll")


if __name__ == "__main__":
    faultlib.gwtest.main()
