"use strict";
// The web UI in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core)
// against the real daemon: two simulated packs (tinybms-sim on ptys, controlled on stdin) for
// the live, stale, alert, settings and history checks, and a --simulate daemon without a
// password for the first-run page. Screenshots of every page at phone and desktop size go to
// $GW_BUILD_DIR/screenshots/. Run by tests/browser/run.sh (ctest browser_ui).
const { describe, test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("fs");
const path = require("path");
const net = require("net");
const { spawn, spawnSync } = require("child_process");
const { chromium } = require("playwright-core");
const gw = require("./gw");

const CHROMIUM = process.env.GW_CHROMIUM || "/usr/bin/chromium";
const PASSWORD = "browser-test-pass-1";
const SHOTS = path.join(gw.BUILD_DIR, "screenshots");
const PHONE = { width: 360, height: 740 };
const PHONE_390 = { width: 390, height: 844 };
// The web page as `make` builds it: web/ with its gzip twins (scripts/build-ui.sh).
const UI_DIR = fs.existsSync(path.join(gw.BUILD_DIR, "web", "index.html.gz")) ? path.join(gw.BUILD_DIR, "web") : path.join(gw.SOURCE_DIR, "web");
const DESKTOP = { width: 1366, height: 768 };
const PAGES = ["dashboard", "history", "alerts", "config", "bms", "system"];
// Endpoints the pages probe because they may not exist yet; their 404 is expected (Chromium
// logs every failed fetch on the console).
const PROBES = ["/api/bms/settings"];

let browser;
const num = (v, d) => new Intl.NumberFormat("en-US", { minimumFractionDigits: d, maximumFractionDigits: d }).format(v);
const squash = (t) => t.replace(/[\s\u202f]+/g, "");

async function launch() {
  if (!browser) browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  return browser;
}

// A page with the login, recording console errors, page errors and requests to other hosts.
async function openPage(d, { viewport, password, host, scheme } = {}) {
  const b = await launch();
  const ctx = await b.newContext({ viewport: viewport || DESKTOP, locale: "en-US", colorScheme: scheme || "light",
    acceptDownloads: true, httpCredentials: password === null ? undefined : { username: "admin", password: password || PASSWORD } });
  const page = await ctx.newPage();
  const origin = new URL(d.url("/", host)).host;
  page.problems = [];
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    const where = (m.location() && m.location().url) || "";
    if (/status of 404/.test(m.text()) && PROBES.some((p) => where.includes(p))) return;
    page.problems.push("console: " + m.text() + " (" + where + ")");
  });
  page.on("pageerror", (e) => page.problems.push("page error: " + e.message));
  page.on("request", (r) => {
    const u = new URL(r.url());
    if ((u.protocol === "http:" || u.protocol === "ws:") && u.host === origin) return;
    if (u.protocol === "data:" || u.protocol === "blob:") return;
    page.problems.push("request outside the gateway: " + r.url());
  });
  page.ctx = ctx;
  return page;
}

async function api(page, d, p) {
  const r = await page.ctx.request.get(d.url(p));
  assert.equal(r.status(), 200, p + ": " + (await r.text()));
  return r.json();
}

async function shot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, name + ".png"), fullPage: true });
}

// A screenshot of one part of a page (a section looked at on its own).
async function shotOf(locator, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await locator.screenshot({ path: path.join(SHOTS, name + ".png") });
}

async function noOverflow(page, what) {
  const over = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(over <= 0, what + ": " + over + " px of horizontal scrolling");
}

// Unfolds a section of the settings page (a click on its title, unless it is open already).
async function openSection(page, key) {
  const sec = page.locator("#cfg-sec-" + key);
  await sec.waitFor();
  if (!(await sec.evaluate((e) => e.open))) await page.click("#cfg-sec-" + key + " > summary");
  await page.locator("#cfg-form-" + key).waitFor();
}

function sqlite(db, sql) {
  const r = spawnSync("sqlite3", [db], { input: ".timeout 20000\n" + sql + "\n", encoding: "utf8" });
  assert.equal(r.status, 0, "sqlite3: " + r.stderr);
  return r.stdout;
}

// The history.db a gateway of the previous release leaves behind (schema version 2: samples
// only, no downsampled tables), holding one sample every 5 minutes over the 26 hours before
// `now` for the bank (255) and both packs. The daemon under test opens it, migrates it to its
// schema and builds the per-minute, 10-minute and hour tables from these samples itself (the
// background backfill): the test writes nothing the daemon reads its charts from.
const HISTORY_STEP_MS = 300000;
function writeReleaseBeforeHistory(db, now) {
  const start = now - 26 * 3600 * 1000;
  sqlite(db, `CREATE TABLE samples(ts_ms INTEGER NOT NULL, battery_id INTEGER NOT NULL DEFAULT 0, voltage REAL,
      current REAL, soc REAL, soh REAL, temp_min REAL, temp_max REAL, cell_min_mv INTEGER, cell_max_mv INTEGER,
      cell_spread_mv REAL, status INTEGER, cells BLOB);
    CREATE INDEX samples_ts ON samples(ts_ms);
    CREATE INDEX samples_battery_ts ON samples(battery_id, ts_ms);
    WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < 311)
    INSERT INTO samples (ts_ms, battery_id, voltage, current, soc, soh, temp_min, temp_max, cell_min_mv, cell_max_mv, cell_spread_mv, status)
    SELECT ${start} + i * ${HISTORY_STEP_MS}, b.id, 52.0 + 1.5 * sin(i / 20.0), 30 * sin(i / 15.0), 50 + 40 * sin(i / 40.0), 100,
           20 + 3 * sin(i / 30.0), 24 + 3 * sin(i / 30.0), 3280 + (i % 7), 3310 + (i % 11), 30 + (i % 7) + (i % 11), 151
    FROM s, (SELECT 255 AS id UNION ALL SELECT 0 UNION ALL SELECT 1) AS b;
    PRAGMA user_version = 2;`);
}

