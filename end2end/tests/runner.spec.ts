import { expect, type APIRequestContext, type Locator, type Page } from "@playwright/test";
import { open, signIn, test } from "./helpers";

// The runner in the browser: a job queued through the API is followed live on its page (the `JobLive`
// island reads the job's server-sent events) until it ends, a finished job's page and its model on the
// models page, and a running job cancelled from its page. The models are tiny and pre-trained from scratch on the server's own worker,
// so nothing depends on a shipped base model.

const TINY_MODEL = { vocab_size: 257, n_layer: 1, n_head: 2, d_model: 32, ctx_len: 64 };
// A job far longer than the test, whatever the machine's speed: it is watched while it runs, then
// cancelled, so the test never races the job's end.
const LIVE_STEPS = 1_000_000;
// A job short enough to wait for through the API.
const SHORT_STEPS = 400;

/** Clinical-note-like lines as NDJSON text rows. */
function corpus(rows: number): string {
  const symptoms = ["cough", "headache", "back pain", "sore throat", "fatigue"];
  const plans = ["rest and fluids.", "ibuprofen as needed.", "follow up in two weeks."];
  const lines = [];
  for (let i = 0; i < rows; i++) {
    const text = `Pt reports ${symptoms[i % symptoms.length]} for ${2 + (i % 5)} days. Plan: ${plans[i % plans.length]}`;
    lines.push(JSON.stringify({ text }));
  }
  return lines.join("\n") + "\n";
}

async function addDataset(request: APIRequestContext, name: string): Promise<number> {
  const response = await request.post(`/api/v1/datasets?name=${name}`, {
    data: corpus(40),
    headers: { "Content-Type": "application/x-ndjson" },
  });
  // 201 the first time; 200 when an earlier run on the same database registered the same rows.
  expect([200, 201], await response.text()).toContain(response.status());
  return (await response.json()).dataset.id;
}

async function submit(request: APIRequestContext, job: object): Promise<{ id: number; status: string }> {
  const response = await request.post("/api/v1/jobs", { data: job });
  expect(response.status(), await response.text()).toBe(201);
  return response.json();
}

function pretrain(dataset: number, steps: number, name?: string) {
  return {
    kind: "pretrain",
    dataset_id: dataset,
    model_config: TINY_MODEL,
    train: { steps, batch_size: 4, seq_len: 32, checkpoint_every: 0 },
    ...(name ? { name } : {}),
  };
}

/** The live section's parts: status badge, step line and the loss curve. */
function live(page: Page) {
  const section = page.locator("section.job-live");
  return {
    badge: section.locator("p").first().locator(".badge"),
    steps: section.locator("p").first(),
    line: section.locator("svg polyline"),
    cancel: section.getByRole("button", { name: "Cancel job" }),
  };
}

/** The step number the live section shows ("step N of T"). */
async function shownStep(steps: Locator, total: number): Promise<number> {
  const match = (await steps.textContent())?.match(new RegExp(`step (\\d+) of ${total}`));
  return match ? Number(match[1]) : -1;
}

/** Marks the document, so a later check can tell that the page was never reloaded. */
async function mark(page: Page) {
  await page.evaluate(() => ((window as unknown as { slopeE2eMark: boolean }).slopeE2eMark = true));
}

async function stillMarked(page: Page) {
  expect(await page.evaluate(() => (window as unknown as { slopeE2eMark?: boolean }).slopeE2eMark)).toBe(true);
}

