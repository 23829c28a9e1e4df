// Connection state and freshness for live pages. The numbers come from the
// server; this only says whether they are live or how old they are.
(function () {
  var STALE_MS = 120000;
  function conn(text, cls) {
    document.querySelectorAll("[data-conn]").forEach(function (el) {
      el.textContent = text;
      el.className = "conn " + cls;
    });
  }
  document.addEventListener("htmx:wsOpen", function () { conn("live", "live"); });
  document.addEventListener("htmx:wsClose", function () { conn("reconnecting…", "down"); markAllStale(); });
  document.addEventListener("htmx:wsError", function () { conn("reconnecting…", "down"); });
  function hhmm(d) { return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }); }
  function refresh(root, force) {
    var iso = root.getAttribute("data-fresh");
    var label = root.querySelector("[data-fresh-label]");
    if (!label) { return; }
    if (!iso) { label.textContent = "no readings yet"; return; }
    var when = new Date(iso);
    if (force || Date.now() - when.getTime() > STALE_MS) { label.textContent = "as of " + hhmm(when); }
  }
  function markAllStale() { document.querySelectorAll("[data-fresh]").forEach(function (el) { refresh(el, true); }); }
  setInterval(function () { document.querySelectorAll("[data-fresh]").forEach(function (el) { refresh(el, false); }); }, 10000);
})();
// Copy buttons next to selectable text (a device's secret): hidden until this
// script runs, so without JavaScript the text is still there to select.
(function () {
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    if (!navigator.clipboard) { return; }
    button.hidden = false;
    button.addEventListener("click", function () {
      var target = document.querySelector(button.getAttribute("data-copy"));
      if (!target) { return; }
      navigator.clipboard.writeText(target.textContent.trim()).then(function () {
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = "Copy"; }, 2000);
      });
    });
  });
})();
