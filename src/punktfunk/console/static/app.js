// punktfunk console: plain JS, no build step. Talks to the JSON API; live data from /api/events.
"use strict";

const state = { csrf: "", events: null, charts: {}, apps: [] };
const $ = (sel) => document.querySelector(sel);
const PAGES = ["home", "pair", "clients", "apps", "settings", "logs"];
const HISTORY = 60; // points per chart (one a second)

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRF-Token"] = state.csrf;
  const res = await fetch(path, { method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await res.json().catch(() => ({}));
  if (res.status === 401 && path !== "/api/login") { showLogin(); }
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function showLogin() {
  if (state.events) { state.events.close(); state.events = null; }
  $("#nav").hidden = true;
  for (const p of document.querySelectorAll(".page")) p.hidden = p.id !== "page-login";
}

async function start() {
  try {
    const me = await api("GET", "/api/whoami");
    state.csrf = me.csrf;
  } catch (e) { showLogin(); return; }
  $("#nav").hidden = false;
  openEvents();
  route();
}

function route() {
  const page = (location.hash || "#home").slice(1);
  const name = PAGES.includes(page) ? page : "home";
  for (const p of document.querySelectorAll(".page")) p.hidden = p.id !== "page-" + name;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.getAttribute("href") === "#" + name);
  ({ home: loadHome, pair: loadPair, clients: loadClients, apps: loadApps, settings: loadSettings, logs: loadLogs })[name]();
}

// --- Home ---------------------------------------------------------------------------------
async function loadHome() {
  const info = await api("GET", "/api/info");
  const facts = $("#host-info");
  facts.replaceChildren();
  const add = (k, v) => facts.append(el("dt", { text: k }), el("dd", { text: v }));
  add("Version", info.version);
  add("Host", info.hostname);
  add("Encoders", info.encoders.map((e) => `${e.backend}/${e.codec}`).join(", ") || "none");
  add("Displays", info.displays.join(", "));
  add("Sessions", `${info.sessions} of at most ${info.max_sessions}`);
  const last = info.refusals[info.refusals.length - 1];
  $("#refusal-note").textContent = last ? `Last refused: ${last.client || ""} — ${last.reason}` : "";
  renderSessions(await api("GET", "/api/sessions"));
}

function renderSessions(list) {
  const box = $("#sessions");
  const names = new Set(list.map((s) => s.name));
  for (const card of [...box.children]) if (!names.has(card.dataset.name)) card.remove();
  for (const s of list) {
    if (box.querySelector(`[data-name="${CSS.escape(s.name)}"]`)) continue;
    const canvas = el("canvas", { width: "600", height: "90" });
    const card = el("div", { class: "session", "data-name": s.name },
      el("strong", { text: `${s.client || "client"} ` }),
      el("span", { class: "hint", text: `${s.protocol} · ${s.name} · ${s.plan || s.mode || ""}` }),
      el("div", { class: "figures" },
        el("span", {}, "fps ", el("b", { class: "fps", text: "–" })),
        el("span", {}, "Mbit/s ", el("b", { class: "mbps", text: "–" })),
        el("span", {}, "latency p50 ", el("b", { class: "latency", text: "–" }), " ms")),
      canvas,
      el("button", { class: "danger end-btn", type: "button", text: "End session",
        onclick: () => endSession(s.name) }));
    box.append(card);
    state.charts[s.name] = state.charts[s.name] || [];
  }
  $("#no-sessions").hidden = list.length > 0;
}

async function endSession(name) {
  const card = document.querySelector(`#sessions [data-name="${CSS.escape(name)}"]`);
  try { await api("DELETE", "/api/sessions/" + encodeURIComponent(name)); }
  catch (e) { if (card) card.append(el("p", { class: "error", text: e.message })); }
}

function onStats(d) {
  const card = document.querySelector(`#sessions [data-name="${CSS.escape(d.session)}"]`);
  if (!card) { if (!$("#page-home").hidden) loadHome(); return; }
  card.querySelector(".fps").textContent = d.fps.toFixed(1);
  card.querySelector(".mbps").textContent = d.mbps.toFixed(1);
  card.querySelector(".latency").textContent = d.latency_p50_ms.toFixed(1);
  const points = state.charts[d.session] = (state.charts[d.session] || []).concat([d]).slice(-HISTORY);
  drawChart(card.querySelector("canvas"), points);
}

// Three lines, each scaled to its own maximum: fps (blue), Mbit/s (green), latency (orange).
function drawChart(canvas, points) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const series = [["fps", "#4fa3ff"], ["mbps", "#5fd38d"], ["latency_p50_ms", "#ffa94d"]];
  for (const [key, colour] of series) {
    const max = Math.max(1, ...points.map((p) => p[key] || 0));
    ctx.strokeStyle = colour;
    ctx.lineWidth = 2;
    ctx.beginPath();
    points.forEach((p, i) => {
      const x = (i / (HISTORY - 1)) * w, y = h - 4 - ((p[key] || 0) / max) * (h - 8);
      i ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
    });
    ctx.stroke();
  }
}

