// Ringmaster dashboard: one EventSource carries the state, CPU/RSS samples
// and output lines; buttons POST typed actions. No polling.
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const KEEP = 300; // samples per process (10 minutes at one every 2 s)
const MAX_LINES = 2000; // lines kept in the log pane
const DESTRUCTIVE = new Set(["stop", "restart", "reload", "decr", "signal"]);
const SIGNALS = ["HUP", "USR1", "USR2", "TERM", "INT", "QUIT", "KILL"];

const $ = (s) => document.querySelector(s);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

let snap = null;            // the latest state
const hist = new Map();     // pid -> [[cpu, rss], …]
const open = new Set();     // watchers whose processes are shown
let closedByUser = new Set();
let selected = null;        // watcher whose logs are shown
let lines = [];             // {w, t, pid, wid, s, line}
let paused = false;
let pendingWhilePaused = 0;
let streamFilter = "";
let search = "";
let filter = "";
const signalChoice = new Map(); // watcher -> signal picked in its menu

// ---------------------------------------------------------------- formatting

function uptime(started) {
  if (!started) return "—";
  let s = Math.max(0, Math.floor(Date.now() / 1000 - started));
  const d = Math.floor(s / 86400); s %= 86400;
  const h = Math.floor(s / 3600); s %= 3600;
  const m = Math.floor(s / 60); s %= 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

function bytes(n) {
  if (n == null) return "—";
  const u = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n < 10 && i ? n.toFixed(1) : Math.round(n)} ${u[i]}`;
}

function time(t) {
  const d = new Date(t * 1000);
  return d.toTimeString().slice(0, 8) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

function spark(values, cls, label) {
  const w = 96, h = 24;
  const v = values.length ? values : [0];
  // Headroom above the peak: a flat line sits below the top, not on it.
  const max = cls === "cpu" ? Math.max(...v, 5) * 1.15 : Math.max(...v, 1) * 1.3;
  // A short history grows from the right edge; a full one spans the width.
  const step = v.length > 1 ? w / Math.max(v.length - 1, 30) : 0;
  const x0 = w - (v.length - 1) * step;
  const pts = v.map((y, i) => `${(x0 + i * step).toFixed(1)},${(h - 1 - (y / max) * (h - 3)).toFixed(1)}`);
  const area = `${x0.toFixed(1)},${h} ${pts.join(" ")} ${w},${h}`;
  return `<span class="spark ${cls}"><svg viewBox="0 0 ${w} ${h}" preserveAspectRatio="none" aria-hidden="true">` +
    `<polygon points="${area}"/><polyline points="${pts.join(" ")}"/></svg><span>${label}</span></span>`;
}

// Sums the latest samples of `pids`, point by point from the newest back.
function summed(pids, k) {
  const series = pids.map((p) => hist.get(p) || []).filter((s) => s.length);
  if (!series.length) return [];
  const n = Math.max(...series.map((s) => s.length));
  const out = new Array(n).fill(0);
  for (const s of series) for (let i = 0; i < s.length; i++) out[n - s.length + i] += s[i][k];
  return out;
}

// ---------------------------------------------------------------- rendering

function actionButtons(name, w) {
  const n = esc(name);
  const pick = signalChoice.get(name) || "HUP";
  const sigs = SIGNALS.map((s) => `<option${s === pick ? " selected" : ""}>${s}</option>`).join("");
  return `<button class="btn small" data-action="start" data-watcher="${n}" title="Start">Start</button>` +
    `<button class="btn small" data-action="reload" data-watcher="${n}" title="Graceful reload">Reload</button>` +
    `<button class="btn small" data-action="restart" data-watcher="${n}" title="Rolling restart">Restart</button>` +
    `<button class="btn small danger" data-action="stop" data-watcher="${n}" title="Stop">Stop</button>` +
    `<button class="btn small" data-action="decr" data-watcher="${n}" title="One process less"${w.desired ? "" : " disabled"}>−</button>` +
    `<button class="btn small" data-action="incr" data-watcher="${n}" title="One process more"${w.singleton ? " disabled" : ""}>+</button>` +
    `<select data-signal-for="${n}" aria-label="Signal">${sigs}</select>` +
    `<button class="btn small" data-action="signal" data-watcher="${n}" title="Send the signal">Send</button>`;
}

function render() {
  if (!snap) return;
  // Redrawing would close a signal menu the user has open: wait until it closes.
  const focus = document.activeElement;
  if (focus && focus.tagName === "SELECT" && focus.closest("#rows")) {
    focus.addEventListener("blur", render, { once: true });
    return;
  }
  const rows = [];
  const f = filter.toLowerCase();
  const shown = snap.watchers.filter((w) => !f || w.name.toLowerCase().includes(f) || w.state.includes(f));
  let running = 0, ready = 0, desired = 0;
  for (const w of snap.watchers) {
    for (const p of w.processes) if (p.pid) { running++; if (p.ready) ready++; }
    desired += w.desired;
  }
  const total = snap.watchers.reduce((a, w) => a + w.processes.length, 0);
  for (const w of shown) {
    if (!closedByUser.has(w.name) && total <= 60) open.add(w.name);
    const pids = w.processes.filter((p) => p.pid).map((p) => p.pid);
    const run = pids.length;
    const rdy = w.processes.filter((p) => p.pid && p.ready).length;
    const first = w.processes.map((p) => p.started).filter(Boolean).sort()[0];
    const cpu = summed(pids, 0), mem = summed(pids, 1);
    const cls = ["watcher", open.has(w.name) ? "open" : "", selected === w.name ? "selected" : ""].join(" ");
    rows.push(`<tr class="${cls}" data-name="${esc(w.name)}" data-state="${w.state}" data-pids="${pids.join(" ")}">` +
      `<td class="name"><span class="caret">▸</span>${esc(w.name)}</td>` +
      `<td><span class="badge ${w.state}">${w.state}</span></td>` +
      `<td class="num">${run} / ${w.desired}</td>` +
      `<td class="num ${w.state === "stopped" ? "muted" : rdy >= w.desired ? "ready-yes" : "ready-no"}">${rdy}</td>` +
      `<td class="num">${w.restarts}</td>` +
      `<td class="num" data-started="${first || ""}">${run ? uptime(first) : "—"}</td>` +
      `<td>${spark(cpu, "cpu", cpu.length ? cpu[cpu.length - 1].toFixed(1) + "%" : "—")}</td>` +
      `<td>${spark(mem, "mem", mem.length ? bytes(mem[mem.length - 1]) : "—")}</td>` +
      `<td class="actions">${actionButtons(w.name, w)}</td></tr>`);
    if (!open.has(w.name)) continue;
    for (const p of w.processes) {
      const h = (p.pid && hist.get(p.pid)) || [];
      const c = h.map((x) => x[0]), m = h.map((x) => x[1]);
      rows.push(`<tr class="proc" data-watcher="${esc(w.name)}" data-wid="${p.wid}">` +
        `<td class="name">#${p.wid}</td>` +
        `<td><span class="badge ${p.state}">${p.state}</span></td>` +
        `<td class="num pid">${p.pid || "—"}</td>` +
        `<td class="num ${p.ready ? "ready-yes" : "ready-no"}">${p.ready ? "yes" : "no"}</td>` +
        `<td class="num">${p.restarts}</td>` +
        `<td class="num" data-started="${p.pid && p.started ? p.started : ""}">${p.pid ? uptime(p.started) : "—"}</td>` +
        `<td>${spark(c, "cpu", c.length ? c[c.length - 1].toFixed(1) + "%" : "—")}</td>` +
        `<td>${spark(m, "mem", m.length ? bytes(m[m.length - 1]) : "—")}</td><td></td></tr>`);
    }
  }
  if (!rows.length) {
    rows.push(`<tr class="empty"><td colspan="9">${snap.watchers.length ? "No watcher matches the filter." : "No watchers."}</td></tr>`);
  }
  $("#rows").innerHTML = rows.join("");
  $("#summary").innerHTML =
    `<span><b>${snap.watchers.length}</b> watchers</span>` +
    `<span><b>${running}</b> / ${desired} processes</span>` +
    `<span><b>${ready}</b> ready</span>` +
    `<span>up <b data-started="${snap.started}">${uptime(snap.started)}</b></span>`;
}

