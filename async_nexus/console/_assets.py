"""The console's page, script and style: served by the console itself, nothing from elsewhere.

The page is a shell; the script fills it from the JSON API and only ever puts text into it
(``textContent``, never markup), so whatever an event carries is shown, not run. The
script is a file of its own, not inline, so the Content-Security-Policy can forbid inline
script altogether.
"""

from __future__ import annotations

# Internal: the console's server serves these.
__all__: list[str] = []

# Filled with str.format: csrf (escaped) and readonly ("true" or "false").
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="{csrf}">
<meta name="console-readonly" content="{readonly}">
<title>Async Nexus console</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/console.css">
<script src="/console.js" defer></script>
</head>
<body>
<header>
<h1>Async Nexus console</h1>
<span id="status" class="status">connecting…</span>
</header>
<main id="nexuses"></main>
<section id="dead-letters">
<div class="heading">
<h2>Dead letters</h2>
<span id="dead-count"></span>
<span class="spacer"></span>
<button type="button" id="replay-all" hidden>Replay all</button>
</div>
<p id="dead-empty" class="muted">No dead letters.</p>
<table id="dead-table" hidden>
<thead><tr>
<th>nexus</th><th>event id</th><th>type</th><th>reason</th><th>exception</th>
<th>attempts</th><th>when</th><th>payload</th><th></th>
</tr></thead>
<tbody></tbody>
</table>
<p id="action-result" class="muted" role="status"></p>
</section>
</body>
</html>
"""

STYLE = """
:root { --fg: #1d2330; --muted: #6b7385; --line: #dde1ea; --bg: #f6f7fa; --card: #fff;
        --ok: #1f7a4d; --bad: #b42318; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif;
       color: var(--fg); background: var(--bg); }
