// The joint analysis page (R13): GET /analysis drawn as charts (Apache ECharts, served by the
// sidecar from var/vendor) and tables. One request per period: the counts come by category, day,
// hour and direction, and the page sums them for each chart. Without ECharts (not installed
// here) the tables still show.
"use strict";

const { el, t } = HL;
const BY = "category,day,hour,direction";
let days = 7;
let figures = null;
const charts = {};

function sum(rows, key) {
  const out = new Map();
  for (const r of rows) out.set(r[key], (out.get(r[key]) || 0) + r.count);
  return out;
}

function chart(id) {
  if (typeof echarts === "undefined") return null;
  const node = document.getElementById(id);
  charts[id] = charts[id] || echarts.init(node);
  return charts[id];
}

function name(code) {
  return code === "unclassified" ? t("unclassified") : (figures.names || {})[code] || code;
}

function drawCharts() {
  const rows = figures.counts;
  const dayList = [...sum(rows, "day").keys()].sort();
  const categories = [...sum(rows, "category").entries()].sort((a, b) => b[1] - a[1])
    .map(([c]) => c);
  const day = chart("chart-day");
  if (day) {
    day.setOption({
      animation: false, tooltip: { trigger: "axis" },
      legend: { type: "scroll", top: 0, textStyle: { color: "#e8eef4" } },
      grid: { left: 40, right: 10, top: 40, bottom: 30 },
      xAxis: { type: "category", data: dayList }, yAxis: { type: "value", minInterval: 1 },
      series: categories.map((c) => ({
        name: name(c), type: "bar", stack: "all", id: c,
        data: dayList.map((d) => rows.filter((r) => r.category === c && r.day === d)
          .reduce((a, r) => a + r.count, 0)),
      })),
    }, true);
  }
  const hours = sum(rows, "hour");
  const hour = chart("chart-hour");
  if (hour) {
    const labels = [...Array(24).keys()].map((h) => String(h).padStart(2, "0"));
    hour.setOption({
      animation: false, tooltip: { trigger: "axis" },
      grid: { left: 40, right: 10, top: 20, bottom: 30 },
      xAxis: { type: "category", data: labels }, yAxis: { type: "value", minInterval: 1 },
      series: [{ type: "bar", id: "hours", data: labels.map((h) => hours.get(h) || 0) }],
    }, true);
  }
  const direction = chart("chart-direction");
  if (direction) {
    direction.setOption({
      animation: false, tooltip: { trigger: "item" },
      series: [{ type: "pie", id: "directions", radius: "65%", label: { color: "#e8eef4" },
                 data: [...sum(rows, "direction")].map(([d, n]) => ({ name: d, value: n })) }],
    }, true);
  }
}

function table(id, head, rows) {
  const node = document.getElementById(id);
  node.replaceChildren(el("tr", {}, ...head.map((h) => el("th", { "data-t": h }, t(h)))),
                       ...rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", {}, c)))));
}

function categoriesText(map) {
  return Object.entries(map).map(([c, n]) => `${name(c)} ${n}`).join("，");
}

function drawTables() {
  document.getElementById("summary").textContent =
    `${t("records")} ${figures.records} · ${t("emergencies")} ${figures.emergencies}` +
    (figures.truncated ? ` · ${t("truncated")}` : "");
  const warnings = document.getElementById("warning-list");
  warnings.replaceChildren(...(figures.warnings.length ? figures.warnings.map((w) => el("li",
    { class: "emergency", "data-category": w.category },
    `${name(w.category)}: ${t("observed")} ${w.observed}, ${t("baseline")} ` +
    `${w.baseline_per_day.toFixed(1)}, p = ${w.p}`))
    : [el("li", { class: "none", "data-t": "no_warnings" }, t("no_warnings"))]));
  table("hotspot-table", ["area", "count", "categories"],
        figures.hotspots.map((h) => [h.area, h.count, categoriesText(h.categories)]));
  table("caller-table", ["caller", "count", "categories"],
        figures.repeat_callers.map((r) => [r.caller_number, r.count, categoriesText(r.categories)]));
  table("dispute-table", ["at", "category", "direction", "result"],
        figures.disputes.slice().reverse().map((d) => [
          new Date(d.at).toLocaleString(HL.locale()), name(d.category), d.direction,
          t(`r_${d.result}`)]));
}

function period() {
  const to = Date.now() / 1000;
  return `from=${to - days * 86400}&to=${to}`;
}

async function load() {
  figures = await HL.api(`/analysis?${period()}&by=${BY}&top=20`);
  document.getElementById("main").hidden = false;
  document.getElementById("main").dataset.loaded = String(Date.now());
  const node = document.getElementById("connection");
  node.dataset.state = "live";
  node.dataset.t = "loaded";
  node.textContent = t("loaded");
  drawTables();
  drawCharts();
}

async function exportCsv() {
  // Through the API with the token, then handed to the browser as a file.
  const resp = await fetch(`/analysis?${period()}&by=category,day&format=csv`,
                           { headers: { Authorization: `Bearer ${HL.token()}` } });
  const link = el("a", { href: URL.createObjectURL(await resp.blob()),
                         download: `analysis-${days}d.csv` });
  document.body.append(link);
  link.click();
  link.remove();
}


for (const b of document.querySelectorAll("[data-period]")) {
  b.addEventListener("click", () => { days = Number(b.dataset.period); load(); });
}
document.getElementById("export").addEventListener("click", exportCsv);
document.getElementById("lang").addEventListener("click", () => {
  HL.switchLanguage();
  if (figures) { drawTables(); drawCharts(); }
});
window.addEventListener("resize", () => Object.values(charts).forEach((c) => c.resize()));
HL.boot(load);
