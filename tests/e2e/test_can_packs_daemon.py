#!/usr/bin/python3
"""End-to-end, several packs: two tinybms-sim (different capacity, SOC and current) -> one
tinybms-gw (--uart twice) -> slcan on a socat pty pair -> python-can (tests/integration/can_peer.py,
the GX peer with its own decoder). The peer must see ONE battery: the aggregate of both packs, two
modules in 0x372, pack-qualified cell names; and it must keep seeing it, with one module offline
and the limits of one pack, while a pack is unplugged, then both again when it is back."""
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gwtest  # noqa: E402
from gwtest import CanPeer, GatewayTestCase, Socat, wait_for  # noqa: E402


def modules(peer, after):
    fr = peer.frames(0x372, after=after)
    return fr[-1]["decoded"] if fr else None


class TwoPacks(GatewayTestCase):
    def test_aggregate_on_can_survives_one_pack_unplugged(self):
        socat = self.track(Socat(self.tmp))
        # Frozen models (speed 0): the aggregate is checkable against both simulators' states.
        a = self.start_sim(["--speed", "0", "--current", "-20", "--soc", "40", "--capacity", "280", "--seed", "1"],
                           name="sim_a")
        b = self.start_sim(["--speed", "0", "--current", "-10", "--soc", "70", "--capacity", "140", "--seed", "2"],
                           link=os.path.join(self.tmp, "ttyB"), name="sim_b")
        gw = self.start_daemon(["--uart", a.link, "--uart", b.link, "--can", "slcan:" + socat.a,
                                "--poll-ms", "500"])
        gw.wait_log(r"can_publisher: publishing on slcan:", 60)
        peer = self.track(CanPeer(self.tmp, socat.b))
        t0 = time.time()
        wait_for(lambda: (modules(peer, t0) or {}).get("ok") == 2, 60, "0x372 counting two packs online")
        time.sleep(3)  # a few live cycles with both packs
        sa, sb = a.state(), b.state()
        t1 = time.time()
        last = {fid: wait_for(lambda f=fid: peer.frames(f, after=t1), 10, "0x%03X" % fid)[-1]["decoded"]
                for fid in (0x351, 0x355, 0x356, 0x373, 0x374, 0x375, 0x379)}
        with self.subTest("0x356: mean voltage, summed current"):
            self.assertAlmostEqual(last[0x356]["voltage"], (sa["pack_v"] + sb["pack_v"]) / 2, delta=0.011)
            self.assertAlmostEqual(last[0x356]["current"], sa["current_a"] + sb["current_a"], delta=0.11)
        with self.subTest("0x355: capacity-weighted SOC"):
            want = (sa["soc_pct"] * 280 + sb["soc_pct"] * 140) / 420
            self.assertAlmostEqual(last[0x355]["soc_hires"], want, delta=0.051)
        with self.subTest("0x373-0x375: global extremes, named with the pack"):
            cells = [(mv, "P1C%d" % (i + 1)) for i, mv in enumerate(sa["cells_mv"])] + \
                    [(mv, "P2C%d" % (i + 1)) for i, mv in enumerate(sb["cells_mv"])]
            self.assertAlmostEqual(last[0x373]["min_cell_mv"], min(c[0] for c in cells), delta=1.0)
            self.assertAlmostEqual(last[0x373]["max_cell_mv"], max(c[0] for c in cells), delta=1.0)
            self.assertRegex(last[0x374]["text"], r"^P[12]C\d+$")
            self.assertRegex(last[0x375]["text"], r"^P[12]C\d+$")
        with self.subTest("0x379 installed capacity, 0x351 limits"):
            self.assertEqual(last[0x379]["installed_ah"], 420)
            self.assertGreater(last[0x351]["cvl"], 0)
            self.assertGreater(last[0x351]["dcl"], 0)
        dcl_two = last[0x351]["dcl"]

        # --- Pack B unplugged: the bank stays on the bus with one pack, 0x351 keeps going with
        # the limits of pack A alone (recomputed at once), 0x372 counts one module offline.
        t_unplug = time.time()
        b.cmd("unplug")
        wait_for(lambda: (modules(peer, t_unplug) or {}).get("offline") == 1, 60, "0x372 counting one pack offline")
        t2 = time.time()
        m = wait_for(lambda: modules(peer, t2), 10, "0x372 after the dropout")
        self.assertEqual((m["ok"], m["offline"]), (1, 1))
        f351 = wait_for(lambda: peer.frames(0x351, after=t2), 10, "0x351 still sent with one pack")
        self.assertLess(f351[-1]["decoded"]["dcl"], dcl_two)
        self.assertGreater(f351[-1]["decoded"]["cvl"], 0)
        f356 = wait_for(lambda: peer.frames(0x356, after=t2), 10, "0x356 with one pack")
        self.assertAlmostEqual(f356[-1]["decoded"]["current"], sa["current_a"], delta=0.11)
        # No gap of the limits frame long enough for the GX to stop (it waits ~3 s... allow load).
        walls = [f["wall"] for f in peer.frames(0x351, after=t_unplug - 2)]
        self.assertLess(max(y - x for x, y in zip(walls, walls[1:])), 3.0, "0x351 interrupted during the dropout")

        # --- Pack B back: both packs again.
        t_replug = time.time()
        b.cmd("replug")
        wait_for(lambda: (modules(peer, t_replug) or {}).get("ok") == 2, 90, "0x372 counting two packs again")
        self.stop_daemon_cleanly(gw)


if __name__ == "__main__":
    gwtest.main()
