// Rhetor dashboard: vanilla JS over Rhetor's public API only (/health, /api/v1/providers, /api/v1/usage…,
// /api/v1/contexts, /api/v1/templates, /api/v1/chat/stream). Charts: uPlot (vendored). Content from the API is
// always put in the page as text, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { view: "overview", features: {}, assignments: null, charts: {}, timers: [], lastMetrics: null,
  contextId: null, templateId: null, contexts: [], templates: [], playAbort: null };

// ---------- helpers ----------
function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}
const fill = (node, ...children) => { node.replaceChildren(...children.flat(Infinity).filter((c) => c != null)); };
const fmtInt = (n) => (n == null ? "–" : Math.round(n).toLocaleString("en-US"));
const fmtMs = (n) => (n == null ? "–" : n < 10 ? n.toFixed(2) + " ms" : n < 1000 ? n.toFixed(0) + " ms" : (n / 1000).toFixed(2) + " s");
const fmtUsd = (n) => (n == null ? "–" : n === 0 ? "$0" : n < 0.01 ? "$" + n.toFixed(6) : "$" + n.toFixed(2));
const fmtBytes = (n) => (n == null ? "–" : n > 2 ** 30 ? (n / 2 ** 30).toFixed(2) + " GiB" : (n / 2 ** 20).toFixed(0) + " MiB");
function fmtAge(s) {
  if (s == null) return "–";
  if (s < 120) return Math.round(s) + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  if (s < 172800) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(1) + " d";
}
const shortTime = (iso) => (iso ? new Date(iso).toLocaleString() : "");

function key() {
  const stored = sessionStorage.getItem("rhetor_key");
  if (stored) return stored;
  const m = document.cookie.match(/(?:^|;\s*)rhetor_ui_key=([^;]*)/);
  return m ? decodeURIComponent(m[1]) : null;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, opts = {}) {
  const headers = Object.assign({}, opts.headers || {});
  const k = key();
  if (k) headers.authorization = "Bearer " + k;
  if (opts.json !== undefined) { headers["content-type"] = "application/json"; opts.body = JSON.stringify(opts.json); }
  const res = await fetch(path, { method: opts.method || "GET", headers, body: opts.body, signal: opts.signal });
  if (opts.raw) return res;
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) {
    if (res.status === 401) showBanner("This Rhetor wants a key: sign in again at /ui.");
    throw new ApiError(res.status, errorMessage(data) || `${res.status} ${res.statusText}`);
  }
  return data;
}

function errorMessage(data) {
  if (!data) return null;
  const e = data.error !== undefined ? data.error : data.detail;
  if (typeof e === "string") return e;
  if (e && typeof e === "object") return e.message || JSON.stringify(e);
  return null;
}

function showBanner(text) { const b = $("banner"); b.textContent = text; b.classList.remove("hidden"); }
function clearBanner() { $("banner").classList.add("hidden"); }
const note = (text, cls = "muted small") => h("div", { class: cls }, text);
function table(headers, rows) {
  return h("table", {}, h("thead", {}, h("tr", {}, headers.map((c) => h("th", { class: c.num ? "num" : null }, c.label || c)))),
    h("tbody", {}, rows));
}

// ---------- views ----------
function showView(name) {
  if (!document.getElementById("view-" + name)) name = "overview";
  state.view = name;
  for (const sec of document.querySelectorAll(".view")) sec.classList.toggle("hidden", sec.id !== "view-" + name);
  for (const a of document.querySelectorAll("#tabs a")) a.classList.toggle("active", a.dataset.view === name);
  refreshView();
}

const loadHealth = safely(async () => renderHealth(await api("/health")));

function refreshView() {
  const v = state.view;
  if (v !== "overview") loadHealth();  // the overview reads /health itself
  if (v === "overview") { loadOverview(); loadTraffic(); }
  else if (v === "usage") loadUsage();
  else if (v === "contexts") loadContexts();
  else if (v === "templates") loadTemplates();
  else if (v === "playground") loadPlayground();
}

function safely(fn) {
  return async (...args) => {
    try { await fn(...args); } catch (err) {
      if (err instanceof ApiError && err.status === 401) return;
      showBanner(String(err.message || err));
    }
  };
}

