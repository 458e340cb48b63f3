// OpenClaw's console: lists the catalog, runs SQL (POST /v1/sql), shows a view live over the
// WebSocket subscription API (/v1/ws/subscribe/<view>) with a bar chart of one column, and
// each source's rate, lag and dead letters. No framework, no build step: the server embeds
// this file as it is.
"use strict";

const $ = (id) => document.getElementById(id);
/** Most rows the live table draws; the count and the chart cover them all. */
const MAX_ROWS_SHOWN = 200;
/** Most bars the chart draws (the largest values). */
const MAX_BARS = 40;

/** The API key the console sends (needed under --auth scram-sha-256), kept for this tab only. */
function apiKey() {
  return sessionStorage.getItem("openclaw.apiKey") || "";
}

async function sql(text) {
  const key = apiKey();
  const headers = key ? { Authorization: `Bearer ${key}` } : {};
  const response = await fetch("/v1/sql", { method: "POST", body: text, headers });
  const body = await response.json();
  if (body.error) {
    const e = body.error;
    throw new Error(`${e.code}: ${e.message}${e.detail ? "\n" + e.detail : ""}${e.hint ? "\nHINT: " + e.hint : ""}`);
  }
  return body.results;
}

function table(element, columns, rows) {
  element.replaceChildren();
  const head = element.insertRow();
  for (const c of columns) head.appendChild(Object.assign(document.createElement("th"), { textContent: c }));
  for (const row of rows) {
    const tr = element.insertRow();
    for (const c of columns) tr.insertCell().textContent = row[c] === null ? "NULL" : String(row[c]);
  }
}

// ---- The catalog -------------------------------------------------------------------------
async function refreshCatalog() {
  try {
    const [tables, sources, views, subscriptions] = await sql("SHOW TABLES; SHOW SOURCES; SHOW MATERIALIZED VIEWS; SHOW SUBSCRIPTIONS");
    list($("tables"), tables.rows, null);
    list($("sources"), sources.rows, null);
    list($("views"), views.rows, watch);
    list($("subscriptions"), subscriptions.rows, null);
    showSources(sources.rows);
    $("status").textContent = "connected";
  } catch (e) {
    $("status").textContent = `unreachable: ${e.message}`;
  }
}

function list(element, rows, onPick) {
  element.replaceChildren(...rows.map((row) => {
    const li = document.createElement("li");
    li.textContent = row.name;
    li.dataset.name = row.name;
    if (onPick) {
      li.className = "pick" + (live && live.name === row.name ? " active" : "");
      li.onclick = () => onPick(row.name);
    }
    return li;
  }));
}

// ---- Source rates: rows_read between two refreshes ---------------------------------------
let lastSources = new Map();
function showSources(rows) {
  const now = performance.now();
  const shown = rows.map((r) => {
    const before = lastSources.get(r.name);
    const rate = before ? Math.round(((Number(r.rows_read) - before.rows) * 1000) / (now - before.at)) : null;
    lastSources.set(r.name, { rows: Number(r.rows_read), at: now });
    return { source: r.name, "rows/s": rate, rows_read: r.rows_read, lag: r.lag, dead_letters: r.dead_letters, watermark: r.watermark };
  });
  table($("source-table"), ["source", "rows/s", "rows_read", "lag", "dead_letters", "watermark"], shown);
}

// ---- A view, live ------------------------------------------------------------------------
/** The view being watched: its socket and its content (row as JSON → copies). */
let live = null;

