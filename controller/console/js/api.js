// The REST API (docs/api.md) with the token of this tab. The token lives in
// sessionStorage (gone when the tab closes) and travels only in the
// Authorization header, never in a URL.

const TOKEN_KEY = "cascade.token";
const ROLE_KEY = "cascade.role";

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  get role() { return sessionStorage.getItem(ROLE_KEY) || "viewer"; },
  get admin() { return this.role === "admin"; },
  set(token, role) {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(ROLE_KEY, role);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(ROLE_KEY);
  },
};

let onUnauthorized = () => {};
// whenUnauthorized sets what happens when the API refuses the token (401).
export function whenUnauthorized(fn) { onUnauthorized = fn; }

export function authHeaders(token) {
  return {Authorization: "Bearer " + (token || session.token || "")};
}

// call sends a request; resolves to {status, body, message} and never
// throws for an HTTP error (message is the envelope's, or the reason).
export async function call(method, path, body, token) {
  const init = {method, headers: authHeaders(token), cache: "no-store"};
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    return {status: 0, body: null, message: "the controller cannot be reached (" + e.message + ")"};
  }
  let data = null;
  const text = await resp.text();
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  let message = data && typeof data.message === "string" ? data.message : text.trim();
  if (!message) message = resp.statusText || String(resp.status);
  if (resp.status === 401 && token === undefined) onUnauthorized(message);
  return {status: resp.status, body: data, message};
}

// get returns the envelope's data, or throws an Error with the API's message.
export async function get(path) {
  const r = await call("GET", path);
  if (r.status !== 200 || !r.body) throw new ApiError(r);
  return r.body;
}

export class ApiError extends Error {
  constructor(r) {
    super(r.message);
    this.status = r.status;
  }
}

// probeRole checks |token|: "admin", "viewer", or throws ApiError (401...).
export async function probeRole(token) {
  const r = await call("GET", "/api/cascade/clients?size=1", undefined, token);
  if (r.status !== 200) throw new ApiError(r);
  const t = await call("GET", "/api/auth/tokens", undefined, token);
  if (t.status === 200) return "admin";
  if (t.status === 403) return "viewer";
  throw new ApiError(t);
}

// allNodes fetches every node (the list is paged by 1000).
export async function allNodes() {
  const out = [];
  for (let page = 1; page <= 100; page++) {
    const b = await get("/api/cascade/clients?size=1000&page=" + page);
    out.push(...b.data);
    if (out.length >= b.total || b.data.length === 0) break;
  }
  return out;
}

// relayPath is a node's local API path through the controller's relay.
export function relayPath(id, path) {
  return "/api/relay/" + encodeURIComponent(id) + path;
}

// fieldsOf names the form fields an API validation message may be about,
// most precise first: "relayapi.deny: rule ..." -> ["relayapi_deny",
// "relayapi"]; "name already exists" -> ["name"].
export function fieldsOf(message) {
  const m = /^([a-z_]+)(?:\.([a-z_]+))?(?::| )/.exec(message || "");
  if (!m) return [];
  return m[2] ? [m[1] + "_" + m[2], m[1]] : [m[1]];
}
