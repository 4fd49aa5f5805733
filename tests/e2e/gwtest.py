"""Support for the end-to-end tests of the tinybms-gw daemon (Python 3 standard library only).

Each test starts real processes: the simulator (tinybms-sim, on a pty), the daemon (tinybms-gw)
and, depending on the file, socat + python-can (CAN peer) or mosquitto + mosquitto_sub (MQTT).
Everything lives in a temporary directory; every child is terminated and reaped at the end.
Synchronisation is always "wait for a condition with a deadline", never a fixed sleep.

Environment (set by tests/e2e/e2e.cmake; defaults for running a file by hand from a build dir):
  TINYBMS_GW, TINYBMS_SIM   the two executables
  GW_BUILD_DIR, GW_SOURCE_DIR
  GW_MOSQUITTO              the broker executable (MQTT tests)
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

SOURCE_DIR = os.environ.get("GW_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_DIR = os.environ.get("GW_BUILD_DIR") or os.getcwd()
TINYBMS_GW = os.environ.get("TINYBMS_GW") or os.path.join(BUILD_DIR, "tinybms-gw")
TINYBMS_SIM = os.environ.get("TINYBMS_SIM") or os.path.join(BUILD_DIR, "tools", "tinybms-sim", "tinybms-sim")
GW_MOSQUITTO = os.environ.get("GW_MOSQUITTO") or shutil.which("mosquitto") or "/usr/sbin/mosquitto"
CAN_PEER = os.path.join(SOURCE_DIR, "tests", "integration", "can_peer.py")
SYSTEM_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

# One summary line per sample: "10:02:11 bat0  53.12 V  -12.30 A ..."
SUMMARY_RE = re.compile(r"^\d\d:\d\d:\d\d bat(\d+)\s+(-?[\d.]+) V\s+(-?[\d.]+) A")
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "SUMMARY: UndefinedBehaviorSanitizer", "SUMMARY: AddressSanitizer")

# Generous: the machine has 2 cores shared by many builds and every binary runs under ASan.
STOP_DEADLINE_S = 30.0


def wait_for(predicate, timeout, what, interval=0.05):
    """Polls predicate() until it returns a true value (returned) or timeout seconds pass
    (AssertionError naming `what`)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def free_port():
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def read_text(path):
    try:
        with open(path, "r", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def stop_process(proc, sig=signal.SIGTERM, timeout=STOP_DEADLINE_S):
    """Sends sig (unless None), waits up to timeout, then SIGKILLs. Returns (exit code, True if it stopped in
    time by itself). Always reaps."""
    if proc.poll() is not None:
        return proc.returncode, True
    if sig is not None:  # None: already signalled elsewhere, just wait
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=timeout)
        return proc.returncode, True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return proc.returncode, False