// ---------- overview ----------
function card(label, value, title) {
  return h("div", { class: "card", title: title || null }, h("div", { class: "label" }, label), h("div", { class: "value" }, value));
}

const loadOverview = safely(async () => {
  const [health, prov, metrics] = await Promise.all([
    api("/health"), api("/api/v1/providers"),
    state.features.metrics ? api(state.features.metrics) : Promise.resolve(null)]);
  clearBanner();
  renderHealth(health);
  const m = metrics || health.metrics || {};
  let rate = null;
  if (state.lastMetrics && m.requests_total != null) {
    const dt = (performance.now() - state.lastMetrics.t) / 1000;
    rate = Math.max(0, (m.requests_total - state.lastMetrics.n) / dt);
  }
  if (m.requests_total != null) state.lastMetrics = { t: performance.now(), n: m.requests_total };
  const ledger = (health.details || {}).usage_ledger || {};
  fill($("cards"),
    card("Status", health.status || "–"),
    card("Uptime", fmtAge(health.uptime)),
    card("Requests", fmtInt(m.requests_total), "since start"),
    card("Now", rate == null ? "–" : rate.toFixed(2) + " /s", "requests per second since the last refresh"),
    card("In flight", fmtInt(m.requests_in_flight)),
    card("Errors", fmtInt(m.errors_total)),
    card("Fallbacks", fmtInt(m.fallbacks_total)),
    card("WebSockets", fmtInt(m.websockets_open)),
    card("Memory", fmtBytes(m.rss_bytes), "resident set size"),
    card("Ledger", ledger.state || "–", ledger.error || `${fmtInt(ledger.written)} records written`));
  renderProviders(prov);
  if (!state.assignments && state.features.assignments) {
    state.assignments = await api(state.features.assignments);
    const sel = $("route-component");
    for (const c of Object.keys(state.assignments.components || {}).sort()) sel.append(h("option", { value: c }, c));
  }
  renderRoutes();
});

function renderHealth(health) {
  const pill = $("health-pill");
  const s = health.status || "unknown";
  const draining = health.details && health.details.draining;
  pill.textContent = draining ? "draining" : s;
  pill.className = "pill " + (draining ? "pill-warn" : s === "healthy" ? "pill-ok" : s === "degraded" ? "pill-warn" : "pill-bad");
  $("version").textContent = health.version ? "v" + health.version : "";
}

function breakerTags(obj, cls) {
  return Object.entries(obj || {}).map(([target, v]) => {
    const st = cls || (v && v.state) || "open";
    const extra = typeof v === "number" ? ` ${v.toFixed ? v.toFixed(1) : v}s` : v && v.state ? ` ${v.state}` : "";
    return h("span", { class: "tag " + st, title: JSON.stringify(v) }, target.split("/").slice(1).join("/") + extra);
  });
}

function renderProviders(prov) {
  const rows = Object.entries(prov.providers || {}).map(([id, p]) => {
    const breakers = breakerTags(p.breakers);
    const cooling = breakerTags(p.cooling_down, "half_open");
    const isDefault = id === prov.default_provider;
    return h("tr", { "data-provider": id },
      h("td", {}, h("span", { class: "dot " + (p.available ? "dot-ok" : "dot-bad") }), h("b", {}, p.name || id),
        isDefault ? h("span", { class: "tag" }, "default") : null),
      h("td", { class: "muted" }, p.reason || ""),
      h("td", {}, p.default_model || "–"),
      h("td", { class: "num" }, (p.models || []).length),
      h("td", {}, breakers.length || cooling.length ? [breakers, cooling] : h("span", { class: "tag closed" }, "all closed")));
  });
  fill($("providers"), table(["Provider", "Status", "Default model", { label: "Models", num: true }, "Breakers · cool-downs"], rows));
}

function renderRoutes() {
  const a = state.assignments;
  if (!a) { fill($("routes"), note("No routing table on this Rhetor.")); return; }
  const comp = $("route-component").value;
  const targets = comp ? (a.components[comp] || {}).targets || {} : a.default_targets || {};
  const rows = Object.entries(targets).map(([cap, t]) => h("tr", {},
    h("td", {}, h("b", {}, cap)),
    h("td", {}, `${t.provider}/${t.model}`),
    h("td", {}, (t.fallbacks || []).map((f) => h("span", { class: "tag" }, f)))));
  fill($("routes"), table(["Capability", "Primary", "Fallbacks, in order"], rows));
}

