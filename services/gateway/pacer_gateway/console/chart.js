// The endpoint timeline, hand-written SVG: a point per run (colour = status, height = duration), the effective
// interval as a step line, the planned next run, and bands where a hint, a pause or a backoff was in force.
import { s, clock, clockSeconds, duration, statusName } from "./dom.js";

const W = 1000, H = 310, LEFT = 56, RIGHT = 60, TOP = 28, BOTTOM = 40;
const FAILED = new Set(["failure", "timeout", "lost", "blocked"]);

const at = (iso) => new Date(iso).getTime();

// Runs oldest first, each with its time `t`, duration `ms` and the interval since the previous run `gap`.
function timeline(runs) {
  const sorted = runs.map((r) => ({ ...r, t: at(r.scheduledFor), ms: Number(r.durationMs || 0) }))
    .sort((a, b) => a.t - b.t);
  sorted.forEach((r, i) => { r.gap = i ? r.t - sorted[i - 1].t : null; });
  return sorted;
}

// Bands where steering was in force, with the reason the audit trail gives. The trail says which action was taken,
// not its parameters: a hint lasts until cleared, replaced, or its runs stop; pauses and resumes alternate, ending in
// the endpoint's present state.
export function bands(runs, records, endpoint, now) {
  const trail = [...records].map((r) => ({ ...r, t: at(r.at) })).sort((a, b) => a.t - b.t);
  const found = [];
  const hintRuns = runs.filter((r) => r.source === "RUN_SOURCE_AI_INTERVAL");
  trail.forEach((r, i) => {
    if (r.action !== "ApplyIntervalHint") return;
    const next = trail.slice(i + 1).find((n) => n.action === "ApplyIntervalHint" || n.action === "ClearAdaptiveHints");
    let end = next ? next.t : Math.max(r.t, ...hintRuns.filter((x) => x.t >= r.t).map((x) => x.t));
    if (!next && endpoint.nextRunSource === "RUN_SOURCE_AI_INTERVAL") end = now;
    found.push({ kind: "hint", from: r.t, to: end, why: `Interval hint by ${r.actor}: ${r.reason || "no reason"}` });
  });
  const pauses = trail.filter((r) => r.action === "PauseOrResumeEndpoint");
  let paused = Boolean(endpoint.paused);
  for (let i = pauses.length - 1; i >= 0; i--) {
    if (paused) {
      const end = i + 1 < pauses.length ? pauses[i + 1].t : now;
      found.push({ kind: "pause", from: pauses[i].t, to: end, why: `Paused by ${pauses[i].actor}: ${pauses[i].reason || "no reason"}` });
    }
    paused = !paused;
  }
  let streak = null;
  for (const r of runs) {
    const failed = FAILED.has(statusName(r.status));
    if (failed && !streak) streak = { kind: "backoff", from: r.t, n: 0 };
    if (failed) streak.n += 1;
    if (!failed && streak && statusName(r.status) !== "running") {
      found.push({ ...streak, to: r.t, why: `Backed off after ${streak.n} failed run(s)` });
      streak = null;
    }
  }
  if (streak) found.push({ ...streak, to: now, why: `Backed off after ${streak.n} failed run(s)` });
  return found;
}

function ticks(from, to, count) {
  const step = (to - from) / count;
  return Array.from({ length: count + 1 }, (_, i) => from + i * step);
}

