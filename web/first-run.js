"use strict";
// First-run page: posts the new password once; the gateway accepts it only while none exists.
document.getElementById("form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const out = document.getElementById("result");
  const pw = document.getElementById("password").value;
  if (pw !== document.getElementById("again").value) {
    out.textContent = "The two passwords differ.";
    return;
  }
  try {
    const r = await fetch("/api/security/first-password", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ password: pw }),
    });
    const doc = await r.json();
    if (r.ok) {
      out.textContent = "Password set. ";
      const a = document.createElement("a");
      a.href = "/";
      a.textContent = "Open the gateway and log in as " + (doc.user || "admin");
      out.appendChild(a);
      document.getElementById("form").hidden = true;
    } else {
      out.textContent = doc.message || ("Refused (" + r.status + ")");
    }
  } catch (e) {
    out.textContent = "The gateway did not answer: " + e;
  }
});