class LineQueue:
    """Reads a pipe line by line on a thread; lines can be waited for."""

    def __init__(self, pipe, copy_to=None):
        self._lines = []
        self._cond = threading.Condition()
        self._closed = False
        self._copy = copy_to
        self._thread = threading.Thread(target=self._run, args=(pipe,), daemon=True)
        self._thread.start()

    def _run(self, pipe):
        for raw in iter(pipe.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if self._copy:
                self._copy.write(line + "\n")
                self._copy.flush()
            with self._cond:
                self._lines.append((time.monotonic(), line))
                self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def get(self, index, timeout):
        """Line number `index` (0-based) once it exists, or None after timeout / end of stream."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._lines) <= index:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return None
                self._cond.wait(left)
            return self._lines[index][1]

    def count(self):
        with self._cond:
            return len(self._lines)

    def snapshot(self):
        with self._cond:
            return list(self._lines)


class Sim:
    """tinybms-sim on a pty, with its control channel (stdin commands, one JSON answer each)."""

    def __init__(self, workdir, link, args=(), name="sim"):
        self.link = link
        self.stderr_path = os.path.join(workdir, name + ".stderr")
        self.stdout_path = os.path.join(workdir, name + ".stdout")
        self._stderr = open(self.stderr_path, "wb")
        self._stdout_copy = open(self.stdout_path, "w")
        self.proc = subprocess.Popen([TINYBMS_SIM, "--link", link] + list(args), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._stderr)
        self._out = LineQueue(self.proc.stdout, self._stdout_copy)
        self._next = 0
        self._lock = threading.Lock()
        first = self._out.get(0, 30)
        if first is None or not first.startswith("/dev/"):
            self.stop()
            raise AssertionError("tinybms-sim did not print its pty path (got %r); stderr: %s"
                                 % (first, read_text(self.stderr_path)[-2000:]))
        self.device = first
        self._next = 1
        wait_for(lambda: os.path.islink(link), 10, "the simulator's --link symlink")

    def cmd(self, line, timeout=20):
        """Sends one control command, returns its JSON answer (dict). Fails the test on no answer
        or an {"ok":false} answer."""
        with self._lock:
            self.proc.stdin.write((line + "\n").encode())
            self.proc.stdin.flush()
            answer = self._out.get(self._next, timeout)
            if answer is None:
                raise AssertionError("tinybms-sim: no answer to %r" % line)
            self._next += 1
        doc = json.loads(answer)
        if not doc.get("ok"):
            raise AssertionError("tinybms-sim refused %r: %s" % (line, answer))
        return doc

    def state(self):
        return self.cmd("state")

    def stop(self):
        """quit, then SIGTERM/SIGKILL if needed. Returns the exit code."""
        rc = None
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b"quit\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                pass
            try:
                rc = self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                rc, _ = stop_process(self.proc)
        else:
            rc = self.proc.returncode
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except (OSError, ValueError):
                pass
        self._stderr.close()
        self._stdout_copy.close()
        return rc


class Daemon:
    """The real tinybms-gw process; stdout (summary lines) and stderr (logs) go to files."""

    def __init__(self, workdir, args, name="gw", env=None, new_session=False):
        self.name = name
        self.stdout_path = os.path.join(workdir, name + ".stdout")
        self.stderr_path = os.path.join(workdir, name + ".stderr")
        self._stdout = open(self.stdout_path, "wb")
        self._stderr = open(self.stderr_path, "wb")
        full_env = dict(os.environ)
        full_env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        for key, value in (env or {}).items():  # None removes a variable
            if value is None:
                full_env.pop(key, None)
            else:
                full_env[key] = value
        self.args = [TINYBMS_GW] + list(args)
        # new_session: own process group, like a shell job (Ctrl-C reaches the whole group).
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=self._stdout,
                                     stderr=self._stderr, env=full_env, start_new_session=new_session)
        self.returncode = None

    def stdout(self):
        return read_text(self.stdout_path)

    def stderr(self):
        return read_text(self.stderr_path)

    def summary_lines(self):
        return [l for l in self.stdout().splitlines() if SUMMARY_RE.match(l)]

    def alive(self):
        return self.proc.poll() is None

    def wait_log(self, pattern, timeout, start=0):
        """Waits for a regex in stderr (from character offset `start`); returns the match."""
        rx = re.compile(pattern)

        def found():
            if not self.alive():
                raise AssertionError("%s exited (%s) while waiting for log %r; stderr tail:\n%s"
                                     % (self.name, self.proc.returncode, pattern, self.stderr()[-3000:]))
            return rx.search(self.stderr(), start)
        return wait_for(found, timeout, "log line /%s/ of %s" % (pattern, self.name))

    def wait_summaries(self, n, timeout, after=0):
        """Waits until more than `after` + n - 1 summary lines exist; returns their count."""
        def enough():
            if not self.alive():
                raise AssertionError("%s exited (%s) while waiting for samples; stderr tail:\n%s"
                                     % (self.name, self.proc.returncode, self.stderr()[-3000:]))
            c = len(self.summary_lines())
            return c if c >= after + n else 0
        return wait_for(enough, timeout, "%d summary lines from %s" % (after + n, self.name))

    def stop(self, sig=signal.SIGTERM, timeout=STOP_DEADLINE_S):
        """Signals the daemon; returns (exit code, stopped within the deadline)."""
        t0 = time.monotonic()
        rc, in_time = stop_process(self.proc, sig, timeout)
        self.stop_seconds = time.monotonic() - t0
        self.returncode = rc
        self._stdout.close()
        self._stderr.close()
        return rc, in_time

    def sanitizer_report(self):
        text = self.stderr()
        for marker in SANITIZER_MARKERS:
            i = text.find(marker)
            if i >= 0:
                return text[max(0, i - 200):i + 3000]
        return None


class Socat:
    """A pty pair: <dir>/canA <-> <dir>/canB (what an slcan USB adapter and its bus look like)."""

    def __init__(self, workdir):
        self.a = os.path.join(workdir, "canA")
        self.b = os.path.join(workdir, "canB")
        self._log = open(os.path.join(workdir, "socat.stderr"), "wb")
        self.proc = subprocess.Popen(["socat", "-d", "-d", "pty,raw,echo=0,link=" + self.a,
                                      "pty,raw,echo=0,link=" + self.b], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self._log)
        wait_for(lambda: os.path.exists(self.a) and os.path.exists(self.b), 20, "socat's pty links")

    def stop(self):
        stop_process(self.proc)
        self._log.close()


class CanPeer:
    """tests/integration/can_peer.py (python-can slcan, plays the GX: sends 0x305 keep-alives) on
    one end of the pty pair. Its JSON lines go to a file that is parsed while it runs."""

    def __init__(self, workdir, channel, name="peer", extra=()):
        self.out = os.path.join(workdir, name + ".jsonl")
        self.until = os.path.join(workdir, name + ".stop")
        self.ready = os.path.join(workdir, name + ".ready")
        self._err_path = os.path.join(workdir, name + ".stderr")
        self._err = open(self._err_path, "wb")
        self.proc = subprocess.Popen([SYSTEM_PYTHON, CAN_PEER, "--channel", channel, "--duration", "600",
                                      "--until-file", self.until, "--ready-file", self.ready,
                                      "--out", self.out] + list(extra),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._err)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("can_peer.py exited (%s): %s" % (self.proc.returncode,
                                     read_text(self._err_path)[-2000:]))
            return os.path.exists(self.ready)
        wait_for(ready, 60, "can_peer.py to open the bus")
        self.summary = None

    def frames(self, can_id=None, after=None):
        """Received frames as dicts {wall, id (int), data (bytes), decoded}, optionally only one
        id and only those received after wall time `after`."""
        out = []
        for line in read_text(self.out).splitlines():
            if not line.endswith("}"):
                continue  # a line being written
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if "summary" in doc:
                self.summary = doc["summary"]
                continue
            fid = int(doc["id"], 16)
            if can_id is not None and fid != can_id:
                continue
            if after is not None and doc["wall"] <= after:
                continue
            out.append({"wall": doc["wall"], "id": fid, "data": bytes.fromhex(doc["data"]),
                        "decoded": doc["decoded"]})
        return out

    def stop(self):
        if self.proc.poll() is None:
            open(self.until, "w").close()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                stop_process(self.proc)
        self.frames()
        self._err.close()
        return self.proc.returncode


class Mosquitto:
    """A private mosquitto on a loopback port (persistence on, so persistent sessions survive a
    restart of the broker)."""

    def __init__(self, workdir, port=None, name="mosquitto", persistence=True, start=True):
        self.port = port or free_port()
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(self.dir, "mosquitto.conf")
        with open(self.conf, "w") as f:
            f.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence %s\n"
                    "persistence_location %s/\nlog_dest stderr\nlog_type error\nlog_type warning\n"
                    "log_type notice\nlog_type information\n"
                    % (self.port, "true" if persistence else "false", self.dir))
            if os.geteuid() == 0:
                # As root, mosquitto drops to user "mosquitto", which cannot write the
                # persistence file in our private temp dir.
                f.write("user root\n")
        self.proc = None
        self._runs = 0
        if start:
            self.start()

    def start(self):
        self._runs += 1
        self._log = open(os.path.join(self.dir, "broker-%d.log" % self._runs), "wb")
        self.proc = subprocess.Popen([GW_MOSQUITTO, "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("mosquitto exited (%s): %s" % (self.proc.returncode,
                                     read_text(self._log.name)[-2000:]))
            return port_open(self.port)
        wait_for(up, 30, "mosquitto listening on port %d" % self.port)

    def log(self):
        """Text of the current run's broker log."""
        return read_text(self._log.name) if self.proc is not None else ""

    def wait_client(self, client_id, timeout=30):
        """Waits until the broker logs that client_id connected (in this run)."""
        return wait_for(lambda: (" as %s " % client_id) in self.log(), timeout,
                        "client %s connected to mosquitto" % client_id)

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
            self._log.close()


class Subscriber:
    """mosquitto_sub printing '<retained> <qos> <topic> <payload>' per message; records
    (monotonic time, retained, qos, topic, payload)."""

    def __init__(self, workdir, port, topics, name="sub", client_id=None, qos=1, extra=()):
        args = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", str(qos),
                "-F", "%r %q %t %p"]
        if client_id:
            args += ["-i", client_id, "-c"]  # persistent session: QoS 1 queued while away
        for t in topics:
            args += ["-t", t]
        args += list(extra)
        self._err = open(os.path.join(workdir, name + ".stderr"), "wb")
        self._copy = open(os.path.join(workdir, name + ".stdout"), "w")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._err)
        self._q = LineQueue(self.proc.stdout, self._copy)

    def messages(self):
        out = []
        for t, line in self._q.snapshot():
            parts = line.split(" ", 3)
            if len(parts) < 3:
                continue
            payload = parts[3] if len(parts) > 3 else ""
            out.append((t, parts[0] == "1", int(parts[1]), parts[2], payload))
        return out

    def last(self, topic):
        """(retained, qos, payload) of the newest message on topic, or None."""
        for t, r, q, top, p in reversed(self.messages()):
            if top == topic:
                return r, q, p
        return None

    def wait(self, predicate, timeout, what):
        """Waits for a message m (tuple as in messages()) with predicate(m); returns it."""
        def find():
            for m in self.messages():
                if predicate(m):
                    return m
            return None
        return wait_for(find, timeout, what)

    def stop(self):
        stop_process(self.proc)
        try:
            self.proc.stdout.close()
        except OSError:
            pass
        self._err.close()
        self._copy.close()