function openEvents() {
  if (state.events) return;
  const source = new EventSource("/api/events");
  state.events = source;
  source.addEventListener("stats", (e) => onStats(JSON.parse(e.data)));
  for (const kind of ["session_started", "session_ended", "session_refused"]) {
    source.addEventListener(kind, () => { if (!$("#page-home").hidden) loadHome(); });
  }
  for (const kind of ["pairing_requested", "pairing_completed", "pairing_failed", "pairing_result"]) {
    source.addEventListener(kind, () => {
      if (!$("#page-pair").hidden) loadPair();
      if (!$("#page-clients").hidden) loadClients();
    });
  }
}

// --- Pair ---------------------------------------------------------------------------------
async function loadPair() {
  const p = await api("GET", "/api/pairing");
  const list = $("#waiting");
  list.replaceChildren(...(p.gamestream_waiting.length
    ? p.gamestream_waiting.map((n) => el("li", { class: "waiting-client", text: n }))
    : [el("li", { class: "hint", text: "nobody" })]));
  $("#native-gate").textContent = p.native || "off";
}

// --- Clients ------------------------------------------------------------------------------
async function loadClients() {
  const body = $("#clients-table tbody");
  const clients = await api("GET", "/api/clients");
  const path = (c) => `/api/clients/${c.protocol}/${c.fingerprint}`;
  const rename = async (c, name) => {
    try { $("#clients-result").textContent = (await api("PATCH", path(c), { name })).message; }
    catch (e) { $("#clients-result").textContent = e.message; }
  };
  body.replaceChildren(...clients.map((c) => el("tr", { class: "client-row", "data-name": c.name },
    el("td", {}, el("input", { value: c.name, "aria-label": "name",
      onchange: (e) => rename(c, e.target.value) })),
    el("td", { text: c.protocol }),
    el("td", {}, el("code", { text: c.fingerprint.slice(0, 16) })),
    el("td", {}, el("button", { class: "danger", type: "button", text: "Revoke",
      onclick: async () => {
        try { $("#clients-result").textContent = (await api("DELETE", path(c))).message; }
        catch (e) { $("#clients-result").textContent = e.message; }
        loadClients();
      } })))));
}

// --- Apps ---------------------------------------------------------------------------------
async function loadApps() {
  state.apps = await api("GET", "/api/apps");
  renderApps();
}

