// Topology: the tree as an SVG picture; nodes coloured by state, each link
// with its RTT (from the controller) and throughput (from the child's own
// status through the API relay, as a rate between two refreshes).

import {get, call, relayPath} from "./api.js";
import {h, s, replace, fmtRate} from "./dom.js";

const W = 170, H = 120, BOX_W = 140, BOX_H = 46, PAD = 30;
const MAX_STATUS = 32;   // nodes whose status is fetched for throughput
const STATUS_EVERY_MS = 4000;

export function render(main) {
  const pic = h("div", {id: "topology", class: "topology"});
  const note = h("p", {class: "muted"});
  const legend = h("p", {class: "legend"},
    h("span", {class: "badge state-online"}, "online"), " ",
    h("span", {class: "badge state-offline"}, "offline"), " ",
    "links: RTT and throughput (both directions); dashed: down");
  replace(main, h("h1", {}, "Topology"), legend, pic, note);
  const prev = new Map();   // child id -> {at, bytes}
  const rates = new Map();  // child id -> bit/s

  let fetched = -Infinity;
  async function throughput(nodes) {
    // at most every 4 s, however often the picture is redrawn: each figure
    // costs a relayed request to a node
    if (performance.now() - fetched < STATUS_EVERY_MS) return;
    fetched = performance.now();
    const online = nodes.filter((n) => n.online && n.parent).slice(0, MAX_STATUS);
    await Promise.all(online.map(async (n) => {
      const r = await call("GET", relayPath(n.id, "/api/cascade/status"));
      if (r.status !== 200 || !r.body || !r.body.data) return;
      const l = (r.body.data.links || []).find((x) => x.role === "parent");
      if (!l) return;
      const now = performance.now(), bytes = l.bytes_in + l.bytes_out;
      const p = prev.get(n.id);
      if (p && now > p.at && bytes >= p.bytes) rates.set(n.id, ((bytes - p.bytes) * 8) / ((now - p.at) / 1000));
      prev.set(n.id, {at: now, bytes});
    }));
    note.textContent = nodes.filter((n) => n.online && n.parent).length > MAX_STATUS ?
      "Throughput shown for the first " + MAX_STATUS + " links." : "";
  }

  async function load() {
    let roots;
    try {
      roots = (await get("/api/cascade/topology")).data;
    } catch (e) {
      replace(pic, h("p", {class: "error"}, e.message));
      return;
    }
    // lay out: leaves left to right, a parent centred over its children
    const nodes = [];
    let slot = 0, depth = 0;
    const place = (n, d, parent) => {
      n.depth = d;
      n.parent = parent;
      depth = Math.max(depth, d);
      nodes.push(n);
      const kids = n.children || [];
      if (kids.length === 0) {
        n.x = slot++;
      } else {
        for (const c of kids) place(c, d + 1, n);
        n.x = (kids[0].x + kids[kids.length - 1].x) / 2;
      }
    };
    for (const r of roots) place(r, 0, null);
    await throughput(nodes);
    const cx = (n) => PAD + BOX_W / 2 + n.x * W;
    const cy = (n) => PAD + BOX_H / 2 + n.depth * H;
    const width = PAD * 2 + BOX_W + Math.max(0, slot - 1) * W;
    const height = PAD * 2 + BOX_H + depth * H;
    const pictureLinks = nodes.filter((n) => n.parent).map((n) => {
      const l = n.link;
      const up = !!(l && l.up);
      const x1 = cx(n.parent), y1 = cy(n.parent) + BOX_H / 2, x2 = cx(n), y2 = cy(n) - BOX_H / 2;
      const rtt = l && l.rtt_ms !== null && l.rtt_ms !== undefined ? l.rtt_ms.toFixed(2) + " ms" : "";
      const rate = up && rates.has(n.id) ? fmtRate(rates.get(n.id)) : "";
      const label = up ? [rtt, rate].filter(Boolean).join(" · ") :
                    !n.online ? "node offline" : l ? "down" : "no report yet";
      return s("g", {class: "link " + (up ? "up" : "down"), "data-child": n.id,
                     "data-parent": n.parent.id, "data-up": up, "data-rtt": rtt},
        s("line", {x1, y1, x2, y2}),
        // beside the line, on its outer side, so sibling links' labels do not meet
        s("text", {x: x1 + (x2 - x1) * 0.55 + (x2 < x1 ? -8 : 8), y: y1 + (y2 - y1) * 0.55 + 4,
                   "text-anchor": x2 < x1 ? "end" : "start", class: "link-label"}, label));
    });
    const pictureNodes = nodes.map((n) => {
      const state = n.online ? "online" : "offline";
      return s("a", {href: "#/nodes/" + n.id},
        s("g", {class: "node state-" + state, "data-id": n.id, "data-name": n.name,
                "data-state": state},
          s("title", {}, n.name + " (#" + n.id + "): " + state),
          s("rect", {x: cx(n) - BOX_W / 2, y: cy(n) - BOX_H / 2, width: BOX_W, height: BOX_H, rx: 8}),
          s("text", {x: cx(n), y: cy(n) - 3, class: "node-name"},
            n.name.length > 18 ? n.name.slice(0, 17) + "…" : n.name),
          s("text", {x: cx(n), y: cy(n) + 14, class: "node-state"}, "#" + n.id + " " + state)));
    });
    const svg = s("svg", {id: "topology-svg", width, height, viewBox: "0 0 " + width + " " + height,
                          role: "img", "aria-label": "the cascade tree"},
      pictureLinks, pictureNodes);
    replace(pic, nodes.length ? svg : h("p", {class: "muted"}, "No nodes yet."));
  }
  load();
  return {refresh: load};
}