function watch(name) {
  if (live) live.socket.close();
  const protocol = location.protocol === "https:" ? "wss:" : "ws:";
  // A WebSocket cannot send headers: the key goes as a subprotocol the server echoes.
  const key = apiKey();
  const url = `${protocol}//${location.host}/v1/ws/subscribe/${encodeURIComponent(name)}`;
  const socket = key ? new WebSocket(url, [`openclaw.bearer.${key}`]) : new WebSocket(url);
  live = { name, socket, rows: new Map(), columns: [] };
  // The view's columns in their order (a change's JSON object has its keys sorted).
  const state = live;
  sql(`SELECT * FROM "${name.replaceAll('"', '""')}" LIMIT 0`).then(([r]) => { state.order = r.columns.map((c) => c.name); scheduleDraw(); }).catch(() => {});
  $("live-name").textContent = name;
  for (const li of $("views").children) li.classList.toggle("active", li.dataset.name === name);
  const mine = live;
  socket.onmessage = (event) => {
    if (live !== mine) return;
    const message = JSON.parse(event.data);
    if (message.type === "change") apply(mine, message);
    else if (message.type === "error") $("live-name").textContent = `${name} — ${message.error.code}: ${message.error.message}`;
    $("token").textContent = message.token ?? "–";
    scheduleDraw();
  };
  socket.onclose = () => { if (live === mine) $("token").textContent += " (closed)"; };
  draw();
}

function apply(state, message) {
  if (state.columns.length === 0) {
    state.columns = Object.keys(message.row);
    if (state.order) state.columns = state.order;
    const numeric = state.columns.filter((c) => typeof message.row[c] === "number");
    $("chart-column").replaceChildren(...numeric.map((c) => Object.assign(document.createElement("option"), { value: c, textContent: c })));
  }
  const key = JSON.stringify(message.row);
  const copies = (state.rows.get(key) || 0) + message.diff;
  if (copies > 0) state.rows.set(key, copies);
  else state.rows.delete(key);
}

let drawPending = false;
function scheduleDraw() {
  if (!drawPending) {
    drawPending = true;
    requestAnimationFrame(() => { drawPending = false; draw(); });
  }
}

function draw() {
  if (!live) return;
  let count = 0;
  const rows = [];
  for (const [key, copies] of live.rows) {
    count += copies;
    if (rows.length < MAX_ROWS_SHOWN) rows.push(JSON.parse(key));
  }
  $("row-count").textContent = String(count);
  if (live.order) live.columns = live.order;
  table($("live-rows"), live.columns, rows);
  drawChart([...live.rows.keys()].map((k) => JSON.parse(k)));
}

function drawChart(rows) {
  const canvas = $("chart");
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  const column = $("chart-column").value;
  if (!column) return;
  const label = live.columns.find((c) => c !== column) || column;
  const bars = rows.filter((r) => typeof r[column] === "number").sort((a, b) => b[column] - a[column]).slice(0, MAX_BARS);
  const top = Math.max(1, ...bars.map((r) => Math.abs(r[column])));
  const width = canvas.width / Math.max(bars.length, 1);
  g.font = "11px system-ui";
  bars.forEach((r, i) => {
    const h = ((canvas.height - 30) * Math.abs(r[column])) / top;
    g.fillStyle = "#3b6fd8";
    g.fillRect(i * width + 2, canvas.height - 16 - h, width - 4, h);
    g.fillStyle = "#556";
    g.fillText(String(r[label]).slice(0, 8), i * width + 2, canvas.height - 4);
  });
}

// ---- Ad-hoc SQL --------------------------------------------------------------------------
async function run() {
  const out = $("result");
  out.replaceChildren();
  try {
    for (const result of await sql($("sql").value)) {
      if (result.command) {
        out.appendChild(Object.assign(document.createElement("p"), { textContent: `${result.command} ${result.rows ?? ""}` }));
      } else {
        const t = document.createElement("table");
        table(t, result.columns.map((c) => c.name), result.rows);
        out.appendChild(t);
      }
    }
    refreshCatalog();
  } catch (e) {
    out.appendChild(Object.assign(document.createElement("p"), { className: "error", textContent: e.message }));
  }
}

$("run").onclick = run;
$("sql").onkeydown = (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) run(); };
$("chart-column").onchange = draw;
$("api-key").value = apiKey();
$("api-key").onchange = (e) => {
  sessionStorage.setItem("openclaw.apiKey", e.target.value.trim());
  refreshCatalog();
  if (live) watch(live.name);
};
refreshCatalog();
setInterval(refreshCatalog, 2000);
