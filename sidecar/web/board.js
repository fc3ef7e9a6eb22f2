// The supervisors' wallboard: each hotline's queue, agents and KPIs, the last hour's transfers,
// alerts (emergencies first) and overdue work orders. First paint from the API, then live from
// GET /events (outcome, alert, hotline_status); the KPIs and overdue items are read again every
// 15 s, a handful of small requests per screen.
"use strict";

const HOUR_MS = 3600 * 1000;
const REFRESH_MS = 15000;
const ALERTS_KEPT = 50;
const RECENT_SHOWN = 8;
const SURGE_TARGET = 0.8;

const state = { hotlines: [], live: {}, kpis: {}, target: null, transfers: new Map(),
                alerts: [], overdue: { count: 0, by_platform: {} } };
const { el, t, percent } = HL;

function endedAt(r) {
  const ts = r.timestamps || {};
  return Date.parse(ts.ended || ts.requested || "") || Date.now();
}

function addTransfer(r) {
  if (!r || !r.transfer_id) return;
  // seen: when this screen first had it (data-seen on its line: how live the board is).
  const seen = state.transfers.get(r.transfer_id)?.seen ?? Date.now();
  state.transfers.set(r.transfer_id, { ...r, at: endedAt(r), seen });
}

function applyKpis(k) {
  state.target = k.answer_rate_target;
  state.hotlines = Object.keys(k.hotlines);
  state.kpis = k.hotlines;
  for (const [h, live] of Object.entries(k.live)) state.live[h] = live;
}

async function refresh() {
  const [k, o] = await Promise.all([HL.api("/kpis"), HL.api("/overdue")]);
  applyKpis(k);
  state.overdue = o;
  render();
}

async function load() {
  const since = (Date.now() - HOUR_MS) / 1000;
  const page = await HL.api(`/transfers?from=${since}&limit=10000`);
  for (const item of page.transfers) addTransfer(item.record);
  await refresh();
}

function figure(key, value, extra = "") {
  return el("figure", { "data-k": key, class: extra },
            el("b", {}, value), el("figcaption", { "data-t": key }, t(key)));
}

function hotlineCard(h) {
  const live = state.live[h];
  const k = state.kpis[h] || {};
  const card = el("section", { class: "hotline", "data-hotline": h },
                  el("h2", { "data-t": `h${h}` }, t(`h${h}`)));
  if (!live) {
    card.append(el("p", { class: "warn", "data-t": "no_service" }, t("no_service")));
  } else {
    const agents = el("figure", { "data-k": "agents" },
      el("b", {}, `${live.agents_free ?? "—"} / ${live.agents_busy ?? "—"} / ${live.agents_offline ?? "—"}`),
      el("figcaption", {}, `${t("agents")} ${t("free")}/${t("busy")}/${t("offline")}`));
    card.append(el("div", { class: "figures" },
      figure("waiting", live.waiting, live.waiting > 0 ? "hot" : ""),
      figure("longest", `${Math.round(live.longest_wait_s)} ${t("seconds")}`,
             live.longest_wait_s >= 30 ? "hot" : ""),
      agents, figure("calls", live.calls), figure("in_transfer", live.transfers ?? "—"),
      figure("three_way", live.three_way ?? "—", live.three_way > 0 ? "hot" : ""),
      figure("surge", live.surge ? t("on") : t("off"), live.surge ? "hot" : "")));
  }
  const target = live && live.surge ? SURGE_TARGET : state.target;
  const windows = ["15m", "1h", "24h"];
  const table = el("table", { class: "kpi" },
    el("tr", {}, el("th", {}, ""), ...windows.map((w) => el("th", {}, w))));
  for (const [key, label] of [["answer_rate", "answer_rate"], ["service_level", "service_level"],
                              ["offered", "offered"]]) {
    const row = el("tr", { "data-kpi": key }, el("th", { "data-t": label }, t(label)));
    for (const w of windows) {
      const v = (k[w] || {})[key];
      const below = key === "answer_rate" && target != null && v != null && v < target;
      row.append(el("td", { class: below ? "below" : "" }, key === "offered" ? (v ?? 0) : percent(v)));
    }
    table.append(row);
  }
  card.append(table);
  if (target != null) {
    card.append(el("p", { class: "note" }, `${t("answer_rate")} ${t("target")} ${percent(target)}`));
  }
  return card;
}

