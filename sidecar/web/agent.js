// The agent screen: one agent's calls as they come (GET /events for that agent), the screen-pop
// of a transferred call with its matter, the matter form with the recommender's suggestion as
// the agent types, and a button for each key's action. Every button is an API request
// (POST /calls/{id}/action, PUT /calls/{id}/matter): the page can do nothing the API cannot.
"use strict";

const ACTIONS = ["transfer", "three_way", "emergency", "out_of_scope",
                 "accept", "leave", "undecided", "cancel"];
const DECISIONS = new Set(["accept", "leave", "undecided", "cancel"]);
const CATCH_UP_S = 600;          // a screen opened during a call shows it (up to this long)
const SUGGEST_AFTER_MS = 250;    // typing pauses this long before the recommender is asked
const COMMAND_WAIT_MS = 10000;
const HISTORY_KEPT = 20;

const { el, t } = HL;
const state = { agent: null, call: null, categories: new Map(), history: [], suggestion: null,
                asked: 0 };

function agentFromAddress() {
  const a = new URLSearchParams(location.search).get("agent");
  return a || localStorage.getItem("hl-agent");
}

function categoryName(code) {
  if (!code) return t("no_category");
  const c = state.categories.get(code);
  return c ? `${c.name}（${c.platform}）` : code;
}

// --- the screen-pop ------------------------------------------------------------------------------
function renderPop() {
  const call = state.call;
  const pop = document.getElementById("pop");
  pop.dataset.phase = call ? call.phase : "idle";
  pop.dataset.callId = call ? call.call_id : "";
  const phase = document.getElementById("phase");
  phase.dataset.t = call ? (call.phase === "ringing" ? "ringing" : "talking") : "idle";
  phase.textContent = t(phase.dataset.t);
  const rows = [];
  const row = (key, value, cls = "") => rows.push(el("dt", { "data-t": key }, t(key)),
                                                  el("dd", { "data-k": key, class: cls }, value));
  if (call) {
    const tr = call.transfer;
    const m = call.matter;
    if (tr) row("from", `${tr.origin ?? "—"} · ${tr.transfer_id}`);
    row("caller_no", call.caller_number || "—");
    row("call_id", call.call_id);
    if (m || tr?.category) row("category", categoryName(m ? m.category : tr.category));
    if (m?.summary) row("summary", m.summary);
    if (m?.address) row("address", m.address);
    if ((m && m.emergency) || tr?.emergency) row("emergency", "⚠ " + t("emergency"), "alarm");
  }
  document.getElementById("pop-fields").replaceChildren(...rows);
  for (const b of document.querySelectorAll("#action-buttons button")) {
    b.disabled = !call || call.phase !== "talking";
  }
  document.getElementById("save").disabled = !call;
}

function fillForm(m) {
  document.getElementById("category").value = m?.category || "";
  document.getElementById("summary").value = m?.summary || "";
  document.getElementById("address").value = m?.address || "";
  document.getElementById("emergency").checked = !!m?.emergency;
  document.getElementById("save-state").textContent = "";
}

async function loadMatter(call) {
  // A transferred call's matter is read by the id it came with; the matter this screen tagged
  // a call with is kept for the tab (a reload during the call shows it again). No request for
  // an untagged call: its 404 would be noise in the browser's console.
  const id = call.transfer?.matter_id;
  const kept = sessionStorage.getItem(`hl-matter-${call.call_id}`);
  try {
    call.matter = id ? await HL.api(`/matters/${encodeURIComponent(id)}`)
                     : kept && JSON.parse(kept);
  } catch (_) {
    return;                      // gone (expired): the form starts empty
  }
  if (state.call === call) { fillForm(call.matter); renderPop(); }
}

function newCall(data, phase) {
  state.call = { call_id: data.call_id, hotline: data.hotline, caller_number: data.caller_number,
                 transfer: data.transfer, phase, matter: null };
  fillForm(null);
  showSuggestion(null);
  document.getElementById("result").textContent = "";
  loadMatter(state.call);
}

function addHistory(text, cls = "") {
  state.history.unshift({ text, cls, at: Date.now() });
  state.history.length = Math.min(state.history.length, HISTORY_KEPT);
  document.getElementById("history").replaceChildren(...state.history.map((h) =>
    el("li", { class: h.cls }, `${new Date(h.at).toLocaleTimeString(HL.locale())} ${h.text}`)));
}

function onEvent(type, data) {
  const mine = state.call && data.call_id === state.call.call_id;
  if (type === "agent_ringing" && data.agent === state.agent) {
    newCall(data, "ringing");
  } else if (type === "agent_connected" && data.agent === state.agent) {
    if (mine) state.call.phase = "talking"; else newCall(data, "talking");
  } else if (type === "call_ended" && mine) {
    addHistory(`${t("call_id")} ${data.call_id} ✓`);
    state.call = null;
  } else if (type === "outcome") {
    const label = `${data.origin} → ${data.target ?? "—"} ${t(`r_${data.result}`)}` +
                  (data.category ? ` · ${categoryName(data.category)}` : "");
    addHistory(label, data.emergency ? "emergency" : "");
    // A blind transfer that was accepted took the caller away from this agent.
    if (mine && data.mode === "blind" && data.result === "accepted" &&
        data.initiating_agent === state.agent) state.call = null;
  } else {
    return;
  }
  renderPop();
}

