// The dashboard's script (`GET /admin/admin.js`), a classic script that runs in the browser at the end of
// the page's body: the page's CSP allows no inline script or event-handler attribute, so every handler is
// set here. Everything from the node is written with `textContent`, never parsed as HTML.
/// <reference lib="dom" />
"use strict";
const $ = (id) => document.getElementById(id);
const state = { table: "", after: undefined, version: undefined, source: undefined, listed: new Set() };
const tokenOf = () => sessionStorage.getItem("dynarust-token");
const userOf = () => sessionStorage.getItem("dynarust-user");

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = String(text);
  if (className) td.className = className;
  return td;
}

async function api(method, path, body, headers = {}) {
  const init = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    init.headers["content-type"] = "application/json";
  }
  const token = tokenOf();
  if (token && method !== "GET") init.headers.authorization = "Bearer " + token;
  const response = await fetch(path, init);
  const isJson = response.headers.get("content-type")?.includes("json");
  const data = isJson ? await response.json() : await response.text();
  if (!response.ok) throw new Error(data.detail ?? data.title ?? String(response.status));
  return data;
}

const seg = (name) => encodeURIComponent(name);

async function refreshMembers() {
  const { nodes } = await api("GET", "/membership");
  const body = $("members");
  body.replaceChildren();
  for (const node of nodes) {
    const row = body.insertRow();
    row.dataset.status = node.status;
    cell(row, node.address);
    cell(row, node.status, "status-" + node.status);
    const seenSecs = Math.max(0, Math.round((Date.now() - node.last_seen_ms) / 1000));
    cell(row, node.last_seen_ms ? seenSecs + " s ago" : "");
  }
}

async function refreshTables() {
  const stats = await api("GET", "/stats");
  const body = $("tables");
  body.replaceChildren();
  for (const [name, count] of Object.entries(stats.tables).sort()) {
    const row = body.insertRow();
    row.className = "pick" + (name === state.table ? " picked" : "");
    cell(row, name);
    cell(row, count);
    row.onclick = () => openTable(name);
  }
}

async function loadKeys() {
  const query = new URLSearchParams({ limit: "50" });
  if (state.after !== undefined) query.set("after", state.after);
  let keys = [];
  try {
    keys = await api("GET", "/" + seg(state.table) + "/keys?" + query);
  } catch {
    keys = [];
  }
  for (const key of keys) listKey(key);
  state.after = keys.at(-1) ?? state.after;
  $("more").hidden = keys.length < 50;
}

function listKey(key) {
  if (state.listed.has(key)) return;
  state.listed.add(key);
  const row = $("keys").insertRow();
  row.className = "pick";
  cell(row, key);
  row.onclick = () => {
    $("key").value = key;
    loadKey();
  };
}

function openTable(name) {
  if (!name) return;
  state.table = name;
  state.after = undefined;
  state.listed = new Set();
  location.hash = seg(name);
  $("current-table").textContent = name;
  $("keys").replaceChildren();
  loadKeys();
  refreshTables();
  tail(name);
}

function tail(name) {
  state.source?.close();
  $("tail").replaceChildren();
  const source = new EventSource("/" + seg(name) + "/subscribe");
  state.source = source;
  source.onopen = () => {
    $("tail-state").textContent = "(live)";
  };
  source.onerror = () => {
    $("tail-state").textContent = "(reconnecting)";
  };
  source.onmessage = (message) => {
    const change = JSON.parse(message.data);
    const item = document.createElement("li");
    const value = change.value ?? {};
    item.textContent = new Date().toLocaleTimeString() + "  " + change.event + "  " + (change.key ?? "") +
      (value.version ? "  v" + value.version : "") + (value.owner ? "  by " + value.owner : "");
    item.dataset.key = change.key ?? "";
    $("tail").prepend(item);
    while ($("tail").children.length > 50) $("tail").lastChild.remove();
    if (change.key === $("key").value && change.event !== "Resync") loadKey();
    // A new key joins the list once every page is shown (a later page would list it in its place).
    if (change.event === "Updated" && $("more").hidden) listKey(change.key);
  };
}

async function loadKey() {
  $("edit-error").textContent = "";
  const key = $("key").value;
  if (!state.table || !key) return;
  try {
    const entry = await api("GET", "/" + seg(state.table) + "/key/" + seg(key));
    state.version = entry.version;
    $("value").value = JSON.stringify(entry.value, null, 2);
    const when = new Date(entry.timestamp).toLocaleString();
    $("meta").textContent = "version " + entry.version + " · owner " + entry.owner + " · " + when;
  } catch (error) {
    state.version = undefined;
    $("value").value = "";
    $("meta").textContent = error.message;
  }
}

async function edit(method) {
  $("edit-error").textContent = "";
  try {
    const headers = state.version === undefined ? {} : { "if-match": '"' + state.version + '"' };
    const path = "/" + seg(state.table) + "/key/" + seg($("key").value);
    // Sent as typed, not parsed and re-serialized: JSON.stringify would turn 1e400 into null unseen,
    // while the node refuses it with a message. JSON.parse only checks that it is one JSON value.
    const text = $("value").value;
    if (method === "PUT") JSON.parse(text);
    const body = method === "PUT" ? '{"value":' + text + "}" : undefined;
    await api(method, path, body, headers);
    await loadKey();
  } catch (error) {
    $("edit-error").textContent = error.message;
  }
}

$("login").onsubmit = async (event) => {
  event.preventDefault();
  try {
    const user = $("user").value;
    const { token } = await api("POST", "/auth/" + seg(user), { secret: $("secret").value });
    sessionStorage.setItem("dynarust-token", token);
    sessionStorage.setItem("dynarust-user", user);
    showUser();
  } catch (error) {
    $("who").textContent = error.message;
  }
};

function showUser() {
  const user = userOf();
  $("login").hidden = Boolean(user);
  $("who").textContent = user ? "signed in as " + user : "";
}

$("open-table").onclick = () => openTable($("table-name").value);
$("more").onclick = () => loadKeys();
$("load").onclick = () => loadKey();
$("save").onclick = () => edit("PUT");
$("delete").onclick = () => edit("DELETE");
$("node").textContent = location.host;
showUser();
const every = (ms, work) => {
  const run = () => work().catch(() => {});
  run();
  setInterval(run, ms);
};
every(2000, refreshMembers);
every(5000, refreshTables);
if (location.hash.length > 1) openTable(decodeURIComponent(location.hash.slice(1)));
