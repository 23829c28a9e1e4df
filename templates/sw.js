// The service worker of the installable tenant app, served at /sw.js
// (config/pwa.py) so that it covers the whole site.
//
// Pages are always fetched from the network first: an online tenant always
// sees the server's numbers. Only when a page cannot be fetched does the worker
// answer with the offline page, which shows the last balance this browser saw,
// labelled with its age and "offline" (static/pwa.js), never as live. The only
// things stored are the public shell files below: no page, JSON or API answer
// is ever cached, so nothing of one signed-in user is kept for the next.
"use strict";
var VERSION = "{{ version }}";
var CACHE = "submeter-shell-" + VERSION;
var OFFLINE_URL = "{{ offline_url }}";
var SHELL = {{ shell_json|safe }};
var ICON = SHELL.filter(function (u) { return u.indexOf("icon-192") !== -1; })[0];

function fillShell() {
  return caches.open(CACHE).then(function (cache) {
    // "reload": the files as the server has them now, not the browser's HTTP cache.
    return cache.addAll([OFFLINE_URL].concat(SHELL).map(function (u) {
      return new Request(u, { cache: "reload", credentials: "omit" });
    }));
  });
}

self.addEventListener("install", function (event) {
  event.waitUntil(fillShell().then(function () { return self.skipWaiting(); }));
});

self.addEventListener("activate", function (event) {
  event.waitUntil(caches.keys().then(function (keys) {
    return Promise.all(keys.filter(function (k) {
      return k.indexOf("submeter-") === 0 && k !== CACHE;
    }).map(function (k) { return caches.delete(k); }));
  }).then(function () { return self.clients.claim(); }));
});

function fromShell(request) {
  return caches.open(CACHE).then(function (cache) { return cache.match(request); });
}

self.addEventListener("fetch", function (event) {
  var request = event.request;
  if (request.method !== "GET") { return; }
  var url = new URL(request.url);
  if (url.origin !== self.location.origin) { return; }
  if (request.mode === "navigate") {
    event.respondWith(fetch(request).catch(function () {
      return fromShell(OFFLINE_URL).then(function (r) { return r || Response.error(); });
    }));
    return;
  }
  if (SHELL.indexOf(url.pathname) !== -1 || url.pathname === OFFLINE_URL) {
    // Network first here too, so a changed file shows at once; the kept copy offline.
    event.respondWith(fetch(request).catch(function () {
      return fromShell(url.pathname).then(function (r) { return r || Response.error(); });
    }));
  }
  // Everything else (JSON, the API, sockets, uploads) is left to the browser, never stored.
});

// Signing out: drop what is kept and keep only a fresh public shell.
self.addEventListener("message", function (event) {
  if (!event.data || event.data.type !== "signed-out") { return; }
  event.waitUntil(caches.keys().then(function (keys) {
    return Promise.all(keys.map(function (k) { return caches.delete(k); }));
  }).then(fillShell));
});

// Web Push (landlord/push.py): one notification per tag, the newest replacing the older.
self.addEventListener("push", function (event) {
  var data = {};
  if (event.data) {
    try { data = event.data.json(); } catch (e) { data = { body: event.data.text() }; }
  }
  event.waitUntil(self.registration.showNotification(data.title || "Submeter", {
    body: data.body || "",
    tag: data.tag || undefined,
    renotify: Boolean(data.tag),
    icon: ICON,
    badge: ICON,
    data: { url: data.url || "/" }
  }));
});

self.addEventListener("notificationclick", function (event) {
  event.notification.close();
  var target = new URL((event.notification.data && event.notification.data.url) || "/", self.location.origin);
  event.waitUntil(self.clients.matchAll({ type: "window", includeUncontrolled: true }).then(function (list) {
    for (var i = 0; i < list.length; i++) {
      if (new URL(list[i].url).pathname === target.pathname && "focus" in list[i]) { return list[i].focus(); }
    }
    return self.clients.openWindow(target.href);
  }));
});
