// The console's pages, routed by the URL fragment (#/jobs/ID...), so no page address ever collides with the API.
import { ApiError, call, forgetKey, get, keepKey, storedKey } from "./api.js";
import { badge, duration, h, replace, statusName, time } from "./dom.js";
import { chart } from "./chart.js";

const view = document.getElementById("view");
const statusLine = document.getElementById("status");
const POLL_MS = 2000;
let stopLive = () => {};

function say(text, error = false) {
  statusLine.textContent = text;
  statusLine.className = error ? "error" : "";
}

// -- live updates: poll while the tab is visible, refresh at once when it comes back ------------------------------

function live(refresh) {
  let timer = null;
  const tick = async () => {
    if (document.hidden) return;
    try { await refresh(); } catch (error) { failed(error); }
  };
  const start = () => { if (!timer) timer = setInterval(tick, POLL_MS); };
  const stop = () => { clearInterval(timer); timer = null; };
  const visibility = () => { if (document.hidden) stop(); else { tick(); start(); } };
  document.addEventListener("visibilitychange", visibility);
  if (!document.hidden) start();
  return () => { stop(); document.removeEventListener("visibilitychange", visibility); };
}

// -- forms: labelled controls, a required reason, and the server's field errors next to their field ---------------

function field(spec) {
  const id = `f-${spec.form}-${spec.name}`;
  const attrs = { id, name: spec.name, required: spec.required, "aria-describedby": `${id}-error` };
  let control;
  if (spec.options) {
    control = h("select", attrs, spec.options.map(([value, text]) =>
      h("option", { value, selected: value === (spec.value ?? "") }, text)));
  } else {
    control = h("input", { ...attrs, type: spec.type || "text", value: spec.value ?? "", min: spec.min,
      step: spec.step, placeholder: spec.placeholder, autocomplete: "off" });
  }
  return h("label", { for: id }, spec.label, control, h("p", { class: "field-error", id: `${id}-error` }));
}

// A form whose `submit(values)` makes the call; errors from the server land beside the field they name
// (`aliases` maps a server field name to the form's), anything else under the form.
function actionForm({ name, fields, button, submit, done, kind = "", aliases = {}, reason = true }) {
  const specs = [...fields];
  if (reason) specs.push({ name: "reason", label: "Reason (for the audit trail)", required: true, placeholder: "why" });
  const formError = h("p", { class: "form-error", role: "alert" });
  const form = h("form", { class: "inline", "data-form": name, novalidate: false },
    specs.map((spec) => field({ ...spec, form: name })),
    (Array.isArray(button) ? button : [[button, kind, ""]]).map(([text, cls, value]) =>
      h("button", { type: "submit", class: cls, name: value ? "_action" : undefined, value: value || undefined }, text)),
    formError);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    formError.textContent = "";
    for (const p of form.querySelectorAll(".field-error")) p.textContent = "";
    for (const c of form.querySelectorAll("[aria-invalid]")) c.removeAttribute("aria-invalid");
    const values = Object.fromEntries(new FormData(form, event.submitter).entries());
    try {
      const result = await submit(values);
      say(`${event.submitter ? event.submitter.textContent : "Saved"}: done.`);
      if (done) await done(result, values);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status === 401) return signedOut();
      const leftover = [];
      for (const [server, reasonText] of error.fields) {
        const local = aliases[server] || server.split(".").pop();
        const control = form.elements.namedItem(local);
        if (control && control.id) {
          control.setAttribute("aria-invalid", "true");
          document.getElementById(`${control.id}-error`).textContent = reasonText;
        } else leftover.push(`${server}: ${reasonText}`);
      }
      formError.textContent = [error.message, ...leftover].join(" · ");
      say(error.message, true);
    }
  });
  return form;
}

// -- cadence at a glance -------------------------------------------------------------------------------------------

function baselineText(ep) {
  const cron = ep.baseline && ep.baseline.cron;
  if (cron && cron.expression) return `cron ${cron.expression}${cron.timezone ? ` (${cron.timezone})` : ""}`;
  return `every ${duration(ep.baseline ? ep.baseline.intervalMs : 0)}`;
}

