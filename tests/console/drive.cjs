// Drives the console in headless Chromium for tests/console.rs: loads the page, checks that it
// lists the view and runs SQL, opens the view live, prints "READY <row count>", then waits for
// the row count on screen to change (the test inserts over pgwire meanwhile) and prints
// "UPDATED <row count>". Any failure prints "FAILED <why>" and exits non-zero. With an API key
// (a server under SCRAM), it first checks that the page says it is refused without one, then
// types the key into the page's field.
// usage: node drive.cjs <console url> <view name> [api key]
"use strict";
const path = require("path");
const { chromium } = require(path.join(process.env.OPENCLAW_PLAYWRIGHT_DIR, "playwright-core"));

const [url, view, key] = process.argv.slice(2);
const WAIT_MS = 30000;

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.OPENCLAW_CHROMIUM,
    // Without the background-networking flags Chromium keeps dialing out, which this closed
    // network refuses.
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(url);
    if (key) {
      await page.waitForFunction(() => document.getElementById("status").textContent.includes("28000"), null, { timeout: WAIT_MS });
      await page.fill("#api-key", key);
      await page.dispatchEvent("#api-key", "change");
    }
    const item = page.locator(`#views li[data-name="${view}"]`);
    await item.waitFor({ timeout: WAIT_MS });
    // Ad-hoc SQL through the page.
    await page.fill("#sql", `SELECT count(*) AS n FROM ${view}`);
    await page.click("#run");
    await page.locator("#result table td").first().waitFor({ timeout: WAIT_MS });
    // The view, live.
    await item.click();
    await page.waitForFunction(() => Number(document.getElementById("row-count").textContent) > 0, null, { timeout: WAIT_MS });
    const before = await page.textContent("#row-count");
    console.log(`READY ${before}`);
    await page.waitForFunction((b) => document.getElementById("row-count").textContent !== b, before, { timeout: WAIT_MS });
    console.log(`UPDATED ${await page.textContent("#row-count")}`);
    if (errors.length) throw new Error(`the page threw: ${errors.join("; ")}`);
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.log(`FAILED ${e.message.split("\n")[0]}`);
  process.exit(1);
});
