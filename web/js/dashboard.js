"use strict";
// Dashboard: the bank (SOC gauge, V/I/P, time left, temperatures, cells), the limits sent with
// their reasons, the links, the active alerts, and a card per pack with a bar per cell.
(function () {
  const { $, el, fmt, num } = GW;
  const SVGNS = "http://www.w3.org/2000/svg";
  const ARC = 0.75; // the gauge is three quarters of a circle
  const R = 50, C = 2 * Math.PI * R;
  let gaugeValue = null, gaugeText = null, gaugeSub = null;

  function svg(tag, attrs) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    return e;
  }

  function buildGauge() {
    const g = $("soc-gauge");
    const arc = { cx: 60, cy: 60, r: R, fill: "none", "stroke-width": 12, transform: "rotate(135 60 60)",
      "stroke-dasharray": (ARC * C).toFixed(2) + " " + C.toFixed(2) };
    g.appendChild(svg("circle", Object.assign({ class: "gauge-track" }, arc)));
    gaugeValue = svg("circle", Object.assign({ class: "gauge-value", "stroke-linecap": "round" }, arc));
    g.appendChild(gaugeValue);
    gaugeText = svg("text", { x: 60, y: 62, "text-anchor": "middle", class: "gauge-text" });
    gaugeSub = svg("text", { x: 60, y: 82, "text-anchor": "middle", class: "gauge-sub" });
    gaugeSub.textContent = "state of charge";
    g.append(gaugeText, gaugeSub);
  }

  function setGauge(soc) {
    const f = soc === null || soc === undefined ? 0 : Math.max(0, Math.min(100, soc)) / 100;
    gaugeValue.setAttribute("stroke-dasharray", (f * ARC * C).toFixed(2) + " " + C.toFixed(2));
    gaugeValue.setAttribute("class", "gauge-value " + (soc === null ? "" : soc < 20 ? "low" : soc < 40 ? "mid" : "high"));
    gaugeText.textContent = soc === null || soc === undefined ? "–" : num(soc, 0) + " %";
    $("soc-gauge").setAttribute("aria-label", "state of charge " + gaugeText.textContent);
  }

  function timeLeft(b) {
    if (b.time_left_s === null || b.time_left_s === undefined) return "–";
    if (b.current_a === null || b.current_a === undefined) return "–";
    if (!b.time_left_s || Math.abs(b.current_a) < 0.5) return "– (no current)";
    return GW.duration(b.time_left_s) + (b.current_a > 0 ? " to full" : " to empty");
  }

  function figure(dl, label, value, cls, id) {
    dl.appendChild(el("div", { class: "fig" }, el("dt", { text: label }), el("dd", { text: value, class: cls, id })));
  }

  function renderBank(d) {
    const b = d.bank || {};
    setGauge(b.soc_percent);
    $("bank-title").textContent = d.pack_count > 1 ? "Battery bank (" + d.online_count + " of " + d.pack_count + " packs online)" : "Battery";
    const dl = $("bank-figures");
    dl.replaceChildren();
    figure(dl, "Voltage", fmt(b.voltage_v, 2, "V"), "big", "bank-voltage");
    figure(dl, "Current", fmt(b.current_a, 1, "A"), "big " + (b.current_a > 0.5 ? "charge" : b.current_a < -0.5 ? "discharge" : ""), "bank-current");
    figure(dl, "Power", fmt(b.power_w, 0, "W"), "big", "bank-power");
    figure(dl, "Time left", timeLeft(b), "", "bank-time-left");
    figure(dl, "Status", b.status || "–", "status", "bank-status");
    figure(dl, "Temperature", b.temp_min_c === null || b.temp_min_c === undefined ? "no sensor" :
      num(b.temp_min_c, 1) + " … " + fmt(b.temp_max_c, 1, "°C"), "", "bank-temp");
    const cellName = (c, v) => {
      if (!c || !c.cell || v === null || v === undefined) return "";
      const p = d.pack_count > 1 && d.packs && d.packs.find((x) => x.id === c.pack);
      return " (" + (d.pack_count > 1 ? (p && p.name ? p.name : "pack " + (c.pack + 1)) + " " : "") + "cell " + c.cell + ")";
    };
    figure(dl, "Lowest cell", fmt(b.min_cell_v, 3, "V") + cellName(b.min_cell, b.min_cell_v), "", "bank-min-cell");
    figure(dl, "Highest cell", fmt(b.max_cell_v, 3, "V") + cellName(b.max_cell, b.max_cell_v), "", "bank-max-cell");
    figure(dl, "Cell spread", fmt(b.cell_spread_mv, 1, "mV"), b.cell_spread_mv > 50 ? "warn" : "", "bank-spread");
    figure(dl, "Capacity", fmt(b.capacity_ah, 0, "Ah") + " of " + fmt(b.installed_capacity_ah, 0, "Ah"), "", "bank-capacity");
    figure(dl, "Charged", fmt(b.energy_in_wh / 1000, 2, "kWh"), "", "bank-energy-in");
    figure(dl, "Discharged", fmt(b.energy_out_wh / 1000, 2, "kWh"), "", "bank-energy-out");
    if (b.conditions && b.conditions.length) figure(dl, "Conditions", b.conditions.join(", "), "warn", "bank-conditions");
  }

  const LIMIT_NAMES = { cvl: "Charge voltage (CVL)", ccl: "Charge current (CCL)", dcl: "Discharge current (DCL)" };
  function renderLimits(d) {
    const l = d.limits || {};
    let sent;
    if (l.valid === false) sent = "Withheld: the battery data is stale, the chargers stop.";
    else if (l.sent) sent = "Sent over " + (l.sent_by || []).join(", ").toUpperCase() + (l.phase ? " · phase: " + l.phase : "");
    else sent = "Not sent: no output sends limits (CAN is off)" + (l.phase ? " · phase: " + l.phase : "");
    $("limits-sent").textContent = sent;
    const body = $("limits-body");
    body.replaceChildren();
    for (const k of ["cvl", "ccl", "dcl"]) {
      const x = l[k] || {};
      const p = typeof x.pack === "number" && d.pack_count > 1 && (d.packs || []).find((y) => y.id === x.pack);
      const from = p ? " (set by " + (p.name || "pack " + (x.pack + 1)) + ")" : "";
      body.appendChild(el("tr", { id: "limit-" + k },
        el("th", { scope: "row", text: LIMIT_NAMES[k] }),
        el("td", { class: "value", text: fmt(x.value, k === "cvl" ? 2 : 1, x.unit) }),
        el("td", { class: "reason", text: x.reason ? "because: " + x.reason + from : "" })));
    }
    if (l.discharge_v !== undefined) {
      body.appendChild(el("tr", {}, el("th", { scope: "row", text: "Discharge voltage" }),
        el("td", { class: "value", text: fmt(l.discharge_v, 2, "V") }), el("td", { class: "reason" })));
    }
  }

  function hasAlert(code) { return GW.live.alerts.some((a) => a.code === code); }
  function link(dl, name, text, cls, id) {
    dl.append(el("dt", { text: name }), el("dd", { id }, el("span", { class: "dot " + cls }), text));
  }
  function renderLinks(d) {
    const dl = $("links"), cfg = GW.live.config, links = GW.live.links;
    dl.replaceChildren();
    const online = d.online_count, total = d.pack_count;
    link(dl, "BMS", online + " of " + total + " pack" + (total > 1 ? "s" : "") + " online" +
      (total === 1 && d.packs && d.packs[0] && d.packs[0].state !== "online" ? " (" + d.packs[0].state + ")" : ""),
      online === total ? "ok" : online ? "warn" : "bad", "link-bms");
    let inv, invCls;
    if (cfg && cfg.can && !cfg.can.enabled) { inv = "CAN output off"; invCls = "off"; }
    else if (hasAlert("CAN_INVERTER_LINK_LOST") || (links.inverter && !links.inverter.up)) { inv = "lost: no keep-alive from the GX"; invCls = "bad"; }
    else if (links.inverter && links.inverter.up) { inv = "connected"; invCls = "ok"; }
    else if (d.limits && d.limits.sent) { inv = "sending limits, no problem reported"; invCls = "ok"; }
    else { inv = "unknown"; invCls = "off"; }
    link(dl, "Inverter (GX)", inv, invCls, "link-inverter");
    let mq, mqCls;
    if (cfg && cfg.mqtt && !cfg.mqtt.enabled) { mq = "off"; mqCls = "off"; }
    else if (hasAlert("MQTT_DISCONNECTED") || (links.mqtt && !links.mqtt.up)) { mq = "disconnected"; mqCls = "bad"; }
    else if (links.mqtt && links.mqtt.up) { mq = "connected"; mqCls = "ok"; }
    else if (cfg) { mq = "on, no problem reported"; mqCls = "ok"; }
    else { mq = "unknown"; mqCls = "off"; }
    link(dl, "MQTT", mq, mqCls, "link-mqtt");
    const ws = GW.live.ws;
    link(dl, "This page", ws === "open" ? "live updates" : ws === "connecting" ? "connecting…" : "reconnecting (polling)",
      ws === "open" ? "ok" : "warn", "link-page");
  }

  function renderAlerts(alerts) {
    const ul = $("dash-alerts");
    ul.replaceChildren();
    if (!alerts.length) { ul.appendChild(el("li", { class: "none", text: "none" })); return; }
    for (const a of alerts) {
      ul.appendChild(el("li", { class: a.acknowledged ? "acked" : "" },
        el("span", { class: GW.levelClass(a.level), text: a.level }), " ",
        el("strong", { text: a.code }), " ", a.message,
        a.acknowledged ? el("span", { class: "meta", text: " (acknowledged)" }) : null));
    }
  }

  // ------------------------------------------------------------ packs
  const packCards = new Map(); // id -> {root, parts}

  function packCard(p) {
    let c = packCards.get(p.id);
    if (c) return c;
    const root = el("article", { class: "card pack", id: "pack-" + p.id });
    const parts = {
      title: el("h2"),
      state: el("span", { class: "badge" }),
      figures: el("dl", { class: "figures small" }),
      cells: el("div", { class: "cells", role: "list", "aria-label": "cell voltages" }),
      legend: el("p", { class: "legend" }),
      limits: el("p", { class: "sub" }),
      cellEls: [],
    };
    parts.title.append(el("span", { class: "pack-name" }), " ", parts.state);
    root.append(parts.title, parts.figures, el("h3", { text: "Cells" }), parts.cells, parts.legend, parts.limits);
    $("packs").appendChild(root);
    c = { root, parts };
    packCards.set(p.id, c);
    return c;
  }

  function renderCells(parts, live) {
    const cells = live.cells_v || [];
    if (parts.cellEls.length !== cells.length) {
      parts.cells.replaceChildren();
      parts.cellEls = cells.map((_, i) => {
        const fill = el("div", { class: "fill" });
        const value = el("span", { class: "mv" });
        const cell = el("div", { class: "cell", role: "listitem" }, value, el("div", { class: "bar" }, fill),
          el("span", { class: "no", text: String(i + 1) }));
        parts.cells.appendChild(cell);
        return { cell, fill, value };
      });
    }
    const vals = cells.filter((v) => v !== null);
    const lo = Math.min(...vals), hi = Math.max(...vals);
    const span = Math.max(hi - lo, 0.01);
    const bottom = lo - span * 0.6; // the lowest cell still shows a bar
    const balancing = new Set(live.balancing || []);
    cells.forEach((v, i) => {
      const e = parts.cellEls[i], no = i + 1;
      const h = v === null ? 0 : Math.max(4, Math.min(100, ((v - bottom) / (hi - bottom)) * 100));
      e.fill.style.height = h.toFixed(1) + "%";
      e.value.textContent = v === null ? "–" : num(v * 1000, 0, false);
      let cls = "cell";
      if (no === live.min_cell) cls += " min";
      if (no === live.max_cell) cls += " max";
      if (balancing.has(no)) cls += " balancing";
      e.cell.className = cls;
      e.cell.setAttribute("aria-label", "cell " + no + " " + fmt(v, 4, "V") +
        (no === live.min_cell ? ", lowest" : "") + (no === live.max_cell ? ", highest" : "") + (balancing.has(no) ? ", balancing" : ""));
      e.cell.title = e.cell.getAttribute("aria-label");
    });
    parts.legend.replaceChildren(
      el("span", { class: "key min", text: "lowest " + fmt(live.min_cell_v, 3, "V") + " (cell " + live.min_cell + ")" }), " ",
      el("span", { class: "key max", text: "highest " + fmt(live.max_cell_v, 3, "V") + " (cell " + live.max_cell + ")" }), " ",
      el("span", { class: "key spread", text: "spread " + fmt(live.cell_spread_mv, 1, "mV") }), " ",
      el("span", { class: "key balancing", text: balancing.size ? "balancing: cell " + [...balancing].join(", ") : "no cell balancing" }));
  }

  function renderPack(d, p) {
    const { root, parts } = packCard(p);
    const live = p.live || {};
    root.classList.toggle("pack-stale", p.state !== "online");
    parts.title.querySelector(".pack-name").textContent = p.name || "pack " + (p.id + 1);
    parts.state.textContent = p.state + (p.state !== "online" && p.sample_age_ms ? ", data " + GW.duration(p.sample_age_ms / 1000) + " old" : "");
    parts.state.className = "badge " + (p.state === "online" ? "ok" : "bad");
    const dl = parts.figures;
    dl.replaceChildren();
    const t = live.temperatures_c || {};
    figure(dl, "Voltage", fmt(live.voltage_v, 2, "V"));
    figure(dl, "Current", fmt(live.current_a, 1, "A"));
    figure(dl, "SOC", fmt(live.soc_percent, 1, "%"));
    figure(dl, "SOH", fmt(live.soh_percent, 0, "%"));
    figure(dl, "BMS board", fmt(t.internal, 1, "°C"));
    figure(dl, "Cell sensor 1", t.external1 === null ? "absent" : fmt(t.external1, 1, "°C"));
    if (t.external2 !== null && t.external2 !== undefined) figure(dl, "Cell sensor 2", fmt(t.external2, 1, "°C"));
    figure(dl, "Status", live.status || "–");
    if (p.bad_samples) figure(dl, "Refused samples", p.bad_samples + (p.bad_reason ? " (" + p.bad_reason + ")" : ""), "warn");
    renderCells(parts, live);
    const l = p.limits || {};
    const part = (k, u, dd) => (l[k] ? k.toUpperCase() + " " + fmt(l[k].value, dd, u) + (l[k].reason ? " (" + l[k].reason + ")" : "") : "");
    parts.limits.textContent = d.pack_count > 1 ? "This pack's limits: " + [part("cvl", "V", 2), part("ccl", "A", 1), part("dcl", "A", 1)].join(" · ") : "";
  }

  function render(d) {
    renderBank(d);
    renderLimits(d);
    renderLinks(d);
    const seen = new Set();
    for (const p of d.packs || []) { renderPack(d, p); seen.add(p.id); }
    for (const [id, c] of packCards) if (!seen.has(id)) { c.root.remove(); packCards.delete(id); }
  }

  GW.pages.dashboard = {
    init() {
      buildGauge();
      setGauge(null);
      GW.live.onData(render);
      GW.live.onAlerts((a) => { renderAlerts(a); if (GW.live.data) renderLinks(GW.live.data); });
    },
    show() {
      if (GW.live.data) render(GW.live.data);
      renderAlerts(GW.live.alerts);
    },
  };
})();
