"use strict";
// Processes for the browser tests: tinybms-sim on a pty (with its stdin control channel) and
// the real tinybms-gw daemon, each in a temporary directory, on a port chosen free at run time.
// Every wait is "a condition with a deadline", never a fixed sleep.
const { spawn, spawnSync } = require("child_process");
const fs = require("fs");
const net = require("net");
const os = require("os");
const path = require("path");

const SOURCE_DIR = process.env.GW_SOURCE_DIR || path.resolve(__dirname, "..", "..");
const BUILD_DIR = process.env.GW_BUILD_DIR || process.cwd();
const TINYBMS_GW = process.env.TINYBMS_GW || path.join(BUILD_DIR, "tinybms-gw");
const TINYBMS_SIM = process.env.TINYBMS_SIM || path.join(BUILD_DIR, "tools", "tinybms-sim", "tinybms-sim");

async function waitFor(fn, timeoutMs, what, intervalMs = 50) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() >= deadline) throw new Error("timed out after " + timeoutMs + " ms waiting for " + what);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

function tmpDir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

function exited(proc) {
  return proc.exitCode !== null || proc.signalCode !== null;
}

// Resolves with the exit code once proc ends; SIGKILL after timeoutMs.
function stopProcess(proc, signal = "SIGTERM", timeoutMs = 30000) {
  return new Promise((resolve) => {
    if (exited(proc)) { resolve({ code: proc.exitCode, inTime: true }); return; }
    const t = setTimeout(() => { proc.kill("SIGKILL"); }, timeoutMs);
    proc.once("exit", (code) => { clearTimeout(t); resolve({ code, inTime: code !== null }); });
    proc.kill(signal);
  });
}

class Sim {
  constructor(dir, name, args) {
    this.link = path.join(dir, name);
    this.stderr = fs.openSync(path.join(dir, name + ".stderr"), "w");
    this.proc = spawn(TINYBMS_SIM, ["--link", this.link, "--no-sleep"].concat(args || []),
      { stdio: ["pipe", "pipe", this.stderr] });
    this.lines = [];
    this.waiters = [];
    let buf = "";
    this.proc.stdout.on("data", (chunk) => {
      buf += chunk.toString();
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        this.lines.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
        for (const w of this.waiters.splice(0)) w();
      }
    });
    this.next = 0;
    this.queue = Promise.resolve();
  }

  line(index, timeoutMs) {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.lines.length > index) { clearTimeout(t); resolve(this.lines[index]); return true; }
        return false;
      };
      const t = setTimeout(() => reject(new Error("tinybms-sim: no line " + index)), timeoutMs);
      if (!check()) {
        const again = () => { if (!check()) this.waiters.push(again); };
        this.waiters.push(again);
      }
    });
  }

  async start() {
    const first = await this.line(0, 30000);
    if (!first.startsWith("/dev/")) throw new Error("tinybms-sim printed " + first);
    this.next = 1;
    await waitFor(() => fs.existsSync(this.link), 10000, "the simulator's link");
    return this;
  }

  // One control command; its JSON answer (throws on {"ok":false}).
  cmd(text) {
    const run = async () => {
      this.proc.stdin.write(text + "\n");
      const answer = JSON.parse(await this.line(this.next++, 20000));
      if (!answer.ok) throw new Error("tinybms-sim refused " + text + ": " + JSON.stringify(answer));
      return answer;
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => {});
    return p;
  }

  async stop() {
    if (!exited(this.proc)) {
      try { this.proc.stdin.write("quit\n"); } catch (e) { /* gone */ }
      await stopProcess(this.proc, null, 10000).catch(() => {});
      if (!exited(this.proc)) await stopProcess(this.proc);
    }
    fs.closeSync(this.stderr);
  }
}

// Sets the web password with `tinybms-gw --set-password` reading standard input.
function setPassword(dataDir, password) {
  const r = spawnSync(TINYBMS_GW, ["--set-password", "--data-dir", dataDir], { input: password + "\n", timeout: 120000 });
  if (r.status !== 0) throw new Error("--set-password failed: " + r.stderr);
  return r;
}

class Daemon {
  // config: the config.json written before the start (merged over the test defaults).
  constructor(dir, { args, config, name }) {
    this.dir = dir;
    this.name = name || "gw";
    this.data = path.join(dir, "data");
    fs.mkdirSync(this.data, { recursive: true });
    this.config = config || {};
    this.args = args || [];
    this.stderrPath = path.join(dir, this.name + ".stderr");
  }

  writeConfig() {
    const file = path.join(this.data, "config.json");
    fs.writeFileSync(file, JSON.stringify(this.config), { mode: 0o600 });
  }

  async start() {
    this.port = await freePort();
    const out = fs.openSync(path.join(this.dir, this.name + ".stdout"), "w");
    const err = fs.openSync(this.stderrPath, "w");
    this.proc = spawn(TINYBMS_GW, ["--http", String(this.port), "--data-dir", this.data, "-q"].concat(this.args),
      { stdio: ["ignore", out, err], env: Object.assign({ ASAN_OPTIONS: "detect_leaks=1" }, process.env) });
    fs.closeSync(out);
    fs.closeSync(err);
    await this.waitLog(/web_server: serving https?:\/\//, 60000);
    return this;
  }

  log() {
    try { return fs.readFileSync(this.stderrPath, "utf8"); } catch (e) { return ""; }
  }

  async waitLog(re, timeoutMs) {
    return waitFor(() => {
      if (exited(this.proc)) throw new Error(this.name + " exited: " + this.log().slice(-3000));
      return re.exec(this.log());
    }, timeoutMs, "log " + re + " of " + this.name);
  }

  url(p, host) {
    return "http://" + (host || "127.0.0.1") + ":" + this.port + (p || "/");
  }

  async stop() {
    if (!this.proc) return { code: 0, inTime: true, log: "" };
    const r = await stopProcess(this.proc);
    r.log = this.log();
    return r;
  }
}

const SANITIZER_MARKERS = ["ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
  "SUMMARY: UndefinedBehaviorSanitizer", "SUMMARY: AddressSanitizer"];
function sanitizerReport(text) {
  for (const m of SANITIZER_MARKERS) {
    const i = text.indexOf(m);
    if (i >= 0) return text.slice(Math.max(0, i - 200), i + 3000);
  }
  return null;
}

module.exports = { SOURCE_DIR, BUILD_DIR, TINYBMS_GW, TINYBMS_SIM, waitFor, freePort, tmpDir, Sim, Daemon, setPassword,
  sanitizerReport, stopProcess };