function renderApps() {
  const body = $("#apps-table tbody");
  const input = (obj, key, label) => el("input", { value: obj[key] || "", "aria-label": label,
    placeholder: label, oninput: (e) => { obj[key] = e.target.value; } });
  body.replaceChildren(...state.apps.map((a, i) => {
    if (a.builtin) return el("tr", {}, el("td", { text: a.title }), el("td", { class: "hint", text: "the session's own desktop" }), el("td"));
    if (a.source === "setting") return el("tr", {}, el("td", { text: a.title }), el("td", { class: "hint", text: `${a.command} (the apps setting)` }), el("td"));
    a.prep = a.prep || []; a.detached = a.detached || [];
    const steps = el("div", { class: "steps" }, ...a.prep.map((step, j) => el("div", { class: "step" },
      input(step, "do", "prep: do"), input(step, "undo", "prep: undo"),
      el("button", { type: "button", text: "×", "aria-label": "remove step", onclick: () => { a.prep.splice(j, 1); renderApps(); } }))),
      el("button", { type: "button", text: "+ prep step", onclick: () => { a.prep.push({ do: "", undo: "" }); renderApps(); } }));
    const detached = el("textarea", { "aria-label": "detached commands", placeholder: "detached commands, one per line", rows: 2,
      oninput: (e) => { a.detached = e.target.value.split("\n").map((l) => l.trim()).filter(Boolean); } });
    detached.value = a.detached.join("\n");
    return el("tr", {},
      el("td", {}, input(a, "title", "title")),
      el("td", {}, input(a, "command", "command"), input(a, "working_dir", "working dir"), steps, detached),
      el("td", {}, el("button", { class: "danger", type: "button", text: "Remove",
        onclick: () => { state.apps.splice(i, 1); renderApps(); } })));
  }));
}

// --- Settings -----------------------------------------------------------------------------
async function loadSettings() {
  const data = await api("GET", "/api/settings");
  $("#config-file").textContent = data.config_file;
  $("#settings-list").replaceChildren(...data.settings.map((s) => {
    const input = s.type === "bool"
      ? el("select", { "data-setting": s.name, "data-saved": s.saved }, el("option", { text: "true" }), el("option", { text: "false" }))
      : el("input", { "data-setting": s.name, "data-saved": s.saved, value: s.saved });
    input.value = s.saved;
    return el("div", { class: "setting" },
      el("div", {}, el("span", { class: "name", text: s.name }), " ",
        el("span", { class: "meta", text: `now ${s.value} (${s.source})` })),
      el("div", { class: "meta", text: `${s.help}. Allowed: ${s.allowed}; default ${s.default || "(empty)"}` }),
      input);
  }));
}

async function saveSettings() {
  const changes = {};
  for (const input of document.querySelectorAll("[data-setting]")) {
    if (input.value !== input.dataset.saved) changes[input.dataset.setting] = input.value;
  }
  if (!Object.keys(changes).length) { $("#settings-result").textContent = "nothing changed"; return; }
  try {
    const r = await api("PATCH", "/api/settings", changes);
    $("#settings-result").textContent = `saved to ${r.written}: ${Object.keys(r.changed).join(", ")} (applies at the next start)`;
    loadSettings();
  } catch (e) { $("#settings-result").textContent = e.message; }
}

// --- Logs ---------------------------------------------------------------------------------
async function loadLogs() {
  const r = await api("GET", "/api/logs?lines=300&level=" + $("#log-level").value);
  $("#logs").textContent = r.lines.join("\n");
}

window.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const r = await api("POST", "/api/login", { password: $("#password").value });
      state.csrf = r.csrf;
      $("#password").value = "";
      $("#login-error").textContent = "";
      if (!location.hash) location.hash = "#home";
      start();
    } catch (err) { $("#login-error").textContent = err.message; }
  });
  $("#pair-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const pin = $("#pin").value;
    $("#pin").value = ""; // a PIN is used once
    try { $("#pair-result").textContent = (await api("POST", "/api/pairing", { pin })).message; }
    catch (err) { $("#pair-result").textContent = err.message; }
    loadPair();
  });
  $("#logout-btn").addEventListener("click", async () => { await api("POST", "/api/logout").catch(() => {}); showLogin(); });
  $("#app-add").addEventListener("click", () => { state.apps.push({ title: "", command: "", working_dir: "", prep: [], detached: [], source: "file" }); renderApps(); });
  $("#apps-save").addEventListener("click", async () => {
    try { await api("PUT", "/api/apps", state.apps); $("#apps-result").textContent = "saved (applies at the next start)"; }
    catch (e) { $("#apps-result").textContent = e.message; }
  });
  $("#settings-save").addEventListener("click", saveSettings);
  $("#logs-refresh").addEventListener("click", loadLogs);
  $("#log-level").addEventListener("change", loadLogs);
  window.addEventListener("hashchange", () => { if (!$("#nav").hidden) route(); });
  start();
});