// ---------- charts ----------
const COLORS = { blue: "#3358d4", red: "#d64545", amber: "#d98a00", green: "#1f9d55", grey: "#8892a3" };

function chart(name, container, series, data, opts = {}) {
  const width = Math.max(container.clientWidth, 240);
  const existing = state.charts[name];
  if (existing && existing.container === container) {
    existing.u.setData(data);
    if (Math.abs(existing.u.width - width) > 2) existing.u.setSize({ width, height: existing.u.height });
    return;
  }
  container.replaceChildren();
  const u = new uPlot({
    width, height: opts.height || 220,
    cursor: { drag: { x: false, y: false } },
    legend: { live: true },
    scales: opts.scales || { x: { time: opts.time !== false } },
    axes: opts.axes || [{}, { size: 56 }],
    series: [{ label: opts.xLabel || "time" }, ...series],
  }, data, container);
  state.charts[name] = { u, container };
}

function resizeCharts() {
  for (const { u, container } of Object.values(state.charts)) {
    if (container.offsetParent === null) continue;  // hidden view: sized when shown
    const width = Math.max(container.clientWidth, 240);
    if (Math.abs(u.width - width) > 2) u.setSize({ width, height: u.height });
  }
}

// The ledger's summary scans the records of its range, so the page asks for the whole hour once and then only
// for the minutes since the last fetch (from = the start of the newest minute it has), merging them in.
const traffic = { minutes: new Map(), since: null };

const loadTraffic = safely(async () => {
  if (!state.features.usage) { $("traffic-note").textContent = "The usage ledger is off on this Rhetor: no traffic history."; return; }
  const now = Math.floor(Date.now() / 60000) * 60;
  const from = traffic.since && traffic.since > now - 3600 ? traffic.since : null;
  const body = await api(`/api/v1/usage?from=${from === null ? "1h" : from}&group_by=minute`);
  if (from === null) traffic.minutes.clear();
  for (const b of body.buckets || []) traffic.minutes.set(Date.parse(b.minute.replace("Z", ":00Z")) / 1000, b);
  for (const t of traffic.minutes.keys()) if (t < now - 59 * 60) traffic.minutes.delete(t);
  traffic.since = now;  // the current minute is still filling: asked again next time
  const xs = [], req = [], err = [], fb = [], p50 = [], p95 = [];
  const tot = { requests: 0, errors: 0, fallbacks: 0, cost_usd: 0 };
  for (let t = now - 59 * 60; t <= now; t += 60) {
    const b = traffic.minutes.get(t);
    xs.push(t);
    req.push(b ? b.requests / 60 : 0);
    err.push(b ? b.errors / 60 : 0);
    fb.push(b ? (b.fallbacks || 0) / 60 : 0);
    p50.push(b ? b.p50_latency_ms : null);
    p95.push(b ? b.p95_latency_ms : null);
    if (b) { tot.requests += b.requests; tot.errors += b.errors; tot.fallbacks += b.fallbacks || 0; tot.cost_usd += b.cost_usd; }
  }
  const worst = (arr) => arr.reduce((m, v) => (v != null && (m == null || v > m) ? v : m), null);
  const n = (count, word) => `${fmtInt(count)} ${word}${count === 1 ? "" : "s"}`;
  $("traffic-note").textContent = `${n(tot.requests, "request")} in the last hour · ${n(tot.errors, "error")} · ` +
    `${n(tot.fallbacks, "fallback")} · worst minute p95 ${fmtMs(worst(p95))} · ${fmtUsd(tot.cost_usd)}`;
  const rateFmt = (u, v) => (v == null ? "–" : v.toFixed(3));
  chart("rate", $("chart-rate"), [
    { label: "requests/s", stroke: COLORS.blue, fill: "rgba(51,88,212,0.10)", width: 2, value: rateFmt },
    { label: "errors/s", stroke: COLORS.red, width: 2, value: rateFmt },
    { label: "fallbacks/s", stroke: COLORS.amber, width: 2, dash: [6, 4], value: rateFmt }], [xs, req, err, fb]);
  chart("latency", $("chart-latency"), [
    { label: "p50", stroke: COLORS.green, width: 2, spanGaps: true, points: { show: true, size: 5 }, value: (u, v) => fmtMs(v) },
    { label: "p95", stroke: COLORS.red, width: 2, spanGaps: true, points: { show: true, size: 5 }, value: (u, v) => fmtMs(v) }],
  [xs, p50, p95], { scales: { x: { time: true }, y: { range: (u, lo, hi) => [0, Math.max(hi || 0, 1) * 1.15] } } });
});

