// Streams: the directory (GET /api/cascade/streams): where each stream
// enters the cascade, which nodes relay it, and players per node.

import {get} from "./api.js";
import {h, replace, fmtTime} from "./dom.js";

function playLink(id, path, text) {
  return h("a", {href: "#/player?node=" + id + "&path=" + encodeURIComponent(path),
                 class: "play", "data-node": id}, text);
}

function who(x) {
  return x.name || "#" + x.id;
}

export function render(main) {
  const tbody = h("tbody");
  const error = h("p", {class: "error", role: "alert"});
  const incomplete = h("p", {class: "muted"});
  replace(main, h("h1", {}, "Streams"), error,
    h("table", {class: "grid", id: "streams-table"},
      h("thead", {}, h("tr", {}, ["Path", "Enters at", "Relayed by", "Players per node", "Players",
                                  "Play"].map((t) => h("th", {}, t)))),
      tbody),
    incomplete);

  async function load() {
    let body;
    try {
      body = await get("/api/cascade/streams");
    } catch (e) {
      error.textContent = e.message;
      return;
    }
    error.textContent = "";
    replace(tbody, body.data.map((st) => {
      const carriers = [];
      if (st.origin) carriers.push(st.origin);
      for (const r of st.relays) if (!carriers.some((c) => c.id === r.id)) carriers.push(r);
      return h("tr", {"data-path": st.path},
        h("td", {class: "path"}, st.path),
        h("td", {}, st.origin ? [h("a", {href: "#/nodes/" + st.origin.id}, who(st.origin)),
                                 st.origin.since ? h("small", {class: "muted"}, " since " +
                                                     fmtTime(st.origin.since)) : null]
                              : h("span", {class: "muted"}, "unknown")),
        h("td", {}, st.relays.map((r) => h("span", {class: "label"}, who(r) + " (" + r.kind + ")"))),
        h("td", {}, st.players.map((p) => h("span", {class: "label", title:
          "RTMP " + p.players.rtmp + ", HTTP-FLV " + p.players.httpflv}, who(p) + ": " + p.players.total))),
        h("td", {}, String(st.total_players)),
        h("td", {}, carriers.map((c) => [playLink(c.id, st.path, "at " + who(c)), " "])));
    }));
    if (body.data.length === 0)
      tbody.appendChild(h("tr", {}, h("td", {colspan: 6, class: "muted"}, "No streams.")));
    incomplete.textContent = (body.incomplete || []).length ?
      "Some nodes have more streams than they report: " +
      body.incomplete.map((n) => who(n) + " (" + n.reported + " of " + n.total + ")").join(", ") : "";
  }
  load();
  return {refresh: load};
}