function cadence(ep, observedMs) {
  const failures = Number(ep.failureCount || 0);
  if (ep.paused) return [badge("paused"), ep.pausedUntil ? [" until ", time(ep.pausedUntil)] : " until resumed"];
  switch (ep.nextRunSource) {
    case "RUN_SOURCE_AI_INTERVAL": {
      const every = Number(ep.hintIntervalMs || 0) || observedMs;
      const until = ep.hintExpiresAt ? [" until ", time(ep.hintExpiresAt)] : "";
      return [badge("hint"), every ? ` every ${duration(every)}` : "", until, h("span", { class: "muted" }, ` (baseline ${baselineText(ep)})`)];
    }
    case "RUN_SOURCE_AI_ONESHOT":
      return [badge("one-shot", "hint"), " at ", time(ep.nextRunAt)];
    case "RUN_SOURCE_CLAMPED_MIN":
    case "RUN_SOURCE_CLAMPED_MAX":
      return [badge("clamped", "hint"), ` ${baselineText(ep)}`];
    default:
      if (failures > 0) {
        return [badge(`backed off ×${2 ** Math.min(failures, 5)}`, "backoff"), ` after ${failures} failure${failures === 1 ? "" : "s"} (${baselineText(ep)})`];
      }
      return [h("span", { class: "muted" }, "baseline "), baselineText(ep)];
  }
}

function runStatus(run) {
  return run ? [badge(statusName(run.status)), " ", h("span", { class: "muted" }, duration(run.durationMs))] : h("span", { class: "muted" }, "no runs yet");
}

function successRate(runs) {
  const done = runs.filter((r) => statusName(r.status) !== "running");
  if (!done.length) return "—";
  return `${Math.round((100 * done.filter((r) => statusName(r.status) === "success").length) / done.length)}%`;
}

// -- sign in / out -------------------------------------------------------------------------------------------------

function signedOut(message = "Your key is no longer accepted: sign in again.") {
  forgetKey();
  location.hash = "#/";
  renderSignIn(message);
}

function renderSignIn(message = "") {
  document.getElementById("nav").hidden = true;
  const error = h("p", { class: "form-error", role: "alert", id: "signin-error" }, message);
  const input = h("input", { id: "api-key", name: "key", type: "password", required: true, autocomplete: "off", spellcheck: "false" });
  const form = h("form", { class: "stack", "data-form": "signin" },
    h("label", { for: "api-key" }, "API key", input), h("button", { type: "submit" }, "Sign in"), error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    try {
      await call("GET", "/jobs?pageSize=1", undefined, key);
    } catch (failure) {
      error.textContent = failure instanceof ApiError && failure.status === 401
        ? "That API key was not accepted. Check that it was copied whole and has not been revoked."
        : `Could not sign in: ${failure.message}`;
      input.setAttribute("aria-invalid", "true");
      return;
    }
    keepKey(key);
    route();
  });
  replace(view, h("section", { class: "card signin" },
    h("h1", {}, "Sign in"),
    h("p", { class: "sub" }, "Paste an API key (for a local run: the contents of var/dev-api-key). It is kept in this tab only and cleared when you sign out or close the tab."),
    form));
  input.focus();
  say("");
}

// -- jobs ----------------------------------------------------------------------------------------------------------