// ---------- usage ----------
function shareRows(buckets, keyName, total) {
  const max = Math.max(...buckets.map((b) => b.cost_usd || 0), 0);
  return buckets.sort((a, b) => (b.cost_usd - a.cost_usd) || (b.requests - a.requests)).map((b) => h("tr", {},
    h("td", {}, b[keyName] == null ? "(none)" : String(b[keyName])),
    h("td", { class: "num" }, fmtInt(b.requests)),
    h("td", { class: "num" }, fmtInt(b.total_tokens)),
    h("td", { class: "num share" }, h("span", { style: `width:${max ? (100 * b.cost_usd) / max : 0}%` }), h("b", {}, fmtUsd(b.cost_usd))),
    h("td", { class: "num" }, fmtInt(b.errors)),
    h("td", { class: "num" }, fmtMs(b.p50_latency_ms)),
    h("td", { class: "num" }, fmtMs(b.p95_latency_ms))));
}
const USAGE_HEAD = (first) => [first, { label: "Requests", num: true }, { label: "Tokens", num: true },
  { label: "Cost", num: true }, { label: "Errors", num: true }, { label: "p50", num: true }, { label: "p95", num: true }];

const loadUsage = safely(async () => {
  if (!state.features.usage) {
    fill($("usage-cards"), note("The usage ledger is off on this Rhetor (RHETOR_USAGE_LEDGER=0)."));
    return;
  }
  const range = $("usage-range").value;
  const q = (g) => api(`/api/v1/usage?from=${range}&group_by=${g}`);
  const [days, comps, models, recent] = await Promise.all([q("day"), q("component"), q("model"),
    api(`/api/v1/usage/requests?from=${range}&limit=15`)]);
  $("usage-updated").textContent = "as of " + new Date().toLocaleTimeString();
  $("usage-csv").href = `/api/v1/usage?from=${range}&group_by=day,component,model&format=csv`;
  const t = days.totals || {};
  fill($("usage-cards"),
    card("Requests", fmtInt(t.requests)), card("Cost", fmtUsd(t.cost_usd)),
    card("Input tokens", fmtInt(t.input_tokens)), card("Output tokens", fmtInt(t.output_tokens)),
    card("Errors", fmtInt(t.errors)), card("Fallbacks", fmtInt(t.fallbacks)),
    card("p95 latency", fmtMs(t.p95_latency_ms)), card("Unpriced", fmtInt(t.unpriced), "requests whose model has no price"));
  // every day of the period, zero when nothing ran, so one busy day is a bar, not a lone point
  const xs = [], cost = [], reqs = [];
  const byDay = new Map((days.buckets || []).map((b) => [b.day, b]));
  const spanDays = { "24h": 1, "7d": 6, "30d": 29 }[range] || 6;
  const today = Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate());
  for (let i = spanDays; i >= 0; i--) {
    const t = today - i * 86400000;
    const b = byDay.get(new Date(t).toISOString().slice(0, 10));
    xs.push(t / 1000 + 43200); cost.push(b ? b.cost_usd : 0); reqs.push(b ? b.requests : 0);
  }
  const bars = uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.6, 60] }) : undefined;
  const dayLabel = (v) => new Date(v * 1000).toLocaleDateString("en-US", { month: "short", day: "numeric", timeZone: "UTC" });
  chart("days", $("chart-days"), [
    { label: "requests", stroke: COLORS.grey, fill: "rgba(136,146,163,0.30)", paths: bars, points: { show: false }, scale: "n",
      value: (u, v) => fmtInt(v) },
    { label: "cost (USD)", stroke: COLORS.blue, width: 2, points: { show: true, size: 6 }, scale: "usd", value: (u, v) => fmtUsd(v) }],
  [xs, reqs, cost], {
    xLabel: "day",
    scales: { x: { time: true, range: (u, lo, hi) => [lo - 43200, hi + 43200] },
      usd: { range: (u, lo, hi) => [0, Math.max(hi, 0.01) * 1.1] }, n: { range: (u, lo, hi) => [0, Math.max(hi, 1) * 1.1] } },
    axes: [{ splits: (u) => u.data[0], values: (u, vals) => vals.map(dayLabel), space: 40 },
      { scale: "usd", size: 72, values: (u, vals) => vals.map((v) => (v === 0 ? "$0" : v < 0.01 ? "$" + v.toPrecision(2) : "$" + v.toFixed(2))) },
      { scale: "n", side: 1, size: 50, grid: { show: false } }],
  });
  fill($("usage-component"), (comps.buckets || []).length ? table(USAGE_HEAD("Component"), shareRows(comps.buckets, "component")) : note("No requests in this period."));
  fill($("usage-model"), (models.buckets || []).length ? table(USAGE_HEAD("Model"), shareRows(models.buckets, "model")) : note("No requests in this period."));
  renderRecent(recent.records || []);
  await loadBudgets(t);
});

