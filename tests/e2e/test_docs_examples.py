#!/usr/bin/python3
"""The users' documentation says what the gateway really does (Python 3 standard library only).

1. Every alert code the user pages name (backticked UPPER_SNAKE words that are not names of the
   C sources, and every "code" of a JSON example) exists in the alert-code table of
   src/core/alert_rules/alert_rules.c: an automation written from the docs must be able to fire.
2. Every JSON example of docs/mqtt.md parses (fenced ```json blocks and inline `{...}` spans).
3. Every alert payload shown in the user pages has exactly the keys the MQTT gateway publishes
   (src/services/mqtt_gateway/mqtt_format.c), a real event and level, and the level that
   docs/alerts.md's tables give for its code.
4. The user pages name no source internals: no source paths, C file, function, event or test
   names, no links to documents outside the repository; every relative link of the docs points
   to a file of the repository and an existing heading.
5. When the daemon is built and sqlite3 is installed: a simulated run writes a data directory,
   and every `sudo -u tinybms-gw ...` command of the user pages (the sqlite3 one-liners, the
   energy counters) runs as printed against it (the data directory path replaced).
"""
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

SOURCE_DIR = os.environ.get("GW_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_DIR = os.environ.get("GW_BUILD_DIR") or os.getcwd()
TINYBMS_GW = os.environ.get("TINYBMS_GW") or os.path.join(BUILD_DIR, "tinybms-gw")

# Every page a user reads: README.md and docs/*.md (docs/dev/ is for developers).
USER_DOCS = [os.path.join(SOURCE_DIR, "README.md")] + sorted(glob.glob(os.path.join(SOURCE_DIR, "docs", "*.md")))
# The pages split into a user page and docs/dev/<name> (issue 11): no internals at all.
CLEAN_PAGES = ["README.md", "docs/alerts.md", "docs/history.md", "docs/mqtt.md", "docs/can.md",
               "docs/protocol-tinybms.md", "docs/can-frames.md", "docs/simulator.md", "docs/several-packs.md"]
# Backticked UPPER_SNAKE words of the operating system that are no alert codes.
OS_PREFIXES = ("CAP_", "RLIMIT_", "SIG", "O_")
DATA_DIR = "/var/lib/tinybms-gw"

UPPER_SNAKE_TICK = re.compile(r"`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)`")
JSON_CODE = re.compile(r'"code"\s*:\s*"([^"]*)"')


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def rel(path):
    return os.path.relpath(path, SOURCE_DIR)


def alert_codes():
    """The code names of the alert-code table of alert_rules.c (rows `[ALERT_CODE_X] = { "X", ...`)."""
    text = read(os.path.join(SOURCE_DIR, "src", "core", "alert_rules", "alert_rules.c"))
    codes = set(re.findall(r'\[ALERT_CODE_[A-Z0-9_]+\]\s*=\s*\{?\s*"([A-Z0-9_]+)"', text))
    if len(codes) < 10:
        raise AssertionError("alert-code table of alert_rules.c not found (%d codes)" % len(codes))
    return codes


def strip_c(text):
    """C source without comments, string and character literals."""
    return re.sub(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', " ", text, flags=re.S)


def c_names():
    """Every UPPER_SNAKE identifier of the C sources (macros, enum constants), strings excluded."""
    names = set()
    for pattern in ("src/**/*.[ch]", "tools/**/*.[ch]"):
        for path in glob.glob(os.path.join(SOURCE_DIR, pattern), recursive=True):
            names.update(re.findall(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b", strip_c(read(path))))
    # Environment variables the programs and tests read (documented knobs, not alert codes).
    for pattern in ("src/**/*.[ch]", "tools/**/*.[ch]", "tests/**/*.[ch]", "bench/**/*.[ch]"):
        for path in glob.glob(os.path.join(SOURCE_DIR, pattern), recursive=True):
            names.update(re.findall(r'getenv\("([A-Z][A-Z0-9_]*)"\)', read(path)))
    # Variables of the installed service's options file.
    for path in glob.glob(os.path.join(SOURCE_DIR, "packaging", "*.default")):
        names.update(re.findall(r"^([A-Z][A-Z0-9_]*)=", read(path), re.M))
    return names


def published_alert_keys():
    """The keys of the MQTT alert payload, in the order mqtt_gateway__alert_json() adds them."""
    text = read(os.path.join(SOURCE_DIR, "src", "services", "mqtt_gateway", "mqtt_format.c"))
    body = text[text.index("mqtt_gateway__alert_json("):]
    body = body[:body.index("\n}\n")]
    return re.findall(r'(?:cJSON_Add\w+ToObject|add_num)\(root,\s*"(\w+)"', body)


def fenced_blocks(text, langs):
    """(language, body) of every fenced block whose language is in langs."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)
            if m.group(1) in langs]


def json_examples(text):
    """Every JSON example of a page: ```json blocks, JSON payloads of `mosquitto_sub -v` output
    lines ("topic {...}") in other blocks, and inline `{...}` code spans."""
    out = [body for _, body in fenced_blocks(text, ("json",))]
    for _, body in fenced_blocks(text, ("", "sh", "text")):
        out += re.findall(r"^[\w/+#-]+ (\{.*\})$", body, re.M)
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    out += re.findall(r'`(\{"[^`\n]*\})`', prose)  # not a template such as `{{ ... }}`
    return out


def alert_objects(value):
    """Every JSON object inside value that looks like an alert payload (has event and code)."""
    if isinstance(value, dict):
        if "event" in value and "code" in value:
            yield value
        for v in value.values():
            yield from alert_objects(v)
    elif isinstance(value, list):
        for v in value:
            yield from alert_objects(v)


def documented_levels():
    """code -> level from the tables of docs/alerts.md that have a Code and a Level column."""
    levels = {}
    header = None
    for line in read(os.path.join(SOURCE_DIR, "docs", "alerts.md")).splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            continue
        if all(re.fullmatch(r":?-+:?", c) for c in cells):
            continue
        if "Code" in header and "Level" in header and len(cells) == len(header):
            m = re.fullmatch(r"`([A-Z0-9_]+)`", cells[header.index("Code")])
            level = re.sub(r"\*", "", cells[header.index("Level")]).split()
            if m and level:
                levels[m.group(1)] = level[0]
    return levels


class DocsExamples(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.codes = alert_codes()
        cls.c_names = c_names()

    def test_alert_code_table_read(self):
        self.assertGreater(len(self.codes), 40, "the alert-code table was not found in alert_rules.c")
        self.assertIn("OVER_VOLTAGE", self.codes)

    def test_every_named_alert_code_exists(self):
        bad = []
        for path in USER_DOCS:
            text = read(path)
            for n, line in enumerate(text.splitlines(), 1):
                for word in UPPER_SNAKE_TICK.findall(line):
                    if word in self.codes or word in self.c_names or word.startswith(OS_PREFIXES):
                        continue
                    bad.append("%s:%d: `%s` is not an alert code" % (rel(path), n, word))
                for code in JSON_CODE.findall(line):
                    if code not in self.codes:
                        bad.append('%s:%d: "code":"%s" is not an alert code' % (rel(path), n, code))
        self.assertEqual(bad, [], "alert codes the gateway does not have:\n" + "\n".join(bad))

    def test_mqtt_json_examples_parse(self):
        text = read(os.path.join(SOURCE_DIR, "docs", "mqtt.md"))
        examples = json_examples(text)
        self.assertGreater(len(examples), 5)
        bad = []
        for example in examples:
            try:
                json.loads(example)
            except ValueError as e:
                bad.append("%s\n  -> %s" % (example.strip()[:200], e))
        self.assertEqual(bad, [], "docs/mqtt.md JSON examples that do not parse:\n" + "\n".join(bad))

    def test_alert_payload_examples_match_the_gateway(self):
        keys = published_alert_keys()
        self.assertIn("code", keys)
        levels = documented_levels()
        self.assertEqual(levels.get("OVER_VOLTAGE"), "error", "docs/alerts.md tables not read")
        seen = 0
        bad = []
        for path in USER_DOCS:
            for example in json_examples(read(path)):
                try:
                    value = json.loads(example)
                except ValueError:
                    continue  # mqtt.md is checked above; other pages may show JSON fragments
                for a in alert_objects(value):
                    seen += 1
                    where = "%s: %s" % (rel(path), json.dumps(a)[:120])
                    if list(a.keys()) != keys:
                        bad.append("%s\n  keys %s, the gateway publishes %s" % (where, list(a.keys()), keys))
                    if a.get("event") not in ("raised", "cleared"):
                        bad.append("%s\n  event %r" % (where, a.get("event")))
                    if a.get("level") not in ("info", "warning", "error"):
                        bad.append("%s\n  level %r" % (where, a.get("level")))
                    elif a.get("code") in levels and levels[a["code"]] != a["level"]:
                        bad.append("%s\n  level %r, docs/alerts.md says %r" % (where, a["level"], levels[a["code"]]))
        self.assertGreater(seen, 0, "no alert payload example found in the user pages")
        self.assertEqual(bad, [], "alert payload examples unlike the gateway's:\n" + "\n".join(bad))

    def test_user_pages_name_no_internals(self):
        rules = [
            (re.compile(r"(?<![\w/.~-])(?:src|tests|bench|tools|build/\w+/tests)/"), "a source path"),
            (re.compile(r"\b\w+\.[ch]\b"), "a C file"),
            (re.compile(r"\b[a-z][a-z0-9]*_[a-z0-9_]*\("), "a C function"),
            (re.compile(r"\b(?:EVENT|GW_ERR|ALERT_OP|ALERT_LEVEL|HISTORY|BMS_CELL_ORDER)_[A-Z0-9_]+|\bGW_OK\b"),
             "a C constant"),
            (re.compile(r"\b(?:struct|enum) [a-z][a-z0-9]*_[a-z0-9_]+\b"), "a C type"),
            (re.compile(r"\b(?:test|bench|fuzz)_[a-z0-9_]+"), "a test or benchmark"),
            (re.compile(r"/work/|(?<![\w/])shared/|\.\./shared"), "a document users do not have"),
        ]
        bad = []
        for name in CLEAN_PAGES:
            for n, line in enumerate(read(os.path.join(SOURCE_DIR, name)).splitlines(), 1):
                for rx, what in rules:
                    m = rx.search(line)
                    if m:
                        bad.append("%s:%d: %s (%s): %s" % (name, n, what, m.group(0), line.strip()[:100]))
        self.assertEqual(bad, [], "developer details in user pages (move them to docs/dev/):\n" + "\n".join(bad))


def slug(heading):
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path):
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.*)$", re.sub(r"^```.*?^```", "", read(path), flags=re.S | re.M), re.M)}


class DocsLinks(unittest.TestCase):
    def test_links_point_into_the_repository(self):
        """Every relative link of README.md, docs/ and docs/dev/ names a file of the repository and,
        with #anchor, one of its headings (a user has the repository, nothing outside it)."""
        pages = USER_DOCS + sorted(glob.glob(os.path.join(SOURCE_DIR, "docs", "dev", "*.md")))
        bad = []
        for path in pages:
            prose = re.sub(r"^```.*?^```", "", read(path), flags=re.S | re.M)
            for target in re.findall(r"\]\(([^)\s]+)\)", prose):
                if re.match(r"[a-z]+:", target):
                    continue  # http(s), mailto: public references
                file, _, anchor = target.partition("#")
                dest = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
                if not dest.startswith(SOURCE_DIR + os.sep) or not os.path.isfile(dest):
                    bad.append("%s: %s: no such file in the repository" % (rel(path), target))
                elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
                    bad.append("%s: %s: no heading #%s in %s" % (rel(path), target, anchor, rel(dest)))
        self.assertEqual(bad, [], "broken links:\n" + "\n".join(bad))


def documented_commands():
    """(page, command) for every `sudo -u tinybms-gw ...` line of a ```sh block of the user pages."""
    out = []
    for path in USER_DOCS:
        for _, body in fenced_blocks(read(path), ("sh",)):
            for line in body.splitlines():
                if line.startswith("sudo -u tinybms-gw "):
                    out.append((rel(path), line))
    return out


@unittest.skipUnless(os.access(TINYBMS_GW, os.X_OK) and shutil.which("sqlite3"),
                     "needs the tinybms-gw binary and the sqlite3 command")
class DocumentedCommands(unittest.TestCase):
    """The one-liners of the user pages against the files of a real (simulated) run."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="gw-docs-")
        cls.data = os.path.join(cls.tmp, "data")
        # A charging battery at 99 %: an over-voltage alert within seconds, history rows every 5 s.
        proc = subprocess.Popen([TINYBMS_GW, "--simulate", "--data-dir", cls.data, "--quiet",
                                 "--sim-arg=--scenario=charge", "--sim-arg=--soc=99", "--sim-arg=--speed=20"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        log = []
        deadline = time.monotonic() + 90
        for line in proc.stderr:
            log.append(line)
            if "raised OVER_VOLTAGE" in line or time.monotonic() > deadline:
                break
        time.sleep(6)  # one more history period
        proc.send_signal(signal.SIGINT)
        try:
            rest, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rest, _ = proc.communicate()
        cls.log = "".join(log) + (rest or "")
        cls.rc = proc.returncode

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_commands_run_as_printed(self):
        self.assertEqual(self.rc, 0, self.log[-2000:])
        self.assertIn("raised OVER_VOLTAGE", self.log, "the simulated run raised no alert:\n" + self.log[-2000:])
        commands = documented_commands()
        self.assertGreaterEqual(len(commands), 8, "fewer documented one-liners than expected")
        outputs = []
        for page, cmd in commands:
            run = cmd[len("sudo -u tinybms-gw "):].replace(DATA_DIR, self.data)
            target = re.search(r">\s*(\S+)\s*$", run)
            p = subprocess.run(["/bin/sh", "-c", run], cwd=self.tmp, capture_output=True, text=True, timeout=60)
            with self.subTest(page=page, command=cmd[:90]):
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertEqual(p.stderr, "")
                out = p.stdout
                if target:
                    out = read(os.path.join(self.tmp, target.group(1)))
                self.assertNotEqual(out.strip(), "", "no output")
                outputs.append(out)
        self.assertTrue(any("OVER_VOLTAGE" in o for o in outputs), "no one-liner shows the alert raised")


if __name__ == "__main__":
    unittest.main(verbosity=2)
