import { expect } from "@playwright/test";
import { hydrated, signIn, test } from "./helpers";

// The Content-Security-Policy in a real browser: the page's own scripts (the hydration loader, carrying
// the nonce, and the WebAssembly bundle) run, and an inline script without the nonce does not.
test("pages hydrate under their Content-Security-Policy, and a script without its nonce does not run", async ({
  page,
}) => {
  await signIn(page, "leader");
  const response = await page.goto("/");
  const policy = response?.headers()["content-security-policy"] ?? "";
  expect(policy).toMatch(/script-src 'self' 'nonce-[A-Za-z0-9_-]+' 'wasm-unsafe-eval'/);
  expect(policy).toContain("frame-ancestors 'none'");
  expect(response?.headers()["x-content-type-options"]).toBe("nosniff");
  await hydrated(page);

  // What an injection would try: an inline script, added after the page loaded, without the nonce.
  // The policy must block it, and the browser reports the violation; the fixture's violation check
  // is told to expect exactly this one.
  const blocked = page.waitForEvent("console", (message) => /content security policy/i.test(message.text()));
  await page.evaluate(() => {
    const script = document.createElement("script");
    script.textContent = "document.body.dataset.injected = 'ran';";
    document.body.appendChild(script);
  });
  await blocked;
  await expect(page.locator("body")).not.toHaveAttribute("data-injected", "ran");
  test.info().annotations.push({ type: "expected-csp-violation", description: "the injected script" });
});