// A mosquitto on a free loopback port (for the "Test connection" button); stopped by the caller.
async function startBroker(dir) {
  const port = await gw.freePort();
  const conf = path.join(dir, "mosquitto.conf");
  fs.writeFileSync(conf, "listener " + port + " 127.0.0.1\nallow_anonymous true\npersistence false\n");
  const proc = spawn("mosquitto", ["-c", conf], { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  proc.stderr.on("data", (b) => { err += b; });
  await gw.waitFor(() => new Promise((resolve) => {
    if (proc.exitCode !== null) throw new Error("mosquitto exited: " + err);
    const c = net.connect(port, "127.0.0.1", () => { c.end(); resolve(true); });
    c.on("error", () => resolve(false));
  }), 10000, "mosquitto on port " + port);
  return { port, proc };
}

describe("web UI on two simulated packs", () => {
  let dir, simA, simB, d, historyNow, started;

  before(async () => {
    dir = gw.tmpDir("gw-ui-");
    simA = await new gw.Sim(dir, "bmsA", ["--speed", "0"]).start();
    simB = await new gw.Sim(dir, "bmsB", ["--speed", "0", "--seed", "2"]).start();
    d = new gw.Daemon(dir, {
      args: ["--poll-ms", "200"],
      config: {
        web: { ui_dir: UI_DIR, auth_max_attempts: 20 },
        history: { period_s: 1 },
        alerts: { raise_delay_ms: 0, clear_delay_ms: 0 },
        charge: { increase_delay_s: 0, increase_ramp_a_per_s: 1000 }, // limits follow at once
        battery: { packs: [{ uart_device: simA.link, name: "front" }, { uart_device: simB.link, name: "aft" }], stale_after_ms: 2000 },
      },
    });
    d.writeConfig();
    gw.setPassword(d.data, PASSWORD); // the password set on the gateway itself (stdin)
    historyNow = Date.now();
    writeReleaseBeforeHistory(path.join(d.data, "history.db"), historyNow);
    started = Date.now();
    await d.start();
    const probe = await openPage(d);
    await gw.waitFor(async () => {
      const r = await probe.ctx.request.get(d.url("/api/data"));
      return r.status() === 200 && (await r.json()).online_count === 2;
    }, 60000, "both packs online");
    await probe.ctx.close();
  });

  after(async () => {
    if (browser) await browser.close();
    browser = null;
    const r = d ? await d.stop() : { code: 0, inTime: true, log: "" };
    if (simA) await simA.stop();
    if (simB) await simB.stop();
    const report = gw.sanitizerReport(r.log);
    if (!process.env.GW_BROWSER_KEEP) fs.rmSync(dir, { recursive: true, force: true });
    else console.log("kept " + dir);
    assert.ok(r.inTime, "the daemon did not stop in time");
    assert.equal(r.code, 0, r.log.slice(-3000));
    assert.equal(report, null, report);
  });

  test("the dashboard shows the values of /api/data, the bank on top and a card per pack", async () => {
    const page = await openPage(d);
    await page.goto(d.url("/#dashboard"));
    await page.locator("#bank-voltage").filter({ hasNotText: "–" }).waitFor();
    await page.locator("#pack-1 .cell").first().waitFor();
    // What is shown against the document the page shows it from (read at the same instant, as
    // limits ramp and values move), then that document against /api/data.
    const shown = await page.evaluate(() => {
      const t = (sel) => document.querySelector(sel).textContent;
      const packs = [...document.querySelectorAll(".pack")].map((c) => ({
        name: c.querySelector(".pack-name").textContent, cells: [...c.querySelectorAll(".cell .mv")].map((e) => e.textContent),
        min: c.querySelector(".cell.min .no").textContent, max: c.querySelector(".cell.max .no").textContent }));
      return { doc: GW.live.data, voltage: t("#bank-voltage"), current: t("#bank-current"), spread: t("#bank-spread"),
        soc: t("#soc-gauge text"), title: t("#bank-title"), ccl: t("#limit-ccl .value"), cclReason: t("#limit-ccl .reason"),
        dcl: t("#limit-dcl .value"), cvl: t("#limit-cvl .value"), packs };
    });
    const doc = shown.doc, b = doc.bank;
    assert.equal(squash(shown.voltage), num(b.voltage_v, 2) + "V");
    assert.equal(squash(shown.current), num(b.current_a, 1) + "A");
    assert.equal(squash(shown.spread), num(b.cell_spread_mv, 1) + "mV");
    assert.equal(squash(shown.soc), num(b.soc_percent, 0) + "%");
    assert.match(shown.title, /2 of 2 packs online/);
    assert.equal(squash(shown.cvl), num(doc.limits.cvl.value, 2) + "V");
    assert.equal(squash(shown.ccl), num(doc.limits.ccl.value, 1) + "A");
    assert.equal(squash(shown.dcl), num(doc.limits.dcl.value, 1) + "A");
    assert.ok(shown.cclReason.includes(doc.limits.ccl.reason), shown.cclReason);
    assert.equal(shown.packs.length, doc.packs.length);
    doc.packs.forEach((p, i) => {
      assert.equal(shown.packs[i].name, p.name);
      assert.equal(shown.packs[i].min, String(p.live.min_cell));
      assert.equal(shown.packs[i].max, String(p.live.max_cell));
      assert.deepEqual(shown.packs[i].cells, p.live.cells_v.map((v) => String(Math.round(v * 1000))));
    });
    // The simulators are frozen (--speed 0): the battery itself is the same in /api/data.
    const data = await api(page, d, "/api/data");
    assert.ok(data.seq >= doc.seq);
    assert.equal(data.bank.voltage_v, b.voltage_v);
    assert.equal(data.bank.soc_percent, b.soc_percent);
    assert.deepEqual(data.packs.map((p) => p.live.cells_v), doc.packs.map((p) => p.live.cells_v));
    assert.deepEqual(page.problems, []);
    await page.ctx.close();
  });

  test("the dashboard follows the simulator live (within 2 s)", async () => {
    const page = await openPage(d);
    await page.goto(d.url("/#dashboard"));
    await page.locator("#pack-0 .cell").nth(2).waitFor();
    await page.locator("#conn", { hasText: "live" }).waitFor();
    await simA.cmd("set-cell 3 3350");
    const t0 = Date.now();
    await page.locator("#pack-0 .cell:nth-child(3) .mv", { hasText: "3350" }).waitFor({ timeout: 10000 });
    const ms = Date.now() - t0;
    assert.ok(ms <= 2000, "the new cell voltage took " + ms + " ms to appear");
    assert.deepEqual(page.problems, []);
    await page.ctx.close();
  });

  test("an alert raised by the simulator appears without reload and is acknowledged", async () => {
    const page = await openPage(d);
    await page.goto(d.url("/#alerts"));
    await page.locator("#alerts-active").filter({ hasNotText: "Loading" }).waitFor();
    assert.equal(await page.locator('#alerts-active [data-code="OVER_VOLTAGE"]').count(), 0);
    await simA.cmd("set-cell 3 3620"); // above alerts.cell_v_high (3.60 V), below the BMS's own cutoff
    const card = page.locator('#alerts-active li[data-code="OVER_VOLTAGE"]');
    await card.waitFor({ timeout: 20000 });
    assert.match(await card.textContent(), /3\.6/);
    assert.match(await card.textContent(), /first seen/);
    await page.locator('#alerts-past-table tr[data-code="OVER_VOLTAGE"]').first().waitFor({ timeout: 10000 });
    await card.locator("button.ack").click();
    await card.locator(".meta", { hasText: "acknowledged" }).waitFor({ timeout: 10000 });
    const doc = await api(page, d, "/api/alerts?limit=1");
    assert.ok(doc.active.find((a) => a.code === "OVER_VOLTAGE").acknowledged);
    await simA.cmd("set-cell 3 3300");
    await card.waitFor({ state: "detached", timeout: 20000 });
    assert.deepEqual(page.problems, []);
    await page.ctx.close();
  });

  test("settings: every field is in the form; a bad value shows the server's message by the field, a good one is applied", async () => {
    const page = await openPage(d);
    await page.goto(d.url("/#config"));
    await page.locator("#cfg-sec-bms").waitFor();
    const cfg = await api(page, d, "/api/config");
    const missing = [];
    for (const [section, fields] of Object.entries(cfg)) {
      if (typeof fields !== "object") continue;
      for (const key of Object.keys(fields)) {
        if (await page.locator('[data-path="' + section + "." + key + '"]').count() !== 1) missing.push(section + "." + key);
      }
    }
    assert.deepEqual(missing, [], "settings without a field in the form");
    // Units, ranges and the restart mark are shown.
    assert.match(await page.textContent("#cfg-bms-poll_interval_ms-meta"), /^100…10000 ms/);
    assert.equal(await page.textContent('[data-path="bms.poll_interval_ms"] .unit'), "ms");
    for (const sec of ["bms", "charge"]) await openSection(page, sec);
    assert.ok(await page.locator('[data-path="can.enabled"] .restart').count() === 1);
    // A bad value: the server's own message beside the field, nothing saved.
    await page.fill("#cfg-bms-poll_interval_ms", "5");
    await page.click("#cfg-save-bms");
    const msg = page.locator('[data-path="bms.poll_interval_ms"] .field-msg');
    await msg.filter({ hasText: "100..10000" }).waitFor();
    assert.match(await msg.textContent(), /must be an integer in 100\.\.10000 \(got 5\)/);
    assert.match(await page.textContent("#cfg-result-bms"), /Not saved/);
    assert.equal((await api(page, d, "/api/config")).bms.poll_interval_ms, 200);
    // A bad curve point is shown by the curve.
    await page.fill("#cfg-charge-charge_by_cell_v-x", "3.5, 3.4, 3.55, 3.6");
    await page.click("#cfg-save-charge");
    await page.locator('[data-path="charge.charge_by_cell_v"] .field-msg', { hasText: "strictly increasing" }).waitFor();
    // A good value: saved, and the gateway applies it (the limit on the dashboard follows).
    await page.fill("#cfg-charge-charge_by_cell_v-x", "3.4, 3.5, 3.55, 3.6");
    await page.fill("#cfg-charge-max_charge_a", "80");
    await page.click("#cfg-save-charge");
    await page.locator("#cfg-result-charge", { hasText: "Saved" }).waitFor();
    assert.equal((await api(page, d, "/api/config")).charge.max_charge_a, 80);
    await page.goto(d.url("/#dashboard"));
    for (const id of [0, 1]) await page.locator("#pack-" + id + " .sub", { hasText: /CCL 80\.0\sA/ }).waitFor({ timeout: 20000 });
    await page.locator("#limit-ccl .value", { hasText: /^160\.0\sA$/ }).waitFor({ timeout: 20000 }); // two packs of 80 A
    // A restart field is marked "restart required" after the save.
    await page.goto(d.url("/#config"));
    await openSection(page, "web");
    await page.fill("#cfg-web-request_timeout_ms", "9000");
    await page.click("#cfg-save-web");
    await page.locator("#config-banner", { hasText: "restart required" }).waitFor();
    // Chromium logs the two refused saves (400) on the console: those were asked for.
    const refused = page.problems.filter((p) => /status of 400 .*\/api\/config\)$/.test(p));
    assert.equal(refused.length, 2, page.problems.join("\n"));
    assert.deepEqual(page.problems.filter((p) => !refused.includes(p)), []);
    await page.ctx.close();
  });

  test("settings: the units and ranges shown are the gateway's own (GET /api/config/schema); the page arrives gzip-compressed", async () => {
    const page = await openPage(d, { viewport: PHONE_390 });
    const encodings = {};
    page.on("response", (r) => { const u = new URL(r.url()); if (/\.(js|css|html)$/.test(u.pathname) || u.pathname === "/") encodings[u.pathname] = r.headers()["content-encoding"] || "identity"; });
    await page.goto(d.url("/#config"));
    await page.locator("#cfg-sec-update").waitFor();
    const schema = new Map((await api(page, d, "/api/config/schema")).fields.map((f) => [f.path, f]));
    // Every number in the form: its range and unit, and the input's bounds, as the gateway has them.
    const wrong = [];
    let checked = 0;
    for (const [p, f] of schema) {
      if (f.type !== "integer" && f.type !== "number") continue;
      const id = "#cfg-" + p.replace(/\./g, "-");
      if (await page.locator(id).count() !== 1) { wrong.push(p + ": not in the form"); continue; }
      if (await page.$eval(id, (e) => e.tagName) === "SELECT") { // can.bitrate: its two values, within the range
        const values = await page.$$eval(id + " option", (o) => o.map((x) => Number(x.value)));
        if (!values.length || values.some((v) => v < f.min || v > f.max)) wrong.push(p + ": choices " + values);
        checked++;
        continue;
      }
      const meta = (await page.textContent(id + "-meta")) || "";
      const want = f.min + "…" + f.max + (f.unit ? " " + f.unit : "");
      if (!meta.startsWith(want)) wrong.push(p + ": shows '" + meta + "', the gateway has " + want);
      const [min, max] = await page.$eval(id, (e) => [e.min, e.max]);
      if (Number(min) !== f.min || Number(max) !== f.max) wrong.push(p + ": input bounds " + min + ".." + max);
      checked++;
    }
    assert.deepEqual(wrong, []);
    assert.ok(checked >= 40, checked + " numbers checked");
    // One the page used to get wrong (it said "≥ 0 s"): the gateway refuses below 600 s.
    assert.match(await page.textContent("#cfg-charge-max_top_time_s-meta"), /^600…86400 s/);
    // A restart mark and an enum from the gateway's table.
    const restartMarked = await page.locator('[data-path="update.trial_timeout_s"] .restart').count();
    assert.equal(restartMarked, schema.get("update.trial_timeout_s").restart ? 1 : 0);
    assert.deepEqual(await page.$$eval("#cfg-dbus-capacity option", (o) => o.map((x) => x.value)), schema.get("dbus.capacity").values);
    await openSection(page, "update");
    await shotOf(page.locator("#cfg-sec-update"), "config-update-phone390");
    await openSection(page, "charge");
    await shotOf(page.locator("#cfg-sec-charge"), "config-charge-phone390");
    if (UI_DIR.startsWith(gw.BUILD_DIR)) {
      for (const f of ["/", "/js/config.js", "/js/config-schema.js", "/style.css"]) assert.equal(encodings[f], "gzip", f + ": " + JSON.stringify(encodings));
    }
    assert.deepEqual(page.problems, []);
    await page.ctx.close();
  });

  test("settings: Test connection posts the MQTT settings being edited and shows the gateway's answer; nothing is saved", async () => {
    const broker = await startBroker(dir);
    const page = await openPage(d);
    try {
      await page.goto(d.url("/#config"));
      await openSection(page, "mqtt");
      const saved = (await api(page, d, "/api/config")).mqtt.broker_uri;
      const result = page.locator("#cfg-result-mqtt");
      let posts = 0;
      page.on("request", (r) => { if (r.url().endsWith("/api/config/test-mqtt") && r.method() === "POST" && r.headers()["x-csrf-token"]) posts++; });
      // A broker that answers.
      await page.fill("#cfg-mqtt-broker_uri", "mqtt://127.0.0.1:" + broker.port);
      await page.click("#mqtt-test");
      await result.filter({ hasText: "Connected to mqtt://127.0.0.1:" + broker.port }).waitFor({ timeout: 20000 });
      assert.match(await result.getAttribute("class"), /\bok\b/);
      // A port where nothing listens: the reason, in words.
      const closed = await gw.freePort();
      await page.fill("#cfg-mqtt-broker_uri", "mqtt://127.0.0.1:" + closed);
      await page.click("#mqtt-test");
      await result.filter({ hasText: "Could not connect" }).waitFor({ timeout: 20000 });
      assert.equal(await result.getAttribute("data-result"), "refused");
      assert.match(await result.getAttribute("class"), /\bbad\b/);
      // Settings that cannot be valid: the server's message by the field, nothing tried.
      await page.fill("#cfg-mqtt-broker_uri", "ftp://x");
      await page.click("#mqtt-test");
      await result.filter({ hasText: "Not tested" }).waitFor({ timeout: 20000 });
      assert.ok(await page.locator('[data-path="mqtt.broker_uri"] .field-msg').filter({ hasText: /\S/ }).count() === 1);
      assert.equal(posts, 3);
      assert.equal((await api(page, d, "/api/config")).mqtt.broker_uri, saved, "a test saves nothing");
      await shotOf(page.locator("#cfg-sec-mqtt"), "config-mqtt-test");
      const refused = page.problems.filter((p) => /status of 400 .*\/api\/config\/test-mqtt\)$/.test(p));
      assert.equal(refused.length, 1, page.problems.join("\n"));
      assert.deepEqual(page.problems.filter((p) => !refused.includes(p)), []);
    } finally {
      await page.ctx.close();
      await gw.stopProcess(broker.proc);
    }
  });

  test("history: a day of an upgraded gateway is drawn from the tables the daemon built, zoomed, panned, shown as a table; the CSV downloads and parses", async () => {
    const now = historyNow;
    const probe = await openPage(d);
    // The migration's background build ends with the whole day in the downsampled tables: the
    // day's chart is then read from one of them (before, from the samples).
    const dayQuery = "/api/history?from=" + (now - 86400000) + "&to=" + now + "&points=600";
    const built = await gw.waitFor(async () => {
      const h = await api(probe, d, dayQuery);
      return h.source !== "samples" ? h : null;
    }, 60000, "the downsampled tables of the migrated history");
    assert.ok(built.count.reduce((a, b) => a + b, 0) >= 287, "bank samples in the day: " + JSON.stringify(built.count.slice(0, 20)));
    assert.match(d.log(), /migrating from schema version 2 to \d+ .*built in the background/);
    // What the daemon recorded itself since it started (history.period_s 1, both packs) is there too.
    // A row a second per pack: wait for more than ten (how long the tests before took varies).
    for (const pack of [0, 1]) {
      let mine = null;
      const recorded = async () => {
        mine = await api(probe, d, "/api/history?from=" + started + "&to=" + Date.now() + "&points=60&pack=" + pack);
        return mine.count.reduce((a, b) => a + b, 0) > 10;
      };
      await gw.waitFor(recorded, 30000, "pack " + pack + " recorded by the daemon").catch((e) => {
        throw new Error(e.message + ": " + JSON.stringify(mine && mine.count));
      });
    }
    await probe.ctx.close();
    const page = await openPage(d);
    await page.goto(d.url("/#history"));
    const chart = page.locator("#chart-voltage");
    await chart.locator(".u-over").waitFor();
    const points = +(await chart.getAttribute("data-points"));
    assert.ok(points > 100, "only " + points + " points drawn for a day of 5-minute samples");
    assert.notEqual(await page.locator("#hist-chartbox").getAttribute("data-source"), "samples");
    const range = async () => { const box = page.locator("#hist-chartbox"); return [+(await box.getAttribute("data-from")), +(await box.getAttribute("data-to"))]; };
    const loaded = async () => page.locator("#hist-chartbox").getAttribute("data-loaded");
    // Zoom: drag across the middle of the voltage chart.
    let before = await loaded();
    const over = await chart.locator(".u-over").boundingBox();
    await page.mouse.move(over.x + over.width * 0.3, over.y + over.height / 2);
    await page.mouse.down();
    await page.mouse.move(over.x + over.width * 0.6, over.y + over.height / 2, { steps: 5 });
    await page.mouse.up();
    await gw.waitFor(async () => (await loaded()) !== before, 10000, "the zoomed history");
    let [from, to] = await range();
    assert.ok(to - from < 12 * 3600 * 1000 && to - from > 3600 * 1000, "zoomed span " + (to - from) + " ms");
    // Pan: half a span earlier.
    before = await loaded();
    await page.click("#hist-left");
    await gw.waitFor(async () => (await loaded()) !== before, 10000, "the history moved earlier");
    const [from2, to2] = await range();
    assert.ok(Math.abs((to - to2) - (to - from) / 2) < 60000, "moved by " + (to - to2) + " ms");
    // Per pack, then the table view.
    before = await loaded();
    await page.selectOption("#hist-pack", "1");
    await gw.waitFor(async () => (await loaded()) !== before, 10000, "pack 2's history");
    assert.match(await page.textContent("#hist-range"), /pack 2/);
    await page.click("#hist-now");
    await page.click("#hist-table");
    await page.locator("#hist-table-data tbody tr").first().waitFor();
    assert.ok(await page.locator("#hist-table-data tbody tr").count() > 50);
    // CSV of yesterday (UTC), downloaded through the page's link.
    const day = new Date(now - 24 * 3600 * 1000).toISOString().slice(0, 10);
    await page.fill("#csv-day", day);
    await page.dispatchEvent("#csv-day", "change");
    await page.selectOption("#hist-pack", "bank");
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#csv-link")]);
    const text = fs.readFileSync(await download.path(), "utf8");
    const lines = text.trim().split("\n");
    assert.equal(lines[0], "timestamp,voltage,current,soc,temp_max,temp_min,cell_min_mv,cell_max_mv");
    assert.ok(lines.length > 10, "CSV of " + day + " has " + lines.length + " lines");
    const row = lines[1].split(",").map(Number);
    assert.equal(new Date(row[0] * 1000).toISOString().slice(0, 10), day);
    assert.ok(row[1] > 50 && row[1] < 54, "voltage " + row[1]);
    assert.deepEqual(page.problems, []);
    await page.ctx.close();
  });

  test("every page at phone and desktop size: no console error, no request outside the gateway, no horizontal scrolling", async () => {
    for (const [size, viewport] of [["phone", PHONE], ["desktop", DESKTOP]]) {
      const page = await openPage(d, { viewport });
      for (const name of PAGES) {
        await page.goto(d.url("/#" + name));
        await page.locator("#page-" + name).waitFor();
        const ready = {
          dashboard: "#pack-1 .cell", history: "#chart-voltage .u-over", alerts: "#alerts-past table, #alerts-past .none",
          config: "#cfg-sec-update", bms: "#bms-body .card", system: "#sys-gateway dd",
        }[name];
        await page.locator(ready).first().waitFor();
        await noOverflow(page, name + " at " + size);
        await shot(page, name + "-" + size);
      }
      assert.deepEqual(page.problems, [], size);
      await page.ctx.close();
    }
    const dark = await openPage(d, { viewport: PHONE, scheme: "dark" });
    await dark.goto(d.url("/#dashboard"));
    await dark.locator("#pack-1 .cell").first().waitFor();
    await shot(dark, "dashboard-phone-dark");
    await dark.ctx.close();
  });

  test("BMS settings: the page says 'not available' while the gateway has no such endpoint", async () => {
    const page = await openPage(d);
    const status = (await page.ctx.request.get(d.url("/api/bms/settings"))).status();
    await page.goto(d.url("/#bms"));
    if (status === 404 || status === 501) {
      await page.locator("#bms-unavailable", { hasText: "Not available" }).waitFor();
    } else {
      await page.locator("#bms-body table tbody tr").first().waitFor();
    }
    assert.deepEqual(page.problems, []);
    await page.ctx.close();
  });

  test("updates: the System page shows the update state and a refused upload says why, nothing installed", async () => {
    for (const [size, viewport] of [["phone", PHONE], ["desktop", DESKTOP]]) {
      const page = await openPage(d, { viewport });
      await page.goto(d.url("/#system"));
      const state = page.locator("#sys-update-state");
      await state.locator("dd").first().waitFor();
      const st = await api(page, d, "/api/ota/status");
      assert.match(await state.textContent(), new RegExp("Running version" + st.running_version.replace(/\./g, "\\.")));
      assert.match(await page.textContent("#sys-gateway"), /Network/);
      // Nothing chosen: said at once, nothing sent.
      let posts = 0;
      page.on("request", (r) => { if (r.url().endsWith("/api/ota/upload")) posts++; });
      await page.click("#ota-upload");
      await page.locator("#ota-result", { hasText: "Choose the update file" }).waitFor();
      // A file that is no bundle, with a signature: the gateway's reason is shown.
      await page.setInputFiles("#ota-bundle", { name: "tinybms-gw-9.9.9-x86_64.tar", mimeType: "application/x-tar", buffer: Buffer.alloc(4096, 7) });
      await page.setInputFiles("#ota-sig", { name: "tinybms-gw-9.9.9-x86_64.tar.sig", mimeType: "application/octet-stream",
        buffer: Buffer.from('{"format":"tinybms-gw-signature-1","algorithm":"ed25519","key_id":"0123456789abcdef","manifest_sha256":"' + "0".repeat(64) + '","signature":"AAAA"}') });
      await page.click("#ota-upload");
      await page.locator("#confirm[open]").waitFor();
      await page.click("#confirm-ok");
      const result = page.locator("#ota-result", { hasText: "Not installed:" });
      await result.waitFor({ timeout: 30000 });
      assert.match(await result.getAttribute("class"), /\bbad\b/);
      assert.equal(posts, 1);
      await noOverflow(page, "system with an update refused at " + size);
      await shotOf(page.locator("#sys-updates"), "updates-" + size);
      const after = await api(page, d, "/api/ota/status");
      assert.equal(after.update.state, st.update.state);
      const refusedUpload = page.problems.filter((p) => /status of 4\d\d .*\/api\/ota\/upload\)$/.test(p));
      assert.equal(refusedUpload.length, 1, page.problems.join("\n"));
      assert.deepEqual(page.problems.filter((p) => !refusedUpload.includes(p)), []);
      await page.ctx.close();
    }
  });

  test("the stale state: a silent pack is marked, a silent battery turns the page to DATA STALE, and back", async () => {
    const pages = [await openPage(d, { viewport: PHONE }), await openPage(d, { viewport: DESKTOP })];
    for (const p of pages) {
      await p.goto(d.url("/#dashboard"));
      await p.locator("#pack-1 .cell").first().waitFor();
      assert.ok(await p.locator("#stale").isHidden());
    }
    const [phone, desk] = pages;
    await simB.cmd("silence on");
    await desk.locator("#pack-1.pack-stale").waitFor({ timeout: 30000 });
    assert.match(await desk.textContent("#bank-title"), /1 of 2 packs online/);
    assert.ok(await desk.locator("#stale").isHidden(), "one pack of two is not the whole battery");
    await simA.cmd("silence on");
    for (const p of pages) {
      await p.locator("#stale", { hasText: "DATA STALE" }).waitFor({ timeout: 30000 });
      assert.ok(await p.evaluate(() => document.body.classList.contains("is-stale")));
      assert.notEqual(await p.textContent("#conn"), "live");
    }
    await shot(phone, "dashboard-phone-stale");
    await shot(desk, "dashboard-desktop-stale");
    await simA.cmd("silence off");
    await simB.cmd("silence off");
    for (const p of pages) {
      await p.locator("#stale").waitFor({ state: "hidden", timeout: 30000 });
      await p.locator("#conn", { hasText: "live" }).waitFor();
      assert.deepEqual(p.problems, []);
      await p.ctx.close();
    }
  });

  test("a wrong password gets a clear message", async () => {
    // From another loopback address: its failed logins do not lock out the other tests.
    const page = await openPage(d, { password: "not-the-password", host: "127.0.0.2" });
    await page.goto(d.url("/#dashboard", "127.0.0.2"));
    await page.locator("#login", { hasText: "password was wrong" }).waitFor();
    assert.match(await page.textContent("#stale"), /Not logged in/);
    await page.ctx.close();
  });

  test("restart asks for confirmation; cancelled nothing happens, confirmed the gateway comes back", async () => {
    const page = await openPage(d);
    await page.goto(d.url("/#system"));
    await page.locator("#sys-gateway dd").first().waitFor();
    let restarts = 0;
    page.on("request", (r) => { if (r.url().endsWith("/api/system/restart")) restarts++; });
    await page.click("#sys-restart");
    await page.locator("#confirm[open]").waitFor();
    await page.click("#confirm-cancel");
    await page.locator("#sys-restart-result", { hasText: "Not restarted" }).waitFor();
    assert.equal(restarts, 0);
    await page.click("#sys-restart");
    await page.click("#confirm-ok");
    await page.locator("#sys-restart-result", { hasText: "back" }).waitFor({ timeout: 120000 });
    assert.equal(restarts, 1);
    await page.goto(d.url("/#dashboard"));
    await page.locator("#conn", { hasText: "live" }).waitFor({ timeout: 60000 });
    await page.ctx.close();
  });

  test("the password changed from the settings page is the one that logs in", async () => {
    const page = await openPage(d);
    await page.goto(d.url("/#config"));
    await page.locator("#cfg-sec-update").waitFor();
    await page.locator("#pw-new").waitFor();
    await page.fill("#pw-new", "short");
    await page.fill("#pw-again", "short");
    await page.click("#pw-form button[type=submit]");
    await page.locator("#pw-new-msg", { hasText: "8" }).waitFor();
    await page.fill("#pw-new", "another-pass-2");
    await page.fill("#pw-again", "another-pass-2");
    await page.click("#pw-form button[type=submit]");
    await page.locator("#pw-result", { hasText: "Password changed" }).waitFor();
    await page.ctx.close();
    const fresh = await openPage(d, { password: "another-pass-2" });
    await fresh.goto(d.url("/#dashboard"));
    await fresh.locator("#conn", { hasText: "live" }).waitFor();
    assert.ok(await fresh.locator("#login").isHidden());
    await fresh.ctx.close();
  });
});

