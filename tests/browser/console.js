// Drives the web console in Debian's chromium (headless, playwright-core)
// for tests/integration/test_console.py, one step at a time: each line on
// stdin is a JSON command {id, op, page, ...}; each answer a JSON line
// {id, ok, value} or {id, ok: false, error}. The Python test starts
// processes and checks the API between steps; this script only works the
// browser. Every page records Content-Security-Policy violations, page
// errors and dialogs, which the test reads with op "report".
// Usage: node console.js SCREENSHOT_DIR
"use strict";
const { chromium } = require("playwright-core");
const readline = require("readline");
const path = require("path");

const shots = process.argv[2];
const pages = {};
let browser = null;

const RECORD = () => {
  window.__csp = [];
  document.addEventListener("securitypolicyviolation", (e) => {
    window.__csp.push(e.violatedDirective + " " + (e.blockedURI || "") + " " + (e.sourceFile || "") +
                      ":" + e.lineNumber);
  });
};

async function open(cmd) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await context.addInitScript(RECORD);
  const page = await context.newPage();
  const rec = { page, context, errors: [], dialogs: [], csp: [], requests: [] };
  page.on("pageerror", (e) => rec.errors.push(String(e)));
  page.on("console", (m) => {
    // an HTTP error status the page expects (401 on a wrong token, 404 of
    // a missing feed, 400 of a validation) is logged as "Failed to load
    // resource"; the page's own errors are what matters here
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource"))
      rec.errors.push("console: " + m.text());
  });
  page.on("dialog", (d) => {
    rec.dialogs.push(d.type() + ": " + d.message());
    d.dismiss().catch(() => {});
  });
  page.on("request", (r) => rec.requests.push(r.url()));
  pages[cmd.page] = rec;
  await page.goto(cmd.url);
  return page.url();
}

// expression makes a function of |expr| (sent to the page as source and
// called there through the DevTools protocol, which the page's CSP allows).
function expression(expr) {
  return new Function("arg", "return (" + expr + ");");
}

const ops = {
  open,
  async goto(cmd, p) { await p.goto(cmd.url); return p.url(); },
  async hash(cmd, p) {
    await p.evaluate((h) => { location.hash = h; }, cmd.hash);
    return p.url();
  },
  async fill(cmd, p) { await p.fill(cmd.selector, cmd.value, { timeout: cmd.timeout || 10000 }); },
  async select(cmd, p) {
    return p.selectOption(cmd.selector, cmd.value, { timeout: cmd.timeout || 10000 });
  },
  async check(cmd, p) { await p.setChecked(cmd.selector, cmd.value, { timeout: cmd.timeout || 10000 }); },
  async click(cmd, p) { await p.click(cmd.selector, { timeout: cmd.timeout || 10000 }); },
  // wait: a JS expression (with `arg`) until it is truthy; answers its
  // value. Polled from here: playwright's in-page polling evaluates strings
  // with eval(), which the console's CSP forbids.
  async wait(cmd, p) {
    const fn = expression(cmd.expr);
    const deadline = Date.now() + (cmd.timeout || 15000);
    let last = null;
    for (;;) {
      try {
        const v = await p.evaluate(fn, cmd.arg === undefined ? null : cmd.arg);
        if (v) return v;
        last = v;
      } catch (e) {
        last = String(e).split("\n")[0];  // navigating: try again
      }
      if (Date.now() > deadline)
        throw new Error("timed out waiting for " + cmd.expr + " (last: " + JSON.stringify(last) + ")");
      await new Promise((r) => setTimeout(r, 100));
    }
  },
  async eval(cmd, p) {
    return p.evaluate(expression(cmd.expr), cmd.arg === undefined ? null : cmd.arg);
  },
  async shot(cmd, p) {
    const file = path.join(shots, cmd.name + ".png");
    await p.screenshot({ path: file, fullPage: true });
    return file;
  },
  async report(cmd, p) {
    const rec = pages[cmd.page];
    let csp = [];
    try { csp = await p.evaluate(() => window.__csp || []); } catch (e) { /* navigating */ }
    return { errors: rec.errors, dialogs: rec.dialogs, csp: rec.csp.concat(csp), url: p.url(),
             requests: rec.requests, feed: rec.feed || [] };
  },
  // feed: /api/feed answers |body| as Server-Sent Events (the controller
  // may not have the route); records whether each request had a token
  async feed(cmd) {
    const rec = pages[cmd.page];
    rec.feed = [];
    await rec.context.route("**/api/feed", (route) => {
      const req = route.request();
      rec.feed.push({ auth: (req.headers()["authorization"] || "").startsWith("Bearer "),
                      url: req.url() });
      route.fulfill({ status: 200, body: cmd.body,
                      headers: { "Content-Type": "text/event-stream", "Cache-Control": "no-store" } });
    });
  },
  async close(cmd) {
    await pages[cmd.page].context.close();
    delete pages[cmd.page];
  },
};

async function main() {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
  });
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (!line.trim()) continue;
    const cmd = JSON.parse(line);
    const out = { id: cmd.id, ok: true };
    try {
      const fn = ops[cmd.op];
      if (!fn) throw new Error("unknown op " + cmd.op);
      const rec = pages[cmd.page];
      if (cmd.op !== "open" && !rec) throw new Error("no page " + cmd.page);
      out.value = await fn(cmd, rec ? rec.page : null);
    } catch (e) {
      out.ok = false;
      out.error = String(e).split("\n").slice(0, 6).join("\n");
    }
    if (out.value === undefined) out.value = null;
    process.stdout.write(JSON.stringify(out) + "\n");
  }
  await browser.close();
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
