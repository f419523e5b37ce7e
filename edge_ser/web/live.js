// The live page of `edge-ser listen --http` and the timeline of `edge-ser report`.
// Live: one EventSource on /events (no polling): unnamed events are result messages (the JSON MQTT
// gets), `level` events carry every window's RMS and gate decision, `stats` the counters, `bye` says
// the daemon stopped. Report: the results are embedded in the page as JSON (#report-data).
"use strict";

(function () {
  const COLORS = {
    anger_disgust: "#d64545", fear_surprise: "#8e6bbf", happiness: "#f0b429",
    sadness: "#3b7dd8", neutral: "#b8bec6",
  };
  const SPARE_COLORS = ["#2bb0a8", "#a0694b", "#d26bb2", "#6b7280"];
  const MAX_ROWS = 900; // windows kept in the timeline: 15 minutes at the default 1 s hop
  const RMS_FLOOR = 1e-4; // -80 dBFS: the bottom of the level chart and the meter

  const $ = (id) => document.getElementById(id);
  let rows = []; // one per window, sorted by x: {key, x, probs, label, confidence, rms, gated, threshold}
  let byKey = new Map();
  let labels = [];
  let threshold = null;
  let timeAxis = true;
  let charts = null;
  let drawQueued = false;

  function color(label) {
    if (!(label in COLORS)) COLORS[label] = SPARE_COLORS[Object.keys(COLORS).length % SPARE_COLORS.length];
    return COLORS[label];
  }

  const pretty = (label) => label.replace("_", " / ");
  const dB = (rms) => 20 * Math.log10(Math.max(rms, RMS_FLOOR));

  function reset() {
    rows = [];
    byKey = new Map();
  }

  function rowFor(key, x) {
    let row = byKey.get(key);
    if (row) return row;
    row = { key, x, probs: null, label: null, confidence: null, rms: null, gated: null, threshold: null };
    byKey.set(key, row);
    let i = rows.length;
    while (i > 0 && rows[i - 1].x > x) i--; // windows arrive in order; a replay may interleave
    rows.splice(i, 0, row);
    while (rows.length > MAX_ROWS) byKey.delete(rows.shift().key);
    return row;
  }

  function xOf(m) {
    return timeAxis ? Date.parse(m.ts) / 1000 : m.window_start;
  }

  function addResult(m) {
    if (labels.length === 0) labels = Object.keys(m.probs);
    const row = rowFor(m.ts + "|" + m.window_start, xOf(m));
    row.label = m.label;
    row.confidence = m.confidence;
    row.probs = m.gated ? null : m.probs;
    row.rms = m.rms;
    row.gated = m.gated;
    return row;
  }

  function addLevel(l) {
    const row = rowFor(l.ts + "|" + l.window_start, xOf(l));
    row.rms = l.rms;
    row.gated = l.gated;
    row.threshold = l.threshold;
    threshold = l.threshold;
    return row;
  }

  // -- charts ------------------------------------------------------------------------------------

  function chartData() {
    const xs = rows.map((r) => r.x);
    // Stacked areas: series k is the sum of labels k..n-1, each filled down to 0 and drawn over the
    // previous one, so the visible band between series k and k+1 is label k's probability.
    const stacked = labels.map((_, k) => rows.map((r) => {
      if (!r.probs) return null;
      let sum = 0;
      for (let j = k; j < labels.length; j++) sum += r.probs[labels[j]] || 0;
      return sum;
    }));
    const level = (want) => rows.map((r) => (r.rms === null || r.gated !== want ? null : Math.max(r.rms, RMS_FLOOR)));
    const gate = rows.map((r) => r.threshold ?? threshold);
    return { probs: [xs, ...stacked], levels: [xs, level(false), level(true), gate] };
  }

  function makeCharts() {
    const width = Math.max($("probs").clientWidth, 300);
    const sync = uPlot.sync("edge-ser");
    const cursor = { sync: { key: sync.key }, points: { show: false } };
    const x = { time: timeAxis };
    const xAxis = timeAxis ? {} : { label: "seconds into the stream", labelSize: 20 };
    const raw = (k) => (u, v, si, i) => {
      const r = rows[i];
      return r && r.probs ? (100 * (r.probs[labels[k]] || 0)).toFixed(1) + " %" : "–";
    };
    const probs = new uPlot({
      width, height: 230, cursor, legend: { live: true },
      scales: { x, y: { range: [0, 1] } },
      series: [{}, ...labels.map((label, k) => ({
        label: pretty(label), stroke: color(label), fill: color(label), width: 0, value: raw(k),
        points: { show: false },
      }))],
      axes: [xAxis, { values: (u, vals) => vals.map((v) => Math.round(v * 100) + "%"), size: 64 }],
    }, chartData().probs, $("probs"));
    const fmt = (u, v) => (v === null ? "–" : v.toFixed(4));
    const levels = new uPlot({
      width, height: 150, cursor, legend: { live: true },
      scales: { x, y: { distr: 3, range: [RMS_FLOOR, 1] } },
      series: [{},
        { label: "speech", stroke: "#2f9e44", width: 1.5, value: fmt, points: { show: true, size: 5 } },
        { label: "silence", stroke: "#9aa0a6", width: 1.5, value: fmt, points: { show: true, size: 5 } },
        { label: "gate", stroke: "#e8710a", width: 1.5, dash: [6, 4], value: fmt, points: { show: false } }],
      axes: [xAxis, {
        // One tick per 20 dB, all of them labelled (uPlot's log-axis filter would hide some).
        size: 64, splits: () => [1e-4, 1e-3, 1e-2, 1e-1, 1], filter: (u, splits) => splits,
        values: (u, vals) => vals.map((v) => (v === null ? "" : Math.round(dB(v)) + " dB")),
      }],
    }, chartData().levels, $("levels"));
    window.addEventListener("resize", () => {
      const w = Math.max($("probs").clientWidth, 300);
      probs.setSize({ width: w, height: 230 });
      levels.setSize({ width: w, height: 150 });
    });
    return { probs, levels };
  }

  function draw() {
    drawQueued = false;
    if (labels.length === 0 && rows.length === 0) return;
    if (!charts && labels.length) charts = makeCharts();
    if (charts) {
      const data = chartData();
      charts.probs.setData(data.probs);
      charts.levels.setData(data.levels);
    }
    const drawn = rows.filter((r) => r.label !== null).length;
    $("probs").dataset.windows = String(drawn);
    $("drawn").textContent = drawn + (drawn === 1 ? " window" : " windows");
    showNow();
  }

  function schedule() {
    if (!drawQueued) {
      drawQueued = true;
      requestAnimationFrame(draw);
    }
  }

  // -- the now / level / counters cards -----------------------------------------------------------

  function showNow() {
    if (!$("label")) return;
    const last = [...rows].reverse().find((r) => r.label !== null);
    const lastLevel = [...rows].reverse().find((r) => r.rms !== null);
    if (last) {
      $("label").textContent = pretty(last.label);
      $("label").dataset.label = last.label;
      $("label").style.setProperty("--dot", color(last.label));
      $("confidence").textContent = last.gated ? "silence: no inference"
        : "confidence " + (100 * last.confidence).toFixed(1) + " %";
    }
    if (lastLevel) {
      const speech = !lastLevel.gated;
      $("gate").dataset.gated = String(!speech);
      $("gate").textContent = speech ? "speech: the model runs on this window"
        : "silence: gated, published as neutral";
      const gate = lastLevel.threshold ?? threshold;
      const pos = (rms) => Math.min(100, Math.max(0, (dB(rms) + 80) / 80 * 100));
      $("meter-bar").style.width = pos(lastLevel.rms).toFixed(1) + "%";
      $("meter-bar").classList.toggle("speech", speech);
      if (gate !== null) $("meter-gate").style.left = pos(gate).toFixed(1) + "%";
      $("level-text").textContent = "RMS " + lastLevel.rms.toFixed(4) + " (" + dB(lastLevel.rms).toFixed(1)
        + " dB)" + (gate !== null ? "  ·  gate " + gate + " (" + dB(gate).toFixed(0) + " dB)" : "");
    }
  }

  function showStats(s) {
    const set = (id, v) => { $(id).textContent = v === null || v === undefined ? "–" : v; };
    set("c-windows", s.windows);
    set("c-inferred", s.inferred);
    set("c-dropped", s.dropped);
    set("c-latency", s.latency_ms_p50 === null ? null : s.latency_ms_p50 + " ms");
    set("c-broker", s.broker ?? (s.mqtt_published !== undefined ? "configured" : "none"));
    if (s.model) $("model").textContent = s.model;
  }

  function setState(state, text) {
    document.body.dataset.state = state;
    $("state").textContent = text;
  }

  // -- live: the event stream ---------------------------------------------------------------------

  function connect() {
    const events = new EventSource("events");
    events.addEventListener("hello", (e) => {
      const hello = JSON.parse(e.data);
      reset();
      threshold = hello.rms_threshold;
      $("site").textContent = hello.site;
      setState("live", "live");
      schedule();
    });
    events.onmessage = (e) => {
      const m = JSON.parse(e.data);
      addResult(m);
      $("model").textContent = m.model;
      schedule();
    };
    events.addEventListener("level", (e) => { addLevel(JSON.parse(e.data)); schedule(); });
    events.addEventListener("stats", (e) => showStats(JSON.parse(e.data)));
    events.addEventListener("lag", (e) => {
      setState("live", "live (this browser fell behind: " + JSON.parse(e.data).dropped + " events lost)");
    });
    events.addEventListener("bye", () => setState("stopped", "stopped: the daemon ended the stream"));
    // EventSource retries by itself; a `hello` marks the daemon back.
    events.onerror = () => {
      if (document.body.dataset.state !== "stopped") setState("disconnected", "disconnected: retrying…");
    };
  }

  // -- report: embedded results ---------------------------------------------------------------------

  function report(data) {
    timeAxis = data.time_axis === "ts";
    data.results.forEach(addResult);
    draw();
  }

  const embedded = $("report-data");
  if (embedded) report(JSON.parse(embedded.textContent));
  else connect();
})();
