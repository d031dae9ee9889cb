// Nodes: the list, a node's page (status, links and streams through the
// API relay), the create and edit forms.

import {call, get, allNodes, relayPath, fieldsOf, session} from "./api.js";
import {h, replace, fmtTime, fmtRate, stateOf, badge} from "./dom.js";

export function render(main, parts) {
  if (parts[0] === "new") return form(main, null);
  if (parts[0] && parts[1] === "edit") return form(main, parts[0]);
  if (parts[0]) return detail(main, parts[0]);
  return list(main);
}

function gen(n) {
  const g = n.config_generation || {};
  const ok = g.desired === g.applied;
  return h("span", {class: ok ? "gen ok" : "gen behind", "data-desired": g.desired,
                    "data-applied": g.applied}, g.applied + " / " + g.desired);
}

// ---- list --------------------------------------------------------------------------------------

const PAGE_SIZE = 50;

function list(main) {
  let page = 1;
  const search = h("input", {id: "node-search", type: "search", placeholder: "name contains…",
                             "aria-label": "search by name"});
  const online = h("select", {id: "node-online", "aria-label": "online state"},
                   h("option", {value: ""}, "all"), h("option", {value: "true"}, "online"),
                   h("option", {value: "false"}, "offline"),
                   h("option", {value: "pending"}, "awaiting approval"));
  const create = h("a", {href: "#/nodes/new", class: "button write", id: "node-new",
                         role: "button"}, "New node");
  const tbody = h("tbody");
  const pager = h("div", {class: "pager"});
  const error = h("p", {class: "error", role: "alert"});
  if (!session.admin) {
    create.setAttribute("aria-disabled", "true");
    create.removeAttribute("href");
    create.classList.add("disabled");
  }
  replace(main,
    h("div", {class: "toolbar"}, h("h1", {}, "Nodes"), search, online, create),
    error,
    h("table", {id: "nodes-table", class: "grid"},
      h("thead", {}, h("tr", {},
        ["Id", "Name", "State", "Address", "Version", "Generation (applied / desired)",
         "Parent", "Labels", "Last seen"].map((t) => h("th", {}, t)))),
      tbody),
    pager);

  let seq = 0;
  async function load() {
    const my = ++seq;
    const q = new URLSearchParams({page, size: PAGE_SIZE});
    if (search.value) q.set("name", search.value);
    if (online.value === "pending") q.set("pending", "true");
    else if (online.value) q.set("online", online.value);
    let body, names;
    try {
      body = await get("/api/cascade/clients?" + q);
      names = await namesOf(body.data.filter((n) => n.parent_id).map((n) => n.parent_id), body.data);
    } catch (e) {
      error.textContent = e.message;
      return;
    }
    if (my !== seq) return;
    error.textContent = "";
    replace(tbody, body.data.map((n) => h("tr", {"data-id": n.id, "data-name": n.name,
                                                 "data-state": stateOf(n)},
      h("td", {}, String(n.id)),
      h("td", {}, h("a", {href: "#/nodes/" + n.id, class: "node-name"}, n.name)),
      h("td", {}, badge(stateOf(n))),
      h("td", {}, n.ip),
      h("td", {}, n.version),
      h("td", {}, gen(n)),
      h("td", {}, n.parent_id ? h("a", {href: "#/nodes/" + n.parent_id},
                                  names.get(n.parent_id) || "#" + n.parent_id) : ""),
      h("td", {}, labels(n.labels)),
      h("td", {}, fmtTime(n.last_seen)))));
    if (body.data.length === 0)
      tbody.appendChild(h("tr", {}, h("td", {colspan: 9, class: "muted"}, "No nodes match.")));
    const pages = Math.max(1, Math.ceil(body.total / PAGE_SIZE));
    replace(pager,
      h("button", {type: "button", disabled: page <= 1, onclick: () => { page--; load(); }}, "‹ Prev"),
      " page " + page + " of " + pages + " (" + body.total + " nodes) ",
      h("button", {type: "button", disabled: page >= pages, onclick: () => { page++; load(); }}, "Next ›"));
  }
  search.addEventListener("input", () => { page = 1; load(); });
  online.addEventListener("change", () => { page = 1; load(); });
  load();
  return {refresh: load};
}

