// The installable tenant app, in the browser: registers the service worker
// (templates/sw.js), keeps the last balance the page showed so the offline
// page can show it, labelled with its age and never as live, and turns
// phone notifications (Web Push) on and off on the settings page.
(function () {
  "use strict";
  var PREFIX = "submeter:last:";

  function store() {
    try { return window.localStorage; } catch (e) { return null; }
  }

  // --- The last balance seen, per tenancy ------------------------------------
  function tenancyId() {
    var m = /^\/tenant\/(\d+)\/$/.exec(window.location.pathname);
    return m ? m[1] : null;
  }
  function text(root, selector) {
    var el = root.querySelector(selector);
    return el ? el.textContent.replace(/\s+/g, " ").trim() : "";
  }
  function remember() {
    var id = tenancyId();
    var panel = document.getElementById("tenancy-panel");
    var s = store();
    if (!id || !panel || !s) { return; }
    var value = text(panel, "[data-testid=balance]") || text(panel, "[data-testid=bill-amount]");
    if (!value) { return; }
    // The balance is as old as the last reading behind it, if that is older than now.
    var at = Date.now();
    var fresh = Date.parse(panel.getAttribute("data-fresh") || "");
    if (!isNaN(fresh) && fresh < at) { at = fresh; }
    s.setItem(PREFIX + id, JSON.stringify({
      unit: text(panel, ".unitname"),
      label: text(panel, ".label"),
      value: value,
      supply: text(panel, "[data-testid=supply-line]").replace(/\s*·\s*(live|as of .*|no readings yet|connecting…)$/, ""),
      at: at
    }));
    s.setItem(PREFIX + "latest", id);
  }
  document.addEventListener("DOMContentLoaded", remember);
  // The live socket replaces the panel; keep what it now says.
  document.addEventListener("htmx:wsAfterMessage", remember);

  function age(ms) {
    var minutes = Math.floor(ms / 60000);
    if (minutes < 1) { return "just now"; }
    if (minutes < 60) { return minutes + " min ago"; }
    var hours = Math.floor(minutes / 60);
    if (hours < 48) { return hours + " h ago"; }
    return Math.floor(hours / 24) + " days ago";
  }
  function clock(d) {
    var today = new Date();
    var time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    if (d.toDateString() === today.toDateString()) { return time; }
    return d.toLocaleDateString([], { day: "numeric", month: "short" }) + " " + time;
  }
  function showOffline(root) {
    var s = store();
    var id = tenancyId() || (s && s.getItem(PREFIX + "latest"));
    var raw = s && id ? s.getItem(PREFIX + id) : null;
    var saved = null;
    try { saved = raw ? JSON.parse(raw) : null; } catch (e) { saved = null; }
    if (!saved) { return; }
    var when = new Date(saved.at);
    var label = "as of " + clock(when) + ", " + age(Date.now() - saved.at) + " — offline";
    root.querySelector("[data-offline-unit]").textContent = saved.unit || "You are offline";
    root.querySelector("[data-offline-label]").textContent = (saved.label || "Balance") + " · last known";
    root.querySelector("[data-offline-value]").textContent = saved.value;
    root.querySelector("[data-offline-age]").textContent = label;
    root.querySelector("[data-offline-supply]").textContent = saved.supply ? "At that time: " + saved.supply : "";
  }
  document.addEventListener("DOMContentLoaded", function () {
    var root = document.querySelector("[data-offline]");
    if (!root) { return; }
    showOffline(root);
    setInterval(function () { showOffline(root); }, 30000);
    var retry = root.querySelector("[data-offline-retry]");
    if (retry) { retry.addEventListener("click", function () { window.location.reload(); }); }
    window.addEventListener("online", function () { window.location.reload(); });
  });

  // Signing out forgets the balances kept here (the server also asks the
  // browser to, with Clear-Site-Data, where the browser honours it).
  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (!form || !form.action || !/\/accounts\/logout\/$/.test(new URL(form.action, location.href).pathname)) { return; }
    var s = store();
    if (s) {
      Object.keys(s).forEach(function (k) { if (k.indexOf("submeter:") === 0) { s.removeItem(k); } });
    }
    if (navigator.serviceWorker && navigator.serviceWorker.controller) {
      navigator.serviceWorker.controller.postMessage({ type: "signed-out" });
    }
  }, true);

  // --- The service worker -----------------------------------------------------
  var script = document.currentScript;
  var swUrl = script ? script.getAttribute("data-sw") : null;
  var registration = null;
  if (swUrl && "serviceWorker" in navigator) {
    registration = navigator.serviceWorker.register(swUrl, { scope: "/" });
    registration.catch(function () { /* no offline page: the site works as before */ });
  }

  // --- Phone notifications (settings page) ------------------------------------
  function keyBytes(base64url) {
    var b64 = (base64url + "===".slice((base64url.length + 3) % 4)).replace(/-/g, "+").replace(/_/g, "/");
    var raw = window.atob(b64);
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { out[i] = raw.charCodeAt(i); }
    return out;
  }
  function csrf() {
    var m = /(?:^|;\s*)csrftoken=([^;]+)/.exec(document.cookie);
    if (m) { return decodeURIComponent(m[1]); }
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }
  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf() },
      body: JSON.stringify(body)
    }).then(function (r) {
      if (!r.ok) { throw new Error("the server answered " + r.status); }
      return r.json();
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var box = document.querySelector("[data-push]");
    if (!box) { return; }
    var status = box.querySelector("[data-push-status]");
    var button = box.querySelector("[data-push-toggle]");
    var publicKey = box.getAttribute("data-public-key");
    if (!status || !button || !publicKey) { return; }
    if (!registration || !("PushManager" in window) || !("Notification" in window)) {
      status.textContent = "This browser cannot show notifications from a website. Your alerts come by email.";
      return;
    }
    function show(subscribed) {
      if (Notification.permission === "denied") {
        status.textContent = "Notifications are blocked for this site in your browser's settings. Your alerts come by email.";
        button.hidden = true;
        return;
      }
      status.textContent = subscribed
        ? "On for this phone."
        : "Off for this phone.";
      button.textContent = subscribed ? "Turn off on this phone" : "Turn on for this phone";
      button.setAttribute("aria-pressed", subscribed ? "true" : "false");
      button.hidden = false;
      button.disabled = false;
    }
    function current() {
      return navigator.serviceWorker.ready.then(function (reg) {
        return reg.pushManager.getSubscription().then(function (sub) { return { reg: reg, sub: sub }; });
      });
    }
    current().then(function (c) { show(Boolean(c.sub)); });
    button.addEventListener("click", function () {
      button.disabled = true;
      current().then(function (c) {
        if (c.sub) {
          var endpoint = c.sub.endpoint;
          return c.sub.unsubscribe().then(function () {
            return post(box.getAttribute("data-unsubscribe-url"), { endpoint: endpoint });
          }).then(function () { show(false); });
        }
        return Notification.requestPermission().then(function (permission) {
          if (permission !== "granted") { show(false); return null; }
          return c.reg.pushManager.subscribe({
            userVisibleOnly: true,
            applicationServerKey: keyBytes(publicKey)
          }).then(function (sub) {
            return post(box.getAttribute("data-subscribe-url"), sub.toJSON());
          }).then(function () { show(true); });
        });
      }).catch(function (err) {
        status.textContent = "Could not change notifications on this phone (" + err.message + "). Your alerts still come by email.";
        button.disabled = false;
      });
    });
  });
})();