function renderTransfers() {
  const cutoff = Date.now() - HOUR_MS;
  for (const [id, r] of state.transfers) if (r.at < cutoff) state.transfers.delete(id);
  const rows = new Map();
  const results = new Set();
  for (const r of state.transfers.values()) {
    const dir = `${r.origin} → ${r.target ?? "—"}`;
    const counts = rows.get(dir) || {};
    counts[r.result] = (counts[r.result] || 0) + 1;
    rows.set(dir, counts);
    results.add(r.result);
  }
  const cols = [...results].sort();
  const table = document.getElementById("transfer-table");
  table.replaceChildren(el("tr", {}, el("th", { "data-t": "direction" }, t("direction")),
    ...cols.map((c) => el("th", { "data-t": `r_${c}` }, t(`r_${c}`))),
    el("th", { "data-t": "total" }, t("total"))));
  for (const [dir, counts] of [...rows].sort()) {
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    table.append(el("tr", { "data-direction": dir }, el("th", {}, dir),
      ...cols.map((c) => el("td", {}, counts[c] || "")), el("td", {}, total)));
  }
  const recent = [...state.transfers.values()].sort((a, b) => b.at - a.at).slice(0, RECENT_SHOWN);
  document.getElementById("recent").replaceChildren(...recent.map((r) => el("li",
    { "data-transfer-id": r.transfer_id, "data-seen": r.seen,
      class: r.emergency ? "emergency" : "" },
    `${new Date(r.at).toLocaleTimeString(HL.locale())} ${r.origin} → ${r.target ?? "—"} `,
    el("span", { "data-t": `r_${r.result}` }, t(`r_${r.result}`)),
    r.category ? ` · ${r.category}` : "")));
}

function renderAlerts() {
  const list = document.getElementById("alert-list");
  if (!state.alerts.length) {
    list.replaceChildren(el("li", { class: "none", "data-t": "no_alerts" }, t("no_alerts")));
    return;
  }
  // Emergencies first, then the newest.
  const shown = [...state.alerts].sort((a, b) =>
    (b.kind === "emergency") - (a.kind === "emergency") || b.at - a.at);
  list.replaceChildren(...shown.map((a) => el("li",
    { "data-kind": a.kind, class: a.kind === "emergency" ? "emergency" : "" },
    `${new Date(a.at).toLocaleTimeString(HL.locale())} `,
    el("b", { "data-t": `a_${a.kind}` }, t(`a_${a.kind}`)),
    ` ${[a.hotline || a.origin, a.target && `→ ${a.target}`, a.category, a.transfer_id]
         .filter(Boolean).join(" ")}`)));
}

function renderOverdue() {
  const table = document.getElementById("overdue-table");
  const by = state.overdue.by_platform || {};
  if (!Object.keys(by).length) {
    table.replaceChildren(el("tr", {}, el("td", { class: "none", "data-t": "no_overdue" }, t("no_overdue"))));
    return;
  }
  table.replaceChildren(el("tr", {}, el("th", { "data-t": "platform" }, t("platform")),
    el("th", { "data-t": "accept" }, t("accept")), el("th", { "data-t": "final" }, t("final"))),
    ...Object.entries(by).sort().map(([p, c]) => el("tr", { "data-platform": p },
      el("th", {}, p), el("td", { class: c.accept ? "below" : "" }, c.accept || 0),
      el("td", { class: c.final ? "below" : "" }, c.final || 0))));
}

function render() {
  document.getElementById("hotlines").replaceChildren(...state.hotlines.map(hotlineCard));
  renderTransfers();
  renderAlerts();
  renderOverdue();
}

function sound() {
  // An emergency is loud: a short two-tone beep (where the screen's browser lets a page play).
  try {
    const ctx = new AudioContext();
    for (const [i, f] of [[0, 880], [1, 660], [2, 880]]) {
      const osc = ctx.createOscillator();
      osc.frequency.value = f;
      osc.connect(ctx.destination);
      osc.start(ctx.currentTime + i * 0.25);
      osc.stop(ctx.currentTime + i * 0.25 + 0.2);
    }
  } catch (_) { /* no audio on this screen */ }
}

function onEvent(type, data) {
  if (type === "outcome") {
    addTransfer(data);
    renderTransfers();
  } else if (type === "alert") {
    state.alerts.unshift({ ...data, at: Date.now() });
    state.alerts.length = Math.min(state.alerts.length, ALERTS_KEPT);
    renderAlerts();
    if (data.kind === "emergency") sound();
  } else if (type === "hotline_status") {
    state.live[data.hotline] = data.live;
    document.getElementById("hotlines").replaceChildren(...state.hotlines.map(hotlineCard));
  }
}

function live() {
  document.getElementById("main").hidden = false;
  HL.stream("types=outcome,alert,hotline_status", onEvent, HL.setConnection);
  setInterval(() => refresh().catch(() => HL.setConnection("reconnecting")), REFRESH_MS);
  setInterval(renderTransfers, 30000);
}

document.getElementById("lang").addEventListener("click", () => { HL.switchLanguage(); render(); });
function tick() { document.getElementById("clock").textContent = new Date().toLocaleString(HL.locale()); }
tick();
setInterval(tick, 1000);
HL.boot(load, live, () => HL.setConnection("reconnecting"));
