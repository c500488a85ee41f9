// Driftloop health strip on Airflow's home dashboard (plugin react_apps entry, destination "dashboard").
// Hand-written ES module, no build step. Airflow 3.3 imports this module and renders the function it finds in
// globalThis[<react app name>] (or globalThis.AirflowPlugin) as a React component. The component needs no React
// import: it returns one plain React element (a <div>) whose ref callback renders the strip into that element
// with the DOM API. Data: ../api/health of the Driftloop FastAPI app, sent with the Airflow login cookie.
const ELEMENT = Symbol.for("react.transitional.element"); // React 19's element marker
const API_URL = new URL("../api/health", import.meta.url);
// One colour per loop state (driftloop.governance.loop_state.STATES).
const COLORS = {
  ok: "#2f855a",
  drift: "#c05621",
  retraining: "#2b6cb0",
  "waiting for labels": "#6b46c1",
  retrained: "#2c7a7b",
  "retrained, champion kept": "#975a16",
  "rolled back": "#c53030",
  "no champion": "#718096",
};

function element(type, props) {
  return { $$typeof: ELEMENT, type, key: null, ref: props.ref ?? null, props, _owner: null, _store: {} };
}

function fmt(value, digits) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

export function renderStrip(node, data) {
  node.replaceChildren();
  const title = document.createElement("a");
  title.href = data.path;
  title.textContent = "Driftloop";
  title.style.cssText = "font-weight:600;margin-right:12px";
  node.append(title);
  if (!data.datasets.length) node.append("no dataset configured");
  for (const d of data.datasets) {
    const chip = document.createElement("span");
    chip.dataset.dataset = d.dataset;
    chip.style.cssText =
      `display:inline-block;margin:2px 8px 2px 0;padding:2px 8px;border-radius:10px;color:#fff;` +
      `background:${COLORS[d.state] || "#4a5568"}`;
    chip.textContent =
      `${d.dataset}: ${d.state} · champion ${d.champion ? "v" + d.champion : "–"} · ${d.metric} ` +
      `${fmt(d.metric_value, 3)} · drift ${fmt(d.drift_share, 2)}/${fmt(d.drift_threshold, 2)}`;
    chip.dataset.state = d.state;
    chip.title = d.detail || d.decision;
    node.append(chip);
  }
}

function mount(node) {
  if (!node || node.dataset.loaded) return;
  node.dataset.loaded = "1";
  fetch(API_URL, { credentials: "same-origin" })
    .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`HTTP ${r.status}`))))
    .then((data) => renderStrip(node, data))
    .catch((err) => {
      node.textContent = `Driftloop: ${err.message}`;
    });
}

export default function DriftloopHealth() {
  return element("div", { ref: mount, "data-driftloop": "health-strip", style: { padding: "4px 0", fontSize: "13px" } });
}

globalThis.DriftloopHealth = DriftloopHealth;
globalThis.AirflowPlugin = DriftloopHealth;
