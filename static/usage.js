// The usage chart (templates/usage/_chart.html, on the tenant's usage page and the
// landlord's unit page): bars from the period's JSON, fetched (data-usage-url) or
// embedded in the page (data-usage-json: a json_script's id), drawn with uPlot;
// the period before as a line; kWh or money; tap a bar for its value. Without
// JavaScript the page's table has the same figures.
(function () {
  var root = document.querySelector("[data-usage-url], [data-usage-json]");
  if (!root || typeof uPlot === "undefined") { return; }
  var box = root.querySelector("[data-usage-chart]");
  var picked = root.querySelector("[data-usage-picked]");
  var toggle = root.querySelector("[data-usage-toggle]");
  var data = null;
  var chart = null;
  var unit = "wh";

  function money(minor, currency) {
    if (minor === null || minor === undefined) { return "no data"; }
    return new Intl.NumberFormat("en-GB", { style: "currency", currency: currency }).format(minor / 100);
  }
  function kwh(wh) {
    if (wh === null || wh === undefined) { return "no data"; }
    return (wh / 1000).toFixed(3) + " kWh";
  }
  function show(v) { return unit === "wh" ? kwh(v) : money(v, data.currency); }
  function values(list) {
    // uPlot draws null as a gap; kWh are drawn as kWh, money in major units.
    return list.map(function (v) {
      if (v === null || v === undefined) { return null; }
      return unit === "wh" ? v / 1000 : v / 100;
    });
  }
  function draw() {
    if (chart) { chart.destroy(); chart = null; }
    var n = data.labels.length;
    var xs = [];
    for (var i = 0; i < n; i++) { xs.push(i); }
    var prev = values(data.previous[unit]).slice(0, n);
    while (prev.length < n) { prev.push(null); }
    var dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
    var ink = dark ? "#ddd" : "#222";
    var opts = {
      width: Math.max(box.clientWidth, 280),
      height: 220,
      legend: { show: false },
      cursor: { drag: { x: false, y: false }, points: { show: false } },
      scales: { x: { time: false, range: [-0.5, n - 0.5] } },
      axes: [
        {
          stroke: ink,
          values: function (u, ticks) { return ticks.map(function (t) { return data.labels[t] || ""; }); },
          space: 40,
        },
        { stroke: ink, size: 64, values: function (u, ticks) { return ticks.map(function (t) { return unit === "wh" ? t + " kWh" : money(Math.round(t * 100), data.currency); }); } },
      ],
      series: [
        {},
        { label: "This period", fill: "#2f7d4f", stroke: "#2f7d4f", paths: uPlot.paths.bars({ size: [0.7, 60] }), points: { show: false } },
        { label: "Period before", stroke: dark ? "#aaa" : "#777", width: 2, dash: [4, 4], spanGaps: false, points: { show: false } },
      ],
      hooks: {
        setCursor: [function (u) {
          var idx = u.cursor.idx;
          if (idx === null || idx === undefined) { return; }
          var now = data[unit][idx];
          var before = (data.previous[unit] || [])[idx];
          picked.textContent = data.labels[idx] + ": " + show(now) + " (period before: " + show(before) + ")";
        }],
      },
    };
    chart = new uPlot(opts, [xs, values(data[unit]), prev], box);
  }
  function start(json) {
    if (!json) { return; }
    data = json;
    toggle.hidden = false;
    box.setAttribute("data-ready", "1");
    draw();
  }
  var embedded = root.getAttribute("data-usage-json");
  if (embedded) {
    var script = document.getElementById(embedded);
    start(script ? JSON.parse(script.textContent) : null);
  } else {
    fetch(root.getAttribute("data-usage-url"), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(start);
  }
  toggle.addEventListener("change", function (e) {
    if (e.target && e.target.name === "usage-unit") { unit = e.target.value; draw(); }
  });
  window.addEventListener("resize", function () { if (data) { draw(); } });
})();