// A signed bundle of `version` (this build's programs) in dir; returns its path (BUNDLE.sig beside it).
function makeBundle(dir, version, keys) {
  const arch = { x64: "x86_64", arm64: "aarch64", arm: "armhf" }[process.arch] || process.arch;
  const out = path.join(dir, "tinybms-gw-" + version + "-" + arch + ".tar");
  for (const [cmd, args] of [[path.join(gw.SOURCE_DIR, "packaging", "make-bundle.sh"), [out, version, arch, "linux", gw.TINYBMS_GW, gw.TINYBMS_SIM]],
    [path.join(gw.SOURCE_DIR, "scripts", "sign-update.sh"), [out, path.join(keys, "update.key")]]]) {
    const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 120000 });
    assert.equal(r.status, 0, cmd + ": " + r.stderr);
  }
  return out;
}

describe("updates: install from the System page, then go back", () => {
  let dir, d, keys, base, next, bundle;
  before(async () => {
    dir = gw.tmpDir("gw-ui-ota-");
    keys = path.join(dir, "signing");
    const mk = spawnSync(path.join(gw.SOURCE_DIR, "scripts", "make-keys.sh"), [keys], { encoding: "utf8", timeout: 60000 });
    assert.equal(mk.status, 0, mk.stderr);
    base = spawnSync(gw.TINYBMS_GW, ["--version"], { encoding: "utf8" }).stdout.trim().split(/\s+/).pop();
    const parts = base.split("-")[0].split(".");
    parts[parts.length - 1] = String(Number(parts[parts.length - 1]) + 1);
    next = parts.join(".");
    bundle = makeBundle(dir, next, keys);
    d = new gw.Daemon(dir, { args: ["--simulate", "--can", "log:" + path.join(dir, "can.log")],
      config: { web: { ui_dir: UI_DIR }, update: { health_can_s: 1 } } });
    fs.mkdirSync(path.join(d.data, "keys"), { recursive: true });
    fs.copyFileSync(path.join(keys, "update.pub"), path.join(d.data, "keys", "update.pub"));
    d.writeConfig();
    gw.setPassword(d.data, PASSWORD);
    await d.start();
  });
  after(async () => {
    if (browser) await browser.close();
    browser = null;
    const r = await d.stop();
    if (!process.env.GW_BROWSER_KEEP) fs.rmSync(dir, { recursive: true, force: true });
    assert.equal(r.code, 0, r.log.slice(-3000));
    assert.equal(gw.sanitizerReport(r.log), null);
  });

  test("an upload is followed until kept; the rollback button asks first, then brings the previous version back", async () => {
    const page = await openPage(d);
    await page.goto(d.url("/#system"));
    await page.locator("#sys-update-state dd").first().waitFor();
    assert.ok(await page.locator("#ota-rollback-box").isHidden(), "no rollback offered before any update");
    await page.setInputFiles("#ota-bundle", bundle);
    await page.setInputFiles("#ota-sig", bundle + ".sig");
    // A slow link (2 MB/s up), so that the upload lasts: the page shows what the gateway received.
    const cdp = await page.ctx.newCDPSession(page);
    await cdp.send("Network.enable");
    await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 2e6 });
    await page.setViewportSize(PHONE_390);
    await page.click("#ota-upload");
    await page.locator("#confirm[open]").waitFor();
    await page.click("#confirm-ok");
    const total = fs.statSync(bundle).size;
    const phase = page.locator("#ota-phase", { hasText: /^Received \d+\.\d MB of \d+(\.\d)? MB…$/ });
    await phase.waitFor({ timeout: 60000 });
    const shown = await phase.textContent();
    const of = Number(shown.match(/of ([\d.]+) MB/)[1]) * 1e6;
    // (the form: the bundle, its signature and the framing; shown rounded to 0.1 MB, 1 MB from 10 MB)
    assert.ok(Math.abs(of - total) <= (total >= 1e7 ? 0.5e6 : 0.05e6) + 1e4, shown + " for a bundle of " + total + " bytes");
    await shotOf(page.locator("#sys-updates"), "updates-uploading-phone390");
    await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    await page.setViewportSize(DESKTOP);
    await page.locator("#ota-result", { hasText: "Version " + next + " runs and is kept." }).waitFor({ timeout: 180000 });
    assert.ok(await page.locator("#ota-phase").isHidden(), "the progress line goes once the upload answered");
    // Kept: the previous version is offered, by its number.
    const button = page.locator("#ota-rollback");
    await button.filter({ hasText: "Go back to version " + base }).waitFor({ timeout: 10000 });
    assert.match(await page.textContent("#ota-rollback-text"), new RegExp("\\(" + base.replace(/\./g, "\\.") + "\\)"));
    for (const [size, viewport] of [["phone390", PHONE_390], ["desktop", DESKTOP]]) {
      await page.setViewportSize(viewport);
      await noOverflow(page, "system with a rollback offered at " + size);
      await shotOf(page.locator("#sys-updates"), "updates-rollback-" + size);
    }
    let posts = 0, done = 0; // (a token of the version before the restart is refused once, then renewed)
    page.on("request", (r) => { if (r.url().endsWith("/api/ota/rollback")) posts++; });
    page.on("response", (r) => { if (r.url().endsWith("/api/ota/rollback") && r.status() === 200) done++; });
    await button.click();
    await page.locator("#confirm[open]").waitFor();
    assert.match(await page.textContent("#confirm-title"), new RegExp("Go back to version " + base.replace(/\./g, "\\.")));
    await page.click("#confirm-cancel");
    await page.locator("#ota-rollback-result", { hasText: "Nothing changed" }).waitFor();
    assert.equal(posts, 0);
    assert.equal((await api(page, d, "/api/ota/status")).running_version, next);
    await button.click();
    await page.locator("#confirm[open]").waitFor();
    await page.click("#confirm-ok");
    await page.locator("#ota-rollback-result", { hasText: "The gateway runs " + base + " again." }).waitFor({ timeout: 120000 });
    assert.equal(done, 1);
    const st = await api(page, d, "/api/ota/status");
    assert.equal(st.running_version, base);
    assert.equal(st.update.state, "rolled_back");
    await page.locator("#ota-rollback-box").waitFor({ state: "hidden" });
    await shotOf(page.locator("#sys-updates"), "updates-rolled-back-desktop");
    // The gateway was away during both restarts: refused or cut connections (the status polls,
    // the live WebSocket's reconnects) and the one stale CSRF token, nothing else.
    // (connection-level errors only: net::ERR_CONNECTION_REFUSED, _RESET, ERR_SOCKET_NOT_CONNECTED...)
    const other = page.problems.filter((p) => !/^console: .*net::ERR_[A-Z_]+/.test(p) &&
      !/status of 50[23] .*\/api\/ota\/status\)$/.test(p) && !/status of 403 .*\/api\/ota\/rollback\)$/.test(p));
    assert.deepEqual(other, []);
    await page.ctx.close();
  });
});