function renderRecent(records) {
  const rows = records.map((r) => h("tr", {},
    h("td", { class: "muted" }, shortTime(r.time)),
    h("td", {}, r.front), h("td", {}, r.component || "–"),
    h("td", {}, `${r.provider}/${r.model}`, r.fallback ? h("span", { class: "tag half_open" }, "fallback") : null),
    h("td", {}, h("span", { class: "tag " + (r.status === "ok" ? "closed" : r.status === "cancelled" ? "" : "open") }, r.status)),
    h("td", { class: "num" }, fmtInt(r.input_tokens + r.output_tokens)),
    h("td", { class: "num" }, r.unpriced ? "unpriced" : fmtUsd(r.cost_usd)),
    h("td", { class: "num" }, fmtMs(r.latency_ms)), h("td", { class: "num" }, fmtMs(r.ttft_ms))));
  fill($("usage-requests"), rows.length ? table(["Time", "Front", "Component", "Answered by", "Status",
    { label: "Tokens", num: true }, { label: "Cost", num: true }, { label: "Latency", num: true }, { label: "TTFT", num: true }], rows)
    : note("No requests in this period."));
}

async function loadBudgets(totals) {
  const box = $("budgets");
  if (!state.features.budgets) {
    fill(box, note(`No budgets are set on this Rhetor; ${fmtUsd(totals.cost_usd)} spent in this period. Budgets appear here once the governance API serves them.`));
    return;
  }
  const data = await api(state.features.budgets);
  const list = Array.isArray(data) ? data : data.budgets || data.items || [];
  if (!list.length) { fill(box, note("No budgets configured.")); return; }
  // each budget, each of its periods: spend against the limit (USD or tokens), coloured by its state
  const rows = [];
  for (const b of list) {
    const who = b.scope && b.scope !== "global" ? `${b.scope} ${b.target || ""}` : "global";
    for (const [period, p] of Object.entries(b.periods || {})) {
      const used = Math.max(0, p.used ?? 0);
      const byUsd = p.limit_usd != null;
      const figures = byUsd ? `${fmtUsd(p.spent_usd)} / ${fmtUsd(p.limit_usd)}` : `${fmtInt(p.tokens)} / ${fmtInt(p.limit_tokens)} tokens`;
      rows.push(h("div", { class: "budget", "data-budget": b.id },
        h("div", {}, h("b", {}, b.id), " ", h("span", { class: "muted small" }, `${who} · ${period} · ${b.policy || "warn"}`)),
        h("div", { class: "bar" + (p.state === "exceeded" ? " over" : p.state === "warning" ? " near" : ""), title: `${(100 * used).toFixed(1)}% used` },
          h("span", { style: `width:${Math.min(100, 100 * used)}%` })),
        h("div", { class: "num" }, figures)));
    }
  }
  fill(box, rows.length ? rows : note("Budgets are configured but none has a limit yet."));
}

