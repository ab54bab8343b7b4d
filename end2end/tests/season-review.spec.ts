import { expect, type APIRequestContext } from "@playwright/test";
import { open, signIn, test } from "./helpers";

// A leader closes a season in the browser and reads its review: the objective and key result as they
// ended, the calibration of the check-in's confidence and the retrospective, with a Markdown export.
// The plan and its check-in are prepared through the API.

async function post(request: APIRequestContext, path: string, data: unknown, status = 201) {
  const response = await request.post(path, { data });
  expect(response.status(), `${path}: ${await response.text()}`).toBe(status);
  return response.json();
}

test("a leader closes a season and reads its review", async ({ page, request }) => {
  const stamp = String(Date.now());
  const season = await post(request, "/api/v1/seasons", {
    name: `Reviewed ${stamp}`,
    thesis: "Clinicians supervise agents instead of typing.",
    problems: ["Notes take too long"],
    winning: "Half of all notes drafted by agents.",
    starts_on: "2047-01-01",
    ends_on: "2047-06-30",
    slope_target: 0.2,
  });
  const objective = await post(request, `/api/v1/seasons/${season.id}/objectives`, {
    quarter: "2047-Q1",
    title: "Clinics run on drafts",
    commitment: "committed",
  });
  const kr = await post(request, `/api/v1/objectives/${objective.id}/key-results`, {
    title: "Clinics onboarded",
    kind: "increase-to",
    start: 0,
    target: 10,
  });
  await post(request, `/api/v1/key-results/${kr.id}/check-ins`, { value: 10, confidence: 0.8, author: "Ana" });
  await post(request, `/api/v1/seasons/${season.id}/transition`, { version: 1, to: "active" }, 200);
  // An open season has no review yet.
  expect((await request.get(`/api/v1/seasons/${season.id}/review`)).status()).toBe(409);

  await signIn(page, "leader");
  await open(page, `/seasons/${season.id}`);
  const retrospective = "Onboarding landed because clinics saw drafts they could correct.";
  await expect(async () => {
    await page.getByText("Close the season").click();
    await page.getByLabel("Retrospective").fill(retrospective);
  }).toPass();
  await page.getByRole("button", { name: "Close season" }).click();
  // Once closed, the season page links its review.
  const review = page.getByRole("link", { name: "Review", exact: true });
  await expect(review).toBeVisible();
  await review.click();
  await expect(page).toHaveURL(new RegExp(`/seasons/${season.id}/review$`));
  await expect(page.getByRole("heading", { level: 1 })).toHaveText(`Reviewed ${stamp} — review`);
  await expect(page.locator(".review-objective")).toContainText("Clinics run on drafts (2047-Q1, committed): 100.0 %");
  await expect(page.locator("#calibration")).toContainText("Brier score 0.040");
  await expect(page.locator(".retrospective")).toHaveText(retrospective);

  // The Markdown export says the same.
  const href = await page.getByRole("link", { name: "Markdown" }).getAttribute("href");
  const md = await request.get(href!);
  expect(md.status()).toBe(200);
  expect(md.headers()["content-type"]).toContain("text/markdown");
  const text = await md.text();
  expect(text).toContain(`# Season review: Reviewed ${stamp}`);
  expect(text).toContain("| Clinics onboarded | 0 → 10 | 10 | 100 % |");
  expect(text).toContain(retrospective);
});
