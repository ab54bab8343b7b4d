// The browser half of `cargo xtask bench-annotate`: an annotator answers items on the work page with the
// keyboard, and each answer's wait is measured inside the page, from the Enter key's keydown to the
// moment the next item is in the DOM (a MutationObserver on the item's `data-item`). Prints one JSON
// line: {"samples_ms": [...]}.
//
// Environment: BENCH_BASE (the server), BENCH_QUEUE, BENCH_EMAIL, BENCH_PASSWORD, BENCH_ANSWERS.
import { chromium } from "../end2end/node_modules/playwright/index.mjs";

const base = process.env.BENCH_BASE;
const answers = Number(process.env.BENCH_ANSWERS ?? 60);
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage();
await page.goto(`${base}/login?next=${encodeURIComponent(`/annotate/${process.env.BENCH_QUEUE}`)}`);
await page.getByLabel("E-mail address").fill(process.env.BENCH_EMAIL);
await page.getByLabel("Password").fill(process.env.BENCH_PASSWORD);
await page.getByRole("button", { name: "Sign in" }).click();
await page.waitForSelector("body[data-hydrated='true']", { timeout: 60_000 });
await page.waitForSelector("[data-testid=work-item]");
// The clock starts in the capture phase of the keydown, before the page's own handler sends the answer.
await page.evaluate(() => {
  window.__bench = { started: 0, waits: [] };
  document.addEventListener("keydown", (e) => { if (e.key === "Enter") window.__bench.started = performance.now(); }, true);
  new MutationObserver(() => {
    if (window.__bench.started) {
      window.__bench.waits.push(performance.now() - window.__bench.started);
      window.__bench.started = 0;
    }
  }).observe(document.body, { subtree: true, attributes: true, attributeFilter: ["data-item"] });
});
for (let n = 1; n <= answers; n++) {
  await page.keyboard.press("4");
  await page.keyboard.press("Enter");
  await page.waitForFunction((n) => window.__bench.waits.length >= n, n, { timeout: 30_000 });
}
const samples = await page.evaluate(() => window.__bench.waits);
console.log(JSON.stringify({ samples_ms: samples }));
await browser.close();