// Uptimes tick locally; nothing is asked of the daemon.
setInterval(() => {
  for (const el of document.querySelectorAll("[data-started]")) {
    const t = parseFloat(el.dataset.started);
    if (t) el.textContent = uptime(t);
  }
}, 1000);

// ---------------------------------------------------------------- logs

function lineHtml(l) {
  let msg = esc(l.line);
  if (search) {
    const re = new RegExp(search.replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replace(/[&<>"']/g, (c) => esc(c)), "gi");
    msg = msg.replace(re, (m) => `<mark>${m}</mark>`);
  }
  return `<div class="line ${l.s}" data-pid="${l.pid}"><span class="t">${time(l.t)}</span>` +
    `<span class="src">#${l.wid} ${l.pid} ${l.s === "stderr" ? "err" : "out"}</span><span class="msg">${msg}</span></div>`;
}

function visible(l) {
  return (!streamFilter || l.s === streamFilter) && (!search || l.line.toLowerCase().includes(search.toLowerCase()));
}

function renderLogs() {
  const box = $("#log-lines");
  box.innerHTML = lines.filter(visible).map(lineHtml).join("");
  box.scrollTop = box.scrollHeight;
  foot();
}

function foot() {
  const shown = lines.filter(visible).length;
  let t = selected ? `${shown} of ${lines.length} lines` : "";
  if (paused) t += ` · paused${pendingWhilePaused ? `, ${pendingWhilePaused} new` : ""}`;
  $("#log-foot").textContent = t;
}

function appendLines(batch) {
  lines.push(...batch);
  if (lines.length > MAX_LINES) lines.splice(0, lines.length - MAX_LINES);
  if (paused) { pendingWhilePaused += batch.length; foot(); return; }
  const box = $("#log-lines");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  box.insertAdjacentHTML("beforeend", batch.filter(visible).map(lineHtml).join(""));
  while (box.childElementCount > MAX_LINES) box.firstElementChild.remove();
  if (atBottom) box.scrollTop = box.scrollHeight;
  foot();
}

async function select(name) {
  selected = name;
  lines = [];
  $("#log-watcher").textContent = `— ${name}`;
  render();
  renderLogs();
  try {
    const r = await fetch(`/api/logs?watcher=${encodeURIComponent(name)}&lines=500`);
    if (!r.ok) throw new Error((await r.json()).error || r.statusText);
    const past = await r.json();
    if (selected !== name) return;
    // Live lines that arrived meanwhile come after the history.
    const since = past.length ? past[past.length - 1].t : 0;
    lines = past.concat(lines.filter((l) => l.t > since));
    renderLogs();
  } catch (e) {
    toast(`logs: ${e.message}`, true);
  }
}

// ---------------------------------------------------------------- actions

function toast(text, error) {
  const el = document.createElement("div");
  el.className = "toast" + (error ? " error" : "");
  el.textContent = text;
  $("#toasts").appendChild(el);
  setTimeout(() => el.remove(), error ? 6000 : 3000);
}

function confirmAction(title, text) {
  const d = $("#confirm");
  $("#confirm-title").textContent = title;
  $("#confirm-text").textContent = text;
  return new Promise((resolve) => {
    d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true });
    d.returnValue = "";
    d.showModal();
    $("#confirm-cancel").focus();
  });
}

async function act(action, watcher) {
  const body = { action };
  if (watcher) body.watcher = watcher;
  if (action === "signal") body.signal = document.querySelector(`select[data-signal-for="${CSS.escape(watcher)}"]`).value;
  const who = watcher ? `watcher ${watcher}` : "all watchers";
  if (DESTRUCTIVE.has(action)) {
    const what = action === "signal" ? `Send SIG${body.signal} to ${who}?` :
      action === "decr" ? `Stop one process of ${who}?` : `${action[0].toUpperCase() + action.slice(1)} ${who}?`;
    if (!(await confirmAction("Please confirm", what))) return;
  }
  try {
    const r = await fetch("/api/action", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
    const j = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(j.error || r.statusText);
    toast(`${action}: ${who}`);
  } catch (e) {
    toast(`${action} failed: ${e.message}`, true);
  }
}

document.addEventListener("click", (e) => {
  const b = e.target.closest("button[data-action]");
  if (b) { e.stopPropagation(); act(b.dataset.action, b.dataset.watcher || null); return; }
  if (e.target.closest("select")) return;
  const row = e.target.closest("tr.watcher");
  if (row) {
    const n = row.dataset.name;
    if (e.target.closest(".caret") || selected === n) {
      if (open.has(n)) { open.delete(n); closedByUser.add(n); } else { open.add(n); closedByUser.delete(n); }
    }
    if (selected !== n) select(n); else render();
  }
});

document.addEventListener("change", (e) => {
  const s = e.target.closest("select[data-signal-for]");
  if (s) signalChoice.set(s.dataset.signalFor, s.value);
});

$("#filter").addEventListener("input", (e) => { filter = e.target.value.trim(); render(); });
$("#log-search").addEventListener("input", (e) => { search = e.target.value; renderLogs(); });
$("#log-stream").addEventListener("click", (e) => {
  const b = e.target.closest("button[data-stream]");
  if (!b) return;
  streamFilter = b.dataset.stream;
  for (const x of document.querySelectorAll("#log-stream button")) x.classList.toggle("on", x === b);
  renderLogs();
});
$("#log-pause").addEventListener("click", (e) => {
  paused = !paused;
  e.target.textContent = paused ? "Resume" : "Pause";
  e.target.classList.toggle("on", paused);
  if (!paused) { pendingWhilePaused = 0; renderLogs(); } else foot();
});
$("#log-clear").addEventListener("click", () => { lines = []; renderLogs(); });

// ---------------------------------------------------------------- live stream

function connect() {
  const es = new EventSource("/api/events");
  const live = $("#live");
  es.onopen = () => { live.dataset.state = "live"; $("#live-text").textContent = "live"; };
  es.onerror = () => {
    live.dataset.state = "down";
    $("#live-text").textContent = es.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting…";
  };
  es.addEventListener("state", (e) => {
    snap = JSON.parse(e.data);
    if (!selected && snap.watchers.length) select(snap.watchers[0].name); else render();
  });
  es.addEventListener("history", (e) => {
    hist.clear();
    for (const [pid, pts] of Object.entries(JSON.parse(e.data))) hist.set(Number(pid), pts);
    render();
  });
  es.addEventListener("stats", (e) => {
    const s = JSON.parse(e.data);
    const seen = new Set();
    for (const [pid, pt] of Object.entries(s.p)) {
      const k = Number(pid);
      seen.add(k);
      const h = hist.get(k) || [];
      h.push(pt);
      if (h.length > KEEP) h.shift();
      hist.set(k, h);
    }
    for (const k of [...hist.keys()]) if (!seen.has(k)) hist.delete(k);
    render();
  });
  let batch = [];
  es.addEventListener("log", (e) => {
    const l = JSON.parse(e.data);
    if (l.w !== selected) return;
    if (!batch.length) setTimeout(() => { const b = batch; batch = []; appendLines(b); }, 50);
    batch.push(l);
  });
  es.addEventListener("lagged", (e) => toast(`the page fell behind: ${JSON.parse(e.data).missed} updates skipped`, true));
}

connect();
