"use strict";
// The page's router: one section per page, chosen by the address's #fragment (#dashboard,
// #history, #alerts, #config, #bms, #system); the live connection runs whatever page is shown.
(function () {
  const { $ } = GW;
  const PAGES = ["dashboard", "history", "alerts", "config", "bms", "system"];
  let current = null;

  function route() {
    const name = PAGES.includes(location.hash.slice(1)) ? location.hash.slice(1) : "dashboard";
    if (name === current) return;
    if (current && GW.pages[current].hide) GW.pages[current].hide();
    for (const p of PAGES) $("page-" + p).hidden = p !== name;
    for (const a of document.querySelectorAll("#nav a")) {
      if (a.dataset.page === name) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    document.title = $("page-" + name).dataset.title + " · tinybms-gw";
    current = name;
    GW.pages[name].show();
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const p of PAGES) GW.pages[p].init();
    $("login-retry").addEventListener("click", () => location.reload());
    window.addEventListener("hashchange", route);
    route();
    GW.live.start();
  });
})();