async function renderJobs() {
  const search = field({ form: "jobs", name: "search", label: "Search by name", type: "search" });
  const status = field({ form: "jobs", name: "status", label: "Status", options: [["", "All"], ["JOB_STATUS_ACTIVE", "Active"], ["JOB_STATUS_ARCHIVED", "Archived"]], value: "JOB_STATUS_ACTIVE" });
  const body = h("tbody");
  const table = h("div", { class: "table-wrap" }, h("table", { "aria-label": "Jobs" },
    h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Status"), h("th", { class: "num" }, "Endpoints"),
      h("th", { class: "num" }, "Failing"), h("th", { class: "wide" }, "Next run"))), body));
  let rows = [];
  const draw = () => {
    const needle = search.querySelector("input").value.trim().toLowerCase();
    const shown = rows.filter((r) => r.job.name.toLowerCase().includes(needle));
    replace(body, shown.length ? shown.map(({ job, failing, next }) => h("tr", { "data-job": job.jobId },
      h("td", {}, h("a", { href: `#/jobs/${job.jobId}` }, job.name)),
      h("td", {}, badge(statusName(job.status), statusName(job.status) === "active" ? "success" : "paused")),
      h("td", { class: "num" }, job.endpointCount),
      h("td", { class: "num" }, failing ? badge(String(failing), "failure") : "0"),
      h("td", { class: "wide" }, time(next)))) : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No jobs.")));
  };
  const load = async () => {
    const listing = await get("/jobs", { status: status.querySelector("select").value, pageSize: 100 });
    rows = await Promise.all(listing.jobs.map(async (job) => {
      const { endpoints } = await get(`/jobs/${job.jobId}/endpoints`);
      const nexts = endpoints.map((e) => e.nextRunAt).filter(Boolean).sort();
      return { job, failing: endpoints.filter((e) => Number(e.failureCount) > 0).length, next: nexts[0] };
    }));
    draw();
  };
  search.querySelector("input").addEventListener("input", draw);
  status.querySelector("select").addEventListener("change", () => load().catch(failed));
  const create = actionForm({
    name: "create-job", button: "Create job", reason: false,
    fields: [{ name: "name", label: "Name", required: true }, { name: "description", label: "Description" }],
    submit: (v) => call("POST", "/jobs", { name: v.name, description: v.description }),
    done: (result) => { location.hash = `#/jobs/${result.jobId}`; },
  });
  replace(view, h("h1", {}, "Jobs"),
    h("section", { class: "card" }, h("div", { class: "toolbar" }, search, status), table),
    h("section", { class: "card" }, h("h2", {}, "New job"), create));
  await load();
}

// -- a job ---------------------------------------------------------------------------------------------------------

