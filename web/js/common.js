"use strict";
// Shared helpers of the web UI: DOM building, number formatting in the user's locale, the API
// calls (JSON, errors, the CSRF token on every POST) and the confirmation dialog.
// No framework; every page script adds itself to window.GW.
const GW = (window.GW = { pages: {} });

GW.$ = (id) => document.getElementById(id);

// el("td", {class: "x", text: "..."}, child, ...): attributes, text and children in one call.
GW.el = function (tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") e.textContent = v;
    else if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    e.appendChild(typeof kid === "string" ? document.createTextNode(kid) : kid);
  }
  return e;
};

const nfCache = new Map();
// A number in the user's locale with d decimals, "–" when the gateway has no value.
// grouping false: no thousands separator (cell millivolts).
GW.num = function (v, d, grouping) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  const key = d + (grouping === false ? "n" : "");
  let f = nfCache.get(key);
  if (!f) {
    f = new Intl.NumberFormat(undefined, { minimumFractionDigits: d, maximumFractionDigits: d, useGrouping: grouping !== false });
    nfCache.set(key, f);
  }
  return f.format(v);
};
// The same with its unit ("52.80 V").
GW.fmt = (v, d, unit) => (v === null || v === undefined ? "–" : GW.num(v, d) + (unit ? "\u202f" + unit : ""));

GW.duration = function (s) {
  if (s === null || s === undefined || s < 0) return "–";
  s = Math.round(s);
  if (s < 60) return s + "\u202fs";
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d) return d + "\u202fd " + h + "\u202fh";
  if (h) return h + "\u202fh " + m + "\u202fmin";
  return m + "\u202fmin";
};

const dtf = new Intl.DateTimeFormat(undefined, { dateStyle: "short", timeStyle: "medium" });
const tf = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });
GW.dateTime = (ms) => (ms ? dtf.format(new Date(ms)) : "–");
GW.time = (ms) => (ms ? tf.format(new Date(ms)) : "–");

// ---------------------------------------------------------------- the API
class ApiError extends Error {
  constructor(status, doc) {
    super((doc && doc.message) || "the gateway answered " + status);
    this.status = status;
    this.doc = doc || {};
  }
}
GW.ApiError = ApiError;

// Login problems are shown once, in the banner on top; the pages only see the error.
function authProblem(status, doc, headers) {
  const banner = GW.$("login");
  if (status === 401 && doc && doc.error === "no_password") {
    location.replace("/"); // the first-run page
    return;
  }
  let text;
  if (status === 429) {
    const after = headers.get("Retry-After");
    text = "Too many failed logins from this device: try again in " + (after ? GW.duration(+after) : "a while") + ".";
  } else {
    text = "Not logged in: the user name or the password was wrong, or the login was cancelled.";
  }
  GW.$("login-text").textContent = text;
  banner.hidden = false;
}
GW.loggedIn = () => { GW.$("login").hidden = true; };

GW.api = async function (path, opts) {
  let r;
  try {
    r = await fetch(path, Object.assign({ cache: "no-store" }, opts || {}));
  } catch (e) {
    throw new ApiError(0, { message: "the gateway did not answer (" + e.message + ")" });
  }
  const type = r.headers.get("Content-Type") || "";
  let doc = null;
  if (type.startsWith("application/json")) {
    try { doc = await r.json(); } catch (e) { doc = null; }
  }
  if (r.status === 401 || r.status === 429) authProblem(r.status, doc, r.headers);
  else if (r.ok) GW.loggedIn();
  if (!r.ok) throw new ApiError(r.status, doc);
  return doc;
};

// The status of a path without throwing (probe for endpoints that may not exist yet).
GW.probe = async function (path) {
  try {
    const r = await fetch(path, { cache: "no-store" });
    return r.status;
  } catch (e) {
    return 0;
  }
};

let csrf = null; // {token, until}
async function csrfToken(fresh) {
  if (!fresh && csrf && performance.now() < csrf.until) return csrf.token;
  const doc = await GW.api("/api/security/csrf");
  const ttl = Math.max(10, (doc.expires_in_s || 300) - 30);
  csrf = { token: doc.token, until: performance.now() + ttl * 1000 };
  return csrf.token;
}

// POST a JSON body with the CSRF token; a refused token (expired, gateway restarted) is
// fetched again once.
GW.post = async function (path, body) {
  for (let attempt = 0; ; attempt++) {
    const token = await csrfToken(attempt > 0);
    try {
      return await GW.api(path, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": token },
        body: typeof body === "string" ? body : JSON.stringify(body || {}),
      });
    } catch (e) {
      if (attempt === 0 && e.status === 403 && e.doc.error === "csrf") continue;
      throw e;
    }
  }
};

// POST a FormData (multipart) with the CSRF token, reporting the upload's progress (0..1);
// resolves with the JSON answer, rejects with an ApiError as GW.api does.
GW.upload = async function (path, form, onProgress) {
  for (let attempt = 0; ; attempt++) {
    const token = await csrfToken(attempt > 0);
    const r = await new Promise((resolve, reject) => {
      const x = new XMLHttpRequest();
      x.open("POST", path);
      x.setRequestHeader("X-CSRF-Token", token);
      x.responseType = "text";
      if (onProgress) x.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
      x.onload = () => resolve(x);
      x.onerror = () => reject(new Error("the connection was lost during the upload"));
      x.send(form);
    });
    let doc = null;
    try { doc = JSON.parse(r.responseText); } catch (e) { doc = null; }
    if (r.status >= 200 && r.status < 300) return doc;
    if (attempt === 0 && r.status === 403 && doc && doc.error === "csrf") continue;
    if (r.status === 401 || r.status === 429) authProblem(r.status, doc, { get: (h) => r.getResponseHeader(h) });
    throw new ApiError(r.status, doc);
  }
};

// ---------------------------------------------------------------- dialogs and notices
// Resolves true when the user confirms.
GW.confirm = function (title, text, okLabel) {
  const d = GW.$("confirm");
  GW.$("confirm-title").textContent = title;
  GW.$("confirm-text").textContent = text;
  GW.$("confirm-ok").textContent = okLabel || "OK";
  return new Promise((resolve) => {
    d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true });
    d.returnValue = "cancel";
    d.showModal();
    GW.$("confirm-cancel").focus();
  });
};

let toastTimer = null;
GW.toast = function (text, cls) {
  const t = GW.$("toast");
  t.textContent = text;
  t.className = "toast " + (cls || "");
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, 6000);
};

// Restart the gateway after a confirmation; out: the element that tells what happens.
GW.restartGateway = async function (out) {
  const ok = await GW.confirm("Restart the gateway?",
    "The gateway stops and starts again; the page is back within seconds. The inverter keeps the last limits meanwhile.",
    "Restart");
  if (!ok) { out.textContent = "Not restarted."; return false; }
  try {
    await GW.post("/api/system/restart", {});
    out.textContent = "Restarting… the page reconnects by itself.";
    return true;
  } catch (e) {
    out.textContent = "Refused: " + e.message;
    return false;
  }
};

GW.levelClass = (level) => "lvl lvl-" + (level || "info");

GW.download = function (name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type: type || "application/json" }));
  const a = GW.el("a", { href: url, download: name });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
};
