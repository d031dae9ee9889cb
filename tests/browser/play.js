// Plays HTTP-FLV URLs in Debian's chromium (headless, through
// playwright-core) with mpegts.js (play.html) and reports, one JSON line
// per URL, whether the media element's currentTime passed MIN_TIME within
// DEADLINE_MS. Usage: node play.js PAGE_URL [--screenshot DIR] FLV_URL...
// The players run at once, each in its own page.
"use strict";
const { chromium } = require("playwright-core");

const MIN_TIME = 1.0;
const DEADLINE_MS = 20000;

async function play(browser, page_url, url, shots, i) {
  const page = await browser.newPage();
  const t0 = Date.now();
  const r = { url: url, playing: false, currentTime: 0 };
  try {
    await page.goto(page_url + "?url=" + encodeURIComponent(url));
    await page.waitForFunction(
      (min) => document.getElementById("v").currentTime > min, MIN_TIME,
      { timeout: DEADLINE_MS, polling: 100 });
    r.playing = true;
  } catch (e) {
    r.error = String(e).split("\n")[0];
  }
  r.seconds = (Date.now() - t0) / 1000;
  const st = await page.evaluate(() => {
    const v = document.getElementById("v");
    return { currentTime: v.currentTime, readyState: v.readyState,
             errors: window.playerErrors, mediaInfo: window.mediaInfo || null };
  });
  Object.assign(r, st);
  if (shots) await page.screenshot({ path: shots + "/play-" + i + ".png" });
  await page.close();
  return r;
}

async function main() {
  const args = process.argv.slice(2);
  const page_url = args.shift();
  let shots = null;
  if (args[0] === "--screenshot") {
    args.shift();
    shots = args.shift();
  }
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
  });
  try {
    const results = await Promise.all(args.map((u, i) => play(browser, page_url, u, shots, i)));
    for (const r of results) console.log(JSON.stringify(r));
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