async function renderJob(jobId) {
  const [{ job }, { endpoints }, { runs }] = await Promise.all([
    get(`/jobs/${jobId}`), get(`/jobs/${jobId}/endpoints`), get("/runs", { jobId, limit: 500 }),
  ]);
  const byEndpoint = new Map(endpoints.map((e) => [e.endpointId, []]));
  for (const r of runs) if (byEndpoint.has(r.endpointId)) byEndpoint.get(r.endpointId).push(r);
  const rows = endpoints.map((ep) => {
    const mine = byEndpoint.get(ep.endpointId);
    const observed = mine.length > 1 ? new Date(mine[0].scheduledFor) - new Date(mine[1].scheduledFor) : 0;
    const box = h("input", { type: "checkbox", name: "selected", value: ep.endpointId, id: `sel-${ep.endpointId}`, "aria-label": `Select ${ep.name}` });
    return h("tr", { "data-endpoint": ep.endpointId },
      h("td", {}, box),
      h("td", {}, h("a", { href: `#/jobs/${jobId}/endpoints/${ep.endpointId}` }, ep.name),
        h("div", { class: "muted wide" }, `${ep.method || "GET"} ${ep.url}`)),
      h("td", { "data-cell": "cadence" }, cadence(ep, observed)),
      h("td", {}, time(ep.nextRunAt, ep.paused ? "paused" : "—")),
      h("td", {}, runStatus(mine.find((r) => statusName(r.status) !== "running") || mine[0])),
      h("td", { class: "num" }, successRate(mine)));
  });
  const selected = () => [...view.querySelectorAll("input[name=selected]:checked")].map((c) => c.value);
  const bulk = (resume) => async (values) => {
    const ids = selected();
    if (!ids.length) throw new ApiError(400, { detail: "select at least one endpoint first" });
    for (const id of ids) await call("POST", `/jobs/${jobId}/endpoints/${id}/pause`, resume ? { resume: true, reason: values.reason } : { reason: values.reason });
    return ids;
  };
  const again = () => renderJob(jobId);
  const archived = statusName(job.status) === "archived";
  replace(view,
    h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Jobs"), " / ", job.name),
    h("h1", {}, job.name, " ", badge(statusName(job.status), archived ? "paused" : "success")),
    h("p", { class: "sub" }, job.description ? `${job.description} · ` : "", "created ", time(job.createdAt)),
    h("section", { class: "card" }, h("h2", {}, `Endpoints (${endpoints.length})`),
      h("div", { class: "table-wrap" }, h("table", { "aria-label": "Endpoints" },
        h("thead", {}, h("tr", {}, h("th", {}, h("span", { class: "muted" }, "✓")), h("th", {}, "Endpoint"), h("th", {}, "Effective cadence"),
          h("th", {}, "Next run"), h("th", {}, "Last run"), h("th", { class: "num" }, "Success"))),
        h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No endpoints yet."))))),
      h("h2", { class: "spaced" }, "Pause or resume the selected endpoints"),
      actionForm({ name: "bulk", button: [["Pause selected", "danger", "pause"], ["Resume selected", "secondary", "resume"]],
        fields: [], submit: (v) => bulk(v._action === "resume")(v), done: again })),
    archived ? "" : h("section", { class: "card" }, h("h2", {}, "Add an endpoint"), actionForm({
      name: "add-endpoint", button: "Add endpoint",
      fields: [{ name: "name", label: "Name", required: true }, { name: "url", label: "URL", type: "url", required: true, placeholder: "https://" },
        { name: "method", label: "Method", options: ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"].map((m) => [m, m]) },
        { name: "intervalMs", label: "Every (seconds)", type: "number", min: 1, required: true, value: "60" }],
      submit: (v) => call("POST", `/jobs/${jobId}/endpoints`, { name: v.name, url: v.url, method: v.method, baseline: { intervalMs: Math.round(Number(v.intervalMs) * 1000) }, reason: v.reason }),
      done: (r) => { location.hash = `#/jobs/${jobId}/endpoints/${r.endpointId}`; },
    })),
    archived ? "" : h("section", { class: "card" }, h("h2", {}, "Rename or archive"),
      actionForm({ name: "rename-job", button: "Rename", kind: "secondary", fields: [{ name: "name", label: "New name", required: true, value: job.name }],
        submit: (v) => call("PATCH", `/jobs/${jobId}`, { name: v.name, reason: v.reason }), done: again }),
      actionForm({ name: "archive-job", button: "Archive job", kind: "danger", fields: [],
        submit: (v) => call("DELETE", `/jobs/${jobId}?reason=${encodeURIComponent(v.reason)}`), done: again })),
    await auditCard({ jobId }, new Map([[jobId, job.name], ...endpoints.map((e) => [e.endpointId, e.name])])));
}

async function auditCard(target, names) {
  const { records } = await get("/audit", { ...target, pageSize: 100 });
  return h("section", { class: "card", "data-section": "audit" }, h("h2", {}, "Audit trail"), auditTable(records, names));
}

// `names` turns ids into the names people gave them (a deleted endpoint keeps its id).
function auditTable(records, names = new Map()) {
  return h("div", { class: "table-wrap" }, h("table", { "aria-label": "Audit trail" },
    h("thead", {}, h("tr", {}, h("th", {}, "When"), h("th", {}, "Who"), h("th", {}, "What"), h("th", { class: "wide" }, "Target"), h("th", {}, "Why"))),
    h("tbody", {}, records.length ? records.map((r) => h("tr", {},
      h("td", {}, time(r.at)), h("td", {}, r.actor), h("td", {}, r.action),
      h("td", { class: "wide muted", title: r.targetId }, `${r.targetType} ${names.get(r.targetId) || r.targetId}`), h("td", {}, r.reason || h("span", { class: "muted" }, "—"))))
      : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "Nothing recorded yet.")))));
}

// -- an endpoint ---------------------------------------------------------------------------------------------------

async function loadEndpoint(jobId, endpointId) {
  const [{ endpoints }, { runs }, { records }, health, { job }] = await Promise.all([
    get(`/jobs/${jobId}/endpoints`), get("/runs", { endpointId, limit: 300 }),
    get("/audit", { endpointId, pageSize: 100 }), get(`/jobs/${jobId}/endpoints/${endpointId}/health`, { windowHours: 24 }),
    get(`/jobs/${jobId}`),
  ]);
  const endpoint = endpoints.find((e) => e.endpointId === endpointId);
  if (!endpoint) throw new ApiError(404, { detail: `endpoint ${endpointId} not found in this job` });
  return { endpoint, runs, records, health, jobName: job.name };
}

function runsTable(runs) {
  return h("div", { class: "table-wrap" }, h("table", { "aria-label": "Runs" },
    h("thead", {}, h("tr", {}, h("th", {}, "Scheduled"), h("th", {}, "Status"), h("th", { class: "num" }, "Duration"), h("th", { class: "wide" }, "Source"))),
    h("tbody", {}, runs.length ? runs.slice(0, 50).map((r) => h("tr", { "data-run": r.runId },
      h("td", {}, h("a", { href: `#/runs/${r.runId}` }, time(r.scheduledFor))), h("td", {}, badge(statusName(r.status))),
      h("td", { class: "num" }, duration(r.durationMs)), h("td", { class: "wide muted" }, (r.source || "").replace("RUN_SOURCE_", "").toLowerCase())))
      : h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No runs yet.")))));
}

function healthFacts(health, endpoint) {
  const last = health.lastRun;
  return h("dl", { class: "facts" },
    h("dt", {}, "Cadence"), h("dd", { "data-fact": "cadence" }, cadence(endpoint)),
    h("dt", {}, "Next run"), h("dd", { "data-fact": "next-run" }, time(endpoint.nextRunAt, endpoint.paused ? "paused" : "—")),
    h("dt", {}, "Runs (24 h)"), h("dd", {}, `${health.successCount} ok, ${health.failureCount} failed`),
    h("dt", {}, "Duration"), h("dd", {}, `avg ${duration(health.avgDurationMs)}, p95 ${duration(health.p95DurationMs)}`),
    h("dt", {}, "Last run"), h("dd", {}, last ? [badge(statusName(last.status)), " ", time(last.at)] : "—"),
    h("dt", {}, "Failure streak"), h("dd", {}, String(health.failureStreak)),
    h("dt", {}, "Missed slots"), h("dd", {}, String(health.missedSlots)));
}

function legend() {
  const item = (cls, text) => h("li", {}, h("span", { class: `sw ${cls}` }), text);
  return h("ul", { class: "legend" }, item("success", "run ok (height = duration)"), item("failure", "run failed"),
    item("interval", "effective interval (dashed: planned)"), item("hint", "hint"), item("pause", "paused"), item("backoff", "backoff"));
}

function steering(jobId, endpointId, refresh) {
  const base = `/jobs/${jobId}/endpoints/${endpointId}`;
  const section = (title, form) => h("details", { class: "action" }, h("summary", {}, title), form);
  const inMs = (minutes) => new Date(Date.now() + Number(minutes) * 60_000).toISOString();
  return [
    section("Apply an interval hint", actionForm({ name: "hint", button: "Apply hint",
      fields: [{ name: "intervalMs", label: "Every (seconds)", type: "number", min: 1, step: "any", required: true },
        { name: "ttlMinutes", label: "For (minutes)", type: "number", min: 1, value: "60" }],
      submit: (v) => call("POST", `${base}/hints/interval`, { intervalMs: Math.round(Number(v.intervalMs) * 1000), ttlMinutes: v.ttlMinutes ? Number(v.ttlMinutes) : null, reason: v.reason }),
      done: refresh })),
    section("Schedule a one-shot run", actionForm({ name: "one-shot", button: "Schedule",
      fields: [{ name: "runAt", label: "In (minutes)", type: "number", min: 0, step: "any", value: "0" }],
      submit: (v) => call("POST", `${base}/hints/one-shot`, { runAt: inMs(v.runAt || 0), reason: v.reason }), done: refresh })),
    section("Pause", actionForm({ name: "pause", button: "Pause", kind: "danger",
      fields: [{ name: "pauseUntil", label: "For (minutes; empty: until resumed)", type: "number", min: 1, step: "any" }],
      submit: (v) => call("POST", `${base}/pause`, { pauseUntil: v.pauseUntil ? inMs(v.pauseUntil) : null, reason: v.reason }), done: refresh })),
    section("Resume", actionForm({ name: "resume", button: "Resume", fields: [],
      submit: (v) => call("POST", `${base}/pause`, { resume: true, reason: v.reason }), done: refresh })),
    section("Clear hints", actionForm({ name: "clear-hints", button: "Clear hints", kind: "secondary", fields: [],
      submit: (v) => call("DELETE", `${base}/hints?reason=${encodeURIComponent(v.reason)}`), done: refresh })),
    section("Reset failures", actionForm({ name: "reset-failures", button: "Reset failures", kind: "secondary", fields: [],
      submit: (v) => call("POST", `${base}/reset-failures`, { reason: v.reason }), done: refresh })),
  ];
}

function configForm(jobId, endpoint, refresh) {
  const interval = endpoint.baseline && Number(endpoint.baseline.intervalMs);
  return actionForm({ name: "config", button: "Save changes", aliases: { "baseline.intervalMs": "intervalMs" },
    fields: [{ name: "name", label: "Name", value: endpoint.name, required: true },
      { name: "url", label: "URL", type: "url", value: endpoint.url, required: true },
      { name: "method", label: "Method", value: endpoint.method || "GET", options: ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"].map((m) => [m, m]) },
      { name: "intervalMs", label: "Every (seconds)", type: "number", step: "any", value: interval ? String(interval / 1000) : "", placeholder: interval ? "" : "cron" },
      { name: "timeoutMs", label: "Timeout (ms)", type: "number", value: String(endpoint.timeoutMs || "") }],
    submit: (v) => {
      const change = { reason: v.reason };
      if (v.name !== endpoint.name) change.name = v.name;
      if (v.url !== endpoint.url) change.url = v.url;
      if (v.method !== (endpoint.method || "GET")) change.method = v.method;
      if (v.intervalMs && Math.round(Number(v.intervalMs) * 1000) !== interval) change.baseline = { intervalMs: Math.round(Number(v.intervalMs) * 1000) };
      if (v.timeoutMs && v.timeoutMs !== String(endpoint.timeoutMs)) change.timeoutMs = Number(v.timeoutMs);
      return call("PATCH", `/jobs/${jobId}/endpoints/${endpoint.endpointId}`, change);
    },
    done: refresh });
}

async function renderEndpoint(jobId, endpointId) {
  let data = await loadEndpoint(jobId, endpointId);
  const chartBox = h("div", { "data-section": "chart" });
  const factsBox = h("div", { "data-section": "health" });
  const runsBox = h("div", { "data-section": "runs" });
  const auditBox = h("div");
  const draw = () => {
    replace(chartBox, chart(data.runs, data.records, data.endpoint));
    replace(factsBox, healthFacts(data.health, data.endpoint));
    replace(runsBox, runsTable(data.runs));
    replace(auditBox, auditTable(data.records, new Map([[endpointId, data.endpoint.name]])));
  };
  const refresh = async () => { data = await loadEndpoint(jobId, endpointId); draw(); };
  const { endpoint } = data;
  replace(view,
    h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Jobs"), " / ", h("a", { href: `#/jobs/${jobId}` }, data.jobName), " / ", endpoint.name),
    h("h1", {}, endpoint.name),
    h("p", { class: "sub" }, `${endpoint.method || "GET"} ${endpoint.url}`),
    h("section", { class: "card" }, h("h2", {}, "Timeline"), chartBox, legend()),
    h("div", { class: "grid" },
      h("section", { class: "card" }, h("h2", {}, "Health"), factsBox),
      h("section", { class: "card" }, h("h2", {}, "Steer"), steering(jobId, endpointId, refresh))),
    h("section", { class: "card" }, h("h2", {}, "Recent runs"), runsBox),
    h("section", { class: "card" }, h("h2", {}, "Configuration"), configForm(jobId, endpoint, refresh)),
    h("section", { class: "card", "data-section": "audit" }, h("h2", {}, "Audit trail"), auditBox));
  draw();
  stopLive = live(refresh);
}

// -- a run ---------------------------------------------------------------------------------------------------------

function prettyBody(text) {
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text; }
}

async function renderRun(runId) {
  const { run } = await get(`/runs/${runId}`);
  const lateness = run.startedAt ? new Date(run.startedAt) - new Date(run.scheduledFor) : null;
  const firings = run.policyFirings || [];
  const attempts = run.attempts || [];
  replace(view,
    h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Jobs"), " / ", h("a", { href: `#/jobs/${run.jobId}` }, "job"), " / ",
      h("a", { href: `#/jobs/${run.jobId}/endpoints/${run.endpointId}` }, "endpoint"), " / run"),
    h("h1", {}, "Run ", badge(statusName(run.status))),
    h("section", { class: "card" }, h("dl", { class: "facts" },
      h("dt", {}, "Run"), h("dd", {}, run.runId),
      h("dt", {}, "Scheduled for"), h("dd", {}, time(run.scheduledFor)),
      h("dt", {}, "Started"), h("dd", {}, time(run.startedAt)),
      h("dt", {}, "Finished"), h("dd", {}, time(run.finishedAt)),
      h("dt", {}, "Duration"), h("dd", {}, duration(run.durationMs)),
      h("dt", {}, "Lateness"), h("dd", {}, lateness === null ? "—" : duration(lateness)),
      h("dt", {}, "HTTP status"), h("dd", { "data-fact": "http-status" }, run.httpStatus ? String(run.httpStatus) : "—"),
      h("dt", {}, "Source"), h("dd", {}, (run.source || "").replace("RUN_SOURCE_", "").toLowerCase()),
      h("dt", {}, "Backoff attempt"), h("dd", {}, String(run.attempt)),
      h("dt", {}, "Error"), h("dd", {}, run.errorMessage || "—"))),
    attempts.length ? h("section", { class: "card", "data-section": "attempts" }, h("h2", {}, "Attempts"),
      h("table", {}, h("thead", {}, h("tr", {}, ["#", "Status", "Started", "Duration", "HTTP", "Error"].map((c) => h("th", {}, c)))),
        h("tbody", {}, attempts.map((a) => h("tr", {},
          h("td", {}, String(a.number)), h("td", {}, badge(statusName(a.status))), h("td", {}, time(a.startedAt)),
          h("td", {}, duration(a.durationMs)), h("td", {}, a.httpStatus ? String(a.httpStatus) : "—"), h("td", {}, a.errorMessage || "—")))))) : null,
    h("section", { class: "card" }, h("h2", {}, "Captured response", run.responseTruncated ? " (truncated)" : ""),
      run.responseBody ? h("pre", { class: "body", "data-section": "response" }, prettyBody(run.responseBody)) : h("p", { class: "muted" }, "Nothing captured.")),
    h("section", { class: "card" }, h("h2", {}, "Rules that fired on this run"),
      firings.length ? h("ul", {}, firings.map((f) => h("li", {}, h("strong", {}, f.rule), " ",
        badge((f.outcome || "").replace("POLICY_OUTCOME_", "").toLowerCase()), " ", (f.effects || []).join("; "), f.errorMessage ? ` — ${f.errorMessage}` : "")))
        : h("p", { class: "muted" }, "None.")));
}

// -- routing -------------------------------------------------------------------------------------------------------

function failed(error) {
  if (error instanceof ApiError && error.status === 401) return signedOut();
  say(error.message || String(error), true);
  if (error instanceof ApiError && error.status === 404) replace(view, h("h1", {}, "Not found"), h("p", {}, error.message), h("a", { href: "#/" }, "Back to jobs"));
}

async function route() {
  stopLive();
  stopLive = () => {};
  if (!storedKey()) return renderSignIn();
  document.getElementById("nav").hidden = false;
  say("");
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  try {
    if (parts[0] === "jobs" && parts[2] === "endpoints" && parts[3]) await renderEndpoint(parts[1], parts[3]);
    else if (parts[0] === "jobs" && parts[1]) await renderJob(parts[1]);
    else if (parts[0] === "runs" && parts[1]) await renderRun(parts[1]);
    else await renderJobs();
    view.focus({ preventScroll: true });
  } catch (error) {
    failed(error);
  }
}

document.getElementById("sign-out").addEventListener("click", () => {
  forgetKey();
  location.hash = "#/";
  renderSignIn("Signed out.");
});
window.addEventListener("hashchange", route);
route();
