// threadlog playground: vanilla JS, no build step. Reads and actions are JSON requests
// to the playground server; live data arrives by Server-Sent Events (the server holds a
// NATS subscription to live.<user>.> per open page). Nothing is polled: a live thread
// event triggers one reload of what it changed.
"use strict";

const S = {
  me: null, user: null, thread: null, live: null, liveReady: false,
  usersOffset: 0, threadsCursor: null, messagesCursor: null,
  streams: new Map(),          // message_id -> {text, el}
  approvals: new Map(),        // tool_call_id -> {tool_name, args, message_id}
  decided: new Set(),
  canvasIds: new Set(),
  reloadTimer: null,
  minSeq: 0,                   // the newest stream sequence seen: reads wait for it
  finalized: new Map(),        // message_id -> message_finalized data from the live feed
};
// Timings the browser test reads (performance.now() milliseconds).
window.__playground = { renderedAt: null, sentAt: null, firstDeltaAt: null, deltas: 0, streamed: {}, log: [] };
// The last 300 things that happened (live events, replies): shown by failing browser tests.
function trace(kind, value) {
  const log = window.__playground.log;
  log.push([Math.round(performance.now()), kind, value]);
  if (log.length > 300) log.shift();
}

const $ = (id) => document.getElementById(id);

// Reloads can overlap (a live event during a slow read): only the newest request of each
// kind may render, so an older, slower answer never overwrites a newer one.
const issued = {};
function ticket(kind) { issued[kind] = (issued[kind] || 0) + 1; return issued[kind]; }
const stale = (kind, t) => issued[kind] !== t;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined) node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const enc = encodeURIComponent;
const userPath = () => `/api/users/${enc(S.user)}`;
const threadPath = () => `${userPath()}/threads/${enc(S.thread)}`;

async function api(path, body) {
  const init = body === undefined ? {} :
    { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) };
  const res = await fetch(path, init);
  let reply;
  try { reply = await res.json(); } catch { reply = { ok: false, error: { code: "http_" + res.status, message: res.statusText } }; }
  return reply;
}

function showError(reply) {
  const box = $("error");
  if (!reply || reply.ok) { box.hidden = true; box.textContent = ""; return; }
  const e = reply.error || {};
  box.hidden = false;
  box.textContent = `${e.code}: ${e.message}`;
  box.dataset.code = e.code || "";
}

const json = (v) => JSON.stringify(v, null, 1);

// ---------------------------------------------------------------- users and threads
async function loadUsers(more) {
  if (!more) { S.usersOffset = 0; $("users").replaceChildren(); }
  const q = new URLSearchParams({ search: $("user-search").value, offset: S.usersOffset, limit: 25 });
  const t = ticket("users");
  const reply = await api(`/api/users?${q}`);
  if (stale("users", t)) return;
  if (!reply.ok) return showError(reply);
  for (const u of reply.result.items) {
    $("users").append(el("li", { "data-user": u.user_id, class: u.user_id === S.user ? "selected" : "",
      onclick: () => selectUser(u.user_id) }, u.user_id,
      u.threads !== undefined ? el("span", { class: "muted" }, ` (${u.threads})`) : null));
  }
  S.usersOffset = reply.result.next_offset;
  $("users-more").hidden = reply.result.next_offset === null || reply.result.next_offset === undefined;
}

async function selectUser(user) {
  if (S.user === user) return;
  S.user = user; S.thread = null;
  for (const li of $("users").children) li.classList.toggle("selected", li.dataset.user === user);
  $("threads-user").textContent = user;
  $("thread-new").hidden = !S.me.can_command;
  $("messages").replaceChildren(); $("composer").hidden = true;
  $("thread-title").textContent = "Pick a thread";
  subscribe(user);
  await loadThreads(false);
}

