// Live updates: GET /api/feed (Server-Sent Events read with fetch(), so the
// token stays in the Authorization header) when the controller has it;
// otherwise, or while the feed is down, the pages are refreshed every 2 s.

import {authHeaders} from "./api.js";

const POLL_MS = 2000;
// With the feed, pages still reload this often: what nodes report through
// the relay (links, throughput, pushes) is not in the feed.
const TICK_MS = 5000;

// parse splits SSE text into events; returns the unparsed rest.
function parse(buf, emit) {
  let at;
  while ((at = buf.search(/\r?\n\r?\n/)) >= 0) {
    const block = buf.slice(0, at);
    buf = buf.slice(at + buf.slice(at).match(/^\r?\n\r?\n/)[0].length);
    let kind = "message", data = "", id = null;
    for (const line of block.split(/\r?\n/)) {
      if (line === "" || line.startsWith(":")) continue;  // keepalive comments
      const c = line.indexOf(":");
      const field = c < 0 ? line : line.slice(0, c);
      const value = c < 0 ? "" : line.slice(c + 1).replace(/^ /, "");
      if (field === "event") kind = value;
      else if (field === "data") data += (data ? "\n" : "") + value;
      else if (field === "id") id = value;
    }
    if (data === "" && kind === "message") continue;
    let obj = null;
    try { obj = data ? JSON.parse(data) : null; } catch (e) { obj = null; }
    emit(kind, obj, id);
  }
  return buf;
}

// Live calls onEvent(kind, data) for each feed event and "poll" each
// polling period; onMode(mode) says "feed" or "polling".
export class Live {
  constructor(onEvent, onMode) {
    this.onEvent = onEvent;
    this.onMode = onMode || (() => {});
    this.stopped = false;
    this.timer = null;
    this.polling = null;
    this.abort = null;
    this.lastId = null;
    this.backoff = 1000;
  }

  start() {
    this.connect();
  }

  stop() {
    this.stopped = true;
    if (this.abort) this.abort.abort();
    clearInterval(this.timer);
  }

  poll(on) {
    if (on === this.polling) return;
    this.polling = on;
    clearInterval(this.timer);
    if (on) this.onMode("polling");
    this.timer = setInterval(() => this.onEvent(on ? "poll" : "tick", null), on ? POLL_MS : TICK_MS);
  }

  async connect() {
    if (this.stopped) return;
    this.abort = new AbortController();
    const headers = Object.assign({Accept: "text/event-stream"}, authHeaders());
    if (this.lastId !== null) headers["Last-Event-ID"] = this.lastId;
    let resp;
    try {
      resp = await fetch("/api/feed", {headers, cache: "no-store", signal: this.abort.signal});
    } catch (e) {
      return this.retry();
    }
    const ctype = resp.headers.get("Content-Type") || "";
    if (resp.status === 404 || resp.status === 405) {
      // No feed on this controller: polling for good.
      this.poll(true);
      return;
    }
    if (!resp.ok || !ctype.startsWith("text/event-stream") || !resp.body) return this.retry();
    this.poll(false);
    this.onMode("feed");
    this.backoff = 1000;
    // Whatever happened while not listening: reload once.
    this.onEvent("reset", null);
    const reader = resp.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    try {
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buf = parse(buf + dec.decode(value, {stream: true}), (kind, data, id) => {
          if (id !== null) this.lastId = id;
          this.onEvent(kind, data);
        });
      }
    } catch (e) {
      /* aborted or cut: retried below */
    }
    this.retry();
  }

  retry() {
    if (this.stopped) return;
    this.poll(true);
    setTimeout(() => this.connect(), this.backoff);
    this.backoff = Math.min(this.backoff * 2, 30000);
  }
}
