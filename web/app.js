"use strict";
// Minimal live page: the battery over /ws/live (falls back to polling /api/data), alerts from
// /api/alerts. The browser asks for the login (HTTP Basic) on the first API call.
const $ = (id) => document.getElementById(id);
const fmt = (v, unit, d) => (v === null || v === undefined ? "–" : v.toFixed(d) + " " + unit);

function showView(v) {
  const b = v.bank;
  $("soc").textContent = fmt(b.soc_percent, "%", 1);
  $("voltage").textContent = fmt(b.voltage_v, "V", 2);
  $("current").textContent = fmt(b.current_a, "A", 1);
  $("power").textContent = fmt(b.power_w, "W", 0);
  $("cells").textContent = b.min_cell_v === null ? "–" :
    b.min_cell_v.toFixed(3) + " … " + b.max_cell_v.toFixed(3) + " V (spread " + b.cell_spread_mv.toFixed(1) + " mV)";
  $("temp").textContent = b.temp_min_c === null ? "no cell sensor" :
    b.temp_min_c.toFixed(1) + " … " + b.temp_max_c.toFixed(1) + " °C";
  for (const k of ["cvl", "ccl", "dcl"]) {
    const l = v.limits[k];
    $(k).textContent = fmt(l.value, l.unit, k === "cvl" ? 2 : 1);
    $(k + "-reason").textContent = l.reason;
  }
  const rows = $("packs");
  rows.replaceChildren();
  for (const p of v.packs) {
    const tr = document.createElement("tr");
    const live = p.live || {};
    for (const text of [p.name, p.state, fmt(live.voltage_v, "V", 2), fmt(live.current_a, "A", 1),
                        fmt(live.soc_percent, "%", 1)]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    }
    rows.appendChild(tr);
  }
}

async function loadAlerts() {
  const r = await fetch("/api/alerts?limit=1");
  if (!r.ok) return;
  const doc = await r.json();
  const ul = $("alerts");
  ul.replaceChildren();
  for (const a of doc.active) {
    const li = document.createElement("li");
    li.textContent = a.level + " " + a.code + ": " + a.message;
    ul.appendChild(li);
  }
  if (!doc.active.length) ul.innerHTML = "<li>none</li>";
}

async function poll() {
  try {
    const r = await fetch("/api/data");
    if (r.ok) { showView(await r.json()); $("link").textContent = "polling"; }
    else $("link").textContent = (await r.json()).message;
  } catch (e) { $("link").textContent = "gateway unreachable"; }
}

function live() {
  const proto = location.protocol === "https:" ? "wss://" : "ws://";
  const ws = new WebSocket(proto + location.host + "/ws/live");
  let timer = null;
  ws.onopen = () => { $("link").textContent = "live"; };
  ws.onmessage = (ev) => showView(JSON.parse(ev.data));
  ws.onclose = () => {
    $("link").textContent = "reconnecting…";
    if (!timer) timer = setInterval(poll, 2000);
    setTimeout(() => { clearInterval(timer); timer = null; live(); }, 5000);
  };
}

poll().then(() => { live(); loadAlerts(); setInterval(loadAlerts, 10000); });