const nameCache = new Map();  // id -> {name, at}
// namesOf maps |ids| to node names, for parents shown by name: from |known|
// (nodes at hand), else asked one by one and kept for 10 s, so a page of a
// large registry does not fetch the whole list every refresh.
async function namesOf(ids, known) {
  const now = Date.now();
  for (const n of known || []) nameCache.set(n.id, {name: n.name, at: now});
  await Promise.all([...new Set(ids)].filter((id) => {
    const c = nameCache.get(id);
    return !c || now - c.at > 10000;
  }).map(async (id) => {
    const r = await call("GET", "/api/cascade/clients/" + id);
    if (r.status === 200 && r.body) nameCache.set(id, {name: r.body.data.name, at: now});
  }));
  return new Map(ids.map((id) => [id, nameCache.has(id) ? nameCache.get(id).name : null]));
}

function labels(obj) {
  return Object.entries(obj || {}).map(([k, v]) => h("span", {class: "label"}, k + "=" + v));
}

// ---- a node's page --------------------------------------------------------------------------

function detail(main, id) {
  const info = h("div", {id: "node-info"});
  const links = h("div", {id: "node-links"});
  const streams = h("div", {id: "node-streams"});
  const actions = h("div", {class: "actions"});
  const status = h("div", {id: "node-status"});
  const relays = h("div", {id: "node-relays"});
  replace(main, h("p", {}, h("a", {href: "#/nodes"}, "‹ Nodes")), info, actions,
          h("h2", {}, "Status, as the node reports it"), status,
          h("h2", {}, "Links"), links, h("h2", {}, "Pushes and pulls"), relays,
          h("h2", {}, "Streams"), streams);
  let confirming = false;
  let last = null;   // {at, bytes per link} for rates

  function drawActions(n) {
    const edit = h("a", {href: "#/nodes/" + n.id + "/edit", class: "button write", id: "node-edit",
                         role: "button"}, "Edit");
    const del = h("button", {type: "button", id: "node-delete", class: "danger write",
                             disabled: !session.admin}, "Delete");
    if (!session.admin) {
      edit.removeAttribute("href");
      edit.setAttribute("aria-disabled", "true");
      edit.classList.add("disabled");
    }
    del.addEventListener("click", () => { confirming = true; drawActions(n); });
    if (!confirming) return replace(actions, edit, " ", del);
    const msg = h("span", {class: "error"});
    replace(actions, h("span", {}, "Delete node “", n.name, "”? Its agent can no longer connect. "),
      h("button", {type: "button", id: "node-delete-confirm", class: "danger",
                   onclick: async () => {
                     const r = await call("DELETE", "/api/cascade/clients/" + n.id);
                     if (r.status === 200) location.hash = "#/nodes";
                     else msg.textContent = r.message;
                   }}, "Delete"), " ",
      h("button", {type: "button", onclick: () => { confirming = false; drawActions(n); }}, "Cancel"),
      " ", msg);
  }

  async function load() {
    let n, names;
    try {
      n = (await get("/api/cascade/clients/" + encodeURIComponent(id))).data;
      names = await namesOf(n.parent_id ? [n.parent_id] : [], [n]);
    } catch (e) {
      replace(info, h("p", {class: "error"}, e.message));
      return;
    }
    const rows = [
      ["State", badge(stateOf(n))], ["Address", n.ip], ["Version", n.version],
      ["QUIC", n.quic], ["Generation (applied / desired)", gen(n)],
      ["Parent", n.parent_id ? h("a", {href: "#/nodes/" + n.parent_id},
                                 names.get(n.parent_id) || "#" + n.parent_id) : "none"],
      ["Labels", labels(n.labels)], ["Last seen", fmtTime(n.last_seen)],
      ["Created", fmtTime(n.created_time)], ["Updated", fmtTime(n.updated_time)],
      ["Autopush", n.autopush === null ? "agent's file" : String(n.autopush)],
      ["Relay API", n.relayapi === null ? "agent's file" : JSON.stringify(n.relayapi)],
      ["On-demand pull", n.onsub === null ? "agent's file" : JSON.stringify(n.onsub.pull)],
    ];
    replace(info, h("h1", {}, "Node ", h("span", {id: "node-title"}, n.name), " ",
                    h("span", {class: "muted"}, "#" + n.id)),
      h("table", {class: "kv"}, rows.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v)))));
    if (!actions.firstChild || !confirming) drawActions(n);
    if (!n.online) {
      for (const el of [status, links, relays, streams])
        replace(el, h("p", {class: "muted"}, "The node is offline."));
      return;
    }
    const [st, sl] = await Promise.all([
      call("GET", relayPath(n.id, "/api/cascade/status")),
      call("GET", relayPath(n.id, "/api/stream/list"))]);
    if (st.status === 200 && st.body && st.body.data) {
      const d = st.body.data;
      const c = d.controller || {}, g = d.config_generation || {}, r = d.rules || {};
      replace(status, h("table", {class: "kv"}, [
        ["Control link", (c.state || "") + (c.url ? " to " + c.url : "") +
                         (c.connected_since ? " since " + fmtTime(c.connected_since) : "")],
        ["Last control error", c.last_error || "none"],
        ["Configuration applied", String(g.applied) + (g.cached ? " (from its saved state)" : "")],
        ["Certificate valid until", d.certificate ? fmtTime(d.certificate.not_after) : "none"],
        ["Parent", d.parent ? d.parent.name + (d.parent.quic ? " at " + d.parent.quic : "") : "none"],
        ["Children", (d.children || []).map((x) => x.name).join(", ") || "none"],
        ["Autopush in effect", String(!!r.autopush)],
        ["Relay API in effect", "allow " + JSON.stringify((r.relayapi || {}).allow || []) +
                                ", deny " + JSON.stringify((r.relayapi || {}).deny || [])],
        ["Pull rules in effect", JSON.stringify((r.onsub || {}).pull || {})],
      ].map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v)))));
      const cas = d.cascade || {pushes: [], pulls: []};
      const rows = cas.pushes.map((p) => ["push", p.path, "parent", p.state, "", p.last_error])
        .concat(cas.pulls.map((p) => ["pull", p.path, p.source, p.state, String(p.failures), p.last_error]));
      replace(relays, rows.length === 0 ? h("p", {class: "muted"}, "None.") :
        h("table", {class: "grid", id: "relays-table"},
          h("thead", {}, h("tr", {}, ["Kind", "Path", "To / from", "State", "Failures", "Last error"]
                                       .map((t) => h("th", {}, t)))),
          h("tbody", {}, rows.map((row) => h("tr", {}, row.map((x) => h("td", {}, x || "")))))));
      const now = performance.now();
      const ls = st.body.data.links || [];
      const bytes = new Map(ls.map((l) => [l.role + ":" + l.peer_id, l.bytes_in + l.bytes_out]));
      const rate = (l) => {
        if (!last) return "";
        const b0 = last.bytes.get(l.role + ":" + l.peer_id);
        if (b0 === undefined) return "";
        return fmtRate(((l.bytes_in + l.bytes_out - b0) * 8) / ((now - last.at) / 1000));
      };
      replace(links, ls.length === 0 ? h("p", {class: "muted"}, "No links.") :
        h("table", {class: "grid", id: "links-table"},
          h("thead", {}, h("tr", {}, ["Peer", "Role", "Address", "State", "RTT", "Throughput",
                                      "Since"].map((t) => h("th", {}, t)))),
          h("tbody", {}, ls.map((l) => h("tr", {"data-state": l.state},
            h("td", {}, l.peer_id ? h("a", {href: "#/nodes/" + l.peer_id}, l.peer_name || "#" + l.peer_id)
                                  : l.peer_name || ""),
            h("td", {}, l.role), h("td", {}, l.address || ""), h("td", {}, l.state),
            h("td", {}, l.rtt_ms !== null && l.rtt_ms !== undefined ? l.rtt_ms + " ms" : ""),
            h("td", {}, rate(l)), h("td", {}, fmtTime(l.since)))))));
      last = {at: now, bytes};
    } else {
      for (const el of [status, links, relays])
        replace(el, h("p", {class: "error"}, "Status through the relay: " + st.message));
    }
    if (sl.status === 200 && sl.body) {
      const data = sl.body.data || [];
      replace(streams, data.length === 0 ? h("p", {class: "muted"}, "No streams.") :
        h("table", {class: "grid", id: "node-streams-table"},
          h("thead", {}, h("tr", {}, ["Path", "State", "Subscribers", "Video", "Audio", ""]
                                       .map((t) => h("th", {}, t)))),
          h("tbody", {}, data.map((s) => h("tr", {},
            h("td", {}, s.path), h("td", {}, s.state), h("td", {}, String(s.subscribers)),
            h("td", {}, s.videoTrack ? [s.videoTrack.codec, s.videoTrack.width + "×" +
                                        s.videoTrack.height].join(" ") : ""),
            h("td", {}, s.audioTrack ? s.audioTrack.codec : ""),
            h("td", {}, h("a", {href: "#/player?node=" + n.id + "&path=" + encodeURIComponent(s.path)},
                          "Play")))))));
    } else {
      replace(streams, h("p", {class: "error"}, "Streams through the relay: " + sl.message));
    }
  }
  load();
  return {refresh: load};
}

