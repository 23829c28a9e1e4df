// Connection state and freshness for live pages. The numbers come from the
// server; this only says whether they are live or how old they are.
//
// "live" is shown only while the socket is heard from: the server sends a
// heartbeat every data-heartbeat seconds, and a page that hears nothing for a
// little over two of them says "reconnecting…", marks its numbers with their
// time and opens a new socket (a socket can look open long after the network
// under it went away, e.g. a phone that slept). The first message on the new
// socket is a full snapshot, and the page says "live" again.
(function () {
  var STALE_MS = 120000;
  var socket = null; // the socket in use (an older one closing must not count)
  var wrapper = null; // htmx's wrapper of it, which can open a new one
  var lastHeard = 0;
  var live = false;
  var supply = null; // the supply state last shown, to announce going off once

  function heartbeatMs() {
    var el = document.querySelector("[data-heartbeat]");
    var seconds = el ? parseFloat(el.getAttribute("data-heartbeat")) : NaN;
    return (seconds > 0 ? seconds : 15) * 1000;
  }
  function silenceLimitMs() { return 2 * heartbeatMs() + 2000; }

  function conn(text, cls) {
    document.querySelectorAll("[data-conn]").forEach(function (el) {
      el.textContent = text;
      el.className = "conn " + cls;
    });
  }
  function down() {
    live = false;
    conn("reconnecting…", "down");
    markAllStale();
  }

  // Screen readers: the regions stay in place while the panel is replaced, and
  // are written only when what they say changes.
  function say(kind, text) {
    var el = document.querySelector('[data-announce="' + kind + '"]');
    if (el && text && el.textContent !== text) { el.textContent = text; }
  }
  function announce() {
    var panel = document.querySelector("[data-supply]");
    if (!panel) { return; }
    say("polite", panel.getAttribute("data-announce-text"));
    var state = panel.getAttribute("data-supply");
    if (state === "off" && supply !== null && supply !== "off") {
      say("assertive", panel.getAttribute("data-assertive-text"));
    }
    supply = state;
  }

  document.addEventListener("htmx:wsOpen", function (e) {
    socket = e.detail.event.target;
    wrapper = e.detail.socketWrapper;
    lastHeard = Date.now();
  });
  document.addEventListener("htmx:wsAfterMessage", function () {
    lastHeard = Date.now();
    if (!live) { live = true; conn("live", "live"); }
    announce();
  });
  function closed(e) {
    var target = e.detail && e.detail.event ? e.detail.event.target : null;
    if (target && socket && target !== socket) { return; }
    down();
  }
  document.addEventListener("htmx:wsClose", closed);
  document.addEventListener("htmx:wsError", closed);

  setInterval(function () {
    if (!socket || socket.readyState !== WebSocket.OPEN) { return; }
    if (Date.now() - lastHeard > silenceLimitMs()) {
      down();
      lastHeard = Date.now(); // one new socket per silence, not one a second
      wrapper.reconnect();
    }
  }, 1000);

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
  document.addEventListener("DOMContentLoaded", function () {
    var panel = document.querySelector("[data-supply]");
    if (panel) { supply = panel.getAttribute("data-supply"); }
  });
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
// A form error answered to an htmx request is a 422 (config/htmx.py): swapped in
// like a 200, where htmx swaps no 4xx by default (and django-htmx's debug script
// would replace the page with a 400).
document.addEventListener("htmx:beforeSwap", function (e) {
  if (e.detail.xhr.status === 422) {
    e.detail.shouldSwap = true;
    e.detail.isError = false;
  }
});
