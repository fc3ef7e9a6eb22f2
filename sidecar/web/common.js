// What every page of the sidecar shares: the token, the language, API calls and the live event
// stream. Pages hold no data of their own: everything comes from the API with the token the
// person gives (the #token=... of a wall screen's bookmark, or the form), kept for this tab only.
"use strict";

const HL = (() => {
  const TEXT = {
    zh: {
      title_board: "热线联动值班大屏", lang: "English", token: "访问令牌", enter: "进入",
      token_help: "请输入值班长（supervisor）令牌", live: "实时", reconnecting: "重连中…",
      refused: "令牌无效或权限不足", h12345: "12345 政务服务热线", h110: "110 报警服务台",
      waiting: "排队", longest: "最长等待", agents: "坐席", free: "空闲", busy: "忙碌",
      offline: "离线", calls: "通话", surge: "高峰预案", on: "启动", off: "未启动",
      no_service: "联动服务未运行", answer_rate: "接通率", service_level: "服务水平",
      offered: "呼入", target: "目标", transfers: "近一小时转办", direction: "方向",
      total: "合计", alerts: "告警", no_alerts: "暂无告警", overdue: "督办（超时工单）",
      no_overdue: "无超时工单", accept: "受理超时", final: "办结超时", recent: "最近转办",
      seconds: "秒", platform: "平台", in_transfer: "转办中", three_way: "三方会商",
      r_accepted: "已接受", r_accepted_by_origin: "三方·原平台办理",
      r_accepted_by_target: "三方·对方办理", r_undecided_first_receiver: "三方·未决首接",
      r_fallback_busy: "回落·忙", r_fallback_no_answer: "回落·无应答",
      r_fallback_rejected: "回落·拒接", r_fallback_unreachable: "回落·不可达",
      r_cancelled: "已取消", r_caller_abandoned: "来电人挂断", r_out_of_scope_guided: "非本平台·已引导",
      a_emergency: "紧急警情", a_transfer_failed: "转办失败", a_dead_letter: "工单未送达",
      a_overdue: "督办超时", a_dispute: "纠纷联动", a_stability_lead: "维稳线索",
      a_redis_data_lost: "数据存储异常", a_answer_rate_low: "接通率偏低", a_surge: "话务高峰",
      a_early_warning: "趋势预警",
      title_report: "联合研判", p_24h: "近24小时", p_7d: "近7天", p_31d: "近31天",
      export_csv: "导出 CSV", loaded: "已更新", by_day: "按日·分类", by_hour: "按小时",
      by_direction: "转办方向", warnings: "趋势预警", no_warnings: "暂无预警",
      hotspots: "热点区域", repeat_callers: "重复来电", disputes: "纠纷类事项", area: "区域",
      count: "数量", categories: "分类", caller: "来电号码", at: "时间", category: "分类",
      result: "结果", records: "记录", emergencies: "紧急", truncated: "记录过多，已截断",
      observed: "近24小时", baseline: "日均基线", unclassified: "待分类",
      title_agent: "坐席工作台", token_help_desktop: "请输入本中心坐席（desktop）令牌",
      agent_id: "坐席号", watch: "进入", idle: "空闲，等待来电", ringing: "振铃", talking: "通话中",
      pop: "来电弹屏", from: "转自", caller_no: "来电号码", call_id: "通话编号",
      emergency: "紧急", matter: "事项", summary: "诉求摘要", address: "地址",
      save: "保存事项", saved: "已保存", suggest: "智能推荐", adopt: "采用",
      handled_by: "建议承办", confidence: "置信度", no_suggestion: "暂无推荐", read_as: "读作",
      actions: "操作", act_transfer: "一键转接", act_three_way: "三方通话",
      act_emergency: "紧急转110", act_out_of_scope: "非受理范围", act_accept: "本方受理",
      act_leave: "对方受理", act_undecided: "首接负责", act_cancel: "取消三方",
      sent: "已发送", c_pending: "等待执行", c_started: "已开始", c_done: "已完成",
      c_refused: "未执行",
      history: "本班记录", no_category: "（未分类）", not_owner: "非本中心坐席",
    },
    en: {
      title_board: "Hotline wallboard", lang: "中文", token: "Access token", enter: "Open",
      token_help: "Enter a supervisor token", live: "live", reconnecting: "reconnecting…",
      refused: "token refused or not allowed", h12345: "12345 government hotline",
      h110: "110 police desk", waiting: "Waiting", longest: "Longest wait", agents: "Agents",
      free: "free", busy: "busy", offline: "offline", calls: "Calls", surge: "Surge plan",
      on: "on", off: "off", no_service: "service not running", answer_rate: "Answer rate",
      service_level: "Service level", offered: "Offered", target: "target",
      transfers: "Transfers, last hour", direction: "Direction", total: "Total",
      alerts: "Alerts", no_alerts: "No alerts", overdue: "Overdue work orders",
      no_overdue: "Nothing overdue", accept: "acceptance overdue", final: "result overdue",
      recent: "Latest transfers", seconds: "s", platform: "Platform",
      in_transfer: "Transfers going", three_way: "Three-way calls",
      r_accepted: "accepted", r_accepted_by_origin: "3-way: origin keeps",
      r_accepted_by_target: "3-way: target takes", r_undecided_first_receiver: "3-way: undecided",
      r_fallback_busy: "fallback: busy", r_fallback_no_answer: "fallback: no answer",
      r_fallback_rejected: "fallback: rejected", r_fallback_unreachable: "fallback: unreachable",
      r_cancelled: "cancelled", r_caller_abandoned: "caller hung up",
      r_out_of_scope_guided: "out of scope, guided",
      a_emergency: "Emergency", a_transfer_failed: "Transfer failed",
      a_dead_letter: "Work order not delivered", a_overdue: "Overdue", a_dispute: "Dispute",
      a_stability_lead: "Stability lead", a_redis_data_lost: "Redis data lost",
      a_answer_rate_low: "Answer rate low", a_surge: "Surge", a_early_warning: "Early warning",
      title_report: "Joint analysis", p_24h: "24 h", p_7d: "7 days", p_31d: "31 days",
      export_csv: "Export CSV", loaded: "updated", by_day: "By day and category",
      by_hour: "By hour", by_direction: "Transfer directions", warnings: "Early warnings",
      no_warnings: "No warnings", hotspots: "Hotspots", repeat_callers: "Repeat callers",
      disputes: "Dispute matters", area: "Area", count: "Count", categories: "Categories",
      caller: "Caller", at: "When", category: "Category", result: "Result",
      records: "records", emergencies: "emergencies", truncated: "too many records: cut",
      observed: "last 24 h", baseline: "baseline per day", unclassified: "unclassified",
      title_agent: "Agent screen", token_help_desktop: "Enter your centre's desktop token",
      agent_id: "Agent", watch: "Open", idle: "idle, waiting for a call", ringing: "ringing",
      talking: "on a call", pop: "Screen-pop", from: "from", caller_no: "Caller",
      call_id: "Call", emergency: "emergency", matter: "Matter", summary: "Summary",
      address: "Address", save: "Save matter", saved: "saved", suggest: "Suggestion",
      adopt: "Use", handled_by: "handled by", confidence: "confidence",
      no_suggestion: "no suggestion yet", read_as: "read as", actions: "Actions",
      act_transfer: "Transfer",
      act_three_way: "Three-way", act_emergency: "Emergency to 110",
      act_out_of_scope: "Out of scope", act_accept: "We take it", act_leave: "They take it",
      act_undecided: "First receiver", act_cancel: "End three-way", sent: "sent",
      c_pending: "pending", c_started: "started", c_done: "done",
      c_refused: "refused", history: "This shift",
      no_category: "(no category)", not_owner: "not an agent of this centre",
    },
  };
  let lang = localStorage.getItem("hl-lang") === "en" ? "en" : "zh";

  function t(key) { return TEXT[lang][key] ?? TEXT.zh[key] ?? key; }
  function locale() { return lang === "en" ? "en-GB" : "zh-CN"; }

  function applyText(root = document) {
    document.documentElement.lang = lang === "en" ? "en" : "zh-CN";
    for (const el of root.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
  }

  function switchLanguage() {
    lang = lang === "en" ? "zh" : "en";
    localStorage.setItem("hl-lang", lang);
    applyText();
  }

  function token() {
    const m = location.hash.match(/(?:^#|&)token=([^&]+)/);
    if (m) {
      sessionStorage.setItem("hl-token", decodeURIComponent(m[1]));
      // Out of the address bar (and of a screenshot of it) once kept.
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem("hl-token");
  }

  class Refused extends Error {}

  // The API: GET by default, or ``method`` with a JSON ``body``. A 4xx other than 401/403
  // comes back as an Error carrying the API's own message.
  async function api(path, method = "GET", body = undefined) {
    const headers = { Authorization: `Bearer ${token()}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(path, { method, headers,
                                     body: body === undefined ? undefined : JSON.stringify(body) });
    if (resp.status === 401 || resp.status === 403) throw new Refused(await resp.text());
    if (!resp.ok) {
      const answer = await resp.json().catch(() => ({}));
      throw new Error(answer.error || `${path}: HTTP ${resp.status}`);
    }
    return resp.json();
  }

  // GET /events read with fetch (an EventSource cannot send the bearer token): each message to
  // onEvent(type, data); on a break, again after a second from the last id seen, so nothing
  // still in Redis is missed (Last-Event-ID).
  function stream(query, onEvent, onState, since = null) {
    let lastId = null;
    async function once() {
      const headers = { Authorization: `Bearer ${token()}` };
      if (lastId) headers["Last-Event-ID"] = lastId;
      // The first time only: from ``since`` (a screen opened during a call catches up).
      const from = !lastId && since ? `&since=${since}` : "";
      const resp = await fetch(`/events?${query}${from}`, { headers });
      if (resp.status === 401 || resp.status === 403) throw new Refused(await resp.text());
      if (!resp.ok || !resp.body) throw new Error(`/events: HTTP ${resp.status}`);
      onState("live");
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const msg = {};
          for (const line of block.split("\n")) {
            if (!line || line.startsWith(":")) continue;
            const i = line.indexOf(": ");
            msg[line.slice(0, i)] = line.slice(i + 2);
          }
          if (msg.id) lastId = msg.id;
          if (msg.event && msg.data) onEvent(msg.event, JSON.parse(msg.data));
        }
      }
    }
    (async () => {
      for (;;) {
        try {
          await once();
        } catch (err) {
          if (err instanceof Refused) { onState("refused"); return; }
        }
        onState("reconnecting");
        await new Promise((r) => setTimeout(r, 1000));
      }
    })();
  }

  // The login form: shown when no token is kept or the API refused the one kept.
  function login(onToken, refused = false) {
    const help = document.body.dataset.tokenHelp || "token_help";
    let form = document.getElementById("login");
    if (!form) {
      form = el("form", { id: "login" },
        el("label", {}, el("span", { "data-t": help }, t(help)),
           el("input", { name: "token", type: "password", autocomplete: "off", required: true })),
        el("button", { type: "submit", "data-t": "enter" }, t("enter")),
        el("p", { id: "login-error", class: "error", hidden: true, "data-t": "refused" },
           t("refused")));
      document.querySelector("header").after(form);
    }
    document.getElementById("login-error").hidden = !refused;
    form.hidden = false;
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      sessionStorage.setItem("hl-token", form.elements.token.value.trim());
      form.hidden = true;
      onToken();
    }, { once: true });
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k.startsWith("data-")) node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }

  // A page's start: ``load()`` until it works; a refused token gets the form, anything else
  // (the sidecar restarting) another try in two seconds. Then ``then()``.
  function boot(load, then = () => {}, onRetry = () => {}) {
    async function attempt() {
      try {
        await load();
      } catch (err) {
        if (err instanceof Refused) { login(attempt, true); return; }
        onRetry();
        setTimeout(attempt, 2000);
        return;
      }
      then();
    }
    applyText();
    if (token()) attempt(); else login(attempt);
  }

  function setConnection(s) {
    const node = document.getElementById("connection");
    node.dataset.state = s;
    node.dataset.t = s === "live" ? "live" : s === "refused" ? "refused" : "reconnecting";
    node.textContent = t(node.dataset.t);
  }

  function percent(x) { return x === null || x === undefined ? "—" : `${(x * 100).toFixed(1)} %`; }

  return { t, locale, applyText, switchLanguage, token, api, stream, login, boot, el, percent,
           setConnection, Refused };
})();
