// The console's shell: sign-in, navigation (#/page/...), live refresh.

import {session, probeRole, whenUnauthorized} from "./api.js";
import {h, replace} from "./dom.js";
import {Live} from "./live.js";
import * as nodes from "./nodes.js";
import * as topology from "./topology.js";
import * as streams from "./streams.js";
import * as player from "./player.js";
import * as events from "./events.js";
import * as tokens from "./tokens.js";

const PAGES = {nodes, topology, streams, player, events, tokens};

const $ = (id) => document.getElementById(id);
let current = null;   // {name, view: {refresh, stop}}
let live = null;
let pending = null;

function showSignin(message) {
  $("nav").hidden = true;
  $("who").hidden = true;
  $("signin").hidden = false;
  replace($("main"));
  $("signin-error").textContent = message || "";
  $("signin-token").focus();
}

async function signin(ev) {
  ev.preventDefault();
  const token = $("signin-token").value.trim();
  const btn = $("signin-submit");
  btn.disabled = true;
  $("signin-error").textContent = "";
  try {
    const role = await probeRole(token);
    session.set(token, role);
    $("signin-token").value = "";
    enter();
  } catch (e) {
    let msg = e.message;
    if (e.status === 401) msg = "Wrong token: the controller refused it (" + e.message + ").";
    else if (e.status === 429) msg = "Too many failed sign-ins from this address: " + e.message;
    else if (e.status) msg = "Sign-in failed (" + e.status + "): " + e.message;
    $("signin-error").textContent = msg;
  } finally {
    btn.disabled = false;
  }
}

function signout(message) {
  session.clear();
  if (live) live.stop();
  live = null;
  if (current && current.view && current.view.stop) current.view.stop();
  current = null;
  showSignin(message);
}

// refresh asks the page shown to reload its data, at most every 300 ms.
function refresh(kind, data) {
  if (pending) return;
  pending = setTimeout(() => {
    pending = null;
    if (current && current.view && current.view.refresh) current.view.refresh(kind, data);
  }, 300);
}

function enter() {
  $("signin").hidden = true;
  $("nav").hidden = false;
  $("who").hidden = false;
  const badge = $("role-badge");
  badge.textContent = session.role;
  badge.className = "badge role-" + session.role;
  document.body.classList.toggle("viewer", !session.admin);
  if (!live) {
    const seen = new Set();
    let count = 0;
    live = new Live((kind, data) => {
      if (kind !== "poll" && kind !== "tick") {
        // what the feed brought, for people and tests to see
        seen.add(kind);
        $("live-state").dataset.events = String(++count);
        $("live-state").dataset.kinds = [...seen].sort().join(" ");
      }
      refresh(kind, data);
    }, (mode) => {
      $("live-state").textContent = mode === "feed" ? "live" : "polling every 2 s";
      $("live-state").dataset.mode = mode;
    });
    live.start();
  }
  route();
}

function route() {
  if (!session.token) return showSignin();
  const hash = location.hash.replace(/^#\/?/, "") || "nodes";
  const [pathPart, query] = hash.split("?");
  const parts = pathPart.split("/").filter(Boolean).map(decodeURIComponent);
  const name = PAGES[parts[0]] ? parts[0] : "nodes";
  if (current && current.view && current.view.stop) current.view.stop();
  for (const a of document.querySelectorAll("#nav a"))
    a.classList.toggle("active", a.dataset.page === name);
  const main = replace($("main"));
  main.dataset.page = name;
  const params = new URLSearchParams(query || "");
  const view = {};
  current = {name, view};
  Promise.resolve(PAGES[name].render(main, parts.slice(1), params))
    .then((v) => {
      if (current && current.view === view) Object.assign(view, v || {});
      else if (v && v.stop) v.stop();  // left before it was ready: a player must not go on
    })
    .catch((e) => replace(main, h("p", {class: "error"}, "This page failed: " + e.message)));
}

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", signin);
  $("signout").addEventListener("click", () => signout(""));
  whenUnauthorized((msg) => signout("The controller no longer accepts this token (" + msg + "). Sign in again."));
  window.addEventListener("hashchange", route);
  if (session.token) enter(); else showSignin();
});
