import { expect, type APIRequestContext } from "@playwright/test";
import { open, signIn, test } from "./helpers";

// A leader reviews the season's thesis: a metric linked to a key result rose for a week and now falls
// (both with 95 % confidence), so the season dashboard raises a "review the thesis" item, which the
// leader resolves with a note in the browser. The plan and the metric are prepared through the API.

/** Fourteen daily points (1–14 March 2026) rising for a week, then falling, with narrow intervals. */
function reversal(): { at: string; value: number; ci_low: number; ci_high: number }[] {
  return Array.from({ length: 14 }, (_, d) => {
    const value = d < 7 ? 0.5 + 0.01 * d : 0.56 - 0.012 * (d - 7);
    const at = `2026-03-${String(d + 1).padStart(2, "0")}T12:00:00Z`;
    return { at, value, ci_low: value - 0.005, ci_high: value + 0.005 };
  });
}

async function post(request: APIRequestContext, path: string, data: unknown, status = 201) {
  const response = await request.post(path, { data });
  expect(response.status(), `${path}: ${await response.text()}`).toBe(status);
  return response.json();
}

test("a leader resolves a thesis signal raised by a metric that reversed its trend", async ({ page, request }) => {
  const stamp = String(Date.now());
  const metric = `e2e-quality-${stamp}`;
  await post(request, "/api/v1/metrics", { key: metric, name: `Agent quality ${stamp}`, kind: "eval-score" });
  await post(request, `/api/v1/metrics/${metric}/points`, { points: reversal() }, 200);
  const season = await post(request, "/api/v1/seasons", {
    name: `Thesis review ${stamp}`,
    thesis: "Agents that draft whole notes win the workflow.",
    problems: ["Notes take too long"],
    winning: "Half of all notes drafted by agents.",
    starts_on: "2041-01-01",
    ends_on: "2041-06-30",
    slope_target: 0.2,
  });
  const objective = await post(request, `/api/v1/seasons/${season.id}/objectives`, {
    quarter: "2041-Q1",
    title: "Agents draft notes clinicians keep",
    commitment: "committed",
  });
  await post(request, `/api/v1/objectives/${objective.id}/key-results`, {
    title: "Agent quality score",
    kind: "increase-to",
    start: 0.5,
    target: 0.8,
    metric,
  });

  await signIn(page, "leader");
  await open(page, `/seasons/${season.id}`);
  await page.getByRole("link", { name: "Dashboard" }).click();
  await expect(page).toHaveURL(new RegExp(`/seasons/${season.id}/dashboard$`));
  await expect(page.getByRole("heading", { level: 1 })).toHaveText(`Thesis review ${stamp} — dashboard`);
  const signals = page.locator("#signals");
  await expect(signals.getByRole("heading", { level: 2 })).toContainText("1 open");
  const item = signals.locator(".signal.open");
  await expect(item).toHaveCount(1);
  await expect(item).toContainText(metric);
  await expect(item).toContainText('feeding "Agent quality score"');
  await expect(item.locator("table")).toContainText("recent: 2026-03-08 → 2026-03-14");
  // The metric's chart marks the reversal, and hovering a point reads its value out.
  const panel = page.locator(`.linked-metric[data-metric="${metric}"]`);
  await expect(panel.locator(".badge").first()).toHaveText("trend reversed");
  await panel.locator("circle.point").last().hover();
  await expect(panel.locator(".readout")).toContainText(`Agent quality ${stamp} 2026-03-14`);

  // A note is required; the browser says so before anything is sent.
  await item.getByRole("button", { name: "Resolve" }).click();
  await expect(item).toContainText("is required");
  const note = "The March model swap explains the drop; the thesis stands and the swap is rolled back.";
  await item.getByLabel("What does the season make of it?").fill(note);
  await item.getByRole("button", { name: "Resolve" }).click();

  await expect(signals.getByRole("heading", { level: 2 })).toContainText("0 open");
  const resolved = signals.locator(".signal.resolved");
  await expect(resolved).toContainText(note);
  await expect(resolved).toContainText("by leader@e2e.slope");
  await expect(signals.getByRole("button", { name: "Resolve" })).toHaveCount(0);
  // The resolution is on the audit trail.
  const signal = (await resolved.getAttribute("id"))!.replace("signal-", "");
  const audit = await request.get(`/api/v1/audit?entity=thesis_signal&id=${signal}`);
  expect(audit.status(), await audit.text()).toBe(200);
  const trail = await audit.json();
  expect(trail.map((r: { after: { resolution?: string } }) => r.after?.resolution)).toEqual([note]);
});
