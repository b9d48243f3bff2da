// Building the page from data without ever parsing it as HTML: every string becomes a text node.

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

const SVG = "http://www.w3.org/2000/svg";

export function s(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

function setAttrs(node, attrs) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function replace(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

const LOCAL = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const SHORT = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

// A time in the browser's zone, with UTC on hover.
export function time(iso, fallback = "—") {
  if (!iso) return h("span", { class: "muted" }, fallback);
  const at = new Date(iso);
  return h("time", { datetime: iso, title: `${at.toISOString().replace(".000Z", "Z")} UTC` }, LOCAL.format(at));
}

const SECONDS = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

export const clock = (date) => SHORT.format(date);
export const clockSeconds = (date) => SECONDS.format(date);

export function duration(ms) {
  const n = Number(ms);
  if (!Number.isFinite(n)) return "—";
  if (n < 1000) return `${n} ms`;
  if (n < 60_000) return `${+(n / 1000).toFixed(1)} s`;
  if (n < 3_600_000) return `${+(n / 60_000).toFixed(1)} min`;
  return `${+(n / 3_600_000).toFixed(1)} h`;
}

export const statusName = (status) => (status || "").replace(/^(RUN|JOB)_STATUS_/, "").toLowerCase();

export function badge(text, kind = text) {
  return h("span", { class: `badge s-${kind}` }, text);
}