async function loadThreads(more) {
  if (!S.user) return;
  if (!more) { S.threadsCursor = null; }
  const q = new URLSearchParams({ search: $("thread-search").value, limit: 25 });
  if (more && S.threadsCursor) q.set("cursor", S.threadsCursor);
  const t = ticket("threads");
  const reply = await api(`${userPath()}/threads?${q}`);
  if (stale("threads", t)) return;
  if (!reply.ok) return showError(reply);
  if (!more) $("threads").replaceChildren();
  for (const t of reply.result.items) {
    $("threads").append(el("li", { "data-thread": t.thread_id, class: t.thread_id === S.thread ? "selected" : "",
      title: t.thread_id, onclick: () => selectThread(t.thread_id, t.title) },
      t.title || t.thread_id, t.deleted ? el("span", { class: "muted" }, " (deleted)") : null));
  }
  S.threadsCursor = reply.result.next_cursor;
  $("threads-more").hidden = !reply.result.next_cursor;
}

async function newThread() {
  const reply = await api(`${userPath()}/threads`, { title: "Playground thread" });
  showError(reply);
  if (reply.ok) { await loadThreads(false); await selectThread(reply.result.thread_id, "Playground thread"); }
}

async function selectThread(thread, title) {
  S.thread = thread; S.minSeq = 0; S.streams.clear(); S.finalized.clear(); S.approvals.clear(); S.canvasIds.clear();
  for (const li of $("threads").children) li.classList.toggle("selected", li.dataset.thread === thread);
  $("thread-title").textContent = title || thread;
  $("composer").hidden = !S.me.can_command;
  $("readonly-note").hidden = S.me.can_command;
  $("approvals").replaceChildren();
  await loadMessages();
  await refreshPanel();
}

// ---------------------------------------------------------------- messages
function partsOf(m) {
  return Array.isArray(m.content) ? m.content : [];
}

// A row the read model still shows pending, though its message_finalized event reached
// us live, is shown as the event says (the log is the truth; the view catches up).
function withLiveFinal(m) {
  const f = S.finalized.get(m.message_id);
  if (!f || m.status !== "pending") return m;
  const u = f.usage || {};
  return { ...m, status: f.status, content: f.content || [], text: null, error: f.error,
    error_code: f.error_code, finish_reason: f.finish_reason, cost: f.cost,
    prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens, total_tokens: u.total_tokens };
}

function renderMessage(row, results) {
  const m = withLiveFinal(row);
  const parts = partsOf(m);
  const tokens = m.total_tokens ? `${m.prompt_tokens}+${m.completion_tokens}=${m.total_tokens} tok` : null;
  const node = el("li", { class: `msg role-${m.role} status-${m.status}`, "data-message": m.message_id,
    "data-status": m.status },
    el("div", { class: "meta" },
      el("span", { class: "order" }, `#${m.order}.${m.step_order}`),
      el("b", {}, m.role), el("span", { class: "status" }, m.status),
      m.agent_name ? el("span", {}, `agent ${m.agent_name}`) : null,
      m.model ? el("span", {}, m.model) : null,
      tokens ? el("span", { class: "usage" }, tokens) : null,
      m.cost !== undefined && m.cost !== null ? el("span", { class: "cost" }, `$${Number(m.cost).toFixed(6)}`) : null,
      m.finish_reason ? el("span", {}, m.finish_reason) : null));
  const text = m.text || parts.filter((p) => p.type === "text").map((p) => p.text).join("");
  if (text) node.append(el("div", { class: "text" }, text));
  for (const p of parts) {
    if (p.type === "tool_call") {
      if (p.args && p.args.canvas_id) S.canvasIds.add(String(p.args.canvas_id));
      const res = results.get(p.tool_call_id);
      node.append(el("div", { class: "tool call", "data-tool-call": p.tool_call_id },
        `→ ${p.tool_name}(${json(p.args)})`, res ? "" : "  [no result yet]"));
    } else if (p.type === "tool_result") {
      node.append(el("div", { class: "tool result" + (p.is_error ? " error" : ""), "data-tool-result": p.tool_call_id },
        `← ${p.tool_name}: ${typeof p.result === "string" ? p.result : json(p.result)}`));
    }
  }
  if (m.error || m.error_code) {
    node.append(el("div", { class: "error" }, `error${m.error_code ? " [" + m.error_code + "]" : ""}: ${m.error || ""}`));
  }
  return node;
}

