#include "admin.hpp"

namespace slabd::server {

// Self-contained (no external assets: the admin port is often reachable only from a bastion with
// no internet). Ids are stable so tests can compare the rendered numbers with /stats; the charts
// (from /stats/history, loaded once and then only what is new) and the slab map (/stats/slab)
// carry their numbers as data- attributes for the same reason. A token, if
// one is set, is read from the URL fragment (#token=...), which browsers never send to the server.
std::string_view status_page() noexcept {
    return R"html(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>slabd</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:60em}
h1{font-size:1.3em;margin:0 0 .2em} .muted{color:#777}
.bar{height:1.6em;background:#eee;border-radius:4px;overflow:hidden;margin:.4em 0}
.fill{height:100%;background:#3a7;transition:width .4s} .fill.warn{background:#e90} .fill.full{background:#d33}
table{border-collapse:collapse;margin:.5em 0 1.2em} td,th{padding:.2em .8em;text-align:right;border-bottom:1px solid #ddd}
th{background:#f5f5f5} td:first-child,th:first-child{text-align:left}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(11em,1fr));gap:.6em}
.card{background:#f7f7f7;border-radius:6px;padding:.5em .8em} .card b{display:block;font-size:1.4em}
#error{color:#d33}
svg.chart{width:100%;height:130px;background:#fafafa;border:1px solid #e5e5e5;border-radius:4px}
svg.chart polyline{fill:none;stroke-width:1.5;vector-effect:non-scaling-stroke}
svg.chart text{font-size:10px;fill:#777}
.legend span{margin-right:1em;white-space:nowrap} .legend i{display:inline-block;width:.8em;height:.8em;margin-right:.3em;border-radius:2px}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(26em,1fr));gap:.4em 1.2em}
.charts h3{font-size:1em;margin:.6em 0 .2em}
#slab-map{width:100%;max-width:48em;background:#fafafa;border:1px solid #e5e5e5;border-radius:4px}
#slab-map .used{fill:#2a6fb0} #slab-map .partial{fill:#7fa9d6} #slab-map .free{fill:#bfe3c0} #slab-map .never{fill:#e6e6e6}
#slab-map #slab-head{fill:none;stroke:#d33;stroke-width:2}
</style></head><body>
<h1>slabd <span id="version"></span></h1>
<div class="muted"><span id="mode"></span> mode &middot; <span id="threads"></span> thread(s) &middot; up <span id="uptime"></span> s &middot; <span id="ready"></span></div>
<p id="error"></p>
<h2>Connection pool</h2>
<div class="bar"><div id="pool-fill" class="fill" style="width:0"></div></div>
<div class="grid">
<div class="card">in use<b id="pool-in-use">-</b></div>
<div class="card">free<b id="pool-free">-</b></div>
<div class="card">capacity<b id="pool-capacity">-</b></div>
<div class="card">high-water<b id="pool-high-water">-</b></div>
<div class="card">block size (B)<b id="pool-block-size">-</b></div>
<div class="card">refused<b id="conn-refused">-</b></div>
<div class="card">refused / s<b id="refusal-rate">-</b></div>
<div class="card">accepted<b id="conn-accepted">-</b></div>
<div class="card">active<b id="conn-active">-</b></div>
<div class="card">buffers in use<b id="buffers-in-use">-</b></div>
</div>
<h2>The last ten minutes</h2>
<div class="charts">
<div><h3>Pool blocks in use</h3><svg id="chart-pool" class="chart" viewBox="0 0 600 120" preserveAspectRatio="none"></svg><div class="legend" id="legend-pool"></div></div>
<div><h3>Refused per second, by reason</h3><svg id="chart-refusals" class="chart" viewBox="0 0 600 120" preserveAspectRatio="none"></svg><div class="legend" id="legend-refusals"></div></div>
<div><h3>Accepted per second</h3><svg id="chart-accepts" class="chart" viewBox="0 0 600 120" preserveAspectRatio="none"></svg><div class="legend" id="legend-accepts"></div></div>
<div><h3>Bytes per second</h3><svg id="chart-bytes" class="chart" viewBox="0 0 600 120" preserveAspectRatio="none"></svg><div class="legend" id="legend-bytes"></div></div>
<div id="upstream-history" hidden><h3>Upstreams: up, down, removed</h3><svg id="chart-upstreams" class="chart" viewBox="0 0 600 120" preserveAspectRatio="none"></svg></div>
</div>
<h2>The slab</h2>
<div class="muted">The connection pool's blocks in address order: <span style="color:#2a6fb0">&#9632;</span> in use, <span style="color:#7fa9d6">&#9632;</span> partly (a cell of several blocks), <span style="color:#8c8">&#9632;</span> free, <span style="color:#bbb">&#9632;</span> never handed out; the red frame is the free list's head, the block the next client gets (the last one freed: LIFO).</div>
<svg id="slab-map"></svg>
<div class="grid">
<div class="card">cells<b id="map-cells">-</b></div>
<div class="card">blocks per cell<b id="map-blocks-per-cell">-</b></div>
<div class="card">blocks in use<b id="map-in-use">-</b></div>
<div class="card">never handed out<b id="map-never">-</b></div>
<div class="card">free list head<b id="map-head">-</b></div>
</div>
<h2>Shards</h2>
<table id="shards"><thead><tr><th>shard</th><th>active</th><th>accepted</th><th>refused</th><th>bytes in</th><th>bytes out</th><th>accept errors</th></tr></thead><tbody></tbody></table>
<div id="upstream-section" hidden><h2>Upstreams</h2>
<table id="upstreams"><thead><tr><th>upstream</th><th>state</th><th>active</th><th>connect failures</th><th>last check</th><th>check ms</th><th>up/down changes</th></tr></thead><tbody></tbody></table></div>
<script>
"use strict";
const token = new URLSearchParams(location.hash.slice(1)).get("token");
const headers = token ? {Authorization: "Bearer " + token} : {};
let last = null;
const $ = id => document.getElementById(id);
const set = (id, v) => { $(id).textContent = v; };
function rows(tbody, list, cells) {
  tbody.replaceChildren(...list.map(item => {
    const tr = document.createElement("tr");
    for (const c of cells(item)) { const td = document.createElement("td"); td.textContent = c; tr.append(td); }
    return tr;
  }));
}
async function poll() {
  try {
    const r = await fetch("/stats", {headers, cache: "no-store"});
    if (!r.ok) throw new Error("/stats answered " + r.status);
    const s = await r.json();
    const p = s.pool, c = s.connections, now = performance.now();
    set("version", s.server.version); set("mode", s.server.mode); set("threads", s.server.threads);
    set("uptime", Math.floor(s.server.uptime_seconds));
    set("ready", s.server.draining ? "draining" : (s.ready ? "ready" : "NOT READY: pool nearly full"));
    set("pool-in-use", p.in_use); set("pool-free", p.free); set("pool-capacity", p.capacity);
    set("pool-high-water", p.high_water); set("pool-block-size", p.block_size);
    set("conn-refused", c.refused); set("conn-accepted", c.accepted); set("conn-active", c.active);
    set("buffers-in-use", s.buffers.in_use);
    const share = p.capacity ? p.in_use / p.capacity : 0, fill = $("pool-fill");
    fill.style.width = (100 * share).toFixed(1) + "%";
    fill.className = "fill" + (share >= 1 ? " full" : share >= 0.9 ? " warn" : "");
    if (last) set("refusal-rate", ((c.refused - last.refused) * 1000 / (now - last.at)).toFixed(1));
    last = {refused: c.refused, at: now};
    rows($("shards").tBodies[0], s.shards, x => [x.shard, x.active, x.accepted, x.refused, x.bytes_in, x.bytes_out, x.accept_errors]);
    $("upstream-section").hidden = s.upstreams.length === 0;
    rows($("upstreams").tBodies[0], s.upstreams, u => [u.name, u.state, u.active, u.connect_failures,
                                                   u.health.last_check, (u.health.last_check_seconds * 1000).toFixed(1), u.health.transitions]);
    set("error", "");
  } catch (e) { set("error", String(e)); }
}
// The namespace is taken from an inline <svg>: no URL in the page, not even one never fetched.
const NS = $("slab-map").namespaceURI, W = 600, H = 120;
const COLORS = ["#2a6fb0", "#d33", "#e90", "#3a7", "#85c", "#0aa", "#a52", "#c4c", "#777"];
// Samples are placed and rated by their number (seq), one per interval: the wall clock, which
// only labels them, may step.
const hist = {reasons: [], upstreams: [], depth: 600, interval: 1000, samples: []};
function svgEl(tag, attrs) {
  const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  return e;
}
// Each series is drawn as a polyline that also carries its numbers (data-values), so what the
// page shows can be read back exactly.
function chart(id, series, floor) {
  const svg = $(id), times = hist.samples.map(x => x.seq);
  const top = Math.max(floor || 1, ...series.flatMap(x => x.values));
  const t0 = times.length ? times[0] : 0, span = Math.max(1, (times[times.length - 1] || 0) - t0);
  svg.replaceChildren(svgEl("text", {x: 4, y: 11}));
  svg.firstChild.textContent = top.toLocaleString();
  series.forEach((x, i) => {
    const points = x.values.map((v, k) => ((times[k] - t0) * W / span).toFixed(1) + "," + (H - 2 - v * (H - 14) / top).toFixed(1));
    svg.append(svgEl("polyline", {points: points.join(" "), stroke: x.color || COLORS[i % COLORS.length],
                                  "data-series": x.name, "data-values": x.values.join(",")}));
  });
  const legend = $(id.replace("chart", "legend"));
  if (legend) legend.replaceChildren(...series.map((x, i) => {
    const item = document.createElement("span"), swatch = document.createElement("i");
    swatch.style.background = x.color || COLORS[i % COLORS.length];
    item.append(swatch, x.name + " " + (x.values.length ? x.values[x.values.length - 1].toLocaleString() : "-"));
    return item;
  }));
}
// Per second between consecutive samples; the first sample has no predecessor and shows 0.
function rate(pick) {
  return hist.samples.map((x, k) => k === 0 ? 0 :
    Math.max(0, Math.round((pick(x) - pick(hist.samples[k - 1])) * 1000 / (hist.interval * (x.seq - hist.samples[k - 1].seq)))));
}
function drawHistory() {
  const S = hist.samples;
  chart("chart-pool", [
    {name: "in use", values: S.map(x => x.pool.in_use), color: "#2a6fb0"},
    {name: "limit", values: S.map(x => x.pool.limit), color: "#d33"},
    {name: "ready below", values: S.map(x => Math.max(0, x.pool.limit - x.pool.ready_headroom)), color: "#e90"},
    {name: "capacity", values: S.map(x => x.pool.capacity), color: "#999"}]);
  chart("chart-refusals", hist.reasons.map((reason, r) => ({name: reason, values: rate(x => x.refused[r])}))
                                      .filter(x => x.values.some(v => v > 0)));
  chart("chart-accepts", [{name: "accepted", values: rate(x => x.accepted)}]);
  chart("chart-bytes", [{name: "in", values: rate(x => x.bytes_in)}, {name: "out", values: rate(x => x.bytes_out), color: "#3a7"}]);
  const named = hist.upstreams.map((name, i) => ({name, i})).filter(u => u.name !== "");
  $("upstream-history").hidden = named.length === 0;
  if (named.length) {
    const svg = $("chart-upstreams"), row = H / named.length, t0 = S[0].seq, span = Math.max(1, S[S.length - 1].seq - t0);
    const fill = {up: "#3a7", down: "#d33", removed: "#bbb"};
    svg.replaceChildren(...named.flatMap((u, n) => S.map((x, k) => {
      const state = x.upstreams[u.i] || "none", next = k + 1 < S.length ? S[k + 1].seq : x.seq + 1;
      const r = svgEl("rect", {x: ((x.seq - t0) * W / span).toFixed(1), y: (n * row + 1).toFixed(1),
                               width: Math.max(0.5, (next - x.seq) * W / span).toFixed(1), height: Math.max(1, row - 2).toFixed(1),
                               fill: fill[state] || "none", "data-upstream": u.name, "data-state": state});
      return r;
    })));
  }
}
async function pollHistory() {
  const last = hist.samples.length ? hist.samples[hist.samples.length - 1].seq : 0;
  const r = await fetch("/stats/history?since=" + last, {headers, cache: "no-store"});
  if (!r.ok) throw new Error("/stats/history answered " + r.status);
  const h = await r.json();
  hist.reasons = h.reasons; hist.upstreams = h.upstreams; hist.depth = h.depth; hist.interval = h.interval_ms;
  // A restarted daemon numbers from 1 again: start over rather than mix two processes' samples.
  if (h.last_seq < last) { hist.samples = []; return pollHistory(); }
  hist.samples.push(...h.samples);
  hist.samples.splice(0, Math.max(0, hist.samples.length - hist.depth));
  if (hist.samples.length) drawHistory();
}
async function pollSlab() {
  const r = await fetch("/stats/slab", {headers, cache: "no-store"});
  if (!r.ok) throw new Error("/stats/slab answered " + r.status);
  const m = await r.json(), per = m.blocks_per_cell, cells = m.in_use.length;
  const columns = Math.min(64, Math.max(8, Math.ceil(Math.sqrt(cells * 4)))), size = 10;
  const svg = $("slab-map");
  svg.setAttribute("viewBox", "0 0 " + columns * size + " " + Math.ceil(cells / columns) * size);
  let used = 0, never = 0;
  const rects = m.in_use.map((n, i) => {
    const carved = Math.max(0, Math.min(per, m.carved - i * per)), blocks = Math.min(per, m.capacity - i * per);
    used += n; never += blocks - carved;
    const state = n === blocks ? "used" : n > 0 ? "partial" : carved > 0 ? "free" : "never";
    return svgEl("rect", {x: (i % columns) * size + 0.5, y: Math.floor(i / columns) * size + 0.5,
                          width: size - 1, height: size - 1, class: state, "data-cell": i});
  });
  if (m.head !== null) {
    const i = Math.floor(m.head / per);
    rects.push(svgEl("rect", {id: "slab-head", x: (i % columns) * size + 0.5, y: Math.floor(i / columns) * size + 0.5,
                              width: size - 1, height: size - 1, "data-block": m.head}));
  }
  svg.replaceChildren(...rects);
  set("map-cells", cells); set("map-blocks-per-cell", per); set("map-in-use", used);
  set("map-never", never); set("map-head", m.head === null ? "none: all in use" : m.head);
}
async function tick() {
  await poll();
  try { await pollHistory(); await pollSlab(); } catch (e) { set("error", String(e)); }
}
// The next poll is scheduled when this one ends, so that a slow one is never overtaken.
async function loop() { await tick(); setTimeout(loop, 1000); }
loop();
</script></body></html>
)html";
}

}  // namespace slabd::server
