#!/usr/bin/python3
"""Several packs (two simulators, one daemon): one pack's port unplugged and replugged, one
pack's BMS reporting a fault (a cell over its cut-off: the BMS's own protection), all packs gone.
The bank stays managed on the pack left (limits valid, BMS_COMM_LOST for the other only), the
faulted pack blocks charging for the bank, and with every pack gone there are no limits at all
(BATTERY_NO_DATA), then everything back. The CAN side of one pack unplugged is
tests/e2e/test_can_packs_daemon.py."""
import os
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib  # noqa: E402
from faultlib import FaultCase, figure, wait_for  # noqa: E402


class PacksFaults(FaultCase):
    def data(self):
        return self.api("/api/data")

    def test_one_pack_unplugged_faulted_then_all_gone(self):
        a = self.start_sim(["--speed", "0", "--current", "10", "--soc", "50", "--no-sleep"], name="sim_a")
        b = self.start_sim(["--speed", "0", "--current", "10", "--soc", "55", "--seed", "2", "--no-sleep"],
                           link=os.path.join(self.tmp, "ttyB"), name="sim_b")
        # energy.json every 10 s (fault 6: the setting was ignored, saves came every 600 s).
        gw = self.start_gateway([a.link, b.link], {"can": {"energy_save_period_s": 10}}, args=["--poll-ms", "200", "-q"])
        t_start = time.monotonic()
        wait_for(lambda: self.data()["online_count"] == 2 and self.data()["limits"]["valid"], 60, "two packs online")

        # --- Pack 2's port unplugged: the bank goes on with pack 1, only pack 2 is lost.
        t0 = time.monotonic()
        b.cmd("unplug")
        wait_for(lambda: self.active("BMS_COMM_LOST", 1), 30, "BMS_COMM_LOST for pack 2")
        figure("packs.unplugged_comm_lost_s", "%.1f" % (time.monotonic() - t0))
        d = wait_for(lambda: (lambda d: d if d["online_count"] == 1 else None)(self.data()), 30, "one pack online")
        self.assertTrue(d["limits"]["valid"], "the bank lost its limits with one pack left")
        self.assertFalse(self.active("BMS_COMM_LOST", 0), "pack 1 reported lost")
        b.cmd("replug")
        t0 = time.monotonic()
        wait_for(lambda: self.data()["online_count"] == 2, 60, "pack 2 back")
        wait_for(lambda: not self.active("BMS_COMM_LOST", 1), 30, "BMS_COMM_LOST of pack 2 cleared")
        figure("packs.replug_back_s", "%.1f" % (time.monotonic() - t0))

        # --- Pack 2's BMS reports a fault (its over-voltage cut-off): BMS_FAULT for pack 2, and
        # the bank's CVL held at its voltage by pack 2 (packs in parallel: no charging).
        b.cmd("set-cell 1 3700")
        wait_for(lambda: b.state()["fault"], 30, "the simulated BMS's own protection")
        wait_for(lambda: self.active("BMS_FAULT", 1), 30, "BMS_FAULT for pack 2")
        lim = wait_for(lambda: (lambda l: l if "pack 2" in l["cvl"]["reason"] else None)(self.data()["limits"]), 60,
                       "the bank's CVL set by the faulted pack")
        figure("packs.fault_cvl_reason", '"%s"' % lim["cvl"]["reason"])
        self.assertTrue(lim["valid"])
        self.assertFalse(self.active("BMS_FAULT", 0))
        self.assert_alive(gw)  # (the frozen model keeps its protection on: the fault stays)

        # --- Every pack gone: no limits at all, BATTERY_NO_DATA; then both back.
        t0 = time.monotonic()
        a.cmd("silence on")
        b.cmd("silence on")
        wait_for(lambda: not self.data()["limits"]["valid"], 30, "limits withdrawn with every pack gone")
        wait_for(lambda: self.active("BATTERY_NO_DATA"), 30, "BATTERY_NO_DATA")
        figure("packs.all_gone_no_limits_s", "%.1f" % (time.monotonic() - t0))
        a.cmd("silence off")
        b.cmd("silence off")
        wait_for(lambda: self.data()["online_count"] == 2 and self.data()["limits"]["valid"], 60, "both packs back")
        wait_for(lambda: not self.active("BATTERY_NO_DATA") and not self.active("BMS_COMM_LOST"), 30,
                 "the alerts cleared")
        self.assertEqual(self.active("BMS_COMM_LOST"), [])
        wait_for(lambda: time.monotonic() - t_start > 12, 30, "twelve seconds of running")
        saves = self.battery(fresh=True)["saves"]
        figure("packs.energy_saves_in_s", "%d in %.0f s" % (saves, time.monotonic() - t_start))
        self.assertGreaterEqual(saves, 1, "can.energy_save_period_s = 10 ignored")
        self.stop_daemon_cleanly(gw)


if __name__ == "__main__":
    faultlib.gwtest.main()
