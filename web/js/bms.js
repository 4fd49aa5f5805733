"use strict";
// BMS settings: the TinyBMS's writable registers from /api/bms/settings (unit, documented
// range, the BMS's own min/max), edit with read-back, backup to a file, restore from one with
// the differences shown first, restart of the BMS (confirmed). "Not available" while the gateway
// has no such endpoint (404/501).
(function () {
  const { $, el, fmt } = GW;
  let rows = [];

  // Tolerant reading of one register entry: {register|reg|address, key, name|label, unit, min,
  // max, bms_min, bms_max, value, writable}.
  function norm(r) {
    return {
      reg: r.register !== undefined ? r.register : r.reg !== undefined ? r.reg : r.address,
      key: r.key || r.id || "",
      name: r.name || r.label || r.key || "",
      unit: r.unit || "",
      min: r.min, max: r.max,
      bmsMin: r.bms_min !== undefined ? r.bms_min : r.bms && r.bms.min,
      bmsMax: r.bms_max !== undefined ? r.bms_max : r.bms && r.bms.max,
      value: r.value,
      writable: r.writable !== false,
    };
  }
  function listOf(doc) {
    const l = Array.isArray(doc) ? doc : doc.settings || doc.registers || [];
    return (Array.isArray(l) ? l : Object.entries(l).map(([k, v]) => Object.assign({ key: k }, v))).map(norm);
  }

  function notAvailable(text) {
    $("bms-body").replaceChildren(el("article", { class: "card", id: "bms-unavailable" },
      el("h2", { text: "BMS settings" }), el("p", { class: "none", text }),
      el("p", { class: "hint", text: "The live values, limits and alerts do not depend on it." })));
  }

  function render() {
    const result = el("p", { class: "result", role: "status", id: "bms-result" });
    const body = el("tbody", {}, rows.map((r) => {
      const inp = el("input", { type: "number", step: "any", id: "bms-" + r.reg, min: r.min, max: r.max, disabled: !r.writable });
      inp.value = r.value === null || r.value === undefined ? "" : String(r.value);
      r.input = inp;
      r.msg = el("span", { class: "field-msg" });
      const range = (a, b) => (a === undefined || a === null ? "–" : fmt(a, 0) + "…" + fmt(b, 0));
      return el("tr", { "data-reg": String(r.reg) }, el("td", { class: "reg", text: String(r.reg) }),
        el("td", { class: "name" }, el("label", { for: inp.id, text: r.name })), el("td", { class: "value" }, inp, r.msg),
        el("td", { class: "unit", text: r.unit }), el("td", { class: "range", "data-label": "range", text: range(r.min, r.max) }),
        el("td", { class: "range", "data-label": "BMS", text: range(r.bmsMin, r.bmsMax) }));
    }));
    const restore = el("input", { type: "file", accept: ".json,application/json", id: "bms-restore" });
    restore.addEventListener("change", (e) => restoreFile(e, result));
    $("bms-body").replaceChildren(
      el("article", { class: "card" }, el("h2", { text: "TinyBMS settings" }),
        el("p", { class: "sub", text: "Each write is read back from the BMS. Ranges: the documented one, then the BMS's own." }),
        el("div", { class: "tablebox" }, el("table", { class: "data", id: "bms-table" }, el("thead", {}, el("tr", {},
          ["reg", "setting", "value", "unit", "range", "BMS min…max"].map((h) => el("th", { scope: "col", text: h })))), body)),
        el("div", { class: "row actions" },
          el("button", { type: "button", id: "bms-write", onclick: () => write(result) }, "Write the changes"),
          el("a", { class: "button", href: "/api/bms/settings/backup", download: "tinybms-settings.json", id: "bms-backup" }, "Backup to a file"),
          el("label", { class: "button file" }, "Restore / compare a file…", restore),
          el("button", { type: "button", class: "danger", id: "bms-restart", onclick: () => restartBms(result) }, "Restart the BMS")),
        result, el("div", { id: "bms-diff" })));
  }

  function showResults(r, result) {
    const list = (r && (r.results || r.registers)) || [];
    for (const x of list) {
      const row = rows.find((y) => y.reg === (x.register !== undefined ? x.register : x.reg) || (x.key && y.key === x.key));
      if (row) row.msg.textContent = x.ok === false ? (x.message || x.reason || "refused") : "written" + (x.read_back !== undefined ? ", read back " + x.read_back : "");
    }
    result.className = "result " + (list.some((x) => x.ok === false) ? "bad" : "ok");
    result.textContent = (r && r.message) || (list.length ? list.length + " register(s) handled." : "Done.");
  }

  async function write(result) {
    const changes = rows.filter((r) => r.writable && r.input.value !== "" && Number(r.input.value) !== r.value)
      .map((r) => ({ register: r.reg, key: r.key, value: Number(r.input.value) }));
    if (!changes.length) { result.className = "result"; result.textContent = "Nothing changed."; return; }
    try { showResults(await GW.post("/api/bms/settings", { settings: changes }), result); await load(); }
    catch (e) {
      result.className = "result bad";
      result.textContent = "Not written: " + e.message + " " + ((e.doc && e.doc.fields) || []).map((f) => f.path + ": " + f.reason).join("; ");
    }
  }

  async function restoreFile(ev, result) {
    const file = ev.target.files[0];
    if (!file) return;
    ev.target.value = "";
    let fileDoc;
    try { fileDoc = JSON.parse(await file.text()); } catch (e) { result.className = "result bad"; result.textContent = "Not JSON: " + e.message; return; }
    const fileRows = listOf(fileDoc);
    const diff = fileRows.map((f) => ({ f, cur: rows.find((r) => r.reg === f.reg || (f.key && r.key === f.key)) }))
      .filter(({ f, cur }) => !cur || cur.value !== f.value);
    const box = $("bms-diff");
    if (!diff.length) { box.replaceChildren(el("p", { class: "ok", text: "The BMS already holds every value of " + file.name + "." })); return; }
    box.replaceChildren(el("h3", { text: "Differences: the BMS → " + file.name }),
      el("table", { class: "data", id: "bms-diff-table" }, el("tbody", {}, diff.map(({ f, cur }) => el("tr", {},
        el("td", { text: String(f.reg) }), el("td", { text: (cur && cur.name) || f.name }),
        el("td", { text: cur ? String(cur.value) : "(not on this BMS)" }), el("td", { text: "→ " + f.value + " " + (f.unit || (cur && cur.unit) || "") }))))),
      el("button", { type: "button", id: "bms-apply", onclick: async () => {
        if (!(await GW.confirm("Write " + diff.length + " setting(s) to the BMS?", "The values of " + file.name + " are validated, then written and read back.", "Write"))) return;
        try { showResults(await GW.post("/api/bms/settings/restore", fileDoc), result); box.replaceChildren(); await load(); }
        catch (e) { result.className = "result bad"; result.textContent = "Not restored: " + e.message; }
      } }, "Apply these " + diff.length + " change(s)"));
  }

  async function restartBms(result) {
    if (!(await GW.confirm("Restart the BMS?", "The TinyBMS restarts; the battery data is stale for a few seconds and the chargers stop meanwhile.", "Restart the BMS"))) return;
    try { await GW.post("/api/bms/restart", { confirm: true }); result.className = "result ok"; result.textContent = "The BMS is restarting."; }
    catch (e) { result.className = "result bad"; result.textContent = "Not restarted: " + e.message; }
  }

  async function load() {
    try {
      rows = listOf(await GW.api("/api/bms/settings"));
      render();
    } catch (e) {
      if (e.status === 404 || e.status === 501) notAvailable("Not available: this gateway version cannot read or write the BMS's settings yet (the API answers " + e.status + ").");
      else notAvailable("Not available now: " + e.message);
    }
  }

  GW.pages.bms = { init() {}, show() { load(); } };
})();
