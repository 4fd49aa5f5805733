#!/usr/bin/python3
"""The D-Bus battery service read by Victron's own systemcalc (dbus-systemcalc-py, which picks the
battery monitor and the BMS of a GX), on a private bus with the fake settings service of
test_dbus_daemon.py (DVCC on). Victron's code is not part of this repository: point
VICTRON_SYSTEMCALC at a checkout of github.com/victronenergy/dbus-systemcalc-py with its
ext/velib_python submodule; without it the test is skipped.

Checked: the service becomes the battery monitor and the BMS, DVCC's effective charge voltage is
our /Info/MaxChargeVoltage, the battery values are ours; when the BMS goes silent it stops being
the BMS and DVCC drops the charge voltage; when it answers again it is back; after SIGTERM no
battery is left. The times are printed, not asserted."""
import os
import subprocess
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gwtest  # noqa: E402
from gwtest import Daemon, GatewayTestCase, read_text, stop_process, wait_for  # noqa: E402
from test_dbus_daemon import INSTANCE_FROM_SETTINGS, Peer, PrivateBus, unwrap  # noqa: E402

SC = os.environ.get("VICTRON_SYSTEMCALC", "")
HAVE_SC = bool(SC) and os.path.exists(os.path.join(SC, "dbus_systemcalc.py")) and \
    os.path.exists(os.path.join(SC, "ext", "velib_python", "vedbus.py"))


class Systemcalc:
    def __init__(self, workdir, bus):
        self.log = os.path.join(workdir, "systemcalc.log")
        self._f = open(self.log, "wb")
        self.proc = subprocess.Popen([gwtest.SYSTEM_PYTHON, os.path.join(SC, "dbus_systemcalc.py")], cwd=SC,
                                     env=dict(os.environ, **bus.env()), stdin=subprocess.DEVNULL, stdout=self._f,
                                     stderr=subprocess.STDOUT)

    def stop(self):
        stop_process(self.proc)
        self._f.close()


@unittest.skipUnless(HAVE_SC, "VICTRON_SYSTEMCALC does not name a dbus-systemcalc-py checkout with ext/velib_python")
class VictronSystemcalc(GatewayTestCase):
    def system(self, bus, path):
        obj = bus.conn.get_object("com.victronenergy.system", path, introspect=False)
        return unwrap(obj.GetValue(dbus_interface="com.victronenergy.BusItem"))

    def ours(self, bus, svc, path):
        obj = bus.conn.get_object(svc, path, introspect=False)
        return unwrap(obj.GetValue(dbus_interface="com.victronenergy.BusItem"))

    def test_battery_monitor_and_bms_then_not_bms_when_stale(self):
        svc = "com.victronenergy.battery.bms"
        bus = self.track(PrivateBus(self.tmp))
        self.track(Peer(self.tmp, bus, svc, settings=True, presets=["/Settings/Services/Bol=1"]))
        sc = self.track(Systemcalc(self.tmp, bus))
        wait_for(lambda: bus.conn.name_has_owner("com.victronenergy.system")
                 and "Startup scan complete" in read_text(sc.log), 60, "systemcalc up")
        sim = self.start_sim(["--speed", "0", "--current", "20"])
        gw = self.track(Daemon(self.tmp, ["--uart", sim.link, "--dbus", "--data-dir", self.data_dir, "-q"], "gw",
                               env=bus.env()))

        t0 = time.monotonic()
        wait_for(lambda: self.system(bus, "/ActiveBmsService") == svc, 60, "systemcalc picking us as BMS")
        sys.stderr.write("[BMS after %.2f s] " % (time.monotonic() - t0))
        self.assertEqual(self.system(bus, "/ActiveBatteryService"), "com.victronenergy.battery/%d"
                         % INSTANCE_FROM_SETTINGS)
        self.assertEqual(self.system(bus, "/ActiveBmsInstance"), INSTANCE_FROM_SETTINGS)
        cvl = self.ours(bus, svc, "/Info/MaxChargeVoltage")
        wait_for(lambda: self.system(bus, "/Control/EffectiveChargeVoltage") == cvl, 30, "DVCC at our CVL")
        wait_for(lambda: self.system(bus, "/Dc/Battery/Voltage") == self.ours(bus, svc, "/Dc/0/Voltage"), 30,
                 "the battery voltage of systemcalc = ours")
        self.assertEqual(self.system(bus, "/Dc/Battery/Current"), self.ours(bus, svc, "/Dc/0/Current"))
        self.assertEqual(self.system(bus, "/Dc/Battery/Soc"), self.ours(bus, svc, "/Soc"))

        t0 = time.monotonic()
        sim.cmd("silence on")
        wait_for(lambda: self.system(bus, "/ActiveBmsService") is None, 60, "no BMS after the silence")
        t_bms = time.monotonic() - t0
        wait_for(lambda: self.system(bus, "/Control/EffectiveChargeVoltage") is None, 60, "DVCC without voltage")
        sys.stderr.write("[not the BMS %.1f s, DVCC voltage gone %.1f s after the BMS went silent] "
                         % (t_bms, time.monotonic() - t0))
        sim.cmd("silence off")
        wait_for(lambda: self.system(bus, "/ActiveBmsService") == svc, 60, "the BMS again")
        wait_for(lambda: self.system(bus, "/Control/EffectiveChargeVoltage") is not None, 60, "DVCC voltage again")

        t0 = time.monotonic()
        self.stop_daemon_cleanly(gw)
        wait_for(lambda: self.system(bus, "/ActiveBatteryService") is None, 30, "no battery after SIGTERM")
        sys.stderr.write("[no battery %.2f s after SIGTERM] " % (time.monotonic() - t0))


if __name__ == "__main__":
    gwtest.main()