export function chart(rawRuns, records, endpoint, now = Date.now()) {
  const runs = timeline(rawRuns);
  const next = endpoint.nextRunAt ? at(endpoint.nextRunAt) : null;
  const start = runs.length ? runs[0].t : now - 60_000;
  const end = Math.max(now, next || 0, start + 30_000);
  const pad = (end - start) * 0.03;
  const x0 = start - pad, x1 = end + pad;
  const x = (t) => LEFT + ((Math.min(Math.max(t, x0), x1) - x0) / (x1 - x0)) * (W - LEFT - RIGHT);
  const maxMs = Math.max(10, ...runs.map((r) => r.ms));
  const yd = (ms) => H - BOTTOM - (ms / maxMs) * (H - TOP - BOTTOM);
  const gaps = runs.map((r) => r.gap).filter((g) => g !== null);
  const last = runs[runs.length - 1];
  const planned = last && next && next > last.t ? next - last.t : null;
  const maxGap = Math.max(1000, ...gaps, planned || 0);
  const yi = (ms) => H - BOTTOM - (ms / maxGap) * (H - TOP - BOTTOM);

  const svg = s("svg", {
    class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": "chart-title chart-desc",
  });
  svg.append(s("title", { id: "chart-title" }, "Timeline of runs, interval and steering"));
  svg.append(s("desc", { id: "chart-desc" },
    `${runs.length} runs from ${clock(new Date(start))} to ${clock(new Date(end))}; next run ${next ? clock(new Date(next)) : "not planned"}.`));
  const bandLayer = s("g", { "data-layer": "bands" });
  for (const b of bands(runs, records, endpoint, now)) {
    const bx = x(b.from), bw = Math.max(3, x(b.to) - bx);
    bandLayer.append(s("rect", {
      class: `band band-${b.kind}`, "data-kind": b.kind, x: bx, y: TOP, width: bw, height: H - TOP - BOTTOM,
    }, s("title", {}, b.why)));
  }
  svg.append(bandLayer);
  svg.append(s("line", { class: "axis", x1: LEFT, x2: W - RIGHT, y1: H - BOTTOM, y2: H - BOTTOM }));
  const label = x1 - x0 < 15 * 60_000 ? clockSeconds : clock;
  for (const t of ticks(x0, x1, 6)) {
    svg.append(s("text", { x: x(t), y: H - BOTTOM + 16, "text-anchor": "middle" }, label(new Date(t))));
  }
  for (const v of ticks(0, maxMs, 4)) {
    svg.append(s("text", { x: LEFT - 6, y: yd(v) + 4, "text-anchor": "end" }, duration(Math.round(v))));
  }
  for (const v of ticks(0, maxGap, 4)) {
    svg.append(s("text", { x: W - RIGHT + 6, y: yi(v) + 4 }, duration(Math.round(v))));
  }
  svg.append(s("text", { x: LEFT - 6, y: TOP - 12, "text-anchor": "end" }, "duration"));
  svg.append(s("text", { x: W - RIGHT + 6, y: TOP - 12 }, "interval"));
  if (gaps.length) {
    let d = "";
    runs.forEach((r, i) => {
      if (i === 0) return;
      d += `${i === 1 ? "M" : "L"}${x(runs[i - 1].t)},${yi(r.gap)} L${x(r.t)},${yi(r.gap)} `;
    });
    svg.append(s("path", { class: "interval", d, "data-series": "interval" }));
  }
  if (planned) {
    svg.append(s("path", {
      class: "planned", "data-series": "planned", "data-interval-ms": planned,
      d: `M${x(last.t)},${yi(planned)} L${x(next)},${yi(planned)}`,
    }, s("title", {}, `Planned interval ${duration(planned)}`)));
  }
  if (next) {
    svg.append(s("line", { class: "next", "data-series": "next", "data-at": endpoint.nextRunAt,
      x1: x(next), x2: x(next), y1: TOP, y2: H - BOTTOM }));
    svg.append(s("text", { x: x(next), y: TOP + 10, "text-anchor": "middle" }, "next"));
  }
  for (const r of runs) {
    const status = statusName(r.status);
    svg.append(s("circle", {
      class: `point p-${status}`, "data-run": r.runId, cx: x(r.t), cy: yd(r.ms), r: 4.5,
    }, s("title", {}, `${status} · ${duration(r.ms)} · ${new Date(r.t).toISOString()}`)));
  }
  return svg;
}