// ---- create and edit ---------------------------------------------------------------------

function lines(text) {
  return text.split("\n").map((l) => l.trim()).filter(Boolean);
}

function field(name, label, input, hint) {
  input.id = "f-" + name;
  input.name = name;
  return h("div", {class: "field", "data-field": name},
    h("label", {for: input.id}, label), input,
    hint ? h("small", {class: "muted"}, hint) : null,
    h("span", {class: "field-error", id: "err-" + name, role: "alert"}));
}

async function form(main, id) {
  const editing = id !== null;
  let n = null;
  let nodes;
  try {
    nodes = await allNodes();
    if (editing) n = (await get("/api/cascade/clients/" + encodeURIComponent(id))).data;
  } catch (e) {
    replace(main, h("p", {class: "error"}, e.message));
    return;
  }
  const name = h("input", {type: "text", required: true, value: n ? n.name : ""});
  const secret = h("input", {type: "password", autocomplete: "new-password",
                             placeholder: editing ? "unchanged" : ""});
  const parent = h("select", {}, h("option", {value: ""}, "none (a root)"),
    nodes.filter((x) => !n || x.id !== n.id).map((x) =>
      h("option", {value: x.id, selected: n && n.parent_id === x.id}, x.name + " (#" + x.id + ")")));
  const lab = h("textarea", {rows: 3, placeholder: "region=eu-west"});
  lab.value = Object.entries((n && n.labels) || {}).map(([k, v]) => k + "=" + v).join("\n");
  const fs = [
    field("name", "Name", name),
    field("secret", editing ? "New secret" : "Secret", secret,
          editing ? "Leave empty to keep it. A new secret ends the node's session at once." :
                    "8 to 1024 bytes; the node's agent proves it (node.secret)."),
    field("parent_id", "Parent", parent),
    field("labels", "Labels", lab, "key=value, one a line"),
  ];
  let autopush, allow, deny, useRelay, pull, pending;
  if (editing) {
    autopush = h("select", {}, h("option", {value: "null"}, "the agent's file decides"),
                 h("option", {value: "true", selected: n.autopush === true}, "on"),
                 h("option", {value: "false", selected: n.autopush === false}, "off"));
    useRelay = h("input", {type: "checkbox", checked: n.relayapi !== null});
    allow = h("textarea", {rows: 3, placeholder: "/api/"});
    deny = h("textarea", {rows: 2, placeholder: "/api/admin/"});
    allow.value = ((n.relayapi && n.relayapi.allow) || []).join("\n");
    deny.value = ((n.relayapi && n.relayapi.deny) || []).join("\n");
    pull = h("textarea", {rows: 3, placeholder: "live/.* m7s://$0"});
    pull.value = n.onsub ? Object.entries(n.onsub.pull || {}).map(([p, t]) => p + " " + t).join("\n") : "";
    pending = h("input", {type: "checkbox", checked: n.pending});
    fs.push(h("h2", {}, "Rules"),
      field("autopush", "Autopush", autopush, "push every stream published here to the parent"),
      field("relayapi_set", "Relay API rules set here", useRelay,
            "unchecked: the agent's own cascadeclient.relayapi decides"),
      field("relayapi", "Relay API allow (prefixes, one a line)", allow,
            "empty: the agent's file decides this list"),
      field("relayapi_deny", "Relay API deny", deny, "empty: the agent's file decides this list"),
      field("onsub", "On-demand pull (pattern target, one a line; empty: the agent's file)", pull),
      field("pending", "Awaiting approval", pending, "uncheck to approve a self-registered node"));
  }
  const formError = h("p", {class: "error", id: "form-error", role: "alert"});
  const submit = h("button", {type: "submit", id: "node-save", class: "write"},
                   editing ? "Save" : "Create");
  const fieldset = h("fieldset", {disabled: !session.admin}, fs,
                     h("div", {class: "actions"}, submit, " ",
                       h("a", {href: editing ? "#/nodes/" + id : "#/nodes"}, "Cancel")));
  const f = h("form", {id: "node-form", autocomplete: "off", novalidate: true}, fieldset, formError);
  replace(main, h("h1", {}, editing ? ["Edit node ", h("span", {}, n.name)] : "New node"),
          session.admin ? null : h("p", {class: "muted"}, "Read-only: a viewer token cannot change nodes."),
          f);

  f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    for (const e of f.querySelectorAll(".field-error")) e.textContent = "";
    formError.textContent = "";
    const body = {};
    const bad = (fieldName, msg) => { document.getElementById("err-" + fieldName).textContent = msg; };
    if (!editing || name.value !== n.name) body.name = name.value;
    if (secret.value || !editing) body.secret = secret.value;
    const pid = parent.value ? Number(parent.value) : null;
    if (!editing || pid !== n.parent_id) body.parent_id = pid;
    const labels = {};
    for (const l of lines(lab.value)) {
      const i = l.indexOf("=");
      if (i <= 0) return bad("labels", "labels: write key=value, one a line");
      labels[l.slice(0, i).trim()] = l.slice(i + 1).trim();
    }
    if (!editing || JSON.stringify(labels) !== JSON.stringify(n.labels)) body.labels = labels;
    if (editing) {
      // Rules are sent only when changed: any rule in a PUT raises the
      // node's generation and reconfigures its agent.
      const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
      const ap = JSON.parse(autopush.value);
      if (ap !== n.autopush) body.autopush = ap;
      const list = (t) => (lines(t.value).length ? lines(t.value) : null);
      const ra = useRelay.checked ? {allow: list(allow), deny: list(deny)} : null;
      const was = n.relayapi ? {allow: n.relayapi.allow, deny: n.relayapi.deny} : null;
      if (!same(ra, was)) body.relayapi = ra;
      let os = null;
      const rules = lines(pull.value);
      if (rules.length) {
        const p = {};
        for (const r of rules) {
          const m = /^(\S+)\s+(\S+)$/.exec(r);
          if (!m) return bad("onsub", "onsub: write a pattern and a target, one pair a line");
          p[m[1]] = m[2];
        }
        os = {pull: p};
      }
      if (!same(os, n.onsub)) body.onsub = os;
      if (pending.checked !== n.pending) body.pending = pending.checked;
      if (Object.keys(body).length === 0) {
        location.hash = "#/nodes/" + n.id;  // nothing changed
        return;
      }
    }
    submit.disabled = true;
    const r = editing ? await call("PUT", "/api/cascade/clients/" + n.id, body)
                      : await call("POST", "/api/cascade/clients", body);
    submit.disabled = false;
    if (r.status === 200 || r.status === 201) {
      location.hash = "#/nodes/" + r.body.data.id;
      return;
    }
    const slot = fieldsOf(r.message).map((x) => document.getElementById("err-" + x))
      .find((x) => x);
    if (slot) slot.textContent = r.message;
    else formError.textContent = r.message;
  });
  return {};
}