describe("first run on the --simulate daemon", () => {
  let dir, d;
  before(async () => {
    dir = gw.tmpDir("gw-ui-first-");
    d = new gw.Daemon(dir, { args: ["--simulate"], config: { web: { ui_dir: path.join(gw.SOURCE_DIR, "web") } } });
    d.writeConfig();
    await d.start();
  });
  after(async () => {
    if (browser) await browser.close();
    browser = null;
    const r = await d.stop();
    if (!process.env.GW_BROWSER_KEEP) fs.rmSync(dir, { recursive: true, force: true });
    assert.equal(r.code, 0, r.log.slice(-3000));
    assert.equal(gw.sanitizerReport(r.log), null);
  });

  test("the first-run page sets the password, then the dashboard logs in with it", async () => {
    const page = await openPage(d, { password: null, viewport: PHONE });
    await page.goto(d.url("/"));
    await page.locator("#password").waitFor();
    await shot(page, "first-run-phone");
    await page.fill("#password", "first-run-pass-1");
    await page.fill("#again", "first-run-pass-2");
    await page.click("button[type=submit]");
    await page.locator("#result", { hasText: "differ" }).waitFor();
    await page.fill("#again", "first-run-pass-1");
    await page.click("button[type=submit]");
    await page.locator("#result", { hasText: "Password set" }).waitFor();
    assert.deepEqual(page.problems, []);
    await page.ctx.close();
    const logged = await openPage(d, { password: "first-run-pass-1", viewport: PHONE });
    await logged.goto(d.url("/"));
    await logged.locator("#bank-voltage").filter({ hasNotText: "–" }).waitFor({ timeout: 60000 });
    await logged.locator("#conn", { hasText: "live" }).waitFor();
    assert.deepEqual(logged.problems, []);
    await logged.ctx.close();
  });
});
