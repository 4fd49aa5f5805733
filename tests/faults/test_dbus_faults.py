#!/usr/bin/python3
"""The D-Bus daemon restarted under the gateway (Venus OS restarts dbus-daemon only with the
system, but a crash or an update can): a private dbus-daemon on a fixed socket is SIGKILLed and
started again on the same address. The gateway keeps polling the BMS meanwhile, comes back on
the bus by itself with its battery service, and publishes limits again (the battery stays
managed). Read with dbus-send (Debian dbus-bin)."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib  # noqa: E402
from faultlib import FaultCase, figure, wait_for  # noqa: E402
from gwtest import stop_process  # noqa: E402

SERVICE = "com.victronenergy.battery.bms"  # the simulator's --link is <tmp>/bms


class Bus:
    def __init__(self, workdir, run):
        self.address = "unix:path=" + os.path.join(workdir, "bus")
        self._err = open(os.path.join(workdir, "dbus-daemon-%d.stderr" % run), "wb")
        self.proc = subprocess.Popen(["dbus-daemon", "--session", "--address=" + self.address, "--nofork",
                                      "--nopidfile", "--print-address=1"], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self._err)
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("unix:"):
            raise AssertionError("dbus-daemon printed %r" % line)

    def send(self, *args):
        r = subprocess.run(["dbus-send", "--bus=" + self.address, "--print-reply"] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        return r.stdout.decode(errors="replace") if r.returncode == 0 else None

    def has_service(self):
        out = self.send("--dest=org.freedesktop.DBus", "/", "org.freedesktop.DBus.ListNames")
        return out is not None and ('"%s"' % SERVICE) in out

    def value(self, path):
        out = self.send("--dest=" + SERVICE, path, "com.victronenergy.BusItem.GetValue")
        m = re.search(r"variant\s+(?:double|int32|uint32|int64)\s+(-?[\d.e+]+)", out or "")
        return float(m.group(1)) if m else None

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        stop_process(self.proc, None)
        self.proc.stdout.close()
        self._err.close()


@unittest.skipUnless(shutil.which("dbus-daemon") and shutil.which("dbus-send"), "dbus-daemon/dbus-send missing")
class DbusFaults(FaultCase):
    def test_dbus_daemon_restart(self):
        bus = Bus(self.tmp, 1)
        self._children.append(bus)
        sim = self.start_sim(["--speed", "0", "--current", "10", "--no-sleep"])
        os.environ["DBUS_SESSION_BUS_ADDRESS"] = bus.address  # the daemon's environment (Daemon copies it)
        try:
            gw = self.start_gateway([sim.link], args=["--dbus", "--poll-ms", "200"])
        finally:
            del os.environ["DBUS_SESSION_BUS_ADDRESS"]
        wait_for(bus.has_service, 60, "the battery service on the bus")
        wait_for(lambda: bus.value("/Info/MaxChargeVoltage"), 30, "a charge voltage limit on D-Bus")

        bus.stop(signal.SIGKILL)
        self._children.remove(bus)
        t0 = time.monotonic()
        self.wait_samples(gw, 10, what="samples with the bus gone")  # the battery is still polled
        self.assert_alive(gw)
        bus = Bus(self.tmp, 2)
        self._children.append(bus)
        wait_for(bus.has_service, 60, "the battery service back on the restarted bus")
        figure("dbus.back_on_bus_s", "%.1f" % (time.monotonic() - t0))
        cvl = wait_for(lambda: bus.value("/Info/MaxChargeVoltage"), 30, "the charge voltage limit again")
        self.assertGreater(cvl, 0)
        self.stop_daemon_cleanly(gw)


if __name__ == "__main__":
    faultlib.gwtest.main()
