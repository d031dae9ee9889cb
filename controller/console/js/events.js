// Events: the audit trail (GET /api/cascade/events), newest first, filtered
// by node (the API's filter) and by action and actor (on the page shown).

import {get, allNodes} from "./api.js";
import {h, replace, fmtTime} from "./dom.js";

const PAGE_SIZE = 100;

export async function render(main, parts, params) {
  let page = 1;
  const nodeSel = h("select", {id: "events-node", "aria-label": "node"}, h("option", {value: ""}, "all nodes"));
  const action = h("input", {id: "events-action", type: "search", placeholder: "action (node.update…)",
                             "aria-label": "action"});
  const actor = h("input", {id: "events-actor", type: "search", placeholder: "actor", "aria-label": "actor"});
  const tbody = h("tbody");
  const pager = h("div", {class: "pager"});
  const error = h("p", {class: "error", role: "alert"});
  replace(main, h("div", {class: "toolbar"}, h("h1", {}, "Events"), nodeSel, action, actor), error,
    h("table", {class: "grid", id: "events-table"},
      h("thead", {}, h("tr", {}, ["Time", "Action", "Node", "Actor", "Source", "Detail"]
                                   .map((t) => h("th", {}, t)))), tbody),
    pager);
  let names = new Map();
  try {
    const nodes = await allNodes();
    names = new Map(nodes.map((n) => [n.id, n.name]));
    for (const n of nodes) nodeSel.appendChild(h("option", {value: n.id}, n.name + " (#" + n.id + ")"));
    if (params.get("node")) nodeSel.value = params.get("node");
  } catch (e) {
    error.textContent = e.message;
  }

  let seq = 0;
  async function load() {
    const my = ++seq;
    const q = new URLSearchParams({page, size: PAGE_SIZE});
    if (nodeSel.value) q.set("node", nodeSel.value);
    let body;
    try {
      body = await get("/api/cascade/events?" + q);
    } catch (e) {
      error.textContent = e.message;
      return;
    }
    if (my !== seq) return;
    error.textContent = "";
    const a = action.value.trim(), who = actor.value.trim();
    const rows = body.data.filter((e) => (!a || e.action.includes(a)) && (!who || (e.actor || "").includes(who)));
    replace(tbody, rows.map((e) => h("tr", {"data-action": e.action},
      h("td", {}, fmtTime(e.time)), h("td", {}, e.action),
      h("td", {}, e.node ? h("a", {href: "#/nodes/" + e.node}, names.get(e.node) || "#" + e.node) : ""),
      h("td", {}, e.actor || ""), h("td", {}, e.source || ""),
      h("td", {class: "detail"}, e.detail ? JSON.stringify(e.detail) : ""))));
    if (rows.length === 0)
      tbody.appendChild(h("tr", {}, h("td", {colspan: 6, class: "muted"}, "No events match.")));
    const pages = Math.max(1, Math.ceil(body.total / PAGE_SIZE));
    replace(pager,
      h("button", {type: "button", disabled: page <= 1, onclick: () => { page--; load(); }}, "‹ Newer"),
      " page " + page + " of " + pages + " (" + body.total + " events" +
        (a || who ? "; action and actor filter this page" : "") + ") ",
      h("button", {type: "button", disabled: page >= pages, onclick: () => { page++; load(); }}, "Older ›"));
  }
  nodeSel.addEventListener("change", () => { page = 1; load(); });
  action.addEventListener("input", load);
  actor.addEventListener("input", load);
  load();
  return {refresh: load};
}
