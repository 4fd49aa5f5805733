#!/usr/bin/python3
"""Venus OS packaging (packaging/venus) and the probe serial-starter relies on:
- `tinybms-gw --probe --uart DEV`: 0 when a TinyBMS answers, 1 fast when none does or the device
  is absent, 2 without a device;
- install.sh into a temporary root: the daemontools template, the serial-starter drop-in (our
  driver appended to the stock aliases), /data/rc.local re-running it at boot (once), --boot
  quiet, --remove undoing it all and keeping the rest of rc.local;
- the run script under a stand-in of serial-starter's run-service.sh: exits 1 on a port without a
  TinyBMS, else starts the daemon, which publishes its battery service (on a private bus here)."""
import os
import shutil
import signal
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gwtest  # noqa: E402
from gwtest import GatewayTestCase, read_text, run_gw, stop_process, wait_for  # noqa: E402
from test_dbus_daemon import PrivateBus  # noqa: E402

VENUS = os.path.join(gwtest.SOURCE_DIR, "packaging", "venus")
STOCK_SS_CONF = "service gps gps-dbus\nalias default gps:vedirect\nalias rs485 cgwacs:fzsonick:imt:modbus\n"


class Probe(GatewayTestCase):
    def test_probe_exit_codes(self):
        sim = self.start_sim(["--speed", "0"])
        r = run_gw(["--probe", "--uart", sim.link])
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.assertIn("TinyBMS on %s: 16 cells" % sim.link, r.stdout.decode())
        sim.cmd("silence on")
        r = run_gw(["--probe", "--uart", sim.link])
        self.assertEqual(r.returncode, 1)
        self.assertIn("no TinyBMS answered on %s within 3000 ms" % sim.link, r.stderr.decode())
        r = run_gw(["--probe", "--uart", os.path.join(self.tmp, "absent")])
        self.assertEqual(r.returncode, 1)
        self.assertIn("does not exist", r.stderr.decode())
        self.assertEqual(run_gw(["--probe"]).returncode, 2)


class VenusPackaging(GatewayTestCase):
    def make_root(self):
        root = os.path.join(self.tmp, "root")
        home = os.path.join(root, "data", "tinybms-gw")
        os.makedirs(home)
        shutil.copytree(os.path.join(VENUS, "service"), os.path.join(home, "service"))
        shutil.copy(os.path.join(VENUS, "install.sh"), home)
        os.symlink(gwtest.TINYBMS_GW, os.path.join(home, "tinybms-gw"))
        os.makedirs(os.path.join(root, "etc", "venus"))
        with open(os.path.join(root, "etc", "venus", "serial-starter.conf"), "w") as f:
            f.write(STOCK_SS_CONF)
        return root, home

    def install(self, root, *args):
        return subprocess.run(["sh", os.path.join(root, "data", "tinybms-gw", "install.sh")] + list(args),
                              env=dict(os.environ, ROOT=root), capture_output=True, text=True, timeout=60)

    def test_install_boot_and_remove(self):
        root, home = self.make_root()
        with open(os.path.join(root, "data", "rc.local"), "w") as f:
            f.write("#!/bin/sh\necho mine\n")
        r = self.install(root)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("installed", r.stdout)
        tpl = os.path.join(root, "opt", "victronenergy", "service-templates", "tinybms-gw")
        for f in ("run", "log/run"):
            self.assertTrue(os.access(os.path.join(tpl, f), os.X_OK), f)
        dropin = read_text(os.path.join(root, "data", "conf", "serial-starter.d", "tinybms-gw.conf"))
        self.assertIn("service tinybms tinybms-gw\n", dropin)
        self.assertIn("alias default gps:vedirect:tinybms\n", dropin)
        self.assertIn("alias rs485 cgwacs:fzsonick:imt:modbus:tinybms\n", dropin)
        rc = os.path.join(root, "data", "rc.local")
        self.assertTrue(os.access(rc, os.X_OK))
        # Again, and as at boot (quiet): the line stays single, our alias is not doubled.
        self.assertEqual(self.install(root).returncode, 0)
        r = self.install(root, "--boot")
        self.assertEqual((r.returncode, r.stdout), (0, ""))
        self.assertEqual(read_text(rc).count("/data/tinybms-gw/install.sh --boot"), 1)
        self.assertIn("echo mine", read_text(rc))
        self.assertEqual(read_text(os.path.join(root, "data", "conf", "serial-starter.d", "tinybms-gw.conf"))
                         .count("tinybms:tinybms"), 0)
        # A firmware update replaced the root filesystem: --boot puts the template back.
        shutil.rmtree(os.path.join(root, "opt"))
        self.assertEqual(self.install(root, "--boot").returncode, 0)
        self.assertTrue(os.path.exists(os.path.join(tpl, "run")))

        r = self.install(root, "--remove")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertFalse(os.path.exists(tpl))
        self.assertFalse(os.path.exists(os.path.join(root, "data", "conf", "serial-starter.d", "tinybms-gw.conf")))
        self.assertNotIn("install.sh --boot", read_text(rc))
        self.assertIn("echo mine", read_text(rc))
        self.assertEqual(self.install(root, "--bogus").returncode, 2)

    def test_install_refuses_without_the_binary(self):
        root, home = self.make_root()
        os.remove(os.path.join(home, "tinybms-gw"))
        r = self.install(root)
        self.assertEqual(r.returncode, 1)
        self.assertIn("is missing", r.stderr)

    def test_run_script_probes_then_starts_the_service(self):
        root, home = self.make_root()
        bus = self.track(PrivateBus(self.tmp))
        sim = self.start_sim(["--speed", "0"])
        # A stand-in of serial-starter's run-service.sh: $tty and start(). /dev/<tty> must name the
        # simulator's link, so tty climbs out of /dev.
        ss = os.path.join(self.tmp, "serial-starter")
        os.makedirs(ss)
        with open(os.path.join(ss, "run-service.sh"), "w") as f:
            f.write('tty="..%s"\nstart() { exec $app "$@"; }\n' % sim.link)
        env = dict(os.environ, TINYBMS_GW_HOME=home, SERIAL_STARTER_DIR=ss, **bus.env())
        run = os.path.join(home, "service", "run")

        sim.cmd("silence on")
        r = subprocess.run(["sh", run], env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 1, "a port without a TinyBMS: serial-starter must try the next driver")
        self.assertIn("no TinyBMS answered", r.stdout)  # the run script sends stderr to the log
        sim.cmd("silence off")

        log = open(os.path.join(self.tmp, "run.log"), "wb")
        proc = subprocess.Popen(["sh", run], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            svc = "com.victronenergy.battery.bms"
            wait_for(lambda: proc.poll() is None and bus.conn.name_has_owner(svc), 60,
                     "the run script's daemon on the bus")
            self.assertTrue(os.path.isdir(os.path.join(home, "var", ".." + sim.link)))
        finally:
            rc, in_time = stop_process(proc, signal.SIGTERM)
            log.close()
        self.assertTrue(in_time)
        self.assertEqual(rc, 0, read_text(log.name)[-2000:])
        self.assertIn("stopped cleanly", read_text(log.name))


if __name__ == "__main__":
    gwtest.main()
