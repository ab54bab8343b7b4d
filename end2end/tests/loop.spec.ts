import { expect, type APIRequestContext } from "@playwright/test";
import { hydrated, open, signIn, test } from "./helpers";

// A squad defines a metric over its loop's events in the browser, links a key result to it, and sees
// a new batch of events move the key result within two seconds of the batch's acknowledgement.

const LOOP = "e2e-drafts";

/** NDJSON of `users` users on `day`, each suggested 100 characters of which `accepted` were kept. */
function batch(prefix: string, day: string, users: number, accepted: number): string {
  const lines = [];
  for (let u = 0; u < users; u++) {
    lines.push(
      JSON.stringify({
        event_id: `${prefix}-${u}`,
        ts: `${day}T10:${String(u % 60).padStart(2, "0")}:00Z`,
        user_id: `u${u}`,
        variant: u % 2 === 0 ? "a" : "b",
        suggested_chars: 100,
        accepted_chars: accepted,
        latency_ms: 300 + u,
      }),
    );
  }
  return lines.join("\n") + "\n";
}

async function ingest(request: APIRequestContext, body: string, key: string) {
  const response = await request.post(`/api/v1/loops/${LOOP}/events`, {
    data: body,
    headers: { "Content-Type": "application/x-ndjson", "Idempotency-Key": key },
  });
  expect(response.status(), await response.text()).toBe(201);
  return response.json();
}

test("a batch of events moves a linked key result within two seconds", async ({ page, request }) => {
  // Yesterday and today in UTC, so the metric's buckets are in the past and the data is fresh.
  const today = new Date().toISOString().slice(0, 10);
  const yesterday = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
  await ingest(request, batch("first", yesterday, 20, 30), "e2e-first");

  // A plan to hang the key result on, far from the leader journey's dates, through the API.
  const season = await (
    await request.post("/api/v1/seasons", {
      data: {
        name: "Loop journey",
        thesis: "Acceptance is the loop's pulse.",
        problems: ["Drafts are rejected"],
        winning: "Drafts are kept.",
        starts_on: "2035-01-01",
        ends_on: "2035-06-30",
        slope_target: 0.2,
      },
    })
  ).json();
  const objective = await (
    await request.post(`/api/v1/seasons/${season.id}/objectives`, {
      data: { quarter: "2035-Q1", title: "Drafts are kept", commitment: "committed" },
    })
  ).json();
  const kr = await (
    await request.post(`/api/v1/objectives/${objective.id}/key-results`, {
      data: { title: "Kept characters", kind: "increase-to", start: 0.2, target: 0.6, unit: "of characters" },
    })
  ).json();

  // The metric is defined in the browser; the domain's rules run there first.
  await signIn(page, "leader");
  await open(page, "/loops");
  await page.getByLabel("Key").fill("e2e-acceptance");
  await page.getByLabel("Name").fill("E2E acceptance");
  await page.getByLabel("Kind").selectOption("acceptance-rate");
  await page.getByRole("button", { name: "Create metric" }).click();
  await expect(page.locator("#loop_key-error")).toContainText("required");
  await page.getByLabel("Loop", { exact: true }).fill(LOOP);
  await page.getByRole("button", { name: "Create metric" }).click();
  await expect(page).toHaveURL(/\/metrics\/e2e-acceptance$/);
  await expect(page.getByRole("heading", { level: 1, name: "E2E acceptance" })).toBeVisible();
  // The series was computed from the events already stored: 30 of 100 characters kept.
  await expect(page.locator("table.history tbody tr").first()).toContainText("30.0 %");

  // The key result is linked to the metric in its edit form.
  await open(page, `/key-results/${kr.id}/edit`);
  await page.getByLabel("Fed by metric").selectOption("e2e-acceptance");
  await page.getByRole("button", { name: "Save key result" }).click();
  await expect(page).toHaveURL(new RegExp(`/key-results/${kr.id}$`));
  await expect(page.locator(".metric-feed")).toContainText("Fed by E2E acceptance");
  await expect(page.locator(".metric-latest")).toContainText("latest 30.0 %");

  // Today's batch: 60 of 100 kept. It must show on the key result within 2 s of the acknowledgement.
  await ingest(request, batch("second", today, 20, 60), "e2e-second");
  const acknowledged = Date.now();
  await page.reload();
  await expect(page.locator(".metric-latest")).toContainText(`latest 60.0 % for ${today}`, { timeout: 2_000 });
  expect(Date.now() - acknowledged).toBeLessThan(2_000);
  await expect(page.locator(".metric-feed svg path.series")).toHaveCount(1);

  // The loop's page charts acceptance per variant and lists the two batches.
  await page.goto(`/loops/${LOOP}`);
  await expect(page.getByRole("heading", { level: 1, name: `Loop ${LOOP}` })).toBeVisible();
  await expect(page.locator(".chart svg path.series")).toHaveCount(2);
  await expect(page.locator("table.compact tbody tr")).toHaveCount(2);

  // A retried batch is acknowledged again without storing anything twice.
  const replay = await request.post(`/api/v1/loops/${LOOP}/events`, {
    data: batch("second", today, 20, 60),
    headers: { "Content-Type": "application/x-ndjson", "Idempotency-Key": "e2e-second" },
  });
  expect(replay.status()).toBe(200);
  expect((await replay.json()).replayed).toBe(true);
  await hydrated(page);
});