async function loadMessages(older, attempt = 0) {
  if (!S.thread) return;
  const q = new URLSearchParams({ limit: 100 });
  if (S.minSeq) q.set("min_seq", S.minSeq);
  if (older && S.messagesCursor) q.set("cursor", S.messagesCursor);
  const thread = S.thread;
  const t = ticket("messages");
  const reply = await api(`${threadPath()}/messages?${q}`);
  trace("messages", { t, min_seq: q.get("min_seq"), ok: reply.ok, seq: reply.seq, stale: stale("messages", t),
    code: reply.ok ? null : reply.error.code, n: reply.ok ? reply.result.items.length : null,
    statuses: reply.ok ? reply.result.items.map((m) => `${m.order}.${m.step_order}:${m.status}`).join(" ") : null });
  if (thread !== S.thread || stale("messages", t)) return;
  // the projection had not reached the announced event within the server's bounded
  // wait: wait again (each try is a bounded wait on the server, not a poll)
  if (!reply.ok && reply.error.code === "timeout" && attempt < 3) return loadMessages(older, attempt + 1);
  if (!reply.ok) return showError(reply);
  if ($("error").dataset.code === "timeout") showError(null);  // caught up since
  const items = reply.result.items;
  const results = new Map();
  for (const m of items) for (const p of partsOf(withLiveFinal(m))) if (p.type === "tool_result") results.set(p.tool_call_id, p);
  const nodes = items.map((m) => renderMessage(m, results));
  if (older) $("messages").prepend(...nodes); else $("messages").replaceChildren(...nodes);
  S.messagesCursor = reply.result.next_cursor;
  $("messages-older").hidden = !reply.result.next_cursor;
  // messages still streaming keep their live text
  for (const [mid, s] of S.streams) {
    const node = $("messages").querySelector(`[data-message="${CSS.escape(mid)}"]`);
    if (node && node.dataset.status === "pending") attachStream(node, s);
  }
  // approvals: operators see the tool_calls view; everyone sees what the live feed said
  for (const tc of reply.result.tool_calls || []) {
    if (tc.needs_approval && tc.approved === null && !S.decided.has(tc.tool_call_id))
      S.approvals.set(tc.tool_call_id, { tool_name: tc.tool_name, args: {}, message_id: tc.message_id });
    else S.approvals.delete(tc.tool_call_id);
  }
  renderApprovals();
}

function attachStream(node, s) {
  let box = node.querySelector(".stream");
  if (!box) { box = el("div", { class: "text stream" }); node.append(box); }
  box.textContent = s.text;
  s.el = box;
}

function onDelta(item) {
  const d = item.data || {};
  if (item.thread_id !== S.thread || !d.message_id) return;
  const P = window.__playground;
  if (P.sentAt !== null && P.firstDeltaAt === null && d.text) P.firstDeltaAt = performance.now();
  P.deltas += 1;
  let s = S.streams.get(d.message_id);
  if (!s) { s = { text: "", el: null }; S.streams.set(d.message_id, s); }
  s.text = s.text.slice(0, d.start || 0) + (d.text || "");
  P.streamed[d.message_id] = s.text;
  let node = $("messages").querySelector(`[data-message="${CSS.escape(d.message_id)}"]`);
  if (!node) {
    node = el("li", { class: "msg role-assistant status-pending", "data-message": d.message_id, "data-status": "pending" },
      el("div", { class: "meta" }, el("b", {}, "assistant"), el("span", { class: "status" }, "streaming")));
    $("messages").append(node);
  }
  attachStream(node, s);
  if (d.done) scheduleReload();
}

// ---------------------------------------------------------------- approvals
function renderApprovals() {
  const box = $("approvals");
  box.replaceChildren();
  for (const [id, a] of S.approvals) {
    box.append(el("div", { class: "approval", "data-approval": id },
      el("div", {}, "Tool ", el("b", {}, a.tool_name), ` wants to run with ${json(a.args)}`),
      S.me.can_command ? [
        el("button", { class: "approve", onclick: () => decide(id, true) }, "Approve"),
        el("button", { class: "deny", onclick: () => decide(id, false) }, "Deny")]
        : el("span", { class: "muted" }, " awaiting the user's decision")));
  }
}

