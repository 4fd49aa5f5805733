#!/usr/bin/python3
"""End-to-end tests of signed updates with the real daemon: keys made with scripts/make-keys.sh,
bundles with packaging/make-bundle.sh, signatures with scripts/sign-update.sh, installed with
`tinybms-gw --install-update`.

- a good bundle: the running gateway restarts into it, the new version runs on trial, becomes
  healthy (BMS answering, CAN frames going out) and is kept; the CAN gap is printed; then a
  manual rollback brings the installed version back;
- a release that exits at once: three starts, then the previous version comes back by itself
  with the reason, and the alert;
- a release that never becomes healthy: rolled back at the trial timeout;
- kill -9 of the installer at random points of the switch never leaves no runnable release;
- update.pause_charge_on_switch: the 0x351 frames read during a switch carry CCL 0 from before
  the old version stops until the new one is healthy, then the limit comes back.

Figures are printed (CAN gap, rollback times); nothing here asserts a duration except the
product's own timeout plus a margin for this shared, sanitized machine."""
import json
import os
import random
import re
import signal
import stat
import subprocess
import sys
import time
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gwtest  # noqa: E402
from gwtest import Daemon, GatewayTestCase, run_gw, wait_for  # noqa: E402

MAKE_KEYS = os.path.join(gwtest.SOURCE_DIR, "scripts", "make-keys.sh")
SIGN = os.path.join(gwtest.SOURCE_DIR, "scripts", "sign-update.sh")
MAKE_BUNDLE = os.path.join(gwtest.SOURCE_DIR, "packaging", "make-bundle.sh")
CANLOG_RE = re.compile(r"^\((\d+)\.(\d+)\) \S+ ([0-9A-F]+)#")
CANLOG_351_RE = re.compile(r"^\((\d+)\.(\d+)\) \S+ 351#([0-9A-F]{8})")


def running_version():
    out = run_gw(["--version"]).stdout.decode()
    return out.split()[-1]


def next_version(v):
    parts = v.split("-")[0].split(".")
    parts[-1] = str(int(parts[-1]) + 1)
    return ".".join(parts)


def arch():
    import platform
    m = platform.machine()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m, "armhf" if m.startswith("arm") else m)


def sh(args, **kw):
    return subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=120, check=True, **kw)


class UpdateCase(GatewayTestCase):
    def setUp(self):
        super().setUp()
        os.makedirs(self.data_dir)
        self.build_keys = os.path.join(self.tmp, "signing")
        sh([MAKE_KEYS, self.build_keys])
        os.makedirs(os.path.join(self.data_dir, "keys"))
        with open(os.path.join(self.build_keys, "update.pub")) as src, \
                open(os.path.join(self.data_dir, "keys", "update.pub"), "w") as dst:
            dst.write(src.read())
        self.base = running_version()
        self.can_log = os.path.join(self.tmp, "can.log")

    def config(self, charge=None, **update):
        doc = {"update": dict({"health_can_s": 1}, **update)}
        if charge:
            doc["charge"] = charge
        with open(os.path.join(self.data_dir, "config.json"), "w") as f:
            json.dump(doc, f)

    def bundle(self, version, daemon=None, name="b"):
        """A signed bundle of `version`; daemon: the program to ship as bin/tinybms-gw (default
        the build's own)."""
        out = os.path.join(self.tmp, "%s-%s.tar" % (name, version))
        sh([MAKE_BUNDLE, out, version, arch(), "linux", daemon or gwtest.TINYBMS_GW, gwtest.TINYBMS_SIM])
        sh([SIGN, out, os.path.join(self.build_keys, "update.key")])
        return out

    def script(self, name, body):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write("#!/bin/sh\n" + body + "\n")
        os.chmod(path, 0o755)
        return path

    def install(self, bundle, expect_ok=True):
        r = run_gw(["--data-dir", self.data_dir, "--install-update", bundle], timeout=120)
        text = r.stdout.decode() + r.stderr.decode()
        if expect_ok:
            self.assertEqual(r.returncode, 0, text)
        return r.returncode, text

    def status(self):
        r = run_gw(["--data-dir", self.data_dir, "--update-status"])
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return json.loads(r.stdout.decode())

    def start(self, *extra):
        return self.track(Daemon(self.tmp, ["--simulate", "-q", "--data-dir", self.data_dir, "--can",
                                            "log:" + self.can_log] + list(extra)))

    def can_frames(self):
        frames = []
        for line in gwtest.read_text(self.can_log).splitlines():
            m = CANLOG_RE.match(line)
            if m:
                frames.append(int(m.group(1)) + int(m.group(2)) / 1e6)
        return frames

    def ccl_frames(self):
        """(time, CCL in A) of every 0x351 in the CAN log (CCL: bytes 2-3, signed, 0.1 A)."""
        out = []
        for line in gwtest.read_text(self.can_log).splitlines():
            m = CANLOG_351_RE.match(line)
            if m:
                raw = bytes.fromhex(m.group(3))
                out.append((int(m.group(1)) + int(m.group(2)) / 1e6, int.from_bytes(raw[2:4], "little", signed=True) / 10))
        return out

    def assert_no_sanitizer(self, d):
        rep = d.sanitizer_report()
        self.assertIsNone(rep, rep)


