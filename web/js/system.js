"use strict";
// System: version, uptime, configuration status, web server and storage counters from
// /api/status; restart of the gateway (confirmed), then the page waits until it answers again.
(function () {
  const { $, el, fmt } = GW;
  let timer = null, status = null, statusAt = 0;

  function kv(id, pairs) {
    $(id).replaceChildren(...pairs.flatMap(([k, v, cls]) => [el("dt", { text: k }), el("dd", { text: v, class: cls })]));
  }

  function render() {
    const s = status;
    if (!s) return;
    const up = s.uptime_s + (performance.now() - statusAt) / 1000;
    const b = s.battery || {};
    kv("sys-gateway", [
      ["Version", s.version],
      ["Uptime", GW.duration(up)],
      ["Gateway clock", GW.dateTime(s.time)],
      ["Configuration", (s.config && s.config.status) + (s.config && s.config.message ? ": " + s.config.message : ""), s.config && s.config.status !== "ok" ? "warn" : ""],
      ["Packs online", (b.online_count !== undefined ? b.online_count + " of " + b.pack_count : "–") +
        (b.packs && b.packs.length ? " (" + b.packs.map((p) => p.name + ": " + p.state).join(", ") + ")" : "")],
      ["Limits", b.limits_valid ? (b.limits_sent ? "valid, sent" : "valid, not sent (no output)") : "not valid (stale data)"],
      ["Active alerts", String(s.alerts ? s.alerts.active : "–")],
    ]);
    const w = s.web || {};
    kv("sys-web", [
      ["HTTPS", w.https ? "yes" : "no"],
      ["Readable without login", w.public_read ? "yes" : "no"],
      ["Requests", String(w.requests)],
      ["WebSocket clients", w.ws_clients + " of " + w.ws_max_clients + " (dropped " + w.ws_dropped + ", refused " + w.ws_refused_full + ")"],
      ["Failed logins", w.login_failures + " (lockouts " + w.lockouts + ")"],
      ["Refused CSRF tokens", String(w.csrf_refused)],
    ]);
    const h = s.history || {}, e = s.event_bus || {};
    kv("sys-storage", [
      ["History", h.enabled ? (h.storage_ok ? "recording" : "STORAGE FAILING") : "off", h.storage_ok === false ? "bad" : ""],
      ["Samples written", String(h.samples_written)],
      ["Writer queue", String(h.queue_depth)],
      ["Events published", e.published + " (dropped " + e.dropped + ", high water " + e.queue_high_water + ")"],
    ]);
  }

  async function load() {
    try {
      status = await GW.api("/api/status");
      statusAt = performance.now();
      render();
    } catch (e) {
      $("sys-gateway").replaceChildren(el("dd", { text: "Not available: " + e.message }));
    }
  }

  async function restart() {
    const out = $("sys-restart-result");
    const before = status ? status.uptime_s : null;
    if (!(await GW.restartGateway(out))) return;
    const t0 = performance.now();
    const wait = async () => {
      try {
        const s = await GW.api("/api/status");
        if (before === null || s.uptime_s < before + (performance.now() - t0) / 1000 - 1) {
          out.textContent = "The gateway is back (uptime " + GW.duration(s.uptime_s) + ").";
          status = s; statusAt = performance.now(); render();
          return;
        }
      } catch (e) { /* not back yet */ }
      if (performance.now() - t0 < 120000) setTimeout(wait, 1000);
      else out.textContent = "The gateway did not come back within 2 minutes: check it.";
    };
    setTimeout(wait, 1000);
  }

  GW.pages.system = {
    init() { $("sys-restart").addEventListener("click", restart); },
    show() { load(); timer = setInterval(() => { if (document.visibilityState === "visible") render(); }, 1000); },
    hide() { clearInterval(timer); },
  };
})();