test("a training job is followed live on its page until it ends", async ({ page, request }) => {
  test.setTimeout(180_000);
  const dataset = await addDataset(request, "e2e-notes");
  const job = await submit(request, pretrain(dataset, LIVE_STEPS, `e2e-live-${Date.now()}`));
  expect(job.status).toBe("pending");
  try {
    await signIn(page, "leader");
    await open(page, `/jobs/${job.id}`);
    await mark(page);
    await expect(page.getByRole("heading", { level: 1 })).toHaveText(`Job #${job.id} · pretrain`);
    const { badge, steps, line } = live(page);
    await expect(badge).toHaveText("running", { timeout: 30_000 });

    // The step count grows without a reload, and the loss curve appears and then changes.
    const first = await shownStep(steps, LIVE_STEPS);
    expect(first).toBeGreaterThanOrEqual(0);
    await expect.poll(() => shownStep(steps, LIVE_STEPS), { timeout: 30_000 }).toBeGreaterThan(first);
    await expect(line).toHaveCount(1, { timeout: 30_000 });
    const drawn = await line.getAttribute("points");
    const seen = await shownStep(steps, LIVE_STEPS);
    expect(seen).toBeGreaterThan(0);
    await expect.poll(() => line.getAttribute("points"), { timeout: 30_000 }).not.toBe(drawn);
    await expect.poll(() => shownStep(steps, LIVE_STEPS), { timeout: 30_000 }).toBeGreaterThan(seen);

    // Its end arrives the same way: stopped elsewhere (here through the API), the page learns it from
    // the event stream.
    const cancel = await request.post(`/api/v1/jobs/${job.id}/cancel`);
    expect(cancel.status(), await cancel.text()).toBe(200);
    await expect(badge).toHaveText("cancelled", { timeout: 30_000 });
    await expect(live(page).cancel).toHaveCount(0);
    await stillMarked(page);
  } finally {
    await request.post(`/api/v1/jobs/${job.id}/cancel`);
  }
});

test("a finished job shows its whole loss curve and its model is listed", async ({ page, request }) => {
  test.setTimeout(180_000);
  const dataset = await addDataset(request, "e2e-notes");
  const name = `e2e-short-${Date.now()}`;
  const job = await submit(request, pretrain(dataset, SHORT_STEPS, name));
  await expect
    .poll(async () => (await (await request.get(`/api/v1/jobs/${job.id}`)).json()).status, { timeout: 120_000 })
    .toBe("succeeded");

  await signIn(page, "leader");
  await open(page, `/jobs/${job.id}`);
  const { badge, steps } = live(page);
  await expect(badge).toHaveText("succeeded");
  await expect(badge).toHaveClass(/\bok\b/);
  await expect(steps).toContainText(`step ${SHORT_STEPS} of ${SHORT_STEPS}`);
  await expect(page.locator("section.job-live figcaption")).toContainText(`from step 1 to ${SHORT_STEPS}`);
  await expect(live(page).cancel).toHaveCount(0);

  const done = await (await request.get(`/api/v1/jobs/${job.id}`)).json();
  const model = done.result.model_id;
  expect(typeof model).toBe("number");
  await open(page, "/models");
  const row = page.locator(`tr#model-${model}`);
  await expect(row).toContainText(name);
  await expect(row).toContainText("pretrain");
  await expect(row.getByRole("link", { name: `#${job.id}` })).toHaveAttribute("href", `/jobs/${job.id}`);
  await expect(row).toContainText("not evaluated");
});

test("a running job is cancelled from its page", async ({ page, request }) => {
  test.setTimeout(120_000);
  const dataset = await addDataset(request, "e2e-notes");
  // Far more steps than the test waits for: only the cancellation ends it.
  const job = await submit(request, pretrain(dataset, LIVE_STEPS));
  try {
    await signIn(page, "leader");
    await open(page, `/jobs/${job.id}`);
    await mark(page);
    const { badge, steps, cancel } = live(page);
    await expect(badge).toHaveText("running", { timeout: 60_000 });
    await expect.poll(() => shownStep(steps, LIVE_STEPS), { timeout: 30_000 }).toBeGreaterThan(0);

    await cancel.click();
    // A running job stops at its next heartbeat; the page learns it from the event stream.
    await expect(badge).toHaveText("cancelled", { timeout: 30_000 });
    await expect(badge).toHaveClass(/\bmuted\b/);
    await expect(cancel).toHaveCount(0);
    await expect(page.getByRole("alert")).toHaveCount(0);
    await stillMarked(page);

    const ended = await (await request.get(`/api/v1/jobs/${job.id}`)).json();
    expect(ended.status).toBe("cancelled");
    expect(ended.cancel_requested).toBe(true);
    expect(ended.step).toBeLessThan(LIVE_STEPS);
    expect(ended.result).toBeNull();

    // The jobs list agrees after a reload.
    await open(page, "/jobs");
    const row = page.locator("tbody tr", { has: page.getByRole("link", { name: `#${job.id}`, exact: true }) });
    await expect(row.locator(".badge")).toHaveText("cancelled");
  } finally {
    // Whatever happened above, the one worker must not stay busy with this job for other journeys.
    await request.post(`/api/v1/jobs/${job.id}/cancel`);
  }
});
