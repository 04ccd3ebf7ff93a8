/**
 * `GET /admin`: one self-contained page (no build step, no outside file: it is embedded in the binary as
 * this string) over the public API: members and their states, tables with their key counts, a key
 * browser, a live tail of a table's changes through EventSource, and a login to edit your own keys.
 * Everything from the node is written with `textContent`, never parsed as HTML.
 */
export const adminPageHtml = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dynarust</title>
<style>
  :root { font-family: system-ui, sans-serif; color: #1d232a; background: #f5f6f8; }
  body { margin: 0; }
  header { display: flex; gap: 1rem; align-items: center; padding: .6rem 1rem; }
  header { background: #1d232a; color: #fff; }
  header h1 { font-size: 1.1rem; margin: 0; }
  header .spacer { flex: 1; }
  header input { width: 8rem; }
  main { display: grid; grid-template-columns: 20rem 1fr; gap: 1rem; padding: 1rem; }
  section { background: #fff; border-radius: 6px; padding: .8rem; box-shadow: 0 1px 2px #0002; }
  h2 { font-size: .95rem; margin: 0 0 .5rem; }
  table { border-collapse: collapse; width: 100%; font-size: .85rem; }
  td, th { text-align: left; padding: .2rem .4rem; border-bottom: 1px solid #eee; }
  .status-alive { color: #18794e; } .status-suspect { color: #b35c00; }
  .status-dead, .status-left { color: #c22; }
  .pick { cursor: pointer; } .pick:hover { background: #eef3ff; } .picked { background: #dde7ff; }
  textarea { width: 100%; min-height: 8rem; font-family: ui-monospace, monospace; font-size: .85rem; }
  #tail li { font-family: ui-monospace, monospace; font-size: .8rem; }
  .muted { color: #667; font-size: .8rem; } .error { color: #c22; font-size: .85rem; }
  .row { display: flex; gap: .4rem; align-items: center; margin: .3rem 0; }
</style>
</head>
<body>
<header>
  <h1>dynarust</h1><span id="node" class="muted"></span><span class="spacer"></span>
  <form id="login" class="row">
    <input id="user" placeholder="user" autocomplete="username">
    <input id="secret" type="password" placeholder="secret" autocomplete="current-password">
    <button>Log in</button>
  </form>
  <span id="who"></span>
</header>
<main>
  <div>
    <section><h2>Members</h2><table><thead><tr><th>node</th><th>state</th><th>seen</th></tr></thead>
      <tbody id="members"></tbody></table></section>
    <section style="margin-top:1rem"><h2>Tables</h2>
      <table><thead><tr><th>table</th><th>keys here</th></tr></thead>
      <tbody id="tables"></tbody></table>
      <div class="row"><input id="table-name" placeholder="table"><button id="open-table">Open</button></div>
    </section>
  </div>
  <div>
    <section><h2>Keys of <span id="current-table">(pick a table)</span></h2>
      <table><tbody id="keys"></tbody></table>
      <div class="row"><button id="more" hidden>More</button></div>
      <div class="row"><input id="key" placeholder="key"><button id="load">Load</button>
        <span id="meta" class="muted"></span></div>
      <textarea id="value" spellcheck="false" placeholder="JSON value"></textarea>
      <div class="row"><button id="save">Save</button><button id="delete">Delete</button>
        <span id="edit-error" class="error"></span></div>
    </section>
    <section style="margin-top:1rem"><h2>Live changes <span id="tail-state" class="muted"></span></h2>
      <ul id="tail"></ul></section>
  </div>
</main>
<script>
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
  const response = await window.fetch(path, init);
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
  try { keys = await api("GET", "/" + seg(state.table) + "/keys?" + query); } catch { keys = []; }
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
  row.onclick = () => { $("key").value = key; loadKey(); };
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
  source.onopen = () => { $("tail-state").textContent = "(live)"; };
  source.onerror = () => { $("tail-state").textContent = "(reconnecting)"; };
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
const every = (ms, work) => { const run = () => work().catch(() => {}); run(); setInterval(run, ms); };
every(2000, refreshMembers);
every(5000, refreshTables);
if (location.hash.length > 1) openTable(decodeURIComponent(location.hash.slice(1)));
</script>
</body>
</html>
`;