// ---------- contexts ----------
const loadContexts = safely(async () => {
  const data = await api("/api/v1/contexts");
  state.contexts = (data.contexts || []).sort((a, b) => (b.updated_at || "").localeCompare(a.updated_at || ""));
  $("contexts-total").textContent = `${fmtInt(data.total)} stored`;
  renderContextList();
});

function renderContextList() {
  const f = $("contexts-filter").value.trim().toLowerCase();
  const items = state.contexts.filter((c) => !f || c.context_id.toLowerCase().includes(f) || (c.component || "").toLowerCase().includes(f)).slice(0, 300);
  fill($("contexts-list"), items.length ? items.map((c) => h("li", {
    class: c.context_id === state.contextId ? "active" : null, "data-context": c.context_id,
    onclick: () => openContext(c.context_id) },
  h("div", { class: "id" }, c.context_id),
  h("div", { class: "sub" }, `${c.message_count} messages · ${c.component || "no component"} · ${shortTime(c.updated_at)}`))) : h("li", { class: "muted" }, "No contexts yet."));
}

const openContext = safely(async (id) => {
  state.contextId = id;
  renderContextList();
  // the newest 200 messages: a long conversation opens at its end
  const known = state.contexts.find((c) => c.context_id === id);
  const offset = known ? Math.max(0, known.message_count - 200) : 0;
  const data = await api(`/api/v1/contexts/${encodeURIComponent(id)}?limit=200&offset=${offset}`);
  $("context-title").textContent = id;
  $("context-meta").textContent = `${data.total} messages${data.offset ? ` (the last ${data.messages.length} shown)` : ""} · component ${data.component || "–"} · created ${shortTime(data.created_at)} · updated ${shortTime(data.updated_at)}`;
  $("context-search").classList.remove("hidden");
  fill($("context-results"));
  fill($("context-messages"), (data.messages || []).map((m) => messageNode(m)));
});

function messageNode(m, extra) {
  const meta = m.metadata || {};
  return h("div", { class: "msg " + m.role },
    h("div", { class: "head" }, h("span", { class: "role" }, m.role), h("span", {}, shortTime(m.timestamp)),
      meta.provider ? h("span", {}, `${meta.provider}/${meta.model || ""}`) : null,
      meta.status && meta.status !== "complete" ? h("span", { class: "tag open" }, meta.status) : null, extra || null),
    h("div", { class: "body" }, m.content));
}

const searchContext = safely(async (ev) => {
  ev.preventDefault();
  const query = $("context-query").value.trim();
  if (!query || !state.contextId) return;
  const data = await api(`/api/v1/contexts/${encodeURIComponent(state.contextId)}/search`, { method: "POST", json: { query, k: 5 } });
  const results = data.results || [];
  fill($("context-results"), h("div", { class: "results" },
    h("div", { class: "muted small" }, `Retrieval (${data.retrieval || "?"}) brought back ${results.length} of this context's messages for “${query}”:`),
    results.map((r) => messageNode(r, h("span", { class: "tag" }, "score " + Number(r.score).toFixed(3))))));
});

// ---------- templates ----------
const loadTemplates = safely(async () => {
  const data = await api("/api/v1/templates");
  state.templates = data.templates || [];
  $("templates-total").textContent = `${state.templates.length}`;
  renderTemplateList();
});

function renderTemplateList() {
  const f = $("templates-filter").value.trim().toLowerCase();
  fill($("templates-list"), state.templates.filter((t) => !f || t.id.toLowerCase().includes(f)).map((t) => h("li", {
    class: t.id === state.templateId ? "active" : null, onclick: () => openTemplate(t.id) },
  h("div", { class: "id" }, t.id),
  h("div", { class: "sub" }, `v${t.version} · ${t.source || "user"}${t.metadata && t.metadata.use_as ? " · " + t.metadata.use_as : ""}`))));
}