// --- the buttons -------------------------------------------------------------------------------
async function act(action) {
  const call = state.call;
  if (!call) return;
  const out = document.getElementById("result");
  out.dataset.status = "sent";
  out.dataset.action = action;
  out.textContent = `${t(`act_${action}`)}: ${t("sent")}`;
  let result;
  try {
    const queued = await HL.api(`/calls/${encodeURIComponent(call.call_id)}/action`, "POST",
                                { hotline: call.hotline, action });
    const deadline = Date.now() + COMMAND_WAIT_MS;
    do {
      await new Promise((r) => setTimeout(r, 200));
      result = await HL.api(`/commands/${queued.command_id}`);
    } while (result.status === "pending" && Date.now() < deadline);
  } catch (err) {
    result = { status: "refused", reason: err.message };
  }
  out.dataset.status = result.status;
  out.textContent = `${t(`act_${action}`)}: ${t(`c_${result.status}`)}` +
                    (result.reason ? ` (${result.reason})` : "") +
                    (result.transfer_id ? ` · ${result.transfer_id}` : "");
}

function buttons() {
  const box = document.getElementById("action-buttons");
  box.replaceChildren(...ACTIONS.map((a) => {
    const cls = DECISIONS.has(a) ? "decision" : a === "emergency" ? "alarm" : "";
    const b = el("button", { type: "button", "data-action": a, "data-t": `act_${a}`, class: cls },
                 t(`act_${a}`));
    b.addEventListener("click", () => act(a));
    return b;
  }));
}

// --- the matter form and the suggestion -------------------------------------------------------
async function saveMatter(ev) {
  ev.preventDefault();
  const call = state.call;
  if (!call) return;
  const f = ev.target.elements;
  const body = { hotline: call.hotline, category: f.category.value || null,
                 summary: f.summary.value.trim(), address: f.address.value.trim(),
                 emergency: f.emergency.checked, agent: state.agent };
  const out = document.getElementById("save-state");
  try {
    call.matter = await HL.api(`/calls/${encodeURIComponent(call.call_id)}/matter`, "PUT", body);
    sessionStorage.setItem(`hl-matter-${call.call_id}`, JSON.stringify(call.matter));
    out.dataset.state = "saved";
    out.textContent = t("saved");
    renderPop();
  } catch (err) {
    out.dataset.state = "error";
    out.textContent = err.message;
  }
}

function showSuggestion(rec) {
  state.suggestion = rec;
  const text = document.getElementById("suggestion-text");
  const adopt = document.getElementById("adopt");
  if (!rec) {
    text.dataset.platform = "";
    text.textContent = t("no_suggestion");
    adopt.hidden = true;
    return;
  }
  text.dataset.platform = rec.platform || "";
  text.dataset.category = rec.category || "";
  const parts = [`${t("handled_by")} ${rec.platform ?? "?"}`];
  if (rec.category) parts.push(categoryName(rec.category));
  if (rec.confidence != null) parts.push(`${t("confidence")} ${HL.percent(rec.confidence)}`);
  if (rec.emergency) parts.push("⚠ " + t("emergency"));
  text.textContent = parts.join(" · ");
  // Traditional characters, Cantonese or a recogniser's spaces are read as Mandarin first; the
  // reason's cues quote that reading, so the agent sees it beside them.
  text.dataset.readAs = rec.read_as || "";
  text.title = rec.read_as ? `${t("read_as")}: ${rec.read_as}\n${rec.reason}` : rec.reason;
  adopt.hidden = !rec.category && !rec.emergency;
}

let typing = null;
function onTyping() {
  clearTimeout(typing);
  typing = setTimeout(async () => {
    const text = document.getElementById("summary").value.trim();
    if (text.length < 2) { showSuggestion(null); return; }
    const asked = ++state.asked;
    try {
      const rec = await HL.api(`/recommendation?text=${encodeURIComponent(text)}`);
      if (asked === state.asked) showSuggestion(rec);   // an older answer, late: not shown
    } catch (_) { /* the form works without it */ }
  }, SUGGEST_AFTER_MS);
}

function adopt() {
  const rec = state.suggestion;
  if (!rec) return;
  if (rec.category) document.getElementById("category").value = rec.category;
  if (rec.emergency) document.getElementById("emergency").checked = true;
}

// --- start ----------------------------------------------------------------------------------------
async function load() {
  const { categories } = await HL.api("/catalog");
  state.categories = new Map(categories.map((c) => [c.code, c]));
  const select = document.getElementById("category");
  select.replaceChildren(el("option", { value: "", "data-t": "no_category" }, t("no_category")),
    ...categories.map((c) => el("option", { value: c.code }, categoryName(c.code))));
}

function live() {
  document.getElementById("main").hidden = false;
  buttons();
  renderPop();
  showSuggestion(null);
  const since = (Date.now() / 1000 - CATCH_UP_S).toFixed(3);
  HL.stream(`agent=${encodeURIComponent(state.agent)}&types=agent_ringing,agent_connected,` +
            "call_ended,outcome", onEvent, HL.setConnection, since);
}

document.getElementById("lang").addEventListener("click", () => {
  HL.switchLanguage();
  renderPop();
  showSuggestion(state.suggestion);
});
document.getElementById("matter-form").addEventListener("submit", saveMatter);
document.getElementById("summary").addEventListener("input", onTyping);
document.getElementById("adopt").addEventListener("click", adopt);
document.getElementById("who").addEventListener("submit", (ev) => {
  ev.preventDefault();
  localStorage.setItem("hl-agent", ev.target.elements.agent.value.trim());
  location.search = `?agent=${encodeURIComponent(ev.target.elements.agent.value.trim())}`;
});

state.agent = agentFromAddress();
document.getElementById("agent-id").value = state.agent || "";
if (state.agent) {
  localStorage.setItem("hl-agent", state.agent);
  HL.boot(load, live, () => HL.setConnection("reconnecting"));
} else {
  HL.applyText();
}