class TestGoodUpdate(UpdateCase):
    def test_good_bundle_runs_then_rolls_back_by_hand(self):
        self.config()
        new = next_version(self.base)
        bundle = self.bundle(new)
        d = self.start()
        d.wait_log(r"tinybms-gw %s running" % re.escape(self.base), 60)
        wait_for(lambda: len(self.can_frames()) >= 3, 60, "CAN frames of the old version")
        # a bundle of the running version is refused (409 "already running"), nothing changes
        same = self.bundle(self.base, name="same")
        rc, text = self.install(same, expect_ok=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("already running", text)
        self.assertEqual(self.status()["update"]["state"], "none")

        t_install = time.time()
        rc, text = self.install(bundle)
        self.assertIn("version %s installed" % new, text)
        self.assertIn("restarts into it", text)
        m = d.wait_log(r"launcher: starting (\S+) \(%s\) on trial, start 1 of 3" % re.escape(new), 60)
        release = m.group(1)
        d.wait_log(r"tinybms-gw %s running" % re.escape(new), 60)
        d.wait_log(r"launcher: %s \(%s\) is healthy: kept" % (re.escape(release), re.escape(new)), 90)
        st = self.status()
        self.assertEqual(st["update"]["state"], "good")
        self.assertEqual(st["running_version"], new)
        self.assertEqual(st["previous_version"], self.base)
        self.assertTrue(st["can_roll_back"])
        self.assertTrue(os.path.islink(os.path.join(self.data_dir, "releases", "current")))
        # the daemon process now runs from the release directory
        wait_for(lambda: len([t for t in self.can_frames() if t > t_install]) >= 3, 60, "CAN frames after")
        frames = [t for t in self.can_frames() if t > t_install - 5]
        gap = max(b - a for a, b in zip(frames, frames[1:]))
        sys.stderr.write("figure: CAN gap during the switch to %s: %.0f ms (frames every 1 s; sanitized build)\n"
                         % (new, gap * 1000))

        # manual rollback: the installed version comes back
        r = run_gw(["--data-dir", self.data_dir, "--rollback"])
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.assertIn("rolled back from %s to %s" % (new, self.base), r.stdout.decode())
        d.wait_log(r"launcher: running the installed program", 60)
        wait_for(lambda: d.stderr().count("tinybms-gw %s running" % self.base) >= 2, 60,
                 "the installed version running again")
        st = self.status()
        self.assertEqual(st["update"]["state"], "rolled_back")
        self.assertEqual(st["running_version"], self.base)
        self.assertFalse(st["can_roll_back"])
        rc, _ = d.stop()
        self.assertEqual(rc, 0)
        self.assert_no_sanitizer(d)


class TestPauseChargingDuringSwitch(UpdateCase):
    def test_ccl_is_zero_from_before_the_stop_until_the_new_release_is_healthy(self):
        # Limits that follow at once, so that the limit before and after the switch is above 0 A.
        self.config(pause_charge_on_switch=True, charge={"increase_delay_s": 0, "increase_ramp_a_per_s": 1000})
        new = next_version(self.base)
        bundle = self.bundle(new)
        d = self.start()
        d.wait_log(r"tinybms-gw %s running" % re.escape(self.base), 60)
        wait_for(lambda: any(c > 0 for _, c in self.ccl_frames()), 60, "a 0x351 with CCL above 0 A")
        t_install = time.time()
        self.install(bundle)
        d.wait_log(r"charging paused \(charge current limit 0 A\) for the switch to a new release", 60)
        m = d.wait_log(r"launcher: starting (\S+) \(%s\) on trial" % re.escape(new), 60)
        d.wait_log(r"charging paused \(charge current limit 0 A\) until this new release is healthy", 60)
        d.wait_log(r"launcher: %s \(%s\) is healthy: kept" % (re.escape(m.group(1)), re.escape(new)), 90)
        d.wait_log(r"charging resumed: this new release is healthy", 30)
        # The limit comes back after the trial.
        def switch_frames():
            frames = [f for f in self.ccl_frames() if f[0] >= t_install]
            z = next((i for i, (_, c) in enumerate(frames) if c == 0), None)
            back = None if z is None else next((i for i in range(z, len(frames)) if frames[i][1] > 0), None)
            return frames, z, back
        wait_for(lambda: switch_frames()[2] is not None, 60, "a 0x351 with CCL above 0 A after the 0 A frames")
        frames, z, back = switch_frames()
        # The restart is the longest silence between two frames: it lies inside the run of 0 A,
        # with a frame of the old version before it and one of the new version after it.
        gaps = [frames[i + 1][0] - frames[i][0] for i in range(len(frames) - 1)]
        g = max(range(len(gaps)), key=lambda i: gaps[i])
        self.assertTrue(z <= g < back - 1, "0 A frames %d..%d, restart after frame %d: %s" % (z, back - 1, g, frames))
        self.assertTrue(all(c == 0 for _, c in frames[z:back]))
        sys.stderr.write("figure: CCL 0 A for %.1f s during the switch (%d frames, restart gap %.0f ms)\n"
                         % (frames[back][0] - frames[z][0], back - z, gaps[g] * 1000))
        rc, _ = d.stop()
        self.assertEqual(rc, 0)
        self.assert_no_sanitizer(d)


class TestBrokenUpdates(UpdateCase):
    def test_release_that_exits_at_once_is_rolled_back(self):
        self.config()
        broken = self.script("broken-gw", "echo broken release starting >&2; exit 3")
        new = next_version(self.base)
        self.install(self.bundle(new, daemon=broken))
        self.assertEqual(self.status()["update"]["state"], "pending")
        t0 = time.monotonic()
        d = self.start()
        d.wait_log(r"launcher: running the installed program", 60)
        rolled = time.monotonic() - t0
        d.wait_log(r"tinybms-gw %s running" % re.escape(self.base), 60)
        err = d.stderr()
        self.assertEqual(err.count("broken release starting"), 3, err[-3000:])
        self.assertIn("failed to start: 3 starts (last one exited with code 3)", err)
        # the alert names the version and why
        d.wait_log(r"UPDATE_ROLLED_BACK|update to %s failed, back to %s" % (re.escape(new), re.escape(self.base)), 30)
        st = self.status()
        self.assertEqual(st["update"]["state"], "failed")
        self.assertIn("3 starts", st["update"]["reason"])
        self.assertEqual(st["running_version"], self.base)
        sys.stderr.write("figure: rollback of a release that exits at once (3 starts): %.2f s\n" % rolled)
        wait_for(lambda: len(self.can_frames()) >= 2, 60, "CAN frames after the rollback")
        rc, _ = d.stop()
        self.assertEqual(rc, 0)
        self.assert_no_sanitizer(d)

    def test_release_never_healthy_is_rolled_back_at_the_timeout(self):
        self.config(trial_timeout_s=10)
        hang = self.script("hanging-gw", "echo hanging release starting >&2; exec sleep 600")
        new = next_version(self.base)
        self.install(self.bundle(new, daemon=hang))
        d = self.start()
        d.wait_log(r"hanging release starting", 60)
        t0 = time.monotonic()
        d.wait_log(r"launcher: running the installed program", 60)
        rolled = time.monotonic() - t0
        self.assertIn("not healthy within 10 s", d.stderr())
        self.assertLess(rolled, 10 + 25, "rolled back within the timeout (+ margin)")
        st = self.status()
        self.assertEqual(st["update"]["state"], "failed")
        self.assertIn("not healthy within 10 s", st["update"]["reason"])
        sys.stderr.write("figure: rollback of a release never healthy (timeout 10 s): %.2f s after its start\n"
                         % rolled)
        d.wait_log(r"tinybms-gw %s running" % re.escape(self.base), 60)
        rc, _ = d.stop()
        self.assertEqual(rc, 0)
        self.assert_no_sanitizer(d)


class TestKillDuringSwitch(UpdateCase):
    def runnable_release(self):
        """What the launcher would start: a release with an executable daemon, or none (the
        installed program, always there)."""
        cur = os.path.join(self.data_dir, "releases", "current")
        if not os.path.lexists(cur):
            return "installed"
        exe = os.path.join(cur, "bin", "tinybms-gw")
        return os.path.basename(os.readlink(cur)) if os.access(exe, os.X_OK) else None

    def test_kill9_at_random_points_never_leaves_no_runnable_release(self):
        self.config()
        new = next_version(self.base)
        bundle = self.bundle(new)
        # how long an install takes here, to spread the kills over it
        t0 = time.monotonic()
        self.install(bundle)
        took = time.monotonic() - t0
        rnd = random.Random(int(os.environ.get("GW_E2E_SEED", "15")))
        outcomes = {}
        for i in range(8):
            for entry in ("releases", "ota"):
                subprocess.run(["rm", "-rf", os.path.join(self.data_dir, entry)], check=True)
            delay = rnd.uniform(0, took)
            p = subprocess.Popen([gwtest.TINYBMS_GW, "--data-dir", self.data_dir, "--install-update", bundle],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                p.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGKILL)
                p.wait()
            rel = self.runnable_release()
            self.assertIsNotNone(rel, "no runnable release after a kill at %.3f s" % delay)
            st = self.status()  # readable whatever happened
            d = self.track(Daemon(self.tmp, ["--simulate", "-q", "--data-dir", self.data_dir], name="gw%d" % i))
            m = d.wait_log(r"tinybms-gw (\S+) running", 90)
            self.assertIn(m.group(1), (self.base, new))
            outcomes.setdefault(m.group(1), 0)
            outcomes[m.group(1)] += 1
            rc, _ = d.stop()
            self.assertEqual(rc, 0)
            self.assert_no_sanitizer(d)
            self.assertIn(st["update"]["state"], ("none", "pending"))
        sys.stderr.write("kills over %.3f s of install: started %s\n" % (took, outcomes))


if __name__ == "__main__":
    gwtest.main()
