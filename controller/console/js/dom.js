// Building the DOM. Every string becomes a text node: names, labels and stream
// paths come from the network and are never parsed as HTML.

const SVG_NS = "http://www.w3.org/2000/svg";

function fill(el, attrs, kids) {
  for (const [k, v] of Object.entries(attrs || {})) {
    const data = k.startsWith("data-");
    if (v === null || v === undefined || (v === false && !data)) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = String(v);
    else el.setAttribute(k, v === true && !data ? "" : String(v));  // data-x="true"/"false"
  }
  append(el, kids);
  return el;
}

// append adds strings (as text), nodes and arrays of them; skips null.
export function append(el, kids) {
  for (const c of kids) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
  return el;
}

// h builds an HTML element: h("a", {href: "#/x", class: "y"}, "text", child).
export function h(tag, attrs, ...kids) {
  return fill(document.createElement(tag), attrs, kids);
}

// s builds an SVG element.
export function s(tag, attrs, ...kids) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, kids);
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...kids) {
  return append(clear(el), kids);
}

// fmtTime shows an RFC 3339 time in the browser's zone ("" for null).
export function fmtTime(t) {
  if (!t) return "";
  const d = new Date(t);
  return isNaN(d) ? String(t) : d.toLocaleString();
}

export function fmtRate(bps) {
  if (bps === null || bps === undefined || !isFinite(bps)) return "";
  if (bps >= 1e6) return (bps / 1e6).toFixed(1) + " Mbit/s";
  if (bps >= 1e3) return (bps / 1e3).toFixed(0) + " kbit/s";
  return bps.toFixed(0) + " bit/s";
}

// stateOf names a node's state for badges and colours.
export function stateOf(n) {
  if (n.pending) return "pending";
  return n.online ? "online" : "offline";
}

export function badge(state) {
  return h("span", {class: "badge state-" + state, "data-state": state}, state);
}
