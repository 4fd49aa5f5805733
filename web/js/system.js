"use strict";
// System: version, uptime, configuration status, web server and storage counters from
// /api/status; the update state (/api/ota/status) and the upload of a signed update
// (/api/ota/upload) with the gateway's own progress (received, checked, installed), followed
// until the new version runs and is kept or was rolled back; the rollback to the previous
// version (/api/ota/rollback, confirmed); restart of the gateway (confirmed), then the page
// waits until it answers again.
(function () {
  const { $, el, fmt } = GW;
  let timer = null, status = null, statusAt = 0;

  function kv(id, pairs) {
    $(id).replaceChildren(...pairs.flatMap(([k, v, cls]) => [el("dt", { text: k }), el("dd", { text: v, class: cls })]));
  }

  function network(n) {
    if (!n || !n.watching) return "not watched";
    if (!n.connected) return "disconnected" + (n.link_up ? " (link up, no address)" : "");
    return n.address + " on " + n.interface + (n.wireless ? " (Wi-Fi)" : "") +
      (n.connected_for_s !== null && n.connected_for_s !== undefined ? ", for " + GW.duration(n.connected_for_s) : "");
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
      ["Network", network(s.network)],
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

  const STATES = {
    none: "no update installed through the gateway", pending: "installed, starting on trial",
    trial: "on trial (kept once it runs well)", good: "kept", failed: "failed: back to the previous version",
    rolled_back: "rolled back by hand",
  };

  const mb = (n) => (n / 1e6).toFixed(n < 1e7 ? 1 : 0) + " MB";
  // One line for where an update is on the gateway (its "phase" in /api/ota/status).
  function phaseText(u) {
    const p = u.upload || {};
    switch (u.phase) {
      case "receiving": return "Received " + mb(p.bytes || 0) + (p.total ? " of " + mb(p.total) : "") + "…";
      case "verifying": return "Checking the signature and the files" + (p.files ? " (" + p.files_verified + " of " + p.files + ")" : "") + "…";
      case "installing": return "Installing the new version…";
      case "switching": return "Installed: the gateway restarts into it…";
      case "trial": return "The new version runs on trial…";
      case "refused": return "Refused: " + (u.phase_reason || "see the gateway's log");
      default: return "";
    }
  }

  function renderRollback(u) {
    const box = $("ota-rollback-box");
    box.hidden = !u.can_roll_back;
    if (!u.can_roll_back) return;
    const prev = u.previous_version || "the installed program";
    $("ota-rollback").textContent = "Go back to " + (u.previous_version ? "version " + prev : prev);
    $("ota-rollback-text").textContent = "This gateway keeps the version it ran before (" + prev +
      "). Going back restarts the gateway into it; the version running now (" + u.running_version + ") can be installed again later from its update file.";
  }

  function renderUpdates(u) {
    renderRollback(u);
    const st = u.update || {};
    kv("sys-update-state", [
      ["Running version", u.running_version + (u.running_release && u.running_release !== "installed" ? " (release " + u.running_release + ")" : " (installed program)")],
      // (a reason that repeats the state, "rolled back by hand (web…)", replaces it)
      ["Last update", (st.version ? st.version + ": " : "") + (st.reason && st.reason.startsWith(STATES[st.state] || st.state) ? st.reason
        : (STATES[st.state] || st.state) + (st.reason ? " — " + st.reason : "")),
        st.state === "failed" ? "bad" : ""],
      ["Previous version", u.previous_version ? u.previous_version + (u.can_roll_back ? " (kept for a rollback)" : "") : "none"],
    ]);
  }

  async function loadUpdates() {
    try {
      const u = await GW.api("/api/ota/status");
      renderUpdates(u);
      return u;
    } catch (e) {
      $("sys-update-state").replaceChildren(el("dd", { text: "Update state not available: " + e.message }));
      return null;
    }
  }

  // Until the gateway runs `version` and kept it, or went back (3 minutes at most).
  function followInstall(version, out) {
    const t0 = performance.now();
    const poll = async () => {
      let u = null;
      try { u = await GW.api("/api/ota/status"); } catch (e) { /* restarting */ }
      if (u) {
        renderUpdates(u);
        const st = u.update || {};
        if (u.running_version === version && st.state === "good") {
          out.className = "result ok";
          out.textContent = "Version " + version + " runs and is kept.";
          return;
        }
        if (st.state === "failed" || (st.state === "rolled_back" && u.running_version !== version)) {
          out.className = "result bad";
          out.textContent = "Version " + version + " did not run well; the gateway went back to " + u.running_version +
            (st.reason ? ": " + st.reason : ".");
          return;
        }
        if (u.running_version === version) out.textContent = "Version " + version + " runs on trial…";
        else if (phaseText(u)) out.textContent = phaseText(u);
      }
      if (performance.now() - t0 < 180000) setTimeout(poll, 2000);
      else { out.className = "result bad"; out.textContent = "No answer about version " + version + " within 3 minutes: check the gateway."; }
    };
    setTimeout(poll, 2000);
  }

  // While the upload runs: what the gateway has received and checked, every half second.
  function watchPhase() {
    const line = $("ota-phase");
    let stopped = false;
    const poll = async () => {
      if (stopped) return;
      try {
        const u = await GW.api("/api/ota/status");
        const t = u.upload ? phaseText(u) : "";
        if (!stopped && t) { line.textContent = t; line.hidden = false; }
      } catch (e) { /* the upload's own answer says what went wrong */ }
      if (!stopped) setTimeout(poll, 500);
    };
    poll();
    return () => { stopped = true; line.hidden = true; line.textContent = ""; };
  }

  async function rollback() {
    const out = $("ota-rollback-result"), button = $("ota-rollback");
    let u;
    try { u = await GW.api("/api/ota/status"); } catch (e) { out.className = "result bad"; out.textContent = "Not available: " + e.message; return; }
    const target = u.previous_version || "the installed program";
    const label = u.previous_version ? "version " + target : target;
    if (!(await GW.confirm("Go back to " + label + "?", "The gateway switches to " + label + " and restarts into it (a few seconds without data). Version " +
      u.running_version + " stays installable from its update file.", "Go back"))) {
      out.className = "result"; out.textContent = "Nothing changed."; return;
    }
    button.disabled = true;
    $("ota-result").textContent = ""; // "version … is kept" would contradict what follows
    out.className = "result";
    out.textContent = "Going back to " + label + "…";
    try {
      const r = await GW.post("/api/ota/rollback", {});
      out.className = "result ok";
      out.textContent = (r.message || "Rolled back") + "…";
      const t0 = performance.now();
      const wait = async () => {
        let s = null;
        try { s = await GW.api("/api/ota/status"); } catch (e) { /* restarting */ }
        if (s && s.running_version !== u.running_version) {
          renderUpdates(s);
          out.textContent = "The gateway runs " + s.running_version + " again.";
          button.disabled = false;
          return;
        }
        if (performance.now() - t0 < 120000) setTimeout(wait, 1000);
        else { out.className = "result bad"; out.textContent = "The gateway did not come back within 2 minutes: check it."; button.disabled = false; }
      };
      setTimeout(wait, 1000);
    } catch (e) {
      out.className = "result bad";
      out.textContent = "Not rolled back: " + e.message + ".";
      button.disabled = false;
      loadUpdates();
    }
  }

  async function upload(ev) {
    ev.preventDefault();
    const out = $("ota-result"), bar = $("ota-progress"), button = $("ota-upload");
    const bundle = $("ota-bundle").files[0], sig = $("ota-sig").files[0];
    out.className = "result bad";
    if (!bundle) { out.textContent = "Choose the update file (.tar) first."; return; }
    if (!sig) { out.textContent = "Choose its signature (the .sig file that came with " + bundle.name + ")."; return; }
    if (!(await GW.confirm("Install this update?", "The gateway checks " + bundle.name + " and its signature, then restarts into the new version (a few seconds without data; the inverter keeps the last limits).", "Install"))) {
      out.className = "result"; out.textContent = "Not installed."; return;
    }
    const form = new FormData();
    form.append("signature", sig, sig.name); // first: a wrong signature stops the upload at once
    form.append("firmware", bundle, bundle.name);
    out.className = "result";
    out.textContent = "Sending " + bundle.name + "…";
    bar.hidden = false; bar.value = 0;
    button.disabled = true;
    const stopWatch = watchPhase();
    try {
      const r = await GW.upload("/api/ota/upload", form, (f) => {
        bar.value = Math.round(f * 100);
        if (f >= 1) out.textContent = "Checking the signature and the files…";
      });
      out.className = "result ok";
      out.textContent = "Version " + r.version + " installed (signed by key " + r.key_id + "). The gateway restarts into it…";
      followInstall(r.version, out);
    } catch (e) {
      out.className = "result bad";
      const hint = { bad_signature: " Check that the .sig file is the one that came with this update file, and that the gateway trusts its key.",
        bad_bundle: " The file is not a complete update bundle: download it again.",
        incompatible: " This update is for another kind of gateway.", too_large: " This file is too large to be an update." }[e.doc && e.doc.error] || "";
      out.textContent = "Not installed: " + e.message + "." + hint;
    } finally {
      stopWatch();
      bar.hidden = true;
      button.disabled = false;
      $("ota-bundle").value = $("ota-sig").value = "";
    }
  }

  async function load() {
    loadUpdates();
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
    init() {
      $("sys-restart").addEventListener("click", restart);
      $("ota-form").addEventListener("submit", upload);
      $("ota-rollback").addEventListener("click", rollback);
    },
    show() { load(); timer = setInterval(() => { if (document.visibilityState === "visible") render(); }, 1000); },
    hide() { clearInterval(timer); },
  };
})();