async function decide(toolCallId, approved) {
  S.decided.add(toolCallId);
  S.approvals.delete(toolCallId);
  renderApprovals();
  window.__playground.sentAt = performance.now(); window.__playground.firstDeltaAt = null;
  const reply = await api(`${threadPath()}/approval`, { tool_call_id: toolCallId, approved });
  showError(reply);
  afterGeneration(reply);
}

function sawSeq(seq) {
  if (typeof seq === "number" && seq > S.minSeq) S.minSeq = seq;
}

function afterGeneration(reply) {
  trace("reply", reply);
  sawSeq(reply.seq);
  if (reply.ok) for (const id of reply.result.awaiting_approval || []) {
    if (!S.approvals.has(id) && !S.decided.has(id)) S.approvals.set(id, { tool_name: "tool", args: {}, message_id: reply.result.message_id });
  }
  renderApprovals();
  scheduleReload();
}

// ---------------------------------------------------------------- sending
async function send(ev) {
  ev.preventDefault();
  const prompt = $("prompt").value.trim();
  const agent = $("agent").value.trim();
  if (!prompt || !agent || !S.thread) return;
  $("prompt").value = "";
  $("send").disabled = true;
  showError(null);
  const P = window.__playground;
  P.sentAt = performance.now(); P.firstDeltaAt = null;
  try {
    const reply = await api(`${threadPath()}/generate`, { agent, prompt });
    showError(reply);
    afterGeneration(reply);
  } finally {
    $("send").disabled = false;
  }
}

// ---------------------------------------------------------------- live
function subscribe(user) {
  if (S.live) S.live.close();
  S.liveReady = false;
  setLive(false);
  const src = new EventSource(`/api/users/${enc(user)}/live`);
  S.live = src;
  src.addEventListener("ready", () => { trace("sse", "ready"); S.liveReady = true; setLive(true); });
  src.addEventListener("live", (e) => onLive(JSON.parse(e.data)));
  src.addEventListener("refused", (e) => {
    src.close();
    const b = $("live-status");
    b.className = "badge off"; b.textContent = `live: refused for ${user}`;
    document.body.dataset.live = "refused";
    showError({ ok: false, error: JSON.parse(e.data) });
  });
  src.onerror = () => { trace("sse", "error"); setLive(false); };
}

function setLive(on) {
  const b = $("live-status");
  b.className = "badge " + (on ? "on" : "off");
  b.textContent = on ? `live: ${S.user}` : "live: off";
  document.body.dataset.live = on ? S.user : "";
}

function onLive(item) {
  trace("live", item.kind === "delta" ? { delta: item.message_id, i: item.data && item.data.i } : { type: item.type, thread: item.thread_id, seq: item.seq, data: item.data && item.data.data });
  if (item.lagged) { subscribe(S.user); scheduleReload(); return; }
  if (item.kind === "delta") return onDelta(item);
  if (item.kind !== "thread") return;
  if (item.thread_id === S.thread) sawSeq(item.seq);
  if (item.type === "thread_created" || item.type === "thread_metadata_updated" || item.type === "thread_deleted") {
    loadThreads(false);
  }
  if (item.thread_id !== S.thread) return;
  const data = (item.data && item.data.data) || {};
  // canvases the agent touches are known from the live tool events themselves
  for (const c of [data.args && data.args.canvas_id, data.result && data.result.canvas_id])
    if (typeof c === "string" && c) S.canvasIds.add(c);
  if (item.type === "message_finalized" && data.message_id) S.finalized.set(data.message_id, data);
  if (item.type === "tool_approval_requested" && !S.decided.has(data.tool_call_id)) {
    S.approvals.set(data.tool_call_id, { tool_name: data.tool_name, args: data.args || {}, message_id: data.message_id });
    renderApprovals();
  } else if (item.type === "tool_approval_decided") {
    S.approvals.delete(data.tool_call_id); renderApprovals();
  }
  scheduleReload();
}

// One reload per burst of live events (not polling: only after an event arrived).
function scheduleReload() {
  if (S.reloadTimer) return;
  S.reloadTimer = setTimeout(async () => {
    S.reloadTimer = null;
    await loadMessages();
    await refreshPanel();
  }, 30);
}

