#!/usr/bin/python3
"""Storage faults against the real daemon: kill -9 at random instants during configuration
saves, energy/charge-state saves and history writes; a file size limit (RLIMIT_FSIZE, set on the
running daemon with prlimit); a full disk and a read-only data directory (a small tmpfs, where
mount works: skipped otherwise); SIGTERM under load.

Promises: the configuration always loads, the energy counters never go backwards, history.db
passes PRAGMA integrity_check, a storage fault raises STORAGE_ERROR without a crash, and the alert
clears after a good save once space returns, with nothing already stored lost.

GW_FAULT_TRIALS (default 20) sets the number of kill -9 trials, GW_FAULT_SEED the seed (printed
either way: rerun a failure with it). The update switch's kill -9 is tests/e2e/test_ota_update.py."""
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib  # noqa: E402
from faultlib import FaultCase, figure, wait_for  # noqa: E402

STORAGE_CONFIG = {"history": {"period_s": 1}, "can": {"energy_save_period_s": 10}}


def integrity(db):
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def history_rows(db):
    con = sqlite3.connect(db, timeout=30)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return sum(con.execute('SELECT COUNT(*) FROM "%s"' % t).fetchone()[0] for t in tables
                   if t.startswith("samples"))
    finally:
        con.close()


def energy(data_dir):
    path = os.path.join(data_dir, "energy.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        doc = json.load(f)  # atomic writes: never a torn file
    return doc["energy_in_wh"], doc["energy_out_wh"]


class ConfigHammer:
    """A thread saving the configuration over the web API as fast as it answers."""

    def __init__(self, case):
        self.case, self.stop, self.saves = case, False, 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        v = 0
        while not self.stop:
            v += 1
            try:
                s, _ = self.case.post("/api/config", {"bms": {"poll_interval_ms": 200 + 10 * (v % 2)}})
                if s == 200:
                    self.saves += 1
            except Exception:  # the daemon was killed mid-request
                return

    def join(self):
        self.stop = True
        self.thread.join(60)


class StorageFaults(FaultCase):
    def storage_errors(self, module=None):
        return [a for a in self.alerts()["active"] if a["code"] == "STORAGE_ERROR"
                and (module is None or module in a.get("subject", "") or module in a["message"])]

    def test_kill9_during_saves(self):
        trials = int(os.environ.get("GW_FAULT_TRIALS") or 20)
        seed = int(os.environ.get("GW_FAULT_SEED") or time.time_ns() % 2 ** 32)
        sys.stderr.write("\nkill -9 trials: %d, seed %d (GW_FAULT_SEED=%d to replay)\n" % (trials, seed, seed))
        figure("kill9.seed", seed)
        rng = random.Random(seed)
        sim = self.start_sim(["--speed", "0", "--current", "60", "--no-sleep"])
        db = os.path.join(self.data_dir, "history.db")
        best_in = best_out = 0.0
        modes = {"config": 0, "history": 0, "shutdown": 0}
        config_saves = 0
        t_start = time.monotonic()
        for i in range(trials):
            gw = self.start_gateway([sim.link], STORAGE_CONFIG, args=["--poll-ms", "200", "-q"], name="gw%d" % i,
                                    fresh=(i == 0))
            # The configuration loaded (the daemon runs on it, not on defaults).
            self.assertIn(self.api("/api/status")["config"]["status"], ("ok", "recovered", "created"))
            # Shutdown kills hit the energy save and the history flush; the others the running
            # daemon's configuration saves (hammered) and history writes (every second).
            mode = rng.choices(["config", "history", "shutdown"], weights=[3, 2, 4])[0]
            modes[mode] += 1
            delay = rng.uniform(0.05, 1.5)
            hammer = ConfigHammer(self) if mode == "config" else None
            time.sleep(delay)  # the random instant of the kill (not a synchronisation)
            if mode == "shutdown":
                # SIGTERM saves the energy counters and flushes the history: killed during it.
                gw.proc.send_signal(signal.SIGTERM)
                time.sleep(rng.uniform(0.0, 0.6))
            gw.stop(signal.SIGKILL)
            if hammer:
                hammer.join()
                config_saves += hammer.saves
            with self.subTest(trial=i, mode=mode, delay=round(delay, 3)):
                with open(os.path.join(self.data_dir, "config.json")) as f:
                    json.load(f)
                e = energy(self.data_dir)
                if e is not None:
                    self.assertGreaterEqual(e[0], best_in - 1e-6, "energy in went backwards (seed %d)" % seed)
                    self.assertGreaterEqual(e[1], best_out - 1e-6, "energy out went backwards (seed %d)" % seed)
                    best_in, best_out = max(best_in, e[0]), max(best_out, e[1])
                if os.path.exists(db):
                    self.assertEqual(integrity(db), "ok", "history.db damaged (seed %d, trial %d)" % (seed, i))
        # A last clean run on what the kills left: it loads, counts on, and stops cleanly.
        gw = self.start_gateway([sim.link], STORAGE_CONFIG, args=["--poll-ms", "200", "-q"], name="final",
                                fresh=False)
        self.assertEqual(self.api("/api/status")["config"]["status"], "ok")
        wait_for(lambda: self.api("/api/data")["bank"]["energy_in_wh"] > best_in, 60, "the energy counter to go on")
        self.stop_daemon_cleanly(gw)
        e = energy(self.data_dir)
        self.assertGreater(e[0], best_in)
        self.assertEqual(integrity(db), "ok")
        figure("kill9.trials", trials)
        figure("kill9.modes", json.dumps(modes, sort_keys=True))
        figure("kill9.config_saves_during_trials", config_saves)
        figure("kill9.energy_in_wh_final", "%.3f" % e[0])
        figure("kill9.history_rows_final", history_rows(db))
        figure("kill9.seconds", "%.1f" % (time.monotonic() - t_start))

    def check_storage_fault_and_recovery(self, gw, fault_on, fault_off, what, history_fails=True):
        """fault_on() makes writes fail; STORAGE_ERROR must come (config at once through a save,
        history within a few periods) without a crash; fault_off() brings the space back, a good
        save clears every STORAGE_ERROR, and nothing stored before is lost."""
        db = os.path.join(self.data_dir, "history.db")
        wait_for(lambda: self.api("/api/status")["history"]["samples_written"] >= 3, 60, "history rows written")
        s, _ = self.post("/api/config", {"bms": {"poll_interval_ms": 300}})
        self.assertEqual(s, 200)
        written_before = self.api("/api/status")["history"]["samples_written"]
        t0 = time.monotonic()
        fault_on()
        s, doc = self.post("/api/config", {"bms": {"poll_interval_ms": 400}})
        self.assertNotEqual(s, 200, "a save on a %s was accepted: %s" % (what, doc))
        figure("%s.config_save_status" % what, s)
        wait_for(lambda: self.storage_errors("config"), 30, "STORAGE_ERROR (config) on a %s" % what)
        if history_fails:
            wait_for(lambda: self.storage_errors("history"), 60, "STORAGE_ERROR (history) on a %s" % what)
        figure("%s.alert_after_s" % what, "%.1f" % (time.monotonic() - t0))
        self.assert_alive(gw)
        with open(os.path.join(self.data_dir, "config.json")) as f:
            self.assertEqual(json.load(f)["bms"]["poll_interval_ms"], 300, "the last good configuration lost")
        fault_off()
        t1 = time.monotonic()
        s, doc = self.post("/api/config", {"bms": {"poll_interval_ms": 400}})
        self.assertEqual(s, 200, doc)
        wait_for(lambda: not self.storage_errors(), 60, "every STORAGE_ERROR cleared after %s" % what)
        figure("%s.cleared_after_s" % what, "%.1f" % (time.monotonic() - t1))
        wait_for(lambda: self.api("/api/status")["history"]["samples_written"] > written_before + 2, 60,
                 "history written again")
        self.assert_alive(gw)
        return db, written_before

    def test_file_size_limit(self):
        """RLIMIT_FSIZE (a quota, a container's ulimit): EFBIG, not SIGXFSZ (fault 7); the
        alerts clear after a good save (fault 8)."""
        sim = self.start_sim(["--speed", "0", "--current", "30", "--no-sleep"])
        gw = self.start_gateway([sim.link], STORAGE_CONFIG, args=["--poll-ms", "200", "-q"])
        pid = str(gw.proc.pid)

        def limit(value):
            subprocess.run(["prlimit", "--pid", pid, "--fsize=%s" % value], check=True)
        db, written_before = self.check_storage_fault_and_recovery(
            gw, lambda: limit("0:unlimited"), lambda: limit("unlimited:unlimited"), "file_size_limit")
        self.stop_daemon_cleanly(gw)
        self.assertEqual(integrity(db), "ok")
        self.assertGreaterEqual(history_rows(db), written_before, "history rows lost")

    def mount_tmpfs(self, size):
        os.makedirs(self.data_dir, exist_ok=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s" % size, "tmpfs", self.data_dir],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if r.returncode != 0:
            self.skipTest("cannot mount a tmpfs here (%s): the file size limit test covers EFBIG"
                          % r.stderr.decode(errors="replace").strip())
        self.addCleanup(lambda: subprocess.run(["umount", "-l", self.data_dir]))

    def test_disk_full_and_read_only(self):
        self.mount_tmpfs("8m")
        sim = self.start_sim(["--speed", "0", "--current", "30", "--no-sleep"])
        gw = self.start_gateway([sim.link], STORAGE_CONFIG, args=["--poll-ms", "200", "-q"])
        filler = os.path.join(self.data_dir, "filler")

        def fill():
            with open(filler, "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                except OSError:
                    pass
            # Room only for what is already there.

        def unfill():
            os.unlink(filler)
        self.check_storage_fault_and_recovery(gw, fill, unfill, "disk_full")

        # Read-only: a read-only bind mount over the directory. Files the daemon holds open
        # (history.db) stay writable through their descriptors; every new file (the atomic
        # saves of config.json and energy.json) gets EROFS.
        def ro():
            subprocess.run(["mount", "--bind", self.data_dir, self.data_dir], check=True)
            subprocess.run(["mount", "-o", "remount,bind,ro", self.data_dir], check=True)

        def rw():
            subprocess.run(["umount", self.data_dir], check=True)
        db, written_before = self.check_storage_fault_and_recovery(gw, ro, rw, "read_only", history_fails=False)
        self.stop_daemon_cleanly(gw)
        self.assertEqual(integrity(db), "ok")
        self.assertGreaterEqual(history_rows(db), written_before, "history rows lost")

    def test_sigterm_under_load(self):
        """SIGTERM while web clients hammer the API and alerts are being raised: every thread
        joins (clean exit in time), the queued history and the alert are on disk after."""
        sim = self.start_sim(["--speed", "0", "--current", "30", "--no-sleep"])
        gw = self.start_gateway([sim.link], STORAGE_CONFIG, args=["--poll-ms", "100", "-q"])
        wait_for(lambda: self.api("/api/status")["history"]["samples_written"] >= 3, 60, "history rows written")
        stop = threading.Event()
        answered = [0]

        def client():
            while not stop.is_set():
                try:
                    faultlib.http(self.port, "GET", "/api/data", auth=(faultlib.USER, faultlib.PASSWORD), timeout=10)
                    answered[0] += 1
                except Exception:
                    return
        clients = [threading.Thread(target=client, daemon=True) for _ in range(6)]
        for c in clients:
            c.start()
        sim.cmd("set-cell 3 3630")  # a high cell: a voltage alert raised just before the stop
        gw.wait_log(r"alert_manager: raised", 30)
        written = self.api("/api/status")["history"]["samples_written"]
        raised = [h for h in self.alerts()["history"] if h["event"] == "raised"]
        self.stop_daemon_cleanly(gw)
        stop.set()
        for c in clients:
            c.join(30)
        figure("sigterm_under_load.stop_s", "%.2f" % gw.stop_seconds)
        figure("sigterm_under_load.requests_answered", answered[0])
        db = os.path.join(self.data_dir, "history.db")
        self.assertEqual(integrity(db), "ok")
        self.assertGreaterEqual(history_rows(db), written, "queued history lost at SIGTERM")
        gw2 = self.start_gateway([sim.link], STORAGE_CONFIG, args=["--poll-ms", "100", "-q"], name="gw2", fresh=False)
        after = [h for h in self.alerts()["history"] if h["event"] == "raised"]
        self.assertTrue({(h["code"], h["timestamp_ms"]) for h in raised} <=
                        {(h["code"], h["timestamp_ms"]) for h in after}, "alerts lost at SIGTERM")
        self.stop_daemon_cleanly(gw2)


if __name__ == "__main__":
    faultlib.gwtest.main()