const openTemplate = safely(async (id, version) => {
  state.templateId = id;
  renderTemplateList();
  const data = await api(`/api/v1/templates/${encodeURIComponent(id)}/versions`);
  const versions = data.versions || [];
  const chosen = versions.find((v) => v.version === (version ?? data.active_version)) || versions[versions.length - 1];
  $("template-title").textContent = id;
  fill($("template-versions"), versions.map((v) => h("button", {
    type: "button", class: v.version === chosen.version ? "active" : null, onclick: () => openTemplate(id, v.version),
    title: v.created_at || "" }, `v${v.version}${v.version === data.active_version ? " (active)" : ""}`)));
  $("template-text").textContent = chosen ? chosen.text : "";
  const vars = {};
  for (const [name, spec] of Object.entries((chosen && chosen.variables) || {})) {
    vars[name] = spec && typeof spec === "object" && "default" in spec ? spec.default : "";
  }
  $("template-vars").value = JSON.stringify(vars, null, 1);
  $("template-render").dataset.version = chosen ? chosen.version : "";
  $("template-render").classList.remove("hidden");
  $("template-preview").classList.add("hidden");
});

const renderTemplate = safely(async (ev) => {
  ev.preventDefault();
  const out = $("template-preview");
  out.classList.remove("hidden");
  let variables;
  try { variables = JSON.parse($("template-vars").value || "{}"); } catch (e) { out.textContent = "Variables are not valid JSON: " + e.message; return; }
  const version = Number($("template-render").dataset.version);
  try {
    const data = await api(`/api/v1/templates/${encodeURIComponent(state.templateId)}/render`,
      { method: "POST", json: { variables, version: Number.isFinite(version) ? version : undefined } });
    out.textContent = data.text;
  } catch (e) { out.textContent = "Render refused: " + e.message; }
});

// ---------- playground ----------
let playgroundReady = false;
const loadPlayground = safely(async () => {
  if (playgroundReady) return;
  const [models, assign] = await Promise.all([api("/api/v1/models"),
    state.assignments || !state.features.assignments ? Promise.resolve(state.assignments) : api(state.features.assignments)]);
  state.assignments = assign;
  const sel = $("play-route");
  if (assign) {
    sel.append(h("optgroup", { label: "Capability (task type)" }, (assign.capabilities || []).map((c) => h("option", { value: "task:" + c }, c))));
    sel.append(h("optgroup", { label: "Component" }, Object.keys(assign.components || {}).sort().map((c) => h("option", { value: "component:" + c }, c))));
  }
  const byProvider = {};
  for (const m of models.models || []) (byProvider[m.provider] = byProvider[m.provider] || []).push(m);
  for (const [p, list] of Object.entries(byProvider)) {
    sel.append(h("optgroup", { label: `Model · ${p}` }, list.map((m) => h("option", { value: "model:" + m.id }, `${m.id}${m.available ? "" : " (unavailable)"}`))));
  }
  playgroundReady = true;
});

function playBody() {
  const body = { message: $("play-message").value };
  const ctx = $("play-context").value.trim();
  if (ctx) body.context_id = ctx;
  const route = $("play-route").value;
  const [kind, ...rest] = route.split(":");
  const value = rest.join(":");
  if (kind === "task") body.task_type = value;
  else if (kind === "component") body.component = value;
  else if (kind === "model") body.model = value;
  return body;
}

function metaItem(k, v) { return h("span", {}, h("span", { class: "k" }, k), v); }

async function sendPlay(ev) {
  ev.preventDefault();
  const out = $("play-output"), meta = $("play-meta"), status = $("play-status");
  out.textContent = ""; fill(meta);
  const ctrl = new AbortController();
  state.playAbort = ctrl;
  $("play-send").disabled = true; $("play-stop").disabled = false;
  status.textContent = "waiting for the first token…";
  out.classList.add("streaming");
  const t0 = performance.now();
  let ttft = null, end = null, requestId = null;
  try {
    const res = await api("/api/v1/chat/stream", { method: "POST", json: playBody(), signal: ctrl.signal, raw: true });
    requestId = res.headers.get("x-request-id");
    if (!res.ok) {
      let data = null;
      try { data = await res.json(); } catch { data = null; }
      throw new Error(errorMessage(data) || `${res.status} ${res.statusText}`);
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const frame = buf.slice(0, cut); buf = buf.slice(cut + 2);
        const line = frame.split("\n").find((l) => l.startsWith("data: "));
        if (!line || line === "data: [DONE]") continue;
        const ev2 = JSON.parse(line.slice(6));
        if (ev2.chunk) {
          if (ttft === null) { ttft = performance.now() - t0; status.textContent = "streaming…"; }
          out.append(ev2.chunk);
        }
        if (ev2.done) end = ev2;
      }
    }
  } catch (err) {
    if (err.name !== "AbortError") end = { error: String(err.message || err), finish_reason: "error" };
    else status.textContent = "stopped";
  } finally {
    out.classList.remove("streaming");
    $("play-send").disabled = false; $("play-stop").disabled = true;
    state.playAbort = null;
  }
  const total = performance.now() - t0;
  if (end) renderPlayMeta(end, ttft, total, requestId);
  if (!ctrl.signal.aborted) status.textContent = end && end.error ? "failed" : "done";
}

