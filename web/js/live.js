"use strict";
// The live state shared by every page: the battery over /ws/live (polling /api/data while the
// WebSocket is down), the active alerts (/api/alerts, refreshed at each /ws/alerts message), the
// links reported on /ws/events, and the "data stale" banner.
(function () {
  const STALE_AFTER_MS = 5000; // /ws/live sends at least once a second
  const live = (GW.live = {
    data: null,        // the newest /api/data document
    at: 0,             // performance.now() when it arrived
    ws: "connecting",  // connecting | open | closed
    alerts: [],        // active alerts (the /api/alerts "active" array)
    links: {},         // link name -> {up, at}
    stale: null,       // the reason the data is stale, or null
    config: null,      // the configuration when readable (which outputs are on)
  });
  const dataListeners = [], alertListeners = [];
  live.onData = (fn) => dataListeners.push(fn);
  live.onAlerts = (fn) => alertListeners.push(fn);

  function wsUrl(path) {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  }

  function setData(doc) {
    live.data = doc;
    live.at = performance.now();
    evaluate();
    for (const fn of dataListeners) fn(doc);
  }

  // ------------------------------------------------------------ the battery
  let pollTimer = null;
  async function poll() {
    try {
      setData(await GW.api("/api/data"));
    } catch (e) {
      if (e.status === 503) evaluate(e.message);
    }
  }

  let backoff = 1000;
  function connectLive() {
    live.ws = "connecting";
    evaluate();
    const ws = new WebSocket(wsUrl("/ws/live"));
    ws.onopen = () => {
      live.ws = "open";
      backoff = 1000;
      clearInterval(pollTimer);
      pollTimer = null;
      evaluate();
    };
    ws.onmessage = (ev) => {
      try { setData(JSON.parse(ev.data)); } catch (e) { /* not JSON: ignored */ }
    };
    ws.onclose = () => {
      live.ws = "closed";
      evaluate();
      if (!pollTimer) pollTimer = setInterval(poll, 2000);
      setTimeout(connectLive, backoff);
      backoff = Math.min(backoff * 2, 10000);
    };
  }

  // ------------------------------------------------------------ alerts and links
  let alertsPending = null;
  async function loadAlerts() {
    try {
      const doc = await GW.api("/api/alerts?limit=1");
      live.alerts = doc.active || [];
      const n = GW.$("nav-alert-count");
      n.textContent = live.alerts.length;
      n.hidden = live.alerts.length === 0;
      for (const fn of alertListeners) fn(live.alerts);
    } catch (e) { /* shown by the login banner or next time */ }
  }
  live.refreshAlerts = function () {
    clearTimeout(alertsPending);
    alertsPending = setTimeout(loadAlerts, 150);
  };

  function connectAlerts() {
    const ws = new WebSocket(wsUrl("/ws/alerts"));
    ws.onmessage = (ev) => {
      let m;
      try { m = JSON.parse(ev.data); } catch (e) { return; }
      if (m.event === "raised") GW.toast("New " + m.level + ": " + m.code + " — " + m.message, "lvl-" + m.level);
      for (const fn of alertListeners) fn(live.alerts, m);
      live.refreshAlerts();
    };
    ws.onopen = () => live.refreshAlerts();
    ws.onclose = () => setTimeout(connectAlerts, 3000);
  }

  function connectEvents() {
    const ws = new WebSocket(wsUrl("/ws/events"));
    ws.onmessage = (ev) => {
      let m;
      try { m = JSON.parse(ev.data); } catch (e) { return; }
      if ((m.type === "link_up" || m.type === "link_down") && m.link) {
        live.links[m.link] = { up: m.type === "link_up", at: m.timestamp || Date.now() };
        for (const fn of dataListeners) if (live.data) fn(live.data);
      }
    };
    ws.onclose = () => setTimeout(connectEvents, 5000);
  }

  // ------------------------------------------------------------ stale state
  function staleReason(extra) {
    const d = live.data;
    if (!d) return extra || "Waiting for the first battery data…";
    const age = performance.now() - live.at;
    if (age > STALE_AFTER_MS) {
      return "DATA STALE: no update for " + GW.duration(age / 1000) + " (last at " + GW.time(d.timestamp) +
        "). The values shown are old.";
    }
    if (d.bank && d.bank.online === false || d.online_count === 0) {
      return "DATA STALE: BMS link lost, no pack sends data. No charge limits are sent; the pack values below are the last known.";
    }
    if (d.limits && d.limits.valid === false) {
      return "DATA STALE: the battery data is too old for charge control; the chargers stop.";
    }
    return null;
  }

  let problem = null; // why there is no data at all (not logged in, gateway silent), until data comes
  function evaluate(extra) {
    if (extra) problem = extra;
    if (live.data) problem = null;
    live.stale = staleReason(problem);
    const banner = GW.$("stale"), badge = GW.$("conn");
    banner.hidden = !live.stale;
    if (live.stale) banner.textContent = live.stale;
    document.body.classList.toggle("is-stale", !!live.stale);
    let text, cls;
    if (live.ws === "open" && !live.stale) { text = "live"; cls = "ok"; }
    else if (live.ws === "open") { text = "stale"; cls = "bad"; }
    else if (live.ws === "connecting") { text = "connecting…"; cls = "warn"; }
    else { text = pollTimer && !live.stale ? "polling" : "offline"; cls = pollTimer && !live.stale ? "warn" : "bad"; }
    badge.textContent = text;
    badge.className = "badge " + cls;
  }
  live.evaluate = evaluate;

  // The WebSockets open after a first API call has succeeded: the browser sends the login on a
  // WebSocket upgrade only once it has it (it cannot ask for it there).
  live.start = async function () {
    setInterval(() => evaluate(), 1000);
    for (let wait = 1000; ; wait = Math.min(wait * 2, 10000)) {
      try {
        live.status = await GW.api("/api/status");
        break;
      } catch (e) {
        evaluate(e.status === 401 || e.status === 429 ? "Not logged in: no battery data." : "The gateway does not answer: " + e.message);
        if (e.status === 401) return; // the login banner offers to try again
        await new Promise((r) => setTimeout(r, wait));
      }
    }
    poll();
    connectLive();
    connectAlerts();
    connectEvents();
    loadAlerts();
    GW.api("/api/config").then((c) => { live.config = c; if (live.data) setData(live.data); }).catch(() => {});
  };
})();
