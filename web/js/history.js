"use strict";
// History: voltage, current, SOC, temperatures and cell spread from /api/history over a day, a
// week or a month, per pack or the bank; zoom (drag on a chart, ＋/－), pan (◀ ▶); a table of the
// same buckets; the CSV of one UTC day from /api/history.csv.
(function () {
  const { $, el, fmt } = GW;
  const CHARTS = [
    { id: "voltage", title: "Voltage", unit: "V", d: 2, series: [["voltage", "avg", "voltage"]] },
    { id: "current", title: "Current", unit: "A", d: 1, series: [["current", "avg", "current"]] },
    { id: "soc", title: "State of charge", unit: "%", d: 1, series: [["soc", "avg", "SOC"]] },
    { id: "temp", title: "Temperatures", unit: "°C", d: 1, series: [["temp_min", "min", "coldest"], ["temp_max", "max", "hottest"]] },
    { id: "spread", title: "Cell spread (highest − lowest cell)", unit: "mV", d: 1, series: [["spread", "max", "spread"]] },
  ];
  const COLORS = ["#2f7ed8", "#d9534f", "#5cb85c"];
  const HEIGHT = 210;
  const state = { span: 86400000, to: null, pack: "bank", view: "charts", doc: null };
  const plots = [];
  let loading = 0;

  // The spread is not stored: per bucket, the highest cell's maximum minus the lowest cell's minimum.
  function column(doc, key, stat) {
    const s = doc.series;
    if (key === "spread") {
      return doc.time.map((_, i) => {
        const hi = s.cell_max && s.cell_max.max[i], lo = s.cell_min && s.cell_min.min[i];
        return hi === null || lo === null || hi === undefined ? null : hi - lo;
      });
    }
    return s[key] ? s[key][stat] : doc.time.map(() => null);
  }

  function range() {
    const to = state.to === null ? Date.now() : state.to;
    return { from: to - state.span, to };
  }

  // The width of one chart: the card's inner width (one or two columns, by the screen).
  function chartWidth(holder) {
    const w = holder ? holder.clientWidth : $("hist-chartbox").clientWidth;
    return Math.max(240, Math.floor(w));
  }

  function drawCharts(doc) {
    for (const p of plots) p.plot.destroy();
    plots.length = 0;
    const box = $("hist-chartbox");
    box.replaceChildren();
    const xs = doc.time.map((t) => t / 1000);
    const sync = uPlot.sync("history");
    const empty = !doc.count.some((c) => c > 0);
    for (const c of CHARTS) {
      const holder = el("div", { class: "chart", id: "chart-" + c.id });
      const card = el("article", { class: "card chart-card" }, el("h2", { text: c.title + " (" + c.unit + ")" }), holder);
      box.appendChild(card);
      if (empty) { holder.appendChild(el("p", { class: "none", text: "No samples in this range." })); continue; }
      const data = [xs].concat(c.series.map(([k, stat]) => column(doc, k, stat)));
      const sparse = data[1].filter((v) => v !== null).length < 80; // isolated points need a dot
      const opts = {
        width: chartWidth(holder), height: HEIGHT,
        cursor: { sync: { key: sync.key }, drag: { x: true, y: false, setScale: false } },
        scales: { x: { time: true } },
        legend: { live: true },
        series: [{ value: (u, v) => (v === null ? "–" : GW.dateTime(v * 1000)) }].concat(c.series.map(([, , label], i) => ({
          label, stroke: COLORS[i], width: 1.5, spanGaps: false, points: { show: sparse, size: 5, fill: COLORS[i] },
          gaps: bridgeShortGaps,
          value: (u, v) => fmt(v, c.d, c.unit),
        }))),
        axes: [{ stroke: "currentColor", grid: { stroke: "rgba(128,128,128,0.2)" } },
               { stroke: "currentColor", size: 56, space: 22, grid: { stroke: "rgba(128,128,128,0.2)" },
                 values: (u, ticks) => ticks.map((t) => GW.num(t, c.d > 1 && (ticks[1] - ticks[0]) < 0.1 ? c.d : (ticks[1] - ticks[0]) < 1 ? 1 : 0)) }],
        hooks: { setSelect: [zoomToSelection] },
      };
      const plot = new uPlot(opts, data, holder);
      holder.dataset.points = String(data[1].filter((v) => v !== null).length);
      plots.push({ plot, chart: c, holder });
    }
  }

  // A line is broken where the gateway recorded nothing for a while, not at a bucket or two
  // that fell between samples (buckets finer than the sampling period).
  function bridgeShortGaps(u, sidx, idx0, idx1, gaps) {
    const n = u.data[0].length || 1;
    const minPx = 4.5 * (u.bbox.width / n);
    return gaps.filter(([from, to]) => to - from > minPx);
  }

  function zoomToSelection(u) {
    if (u.select.width < 5) return;
    const a = u.posToVal(u.select.left, "x") * 1000, b = u.posToVal(u.select.left + u.select.width, "x") * 1000;
    u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
    state.span = Math.max(60000, b - a);
    state.to = b >= Date.now() ? null : b;
    load();
  }

  function drawTable(doc) {
    const box = $("hist-tablebox");
    const rows = [];
    for (let i = doc.time.length - 1; i >= 0 && rows.length < 500; i--) {
      if (!doc.count[i]) continue;
      const s = doc.series, v = (k, st, d) => (s[k] ? fmt(s[k][st][i], d) : "–");
      const spread = column(doc, "spread", "max")[i];
      rows.push(el("tr", {}, el("td", { text: GW.dateTime(doc.time[i]) }), el("td", { text: v("voltage", "avg", 2) }),
        el("td", { text: v("current", "avg", 1) }), el("td", { text: v("soc", "avg", 1) }),
        el("td", { text: v("temp_min", "min", 1) }), el("td", { text: v("temp_max", "max", 1) }),
        el("td", { text: v("cell_min", "min", 0) }), el("td", { text: v("cell_max", "max", 0) }),
        el("td", { text: fmt(spread, 0) }), el("td", { text: String(doc.count[i]) })));
    }
    const head = ["time", "voltage V", "current A", "SOC %", "coldest °C", "hottest °C", "lowest cell mV",
      "highest cell mV", "spread mV", "samples"];
    box.replaceChildren(rows.length ? el("table", { class: "data", id: "hist-table-data" },
      el("thead", {}, el("tr", {}, head.map((h) => el("th", { scope: "col", text: h })))), el("tbody", {}, rows))
      : el("p", { class: "none", text: "No samples in this range." }));
  }

  async function load() {
    const { from, to } = range();
    const points = Math.min(2000, Math.max(60, Math.round(chartWidth() / 2)));
    const my = ++loading;
    $("hist-range").textContent = "Loading " + GW.dateTime(from) + " … " + GW.dateTime(to) + "…";
    try {
      const doc = await GW.api("/api/history?from=" + Math.round(from) + "&to=" + Math.round(to) + "&points=" + points +
        "&pack=" + encodeURIComponent(state.pack));
      if (my !== loading) return;
      state.doc = doc;
      const samples = doc.count.reduce((a, b) => a + b, 0);
      $("hist-range").textContent = GW.dateTime(doc.from) + " … " + GW.dateTime(doc.to) + " · " +
        (state.pack === "bank" ? "whole bank" : "pack " + (+state.pack + 1)) + " · " + samples + " samples";
      if (state.view === "charts") drawCharts(doc); else drawTable(doc);
      const box = $("hist-chartbox");
      box.dataset.from = String(doc.from);
      box.dataset.to = String(doc.to);
      box.dataset.source = doc.source || "";
      box.dataset.loaded = String(my);
    } catch (e) {
      if (my === loading) $("hist-range").textContent = "History not available: " + e.message;
    }
  }

  function setSpan(ms) {
    state.span = ms;
    state.to = null;
    for (const b of $("hist-span").querySelectorAll("button")) b.setAttribute("aria-pressed", String(+b.dataset.span === ms));
    load();
  }
  function pan(f) {
    const { to } = range();
    const next = to + f * state.span;
    state.to = next >= Date.now() ? null : next;
    load();
  }
  function zoom(f) {
    const { from, to } = range();
    const mid = (from + to) / 2;
    state.span = Math.max(60000, Math.min(400 * 86400000, state.span * f));
    const next = state.to === null && f > 1 ? null : mid + state.span / 2;
    state.to = next === null || next >= Date.now() ? null : next;
    load();
  }
  function setView(v) {
    state.view = v;
    $("hist-charts").setAttribute("aria-pressed", String(v === "charts"));
    $("hist-table").setAttribute("aria-pressed", String(v === "table"));
    $("hist-chartbox").hidden = v !== "charts";
    $("hist-tablebox").hidden = v !== "table";
    if (state.doc) (v === "charts" ? drawCharts : drawTable)(state.doc);
  }

  function updateCsvLink() {
    const day = $("csv-day").value;
    $("csv-link").href = "/api/history.csv?day=" + encodeURIComponent(day) + "&pack=" + encodeURIComponent(state.pack);
    $("csv-link").setAttribute("download", "tinybms-history-" + day + (state.pack === "bank" ? "" : "-pack" + (+state.pack + 1)) + ".csv");
  }

  // The packs to choose from, once the live data has told how many there are.
  function fillPacks() {
    const sel = $("hist-pack"), d = GW.live.data;
    if (!d || !d.packs || sel.options.length === d.packs.length + 1 || d.packs.length < 2) return;
    sel.replaceChildren(el("option", { value: "bank", text: "whole bank" }));
    for (const p of d.packs) sel.appendChild(el("option", { value: String(p.id), text: p.name || "pack " + (p.id + 1) }));
    sel.value = state.pack;
  }

  let resizeTimer = null;
  GW.pages.history = {
    init() {
      for (const b of $("hist-span").querySelectorAll("button")) b.addEventListener("click", () => setSpan(+b.dataset.span));
      $("hist-left").addEventListener("click", () => pan(-0.5));
      $("hist-right").addEventListener("click", () => pan(0.5));
      $("hist-zoomin").addEventListener("click", () => zoom(0.5));
      $("hist-zoomout").addEventListener("click", () => zoom(2));
      $("hist-now").addEventListener("click", () => { state.to = null; load(); });
      $("hist-charts").addEventListener("click", () => setView("charts"));
      $("hist-table").addEventListener("click", () => setView("table"));
      $("hist-pack").addEventListener("change", (e) => { state.pack = e.target.value; updateCsvLink(); load(); });
      $("csv-day").value = new Date().toISOString().slice(0, 10);
      $("csv-day").addEventListener("change", updateCsvLink);
      updateCsvLink();
      GW.live.onData(fillPacks);
      window.addEventListener("resize", () => {
        clearTimeout(resizeTimer);
        resizeTimer = setTimeout(() => { for (const p of plots) p.plot.setSize({ width: chartWidth(p.holder), height: HEIGHT }); }, 200);
      });
    },
    show() {
      fillPacks();
      load();
    },
  };
})();