def retained_snapshot(port, topics, seconds=3.0):
    """Subscribes fresh and returns {topic: (retained, qos, payload)} of what the broker hands a
    new subscriber (retained messages arrive first, flagged). Runs mosquitto_sub with -W."""
    args = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-F", "%r %q %t %p",
            "--retained-only", "-W", str(max(1, int(seconds)))]
    for t in topics:
        args += ["-t", t]
    proc = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=seconds + 30)
    out = {}
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        parts = line.split(" ", 3)
        if len(parts) >= 3:
            out[parts[2]] = (parts[0] == "1", int(parts[1]), parts[3] if len(parts) > 3 else "")
    return out


class GatewayTestCase(unittest.TestCase):
    """Temp dir + registry of children; tearDown stops them all (reverse order) and removes the
    directory (kept when GW_E2E_KEEP=1 or the test failed, for post-mortem)."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="gw-e2e-")
        self.data_dir = os.path.join(self.tmp, "data")
        self._children = []
        self._daemons = []

    def tearDown(self):
        for child in reversed(self._children):
            try:
                child.stop()
            except Exception as e:  # keep stopping the others
                sys.stderr.write("teardown: %r\n" % e)
        failed = self._outcome_failed()
        if failed:
            for d in self._daemons:
                sys.stderr.write("---- %s stderr tail (%s)\n%s\n" % (d.name, d.stderr_path, d.stderr()[-4000:]))
        if os.environ.get("GW_E2E_KEEP") or failed:
            sys.stderr.write("kept %s\n" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _outcome_failed(self):
        outcome = getattr(self, "_outcome", None)
        if outcome is None:
            return False
        result = getattr(outcome, "result", None)
        if result is not None and hasattr(result, "failures"):
            mine = [t for t, _ in result.failures + result.errors if t is self]
            return bool(mine)
        errors = getattr(outcome, "errors", [])
        return any(exc for _, exc in errors)

    def track(self, child):
        self._children.append(child)
        if isinstance(child, Daemon):
            self._daemons.append(child)
        return child

    def start_sim(self, args=(), link=None, name="sim"):
        return self.track(Sim(self.tmp, link or os.path.join(self.tmp, "bms"), args, name))

    def start_daemon(self, args, name="gw", with_data_dir=True, new_session=False):
        full = list(args)
        if with_data_dir:
            full += ["--data-dir", self.data_dir]
        return self.track(Daemon(self.tmp, full, name, new_session=new_session))

    def stop_daemon_cleanly(self, daemon, sig=signal.SIGTERM):
        """Stops it (sig None: it was already signalled) and checks the clean-shutdown
        contract: exit 0 in time, "stopped cleanly", no sanitizer report."""
        rc, in_time = daemon.stop(sig)
        sys.stderr.write("[%s stopped in %.2f s] " % (daemon.name, daemon.stop_seconds))
        self.assertTrue(in_time, "%s did not stop within %.0f s of signal %s" % (daemon.name, STOP_DEADLINE_S, sig))
        self.assertEqual(rc, 0, "%s exit code after signal %s; stderr tail:\n%s" % (daemon.name, sig, daemon.stderr()[-3000:]))
        self.assertIn("stopped cleanly", daemon.stderr())
        self.assertIsNone(daemon.sanitizer_report(), "sanitizer report in %s stderr" % daemon.name)

    def write_config(self, doc):
        """Writes <data>/config.json before the daemon starts (a partial document: defaults fill
        the rest)."""
        os.makedirs(self.data_dir, exist_ok=True)
        path = os.path.join(self.data_dir, "config.json")
        with open(path, "w") as f:
            json.dump(doc, f)
        os.chmod(path, 0o600)
        return path


def run_gw(args, timeout=60):
    """Runs tinybms-gw to completion (for options that exit at once)."""
    return subprocess.run([TINYBMS_GW] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout)


def main():
    unittest.main(verbosity=2)
