"use strict";
// Alerts: the active ones (acknowledge one or all) with value, threshold, first and last seen
// and count, live over /ws/alerts (GW.live); the past ones (raised / cleared / acknowledged
// events) filtered by level and code, older pages on demand.
(function () {
  const { $, el, fmt } = GW;
  const PAGE = 100;
  let past = [], offset = 0, more = false, codes = new Set();

  // The unit of an alert's value and threshold, by its code (docs/alerts.md); "" for the alerts
  // that carry no measurement (their value and threshold are not shown).
  const UNITS = { OVER_VOLTAGE: "V", UNDER_VOLTAGE: "V", PACK_OVER_VOLTAGE: "V", PACK_UNDER_VOLTAGE: "V",
    OVER_TEMP: "°C", UNDER_TEMP: "°C", OVER_CURRENT: "A", CHARGE_OVER_CURRENT: "A", CELL_IMBALANCE: "mV",
    SOC_LOW: "%", SOC_HIGH: "%", PACK_SOC_SPREAD: "%", PACK_VOLTAGE_SPREAD: "V" };
  const measured = (a) => a.code in UNITS || (a.value || a.threshold);
  function num(v, code) {
    if (typeof v !== "number") return "–";
    const unit = UNITS[code] || "";
    const d = unit === "V" && Math.abs(v) < 10 ? 3 : unit === "mV" || unit === "%" ? 1 : Math.abs(v) < 10 ? 3 : 1;
    return fmt(v, d, unit);
  }
  function packName(id) {
    if (id === 255 || id === undefined || id === null) return null;
    const p = GW.live.data && (GW.live.data.packs || []).find((x) => x.id === id);
    return p && p.name ? p.name : "pack " + (id + 1);
  }

  function renderActive(alerts) {
    const box = $("alerts-active");
    $("ack-all").hidden = !alerts.some((a) => !a.acknowledged);
    if (!alerts.length) { box.replaceChildren(el("p", { class: "none", text: "No active alert." })); return; }
    box.replaceChildren(el("ul", { class: "alert-cards" }, alerts.map((a) => {
      const key = a.code + (a.subject ? "/" + a.subject : "") + "@" + a.battery_id;
      return el("li", { class: "alert-card " + (a.acknowledged ? "acked" : ""), "data-code": a.code, id: "active-" + key },
        el("div", { class: "alert-head" }, el("span", { class: GW.levelClass(a.level), text: a.level }),
          el("strong", { text: a.code }), packName(a.battery_id) ? el("span", { class: "meta", text: packName(a.battery_id) }) : null),
        el("p", { text: a.message }),
        el("dl", { class: "kv small" },
          measured(a) ? [el("dt", { text: "value" }), el("dd", { text: num(a.value, a.code) }),
            el("dt", { text: "threshold" }), el("dd", { text: num(a.threshold, a.code) })] : null,
          el("dt", { text: "first seen" }), el("dd", { text: GW.dateTime(a.first_seen) }),
          el("dt", { text: "last seen" }), el("dd", { text: GW.dateTime(a.last_seen) }),
          el("dt", { text: "count" }), el("dd", { text: String(a.count) })),
        a.acknowledged ? el("p", { class: "meta", text: "acknowledged" })
          : el("button", { type: "button", class: "ack", "data-code": a.code, onclick: () => ack(a.code) }, "Acknowledge"));
    })));
  }

  async function ack(code) {
    try {
      const r = await GW.post("/api/alerts/ack", code ? { code } : {});
      GW.toast("Acknowledged " + (r.acknowledged !== undefined ? r.acknowledged : "") + (code ? " " + code : " all"));
    } catch (e) {
      GW.toast("Not acknowledged: " + e.message, "lvl-error");
    }
    GW.live.refreshAlerts();
    loadPast(true);
  }

  function renderPast() {
    const level = $("filter-level").value, code = $("filter-code").value;
    const sel = $("filter-code");
    for (const c of [...codes].sort()) {
      if (![...sel.options].some((o) => o.value === c)) sel.appendChild(el("option", { value: c, text: c }));
    }
    const rows = past.filter((h) => (!level || h.level === level) && (!code || h.code === code));
    $("alerts-more").hidden = !more;
    if (!rows.length) { $("alerts-past").replaceChildren(el("p", { class: "none", text: "Nothing recorded" + (level || code ? " for this filter." : ".") })); return; }
    $("alerts-past").replaceChildren(el("table", { class: "data", id: "alerts-past-table" },
      el("thead", {}, el("tr", {}, ["time", "event", "level", "code", "message", "value", "threshold", "count"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, rows.map((h) => el("tr", { "data-code": h.code, class: "ev-" + h.event },
        el("td", { class: "when", "data-label": "time", text: GW.dateTime(h.timestamp_ms) }), el("td", { "data-label": "event", text: h.event }),
        el("td", { "data-label": "level" }, el("span", { class: GW.levelClass(h.level), text: h.level })), el("td", { class: "code", "data-label": "code", text: h.code }),
        el("td", { class: "msg", "data-label": "message", text: h.message }),
        el("td", { "data-label": "value", class: measured(h) ? "" : "empty", text: measured(h) ? num(h.value, h.code) : "" }),
        el("td", { "data-label": "threshold", class: measured(h) ? "" : "empty", text: measured(h) ? num(h.threshold, h.code) : "" }),
        el("td", { "data-label": "count", text: String(h.count) }))))));
  }

  async function loadPast(reset) {
    if (reset) { offset = 0; past = []; }
    try {
      const doc = await GW.api("/api/alerts?limit=" + PAGE + "&offset=" + offset);
      past = past.concat(doc.history || []);
      more = !!doc.more;
      offset += (doc.history || []).length;
      for (const h of past) codes.add(h.code);
      for (const c of Object.keys(doc.counts || {})) codes.add(c);
      renderPast();
    } catch (e) {
      $("alerts-past").replaceChildren(el("p", { class: "none", text: "Not available: " + e.message }));
    }
  }

  let visible = false;
  GW.pages.alerts = {
    init() {
      $("ack-all").addEventListener("click", () => ack(null));
      $("filter-level").addEventListener("change", renderPast);
      $("filter-code").addEventListener("change", renderPast);
      $("alerts-more").addEventListener("click", () => loadPast(false));
      GW.live.onAlerts((alerts, msg) => {
        renderActive(alerts);
        if (msg && visible && (msg.event === "raised" || msg.event === "cleared")) loadPast(true);
      });
    },
    show() { visible = true; renderActive(GW.live.alerts); loadPast(true); },
    hide() { visible = false; },
  };
})();
