#include "admin.hpp"

namespace slabd::server {

// Self-contained (no external assets: the admin port is often reachable only from a bastion with
// no internet). Ids are stable so tests can compare the rendered numbers with /stats. A token, if
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
                                                   u.health.last_check, u.health.last_check_ms.toFixed(1), u.health.transitions]);
    set("error", "");
  } catch (e) { set("error", String(e)); }
}
poll(); setInterval(poll, 1000);
</script></body></html>
)html";
}

}  // namespace slabd::server