// ---------------------------------------------------------------- panels
let activeTab = "canvas";
function showTab(name) {
  activeTab = name;
  for (const b of document.querySelectorAll(".tabs button")) b.classList.toggle("active", b.dataset.tab === name);
  for (const t of document.querySelectorAll(".tab")) t.hidden = t.id !== `tab-${name}`;
  refreshPanel();
}

async function refreshPanel() {
  if (!S.user) return;
  if (activeTab === "canvas") return loadCanvases();
  if (activeTab === "usage") return loadUsage();
  if (activeTab === "workflows") return loadWorkflows();
}

async function loadCanvases() {
  if (!S.thread) return;
  const q = new URLSearchParams({ ids: [...S.canvasIds].join(",") });
  const t = ticket("canvases");
  const reply = await api(`${threadPath()}/canvases?${q}`);
  trace("canvases", { t, ids: q.get("ids"), ok: reply.ok, stale: stale("canvases", t), n: reply.ok ? reply.result.items.length : null });
  if (stale("canvases", t)) return;
  const box = $("canvases");
  if (!reply.ok) { box.replaceChildren(el("p", { class: "error" }, `${reply.error.code}: ${reply.error.message}`)); return; }
  if (!reply.result.items.length) { box.replaceChildren(el("p", { class: "muted" }, "No canvas in this thread yet.")); return; }
  box.replaceChildren(...reply.result.items.map((c) => el("div", { class: "canvas", "data-canvas": c.canvas_id, "data-version": c.version },
    el("h3", {}, `${c.title || c.canvas_id} `, el("span", { class: "muted" }, `v${c.version}`)),
    c.error ? el("p", { class: "error" }, `${c.error.code}: ${c.error.message}`) : null,
    el("pre", { class: "document" }, json(c.document)),
    el("h4", {}, "Edits"),
    ...(c.edits || []).map((e) => el("div", { class: "edit" },
      el("b", {}, `v${e.version}`), ` ${e.summary || ""} `,
      el("span", { class: "muted" }, `by ${e.author || "?"}${e.touched ? " · " + [].concat(e.touched).join(", ") : ""}`),
      e.snippet ? el("pre", { class: "snippet" }, json(e.snippet)) : null)))));
}

async function loadUsage() {
  const period = $("period").value.trim();
  const t = ticket("usage");
  const reply = await api(`${userPath()}/usage?${new URLSearchParams(period ? { period } : {})}`);
  if (stale("usage", t)) return;
  const box = $("usage");
  if (!reply.ok) { box.replaceChildren(el("p", { class: "error" }, `${reply.error.code}: ${reply.error.message}`)); return; }
  const r = reply.result;
  const rows = [];
  if (r.summary.ok) {
    const s = r.summary.result;
    rows.push(el("p", {}, `calls ${s.totals.calls}, cost $${Number(s.totals.cost || 0).toFixed(6)}`));
    rows.push(el("table", {}, el("tr", {}, ...["period", "model", "calls", "tokens", "cost"].map((h) => el("th", {}, h))),
      ...s.by_model.map((m) => el("tr", {}, el("td", {}, m.billing_period), el("td", {}, m.model), el("td", {}, m.calls),
        el("td", {}, m.total_tokens), el("td", {}, Number(m.cost || 0).toFixed(6))))));
  } else rows.push(el("p", { class: "error" }, `usage: ${r.summary.error.code}: ${r.summary.error.message}`));
  if (r.budget && r.budget.ok) rows.push(el("pre", { class: "budget" }, "budget " + json(r.budget.result)));
  if (r.invoices) {
    rows.push(el("h4", {}, "Invoices"));
    rows.push(r.invoices.ok ? el("table", {}, ...r.invoices.result.items.map((i) => el("tr", {},
      el("td", {}, i.period), el("td", {}, `${i.amount} ${i.currency || ""}`), el("td", {}, i.status))))
      : el("p", { class: "error" }, r.invoices.error.message));
  }
  box.replaceChildren(...rows);
}

