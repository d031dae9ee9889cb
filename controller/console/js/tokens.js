// API tokens (admin only): list, create (the value is shown once), delete.

import {call, get, session, fieldsOf} from "./api.js";
import {h, replace, fmtTime} from "./dom.js";

export function render(main) {
  if (!session.admin) {
    replace(main, h("h1", {}, "API tokens"),
      h("p", {class: "muted", id: "tokens-denied"}, "Managing tokens needs an admin token; this one is a viewer's."));
    return {};
  }
  const name = h("input", {id: "f-token-name", type: "text", required: true, placeholder: "grafana"});
  const role = h("select", {id: "f-token-role"}, h("option", {value: "viewer"}, "viewer"),
                 h("option", {value: "admin"}, "admin"));
  const errName = h("span", {class: "field-error", id: "err-token-name", role: "alert"});
  const errRole = h("span", {class: "field-error", id: "err-token-role", role: "alert"});
  const formError = h("p", {class: "error", role: "alert"});
  const created = h("div", {id: "token-created"});
  const f = h("form", {id: "token-form", class: "toolbar", autocomplete: "off", novalidate: true},
    h("label", {for: "f-token-name"}, "Name"), name, errName,
    h("label", {for: "f-token-role"}, "Role"), role, errRole,
    h("button", {type: "submit", id: "token-create", class: "write"}, "Create token"));
  const tbody = h("tbody");
  replace(main, h("h1", {}, "API tokens"), f, formError, created,
    h("table", {class: "grid", id: "tokens-table"},
      h("thead", {}, h("tr", {}, ["Id", "Name", "Role", "Created", "Last used", ""].map((t) => h("th", {}, t)))),
      tbody));

  async function load() {
    let body;
    try {
      body = await get("/api/auth/tokens");
    } catch (e) {
      formError.textContent = e.message;
      return;
    }
    replace(tbody, body.data.map((t) => {
      const msg = h("span", {class: "error"});
      return h("tr", {"data-id": t.id, "data-name": t.name},
        h("td", {}, String(t.id)), h("td", {}, t.name), h("td", {}, t.role),
        h("td", {}, fmtTime(t.created_time)), h("td", {}, fmtTime(t.last_used)),
        h("td", {}, h("button", {type: "button", class: "danger write token-delete",
                                 onclick: async () => {
                                   const r = await call("DELETE", "/api/auth/tokens/" + t.id);
                                   if (r.status === 200) load(); else msg.textContent = r.message;
                                 }}, "Delete"), " ", msg));
    }));
    if (body.data.length === 0)
      tbody.appendChild(h("tr", {}, h("td", {colspan: 6, class: "muted"}, "No stored tokens.")));
  }

  f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    errName.textContent = errRole.textContent = formError.textContent = "";
    const r = await call("POST", "/api/auth/tokens", {name: name.value, role: role.value});
    if (r.status !== 201) {
      const fld = fieldsOf(r.message)[0];
      (fld === "name" ? errName : fld === "role" ? errRole : formError).textContent = r.message;
      return;
    }
    const t = r.body.data;
    name.value = "";
    const value = h("input", {type: "text", readonly: true, id: "token-value", value: t.token, size: 56});
    replace(created, h("div", {class: "once", role: "dialog", "aria-label": "new token"},
      h("p", {}, "Token “", t.name, "” (", t.role, ") was created. Copy its value now: it is shown only this once."),
      value, " ",
      h("button", {type: "button", onclick: async () => {
        value.select();
        try { await navigator.clipboard.writeText(t.token); } catch (e) { /* selected for copying */ }
      }}, "Copy"), " ",
      h("button", {type: "button", id: "token-dismiss", onclick: () => replace(created)}, "Done")));
    load();
  });
  load();
  return {refresh: load};
}
