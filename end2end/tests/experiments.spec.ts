import { expect } from "@playwright/test";
import { open, signIn, test } from "./helpers";

// A loop operator defines an A/B experiment in the browser: a bad field is named before anything is
// stored, a good form leads to the experiment's page, which says why there is no analysis yet (no
// events in its dates), and the experiment can be stopped there.

test("a leader defines an experiment in the browser, reads its page and stops it", async ({ page, request }) => {
  const stamp = String(Date.now());
  const key = `e2e-ab-${stamp}`;
  await signIn(page, "leader");
  await open(page, "/experiments");
  const form = page.locator("form").filter({ has: page.getByRole("button", { name: "Create experiment" }) });
  await form.getByLabel("Key").fill(key);
  await form.getByLabel("Name").fill(`Shorter drafts ${stamp}`);
  await form.getByLabel("Loop").fill("notes");
  await form.getByLabel("Control variant").fill("champion");
  await form.getByLabel("Treatment variant").fill("champion");
  await form.getByLabel("Starts on").fill("2046-01-05");
  await form.getByLabel("Ends on").fill("2046-01-19");
  await form.getByRole("button", { name: "Create experiment" }).click();
  await expect(form).toContainText("must differ from the control");
  expect((await request.get(`/api/v1/experiments/${key}`)).status()).toBe(404);

  await form.getByLabel("Treatment variant").fill("challenger");
  await form.getByRole("button", { name: "Create experiment" }).click();
  await expect(page).toHaveURL(new RegExp(`/experiments/${key}$`));
  await expect(page.getByRole("heading", { level: 1 })).toHaveText(`Shorter drafts ${stamp} — experiment`);
  await expect(page.locator("main")).toContainText("No analysis yet");
  await expect(page.locator("main")).toContainText("control champion · treatment challenger");

  await page.getByRole("button", { name: "Stop experiment" }).click();
  await expect(page.locator(".meta")).toContainText("stopped");
  const stored = await (await request.get("/api/v1/experiments")).json();
  const mine = stored.find((e: { key: string }) => e.key === key);
  expect(mine.stopped_at).toBeTruthy();
});