header { display: flex; align-items: center; gap: 1em; padding: .8em 1.5em;
         background: #1d2330; color: #fff; }
header h1 { font-size: 1.2em; margin: 0; }
.status { font-size: .9em; opacity: .8; }
.status.down { color: #ffb4a8; opacity: 1; }
main, #dead-letters { padding: 1em 1.5em; }
.nexus, #dead-letters { background: var(--card); border: 1px solid var(--line);
                        border-radius: 8px; padding: 1em 1.2em; margin-bottom: 1.2em; }
#dead-letters { margin: 0 1.5em 1.5em; }
.heading { display: flex; align-items: center; gap: .8em; }
.heading h2 { margin: 0; font-size: 1.1em; }
.spacer { flex: 1; }
.state { font-size: .8em; padding: .1em .6em; border-radius: 1em; background: #e4e7ee; }
.state.LOOPING { background: #d7f0e2; color: var(--ok); }
.counters { display: grid; grid-template-columns: repeat(auto-fill, minmax(7.5em, 1fr));
            gap: .6em; margin: .9em 0; }
.counter { border: 1px solid var(--line); border-radius: 6px; padding: .4em .7em; }
.counter .label { color: var(--muted); font-size: .8em; }
.counter .value { font-size: 1.4em; font-variant-numeric: tabular-nums; }
.counter.failed .value { color: var(--bad); }
canvas { width: 100%; height: 200px; display: block; border: 1px solid var(--line);
         border-radius: 6px; }
.legend { display: flex; flex-wrap: wrap; gap: .3em 1.2em; font-size: .85em; margin: .4em 0 .8em; }
.swatch { display: inline-block; width: .9em; height: .9em; border-radius: 2px;
          margin-right: .3em; vertical-align: -.1em; }
.tables { display: flex; flex-wrap: wrap; gap: 1.5em; }
.tables > div { flex: 1 1 20em; }
h3 { font-size: .95em; margin: .6em 0 .3em; }
table { border-collapse: collapse; width: 100%; font-size: .9em; }
th, td { text-align: left; padding: .3em .5em; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
td.payload { min-width: 18em; }
td.payload code { white-space: pre-wrap; word-break: break-all; font-size: .85em; }
.muted { color: var(--muted); }
button { font: inherit; padding: .2em .8em; border: 1px solid #b9c0cf; border-radius: 4px;
         background: #fff; cursor: pointer; }
button:hover { background: #eef1f6; }
button.delete { color: var(--bad); }
td.actions { white-space: nowrap; }
"""

SCRIPT = r"""
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const readonly = document.querySelector('meta[name="console-readonly"]').content === "true";
  const COLORS = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#0891b2", "#db2777",
                  "#65a30d", "#7c3aed", "#6b7280"];
  const COUNTERS = [["state", "state"], ["queued", "queued"], ["in_flight", "in flight"],
                    ["scheduled", "scheduled"], ["retrying", "retrying"], ["handled", "handled"],
                    ["failed", "failed"], ["dead_letters", "dead letters"],
                    ["longest_loop_stall", "longest loop stall"], ["journal", "journal"]];
  const sections = new Map();

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function setStatus(text, down) {
    const status = document.getElementById("status");
    status.textContent = text;
    status.classList.toggle("down", Boolean(down));
  }

  async function getJSON(path) {
    const response = await fetch(path, {credentials: "same-origin", cache: "no-store"});
    if (!response.ok) throw new Error(path + ": " + response.status + " " + (await response.text()));
    return response.json();
  }

  function bytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
    return (n / 1048576).toFixed(1) + " MiB";
  }

  function counterText(key, stats) {
    const value = stats[key];
    if (key === "longest_loop_stall") return (value * 1000).toFixed(0) + " ms";
    if (key === "journal") {
      if (!value) return "none";
      return bytes(value.bytes || 0) + ", " + value.rows + (value.rows === 1 ? " event" : " events");
    }
    if (key === "dead_letters") return value === undefined ? "–" : value;
    return value;
  }

  function section(name) {
    let parts = sections.get(name);
    if (parts) return parts;
    const root = el("section", {"class": "nexus", "data-nexus": name});
    const heading = el("div", {"class": "heading"});
    heading.append(el("h2", {}, "nexus " + name));
    const state = el("span", {"class": "state"});
    heading.append(state);
    root.append(heading);
    const counters = el("div", {"class": "counters"});
    const values = {};
    for (const [key, label] of COUNTERS) {
      if (key === "state") continue;
      const box = el("div", {"class": "counter " + key});
      box.append(el("div", {"class": "label"}, label));
      values[key] = el("div", {"class": "value", "data-stat": key}, "–");
      box.append(values[key]);
      counters.append(box);
    }
    root.append(counters);
    root.append(el("h3", {}, "events per second, handled (solid) and failed (dashed), per type"));
    const canvas = el("canvas", {"width": "900", "height": "200", "data-chart": name});
    root.append(canvas);
    const legend = el("div", {"class": "legend"});
    root.append(legend);
    const tables = el("div", {"class": "tables"});
    const registrations = table(["type", "handler", "concurrency", "in flight", "key"]);
    const sources = table(["source", "delivered"]);
    const left = el("div");
    left.append(el("h3", {}, "registrations"), registrations.table);
    const right = el("div");
    right.append(el("h3", {}, "sources"), sources.table);
    tables.append(left, right);
    root.append(tables);
    document.getElementById("nexuses").append(root);
    parts = {root, state, values, canvas, legend, registrations: registrations.body,
             sources: sources.body};
    sections.set(name, parts);
    return parts;
  }

  function table(headings) {
    const node = el("table");
    const head = el("tr");
    for (const heading of headings) head.append(el("th", {}, heading));
    const thead = el("thead");
    thead.append(head);
    const body = el("tbody");
    node.append(thead, body);
    return {table: node, body};
  }

  function fillRows(body, rows) {
    body.replaceChildren(...rows.map(cells => {
      const row = el("tr");
      for (const cell of cells) row.append(el("td", {}, cell === null ? "–" : cell));
      return row;
    }));
  }

  function showStats(all) {
    for (const [name, stats] of Object.entries(all)) {
      const parts = section(name);
      parts.state.textContent = stats.state;
      parts.state.className = "state " + stats.state;
      for (const [key, node] of Object.entries(parts.values)) node.textContent = counterText(key, stats);
      fillRows(parts.registrations, (stats.registrations || []).map(r => [
        Array.isArray(r.type) ? r.type[0] + "…" + r.type[1] : r.type, r.handler,
        r.concurrency, r.in_flight, r.key]));
      fillRows(parts.sources, Object.entries(stats.by_source || {}).map(([source, n]) => [source, n]));
    }
  }

  function draw(name, rates) {
    const parts = sections.get(name);
    if (!parts) return;
    const canvas = parts.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || 900, height = canvas.clientHeight || 200;
    if (canvas.width !== Math.round(width * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const types = Object.entries(rates.types);
    const count = rates.times.length;
    let top = 1;
    for (const [, lines] of types) {
      for (const v of lines.handled) top = Math.max(top, v);
      for (const v of lines.failed) top = Math.max(top, v);
    }
    const left = 48, bottom = height - 18, right = width - 8, upper = 10;
    g.strokeStyle = "#dde1ea";
    g.fillStyle = "#6b7385";
    g.font = "11px system-ui, sans-serif";
    g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = bottom - (bottom - upper) * i / 4;
      g.beginPath(); g.moveTo(left, y); g.lineTo(right, y); g.stroke();
      g.fillText(formatRate(top * i / 4), 4, y + 4);
    }
    const span = Math.max(1, (count - 1) * rates.interval);
    g.fillText("-" + Math.round(span) + " s", left, height - 4);
    g.fillText("now", right - 22, height - 4);
    const x = i => left + (right - left) * (count <= 1 ? 1 : i / (count - 1));
    const y = v => bottom - (bottom - upper) * v / top;
    parts.legend.replaceChildren();
    types.forEach(([type, lines], index) => {
      const color = COLORS[index % COLORS.length];
      for (const [key, dash] of [["handled", []], ["failed", [5, 4]]]) {
        const values = lines[key];
        g.strokeStyle = color;
        g.lineWidth = 1.8;
        g.setLineDash(dash);
        g.beginPath();
        values.forEach((v, i) => (i ? g.lineTo(x(i), y(v)) : g.moveTo(x(i), y(v))));
        g.stroke();
      }
      g.setLineDash([]);
      const item = el("span", {"data-type": type});
      const swatch = el("span", {"class": "swatch"});
      swatch.style.background = color;
      const last = i => (lines[i].length ? lines[i][lines[i].length - 1] : 0);
      const now = formatRate(last("handled")) + "/s handled, " + formatRate(last("failed")) + "/s failed";
      item.append(swatch, document.createTextNode(type + ": " + now));
      parts.legend.append(item);
    });
    if (!types.length) parts.legend.append(el("span", {"class": "muted"}, "no events yet"));
  }

  function formatRate(v) {
    return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
  }

  async function post(path, body) {
    const response = await fetch(path, {
      method: "POST", credentials: "same-origin", cache: "no-store",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
      body: JSON.stringify(body),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(answer.error || String(response.status));
    return answer;
  }

  async function act(action, body) {
    const result = document.getElementById("action-result");
    try {
      const answer = await post("/api/dead-letters/" + action, body);
      result.textContent = action === "replay"
        ? answer.replayed + " replayed" : answer.deleted + " deleted";
    } catch (error) {
      result.textContent = action + " failed: " + error.message;
    }
    await refreshLetters();
  }

  function showLetters(letters) {
    const tableNode = document.getElementById("dead-table");
    const body = tableNode.querySelector("tbody");
    document.getElementById("dead-empty").hidden = letters.length > 0;
    tableNode.hidden = letters.length === 0;
    document.getElementById("dead-count").textContent = letters.length ? "(" + letters.length + ")" : "";
    document.getElementById("replay-all").hidden = readonly || letters.length === 0;
    body.replaceChildren(...letters.map(letter => {
      const row = el("tr", {"data-letter": letter.id, "data-event-id": letter.event_id});
      const exception = letter.exception + (letter.message ? ": " + letter.message : "");
      for (const cell of [letter.nexus, letter.event_id, letter.type, letter.reason, exception,
                          letter.attempts, new Date(letter.when * 1000).toLocaleString()]) {
        row.append(el("td", {}, cell));
      }
      const payload = el("td", {"class": "payload"});
      payload.append(el("code", {}, letter.payload));
      row.append(payload);
      const actions = el("td", {"class": "actions"});
      if (!readonly) {
        const target = {ids: [letter.id], nexus: letter.nexus};
        const replay = el("button", {"type": "button", "class": "replay"}, "Replay");
        replay.addEventListener("click", () => act("replay", target));
        const remove = el("button", {"type": "button", "class": "delete"}, "Delete");
        remove.addEventListener("click", () => act("delete", target));
        actions.append(replay, document.createTextNode(" "), remove);
      }
      row.append(actions);
      return row;
    }));
  }

  async function refreshStats() {
    const [stats, rates] = await Promise.all([getJSON("/api/stats"), getJSON("/api/rates")]);
    showStats(stats);
    for (const [name, lines] of Object.entries(rates)) draw(name, lines);
  }

  async function refreshLetters() {
    showLetters(await getJSON("/api/dead-letters"));
  }

  let ticks = 0;
  async function tick() {
    try {
      await refreshStats();
      if (ticks % 2 === 0) await refreshLetters();
      setStatus("live, updated " + new Date().toLocaleTimeString());
    } catch (error) {
      setStatus("cannot reach the daemon: " + error.message, true);
    }
    ticks += 1;
    setTimeout(tick, 1000);
  }

  document.getElementById("replay-all").addEventListener("click", () => act("replay", {all: true}));
  tick();
})();
"""
