"use strict";
// Settings: one form per section of the configuration document (GET /api/config), each field
// with its unit, range and "restart" mark from the gateway's table (GET /api/config/schema),
// its label and help from GW.CONFIG_SCHEMA. Save posts only what changed in
// that section; the server's message for a field is shown beside it. Also the MQTT connection
// test (when the gateway has it), export / import and the password change.
(function () {
  const { $, el } = GW;
  let doc = null;            // the configuration as last read or saved
  const fields = new Map();  // path -> {read(), original, msg (element), wrap}
  const openSections = new Set(); // the sections the user has unfolded
  let schema = new Map();    // path -> its entry in GET /api/config/schema

  // The UI's label and help (GW.CONFIG_SCHEMA) with the gateway's type, unit, range and
  // restart flag: the ranges shown are those the gateway checks.
  function metaOf(path, ui) {
    const s = schema.get(path);
    const m = Object.assign({}, ui);
    if (!s) return m;
    if (s.unit) m.unit = s.unit;
    m.restart = !!s.restart;
    if (s.secret) m.secret = true;
    if (s.type === "integer" || s.type === "number") {
      m.min = s.min; m.max = s.max;
      if (s.type === "integer") m.int = true;
    } else if (s.type === "string") {
      m.maxlen = s.max_length;
    } else if (s.type === "enum") {
      m.choices = s.values;
    } else if (s.type === "curve") {
      Object.assign(m, { curve: true, xunit: s.unit || "", xmin: s.min, xmax: s.max });
      delete m.unit;
    } else if (s.type === "threshold") {
      Object.assign(m, { threshold: true, min: s.min, max: s.max, hmax: s.hysteresis_max });
    } else if (s.type === "packs") {
      Object.assign(m, { packs: true, maxPacks: s.max });
    }
    return m;
  }

  const idOf = (path) => "cfg-" + path.replace(/[.[\]]/g, "-");
  // "100…10000 ms · live data reads": range with the unit, then the limits of text and the help.
  const metaText = (m) => {
    const parts = [];
    const u = m.unit ? " " + m.unit : "";
    if (m.min !== undefined && m.max !== undefined && !m.text) parts.push(m.min + "…" + m.max + u);
    else if (m.min !== undefined && !m.text) parts.push("≥ " + m.min + u);
    else if (m.unit && !m.choices) parts.push(m.unit);
    if (m.text) parts.push(m.text);
    if (m.maxlen) parts.push("≤ " + m.maxlen + " characters");
    if (m.help) parts.push(m.help);
    return parts.join(" · ");
  };

  function fieldShell(path, m, control, labelFor) {
    const msg = el("p", { class: "field-msg", id: idOf(path) + "-msg", role: "alert" });
    const meta = metaText(m);
    const label = el("label", { for: labelFor || idOf(path) }, m.label || path.split(".").pop(),
      m.restart ? el("span", { class: "restart", title: "applies after a restart of the gateway", text: "restart" }) : null);
    const isCheck = control.type === "checkbox";
    // A number reads with its unit beside it: [ 1000 ] ms
    const body = m.unit && control.tagName === "INPUT" && !isCheck ? el("div", { class: "with-unit" }, control, el("span", { class: "unit", text: m.unit })) : control;
    const wrap = el("div", { class: "field" + (isCheck ? " check" : ""), "data-path": path },
      label, body, meta ? el("p", { class: "meta", id: idOf(path) + "-meta", text: meta }) : null, msg);
    if (control.setAttribute) control.setAttribute("aria-describedby", idOf(path) + "-meta " + idOf(path) + "-msg");
    return { wrap, msg };
  }

  function register(path, original, read, shell) {
    fields.set(path, { read, original, msg: shell.msg, wrap: shell.wrap });
    return shell.wrap;
  }

  function numberInput(path, v, m) {
    const inp = el("input", { type: "number", id: idOf(path), inputmode: "decimal",
      step: m.step || (m.int ? 1 : "any"), min: m.min, max: m.max });
    inp.value = v === null || v === undefined ? "" : String(v);
    return inp;
  }
  const readNumber = (inp) => () => (inp.value.trim() === "" ? null : Number(inp.value));

  function scalarField(path, v, m) {
    let control, read;
    if (m.choices) {
      control = el("select", { id: idOf(path) }, m.choices.map((c) => el("option", { value: String(c), text: String(c) + (m.unit ? " " + m.unit : "") })));
      control.value = String(v);
      read = () => (typeof m.choices[0] === "number" ? Number(control.value) : control.value);
    } else if (typeof v === "boolean") {
      control = el("input", { type: "checkbox", id: idOf(path) });
      control.checked = v;
      read = () => control.checked;
    } else if (typeof v === "number") {
      control = numberInput(path, v, m);
      read = readNumber(control);
    } else if (m.secret) {
      control = el("input", { type: "password", id: idOf(path), autocomplete: "new-password",
        placeholder: v ? "set (unchanged unless you type a new one)" : "not set" });
      read = () => (control.value === "" ? v : control.value);
    } else {
      control = el("input", { type: "text", id: idOf(path), maxlength: m.maxlen, spellcheck: "false" });
      control.value = v === null || v === undefined ? "" : String(v);
      read = () => control.value;
    }
    return register(path, v, read, fieldShell(path, m, control));
  }

  function parseList(text) {
    const t = text.trim();
    if (!t) return [];
    return t.split(/[\s;,]+/).map((s) => (s === "" ? null : Number(s)));
  }

  function curveField(path, v, m) {
    const xs = el("input", { type: "text", id: idOf(path) + "-x", inputmode: "decimal", spellcheck: "false" });
    const ys = el("input", { type: "text", id: idOf(path) + "-y", inputmode: "decimal", spellcheck: "false" });
    xs.value = (v.x || []).join(", ");
    ys.value = (v.y || []).join(", ");
    const control = el("div", { class: "curve" },
      el("label", { for: xs.id, class: "sub-label", text: "x (" + m.xunit + ", " + m.xmin + "…" + m.xmax + ")" }), xs,
      el("label", { for: ys.id, class: "sub-label", text: "y (fraction 0…1)" }), ys);
    return register(path, v, () => ({ x: parseList(xs.value), y: parseList(ys.value) }),
      fieldShell(path, Object.assign({}, m, { help: "1 to 8 points, x increasing, separated by commas" }), control, xs.id));
  }

  function thresholdField(path, v, m) {
    const on = el("input", { type: "checkbox", id: idOf(path + ".enabled") });
    on.checked = !!v.enabled;
    const val = numberInput(path + ".value", v.value, m);
    const hys = numberInput(path + ".hysteresis", v.hysteresis, { min: 0, max: m.hmax, step: m.step });
    const lvl = el("select", { id: idOf(path + ".level") }, ["info", "warning", "error"].map((x) => el("option", { value: x, text: x })));
    lvl.value = v.level;
    const sub = (p, label, control, meta) => {
      const msg = el("p", { class: "field-msg", id: idOf(p) + "-msg", role: "alert" });
      const w = el("div", { class: "subfield", "data-path": p }, el("label", { for: control.id, text: label }), control,
        meta ? el("span", { class: "meta", text: meta }) : null, msg);
      fields.set(p, { read: null, msg, wrap: w, sub: true });
      return w;
    };
    const control = el("div", { class: "threshold" },
      sub(path + ".enabled", "enabled", on),
      sub(path + ".value", "value (" + m.unit + ")", val, m.min + "…" + m.max + " " + m.unit),
      sub(path + ".hysteresis", "hysteresis (" + m.unit + ")", hys, "0…" + m.hmax + " " + m.unit),
      sub(path + ".level", "level", lvl));
    const shell = fieldShell(path, { label: m.label }, control, on.id);
    return register(path, v, () => ({ enabled: on.checked, value: readNumber(val)(), hysteresis: readNumber(hys)(), level: lvl.value }), shell);
  }

  function packsField(path, v, m) {
    const body = el("tbody");
    const addRow = (p) => {
      const dev = el("input", { type: "text", class: "dev", value: p.uart_device || "", "aria-label": "serial device", placeholder: "serial device, /dev/ttyUSB0", spellcheck: "false" });
      const name = el("input", { type: "text", class: "name", value: p.name || "", maxlength: 15, "aria-label": "name", placeholder: "name" });
      const cap = el("input", { type: "number", class: "cap", value: String(p.capacity_ah || 0), min: 0, step: "any", "aria-label": "capacity Ah (0 = the BMS's setting)", title: "capacity in Ah, 0 = the BMS's setting" });
      const tr = el("tr", {}, el("td", {}, dev), el("td", {}, name), el("td", {}, cap),
        el("td", {}, el("button", { type: "button", class: "small", "aria-label": "remove this pack", onclick: () => tr.remove() }, "✕")));
      body.appendChild(tr);
    };
    (v || []).forEach(addRow);
    const control = el("div", { class: "packs-edit", id: idOf(path) },
      el("table", { class: "data" }, el("thead", {}, el("tr", {}, ["serial device", "name", "capacity (Ah, 0 = BMS's)", ""].map((h) => el("th", { text: h })))), body),
      el("button", { type: "button", class: "small", onclick: () => addRow({}) }, "Add a pack"));
    const read = () => [...body.rows].map((tr) => ({ uart_device: tr.querySelector(".dev").value,
      name: tr.querySelector(".name").value, capacity_ah: Number(tr.querySelector(".cap").value) }));
    return register(path, v, read, fieldShell(path, Object.assign({ help: "0.." + (m.maxPacks || 16) + " packs, each on its own port" }, m), control, idOf(path)));
  }

  function fieldFor(path, v, m) {
    if (m.packs || Array.isArray(v)) return packsField(path, v, m);
    if (m.curve || (v && typeof v === "object" && "x" in v && "y" in v)) return curveField(path, v, Object.assign({ xunit: "", xmin: "", xmax: "" }, m));
    if (m.threshold || (v && typeof v === "object" && "enabled" in v && "value" in v)) return thresholdField(path, v, Object.assign({ unit: "", min: "", max: "", hmax: "" }, m));
    if (v && typeof v === "object") return el("p", { class: "meta", text: path + ": " + JSON.stringify(v) });
    return scalarField(path, v, m);
  }

  // ------------------------------------------------------------ forms
  function sectionForm(sec) {
    const values = doc[sec.key] || {};
    const keys = Object.keys(sec.fields).filter((k) => k in values).concat(Object.keys(values).filter((k) => !(k in sec.fields)));
    const result = el("p", { class: "result", role: "status", id: "cfg-result-" + sec.key });
    const form = el("form", { id: "cfg-form-" + sec.key, "data-section": sec.key, novalidate: true },
      sec.help ? el("p", { class: "sub", text: sec.help }) : null,
      keys.map((k) => fieldFor(sec.key + "." + k, values[k], metaOf(sec.key + "." + k, sec.fields[k] || {}))),
      el("div", { class: "row actions" },
        el("button", { type: "submit", id: "cfg-save-" + sec.key }, "Save " + (/^[A-Z][a-z]/.test(sec.title) && !/^Venus/.test(sec.title) ? sec.title[0].toLowerCase() + sec.title.slice(1) : sec.title)),
        sec.key === "mqtt" ? el("button", { type: "button", id: "mqtt-test", onclick: (e) => testMqtt(result, e.currentTarget) }, "Test connection") : null),
      result);
    form.addEventListener("submit", (e) => { e.preventDefault(); save(sec, form, result); });
    // Each section folds, so that a phone shows the list of sections first.
    const n = keys.length;
    return el("details", { class: "card config-section", id: "cfg-sec-" + sec.key, open: openSections.has(sec.key),
      ontoggle: (e) => { if (e.target.open) openSections.add(sec.key); else openSections.delete(sec.key); } },
      el("summary", {}, el("h2", { text: sec.title }), el("span", { class: "meta", text: n + " setting" + (n === 1 ? "" : "s") })), form);
  }

  function sections() {
    const known = new Set(GW.CONFIG_SCHEMA.map((s) => s.key));
    const extra = Object.keys(doc).filter((k) => !known.has(k) && doc[k] && typeof doc[k] === "object" && !Array.isArray(doc[k]))
      .map((k) => ({ key: k, title: k, fields: {} }));
    return GW.CONFIG_SCHEMA.filter((s) => s.key in doc).concat(extra);
  }

  function render() {
    fields.clear();
    const box = $("config-forms");
    const secs = sections();
    box.replaceChildren(...secs.map(sectionForm));
  }

  function rerenderSection(key) {
    const sec = sections().find((s) => s.key === key);
    for (const p of [...fields.keys()]) if (p.startsWith(key + ".")) fields.delete(p);
    const old = $("cfg-sec-" + key);
    const section = sectionForm(sec);
    old.replaceWith(section);
    return section;
  }

  function clearMessages(prefix) {
    for (const [p, f] of fields) {
      if (prefix && !p.startsWith(prefix)) continue;
      f.msg.textContent = "";
      f.wrap.classList.remove("has-error");
    }
  }

  // The field that shows a server message: the path itself or its nearest registered parent
  // ("charge.charge_by_cell_v.x[1]" -> the curve, "battery.packs[0].name" -> the packs).
  function fieldOf(path) {
    let p = path;
    while (p) {
      if (fields.has(p)) return fields.get(p);
      const cut = Math.max(p.lastIndexOf("."), p.lastIndexOf("["));
      if (cut <= 0) break;
      p = p.slice(0, cut);
    }
    return null;
  }

  function showErrors(err, result) {
    const list = (err.doc && err.doc.fields) || [];
    const unplaced = [];
    for (const f of list) {
      const target = fieldOf(f.path || "");
      if (target) {
        target.msg.textContent = (target.msg.textContent ? target.msg.textContent + " · " : "") +
          (fields.get(f.path) === target ? "" : f.path.split(".").pop() + ": ") + f.reason;
        target.wrap.classList.add("has-error");
      } else unplaced.push((f.path ? f.path + ": " : "") + f.reason);
    }
    result.className = "result bad";
    result.textContent = "Not saved: " + err.message + (unplaced.length ? " — " + unplaced.join("; ") : "");
    for (const w of document.querySelectorAll(".field.has-error, .subfield.has-error")) w.closest("details").open = true;
    const first = document.querySelector(".has-error input, .has-error select");
    if (first) first.focus();
  }

  function changesOf(key) {
    const out = {};
    for (const [p, f] of fields) {
      if (f.sub || !p.startsWith(key + ".")) continue;
      const now = f.read();
      if (JSON.stringify(now) !== JSON.stringify(f.original)) out[p.slice(key.length + 1)] = now;
    }
    return out;
  }

  function restartBanner(changed) {
    $("config-banner-text").textContent = "Saved; restart required for: " + changed + ". The gateway runs on the old value until it restarts.";
    $("config-banner").hidden = false;
  }

  async function save(sec, form, result) {
    clearMessages(sec.key + ".");
    const changes = changesOf(sec.key);
    if (!Object.keys(changes).length) { result.className = "result"; result.textContent = "Nothing changed."; return; }
    result.className = "result";
    result.textContent = "Saving…";
    try {
      const r = await GW.post("/api/config", { [sec.key]: changes });
      doc = r.config || doc;
      GW.live.config = doc;
      const fresh = rerenderSection(sec.key);
      const out = fresh.querySelector(".result");
      out.className = "result ok";
      out.textContent = "Saved: " + (r.changed || Object.keys(changes).join(", ")) + (r.restart_required ? " (restart required)" : ", applied");
      if (r.restart_required) restartBanner(r.changed || sec.key);
    } catch (e) {
      showErrors(e, result);
    }
  }

  // POST /api/config/test-mqtt (CSRF token through GW.post) with the MQTT section as edited:
  // the gateway connects once with it, saves nothing, and says how it went.
  async function testMqtt(result, button) {
    clearMessages("mqtt.");
    result.className = "result";
    result.textContent = "Testing the connection (at most 10 s)…";
    button.disabled = true;
    try {
      const r = await GW.post("/api/config/test-mqtt", { mqtt: Object.assign({}, doc.mqtt, changesOf("mqtt")) });
      const took = r.duration_ms !== undefined ? " (" + Math.round(r.duration_ms) + " ms)" : "";
      result.className = "result " + (r.ok ? "ok" : "bad");
      result.dataset.result = r.result || "";
      result.textContent = (r.ok ? "Connected to " : "Could not connect to ") + (r.broker_uri || "the broker") + took +
        (r.ok ? ". Nothing was saved." : ": " + (r.message || r.result) + ". Nothing was saved.");
    } catch (e) {
      if (e.status === 400) {
        showErrors(e, result);
        result.textContent = "Not tested: " + e.message;
      } else {
        result.className = "result bad";
        result.textContent = "Not tested: " + e.message;
      }
    } finally {
      button.disabled = false;
    }
  }

  async function changePassword(ev) {
    ev.preventDefault();
    const out = $("pw-result"), msg = $("pw-new-msg");
    msg.textContent = "";
    const pw = $("pw-new").value;
    if (pw !== $("pw-again").value) { out.className = "result bad"; out.textContent = "The two passwords differ."; return; }
    try {
      await GW.post("/api/config", { web: { password: pw } });
      out.className = "result ok";
      out.textContent = "Password changed. The browser will ask you to log in again with the new one.";
      $("pw-new").value = $("pw-again").value = "";
    } catch (e) {
      const f = ((e.doc && e.doc.fields) || []).find((x) => x.path === "web.password");
      if (f) msg.textContent = f.reason;
      out.className = "result bad";
      out.textContent = "Not changed: " + e.message;
    }
  }

  async function importFile(ev) {
    const out = $("import-result");
    const file = ev.target.files[0];
    if (!file) return;
    const text = await file.text();
    ev.target.value = "";
    try { JSON.parse(text); } catch (e) { out.className = "result bad"; out.textContent = "This file is not JSON: " + e.message; return; }
    const ok = await GW.confirm("Import these settings?", "Every setting in " + file.name + " replaces the current one (passwords are kept).", "Import");
    if (!ok) return;
    try {
      const r = await GW.post("/api/config/import", text);
      out.className = "result ok";
      out.textContent = "Imported" + (r.changed ? ": " + r.changed : "") + (r.restart_required ? " (restart required)" : "") + ".";
      if (r.restart_required) restartBanner(r.changed || "imported settings");
      await load();
    } catch (e) {
      out.className = "result bad";
      out.textContent = "Not imported: " + e.message + " " + ((e.doc && e.doc.fields) || []).map((f) => f.path + ": " + f.reason).join("; ");
    }
  }

  async function load() {
    try {
      // Without the schema (an older gateway) the form still works: no ranges shown, the
      // gateway checks every value anyway.
      const [d, sc] = await Promise.all([GW.api("/api/config"), GW.api("/api/config/schema").catch(() => null)]);
      doc = d;
      if (sc && Array.isArray(sc.fields)) schema = new Map(sc.fields.map((f) => [f.path, f]));
      GW.live.config = doc;
      render();
    } catch (e) {
      $("config-forms").replaceChildren(el("p", { class: "none", text: "Settings not available: " + e.message }));
    }
  }

  GW.pages.config = {
    init() {
      $("pw-form").addEventListener("submit", changePassword);
      $("config-import").addEventListener("change", importFile);
      $("config-restart").addEventListener("click", async () => {
        if (await GW.restartGateway($("config-banner-text"))) $("config-restart").hidden = true;
      });
    },
    show() { load(); },
  };
})();