async function renderPlayMeta(end, ttft, total, requestId) {
  const meta = $("play-meta");
  const items = [];
  if (end.error) items.push(h("span", { class: "tag open" }, `${end.error_type || "error"}: ${end.error}`));
  if (end.provider) items.push(metaItem("answered by", h("b", { id: "play-answered" }, `${end.provider}/${end.model}`)));
  if (end.simulated) items.push(h("span", { class: "badge-sim", title: "no real model answered: no key configured" }, "simulated"));
  if (end.fallback) items.push(h("span", { class: "tag half_open" }, "fallback"));
  if (end.attempts && end.attempts.length > 1) {
    items.push(metaItem("attempts", end.attempts.map((a) => `${a.provider}/${a.model} ${a.outcome}`).join(" → ")));
  }
  if (ttft != null) items.push(metaItem("first token", fmtMs(ttft)));
  items.push(metaItem("total", fmtMs(total)));
  if (end.usage) items.push(metaItem("tokens", `${fmtInt(end.usage.input_tokens)} in · ${fmtInt(end.usage.output_tokens)} out`));
  if (end.retrieved && end.retrieved.length) items.push(metaItem("retrieval", `${end.retrieval}: ${end.retrieved.length} older turns`));
  const cost = h("b", { id: "play-cost" }, "…");
  if (state.features.usage && requestId) items.push(metaItem("cost", cost));
  if (requestId) items.push(metaItem("request", requestId));
  fill(meta, items);
  if (!(state.features.usage && requestId)) return;
  // the cost is the ledger's: find this request's record (the usage API flushes before it answers)
  try {
    const data = await api("/api/v1/usage/requests?from=5m&front=native&limit=50");
    const rec = (data.records || []).find((r) => r.request_id === requestId);
    cost.textContent = !rec ? "not recorded" : rec.unpriced ? "unpriced model" : fmtUsd(rec.cost_usd) + (rec.estimated ? " (estimated tokens)" : "");
  } catch (e) { cost.textContent = "unknown (" + e.message + ")"; }
}

// ---------- start ----------
async function start() {
  try { state.features = await api("/ui/features.json"); } catch (e) { state.features = {}; }
  if (key()) $("signout").classList.remove("hidden");
  $("signout").addEventListener("click", () => {
    sessionStorage.removeItem("rhetor_key");
    document.cookie = "rhetor_ui_key=; Path=/ui; Max-Age=0; SameSite=Strict";
    location.replace("/ui");
  });
  $("route-component").addEventListener("change", renderRoutes);
  $("usage-range").addEventListener("change", loadUsage);
  $("usage-refresh").addEventListener("click", loadUsage);
  $("contexts-filter").addEventListener("input", renderContextList);
  $("templates-filter").addEventListener("input", renderTemplateList);
  $("context-search").addEventListener("submit", searchContext);
  $("template-render").addEventListener("submit", renderTemplate);
  $("play-form").addEventListener("submit", sendPlay);
  $("play-stop").addEventListener("click", () => state.playAbort && state.playAbort.abort());
  $("play-message").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("play-form").requestSubmit(); });
  window.addEventListener("hashchange", () => showView(location.hash.slice(1)));
  let resizeTimer = null;
  window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(resizeCharts, 100); });
  showView(location.hash.slice(1) || "overview");
  // live: the overview every 5 s, the traffic every 15 s (only its newest minutes); nothing while the tab is hidden;
  // the usage view on demand (its queries scan the whole period)
  setInterval(() => {
    if (document.hidden) return;
    if (state.view === "overview") loadOverview(); else loadHealth();
  }, 5000);
  setInterval(() => { if (!document.hidden && state.view === "overview") loadTraffic(); }, 15000);
}

start();