async function loadWorkflows() {
  const t = ticket("workflows");
  const reply = await api(`${userPath()}/workflows`);
  if (stale("workflows", t)) return;
  const box = $("workflows");
  if (!reply.ok) { box.replaceChildren(el("p", { class: "error" }, `${reply.error.code}: ${reply.error.message}`)); return; }
  if (!reply.result.items.length) { box.replaceChildren(el("p", { class: "muted" }, "No workflow runs.")); return; }
  box.replaceChildren(...reply.result.items.map((r) => el("div", { class: "run", "data-run": r.run_id },
    el("div", {}, el("b", {}, r.name), " ", el("span", { class: "state" }, r.state || ""), ` · ${r.steps} steps `, el("span", { class: "muted" }, r.run_id)),
    r.error ? el("div", { class: "error" }, json(r.error)) : null,
    el("table", {}, ...(r.step_items || []).map((s) => el("tr", {},
      el("td", {}, s.step_no), el("td", {}, s.name), el("td", {}, s.kind || ""),
      el("td", {}, `${s.attempts} attempt(s)`), el("td", {}, s.status || ""),
      el("td", { class: "error" }, s.error ? json(s.error) : "")))),
    S.me.can_command || S.me.operator ? [
      el("button", { class: "cancel", onclick: () => runAction(r.run_id, "cancel") }, "Cancel"),
      el("button", { class: "restart", onclick: () => runAction(r.run_id, "restart") }, "Restart")] : null)));
}

// Workflow events are not on the live subjects: the tab reloads after an action and on
// "reload"; the action's own reply is shown on the run until then.
async function runAction(runId, op) {
  const reply = await api(`${userPath()}/workflows/${enc(runId)}/${op}`, {});
  showError(reply);
  await loadWorkflows();
  const run = $("workflows").querySelector(`[data-run="${CSS.escape(runId)}"]`);
  if (run) run.append(el("div", { class: "action-result", "data-op": op, "data-ok": reply.ok ? "1" : "0" },
    reply.ok ? `${op} accepted${reply.result.state ? " (" + reply.result.state + ")" : ""}` : `${op}: ${reply.error.code}`));
}

async function previewContext(ev) {
  ev.preventDefault();
  if (!S.thread) return;
  const options = { recent_messages: Number($("ctx-recent").value), search_messages: Number($("ctx-search").value) };
  const reply = await api(`${threadPath()}/context`, { agent: $("agent").value.trim(), prompt: $("context-prompt").value, options });
  const box = $("context");
  if (!reply.ok) { box.replaceChildren(el("p", { class: "error" }, `${reply.error.code}: ${reply.error.message}`)); return; }
  box.replaceChildren(...(reply.result.messages || []).map((m) => el("pre", { class: "ctx" }, `${m.role}: ${typeof m.content === "string" ? m.content : json(m.content)}`)));
}

// ---------------------------------------------------------------- start
async function start() {
  const me = await api("/api/whoami");
  if (!me.ok) { showError(me); return; }
  S.me = me.result;
  $("whoami").textContent = `${S.me.role} ${S.me.name}`;
  for (const a of S.me.agents) $("agents").append(el("option", { value: a }));
  if (S.me.agents.length) $("agent").value = S.me.agents[0];
  $("user-search").addEventListener("input", () => loadUsers(false));
  $("users-more").addEventListener("click", () => loadUsers(true));
  $("thread-search").addEventListener("input", () => loadThreads(false));
  $("threads-more").addEventListener("click", () => loadThreads(true));
  $("thread-new").addEventListener("click", newThread);
  $("messages-older").addEventListener("click", () => loadMessages(true));
  $("composer").addEventListener("submit", send);
  $("user-open").addEventListener("submit", (e) => { e.preventDefault(); const u = $("user-id").value.trim(); if (u) selectUser(u); });
  $("canvas-open").addEventListener("submit", (e) => { e.preventDefault(); const c = $("canvas-id").value.trim(); if (c) { S.canvasIds.add(c); loadCanvases(); } });
  $("usage-form").addEventListener("submit", (e) => { e.preventDefault(); loadUsage(); });
  $("workflows-reload").addEventListener("click", loadWorkflows);
  $("context-form").addEventListener("submit", previewContext);
  for (const b of document.querySelectorAll(".tabs button")) b.addEventListener("click", () => showTab(b.dataset.tab));
  await loadUsers(false);
  if (S.me.default_user) await selectUser(S.me.default_user);
  window.__playground.renderedAt = performance.now();
  document.body.dataset.ready = "1";
}

start();
