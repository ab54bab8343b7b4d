import { expect, type APIRequestContext } from "@playwright/test";
import { apiAs, hydrated, invitedMember, ok, open, runJob, signIn, test } from "./helpers";
import { noteEvents, noteTexts, planFor, TINY_MODEL } from "./notes";

// Expert annotation in the browser: an annotator works through items with the keyboard alone (the next
// item loads in place), an operator builds datasets from annotations and fine-tunes the loop's champion
// from the queue's page and makes the queue's next version, and a leader reads a key result's annotation
// budget. Each journey makes its own loop, queue and people through the API.

/** A loop with `n` interactions and a correction queue over all of them, open to the annotator role. */
async function loopWithQueue(request: APIRequestContext, loop: string, n: number) {
  await ok(
    await request.post(`/api/v1/loops/${loop}/events`, {
      data: noteEvents(loop, n, { suggestion: "order an MRI.", suggestedChars: 13, accepted: () => 0 }),
      headers: { "Content-Type": "application/x-ndjson" },
    }),
  );
  const created = await ok(
    await request.post("/api/v1/annotation-queues", {
      data: {
        key: `${loop}-review`,
        name: `Review of ${loop}`,
        loop,
        sampling: { policy: "random", share: 1 },
        guidelines: "Rewrite the suggestion into **what the clinician meant** to write.\n\n- Rate it\n- Tag a wrong plan",
        labels: { correction: true, rating: true, tags: true, tag_set: ["wrong-plan", "typo"] },
        annotators_per_item: 1,
      },
    }),
    [201],
  );
  expect(created.sampled.added).toBe(n);
  return `${loop}-review`;
}

test("an annotator works through five items with the keyboard only", async ({ page, request, baseURL }) => {
  const loop = `e2e-annotate-${Date.now()}`;
  const queue = await loopWithQueue(request, loop, 8);
  const admin = await apiAs(baseURL!, "admin");
  const annotator = { email: `annotator-${Date.now()}@e2e.slope`, password: "an annotator's password", name: "Ana" };
  await invitedMember(admin, baseURL!, annotator, "annotator");
  await admin.dispose();

  // The annotator signs in and lands on the queues: the rest of the organisation is not theirs to see.
  await signIn(page, annotator, "/");
  await expect(page).toHaveURL(/\/annotate$/);
  await expect(page.getByRole("navigation", { name: "Main" }).getByRole("link")).toHaveText(["Annotate"]);
  await page.getByRole("link", { name: "Annotate", exact: true }).last().click();
  await expect(page).toHaveURL(new RegExp(`/annotate/${queue}$`));
  await expect(page.getByRole("heading", { name: "Keyboard shortcuts" })).toBeVisible();
  // The guidelines are open before the first answer, formatted from their Markdown.
  const guidelines = page.getByTestId("guidelines");
  await expect(guidelines.locator("strong")).toHaveText("what the clinician meant");
  await expect(guidelines.getByRole("listitem")).toHaveText(["Rate it", "Tag a wrong plan"]);
  await expect(page.locator("body[data-hydrated='true']")).toBeAttached({ timeout: 30_000 });
  // A mark that a full page load would wipe out: the items must come in place.
  await page.evaluate(() => ((window as unknown as { stayed: boolean }).stayed = true));

  const seen = new Set<string>();
  for (let n = 1; n <= 5; n++) {
    const item = page.getByTestId("work-item");
    await expect(item).toBeVisible();
    const id = (await item.getAttribute("data-item"))!;
    expect(seen.has(id), `item ${id} came twice`).toBe(false);
    seen.add(id);
    const context = (await page.getByTestId("context").textContent())!;
    const plan = planFor(context);
    // E focuses the correction; the text is replaced and Escape leaves it; 4 rates; T and the tag;
    // Escape; Enter saves and the next item replaces this one.
    await page.keyboard.press("e");
    await expect(page.locator("#correction")).toBeFocused();
    await page.keyboard.press("Control+A");
    await page.keyboard.type(plan);
    await expect(page.getByTestId("diff").locator("ins")).not.toHaveCount(0);
    await page.keyboard.press("Escape");
    await page.keyboard.press("4");
    await expect(page.locator("input[name=rating][value='4']")).toBeChecked();
    await page.keyboard.press("t");
    await page.keyboard.type("wrong-plan");
    await page.keyboard.press("Escape");
    await page.keyboard.press("Enter");
    await expect(page.getByTestId("session-progress")).toContainText(`${n} done this session`);
    if (n < 5) await expect(page.getByTestId("work-item")).not.toHaveAttribute("data-item", id);
  }
  expect(await page.evaluate(() => (window as unknown as { stayed?: boolean }).stayed)).toBe(true);
  await expect(page.getByTestId("queue-progress")).toHaveText("5 of 8 annotations");

  // S skips; F without a note asks for one, then Enter flags.
  const skipped = await page.getByTestId("work-item").getAttribute("data-item");
  await page.keyboard.press("s");
  await expect(page.getByTestId("work-item")).not.toHaveAttribute("data-item", skipped!);
  await page.keyboard.press("f");
  await expect(page.locator("#note")).toBeFocused();
  await page.keyboard.type("the context names a patient");
  await page.keyboard.press("Enter");
  await expect(page.getByTestId("session-progress")).toContainText("7 done this session");

  // What was stored, as the operators see it.
  const exported = await (await request.get(`/api/v1/annotation-queues/${queue}/export`)).text();
  const lines = exported.trim().split("\n").map((l) => JSON.parse(l));
  const mine = lines.filter((l) => l.annotator === annotator.email);
  expect(mine.map((l) => l.outcome)).toEqual(["labelled", "labelled", "labelled", "labelled", "labelled", "skipped", "flagged"]);
  for (const l of mine.slice(0, 5)) {
    expect(l.correction).toBe(planFor(l.context));
    expect([l.rating, l.tags]).toEqual([4, ["wrong-plan"]]);
  }
});

test("the annotator's page works without JavaScript", async ({ browser, baseURL, request }) => {
  const loop = `e2e-annotate-nojs-${Date.now()}`;
  const queue = await loopWithQueue(request, loop, 3);
  const context = await browser.newContext({ javaScriptEnabled: false, baseURL });
  const page = await context.newPage();
  await signIn(page, "leader", `/annotate/${queue}`);
  const first = await page.getByTestId("work-item").getAttribute("data-item");
  // A rating of 9 cannot be chosen here; a missing one is refused, the reason shown, nothing stored.
  await page.locator("#correction").fill("rest and fluids.");
  await page.getByRole("button", { name: "Save and next (Enter)" }).click();
  await expect(page.locator(".annotator .form-messages")).toContainText("rating");
  await expect(page.getByTestId("work-item")).toHaveAttribute("data-item", first!);
  await page.locator("#correction").fill("rest and fluids.");
  await page.locator("input[name=rating][value='5']").check();
  await page.getByRole("button", { name: "Save and next (Enter)" }).click();
  await expect(page.getByTestId("work-item")).not.toHaveAttribute("data-item", first!);
  await expect(page.getByTestId("queue-progress")).toHaveText("1 of 3 annotations");
  await context.close();
});

test("an operator builds datasets from annotations and fine-tunes the champion", async ({ page, request }) => {
  test.setTimeout(240_000);
  const loop = `e2e-annotate-tune-${Date.now()}`;
  const queue = await loopWithQueue(request, loop, 12);
  // The loop's champion: a tiny base model, evaluated on held-out notes.
  const add = async (name: string, body: string) =>
    (await ok(await request.post(`/api/v1/datasets?name=${name}`, { data: body, headers: { "Content-Type": "application/x-ndjson" } })))
      .dataset.id;
  const corpus = await add(`${loop}-corpus`, noteTexts(30, 1));
  const heldOut = await add(`${loop}-held-out`, noteTexts(8, 3));
  const train = { steps: 20, batch_size: 4, lr: 0.003, warmup_steps: 2, checkpoint_every: 0 };
  const base = await runJob(request, { kind: "pretrain", loop, dataset_id: corpus, held_out_id: heldOut, model_config: TINY_MODEL, train });
  const promoted = await ok(await request.post(`/api/v1/loops/${loop}/promote`, { data: { model_id: base.result.model_id } }));
  expect(promoted.accepted).toBe(true);
  // Labels made elsewhere, imported: each item's correction is what the clinician meant to write.
  const items = await ok(await request.get(`/api/v1/annotation-queues/${queue}/items`));
  const labels = items
    .map((i: { event_id: string; context: string }) =>
      JSON.stringify({ event_id: i.event_id, annotator: "vendor-1", correction: planFor(i.context), rating: 2 }),
    )
    .join("\n");
  await ok(await request.post(`/api/v1/annotation-queues/${queue}/import`, { data: labels, headers: { "Content-Type": "application/x-ndjson" } }), [201]);

  await signIn(page, "leader", `/annotation-queues/${queue}`);
  await expect(page.getByTestId("queue-summary")).toContainText("12 of 12 annotations");
  await expect(page.getByTestId("agreement")).toBeVisible();
  await open(page, `/annotation-queues/${queue}`);
  await page.getByLabel("Train on").selectOption("annotations");
  await page.getByLabel("Steps").fill("20");
  await page.getByRole("button", { name: "Build datasets and fine-tune the champion" }).click();
  await expect(page).toHaveURL(/\/jobs\/\d+$/);
  const job = Number(page.url().split("/").pop());
  await expect.poll(async () => (await (await request.get(`/api/v1/jobs/${job}`)).json()).status, { timeout: 120_000 }).toBe("succeeded");
  const done = await (await request.get(`/api/v1/jobs/${job}`)).json();
  expect(done.spec.model_id).toBe(base.result.model_id);
  // The dataset it learned from is the annotations', with their lineage.
  const model = await ok(await request.get(`/api/v1/models/${done.result.model_id}`));
  const datasets = await ok(await request.get("/api/v1/datasets"));
  const dataset = datasets.find((d: { digest: string }) => d.digest === model.dataset_digest);
  expect(dataset.name).toMatch(/-sft-annotations$/);
  expect([dataset.rows, dataset.source.annotations]).toEqual([12, 12]);
  // The loop's page counts the annotations.
  await page.goto(`/loops/${loop}`);
  await expect(page.getByText("12 expert annotations in the weeks shown")).toBeVisible();
});

test("an operator makes a queue's next version in the browser", async ({ page, request }) => {
  const loop = `e2e-edit-${Date.now()}`;
  const queue = await loopWithQueue(request, loop, 3);
  await signIn(page, "leader", `/annotation-queues/${queue}`);
  await page.getByRole("link", { name: "Edit the queue (a new version)" }).click();
  await expect(page).toHaveURL(new RegExp(`/annotation-queues/${queue}/edit$`));
  await expect(page.getByRole("heading", { level: 1 })).toHaveText(`Edit queue: Review of ${loop}`);
  await hydrated(page);
  // The form holds the current version, the share as a percentage.
  await expect(page.getByLabel("Guidelines (Markdown)")).toHaveValue(/\*\*what the clinician meant\*\*/);
  await expect(page.getByLabel("Share (%)")).toHaveValue("100");
  await expect(page.getByLabel("Allowed tags")).toHaveValue("wrong-plan, typo");
  // The domain's rules run in the browser first: nothing is sent, the field says why.
  await page.getByLabel("Annotators per item").fill("0");
  await page.getByRole("button", { name: "Save as a new version" }).click();
  await expect(page.locator("#annotators_per_item-error")).toContainText("must be 1 to");
  await page.getByLabel("Annotators per item").fill("2");
  await page.getByLabel("Guidelines (Markdown)").fill("Only *the plan* matters.");
  await page.getByRole("button", { name: "Save as a new version" }).click();
  await expect(page).toHaveURL(new RegExp(`/annotation-queues/${queue}$`));
  await expect(page.locator(".page-head .meta")).toContainText("version 2 by leader@e2e.slope");
  await expect(page.locator("details .prose em")).toHaveText("the plan");
  const stored = await ok(await request.get(`/api/v1/annotation-queues/${queue}`), [200]);
  expect(stored.summary.queue.settings.annotators_per_item).toBe(2);
  expect(stored.versions.length).toBe(2);
});

test("a leader reads the annotation budget of a key result", async ({ page, request }) => {
  const loop = `e2e-budget-${Date.now()}`;
  await loopWithQueue(request, loop, 4);
  const metric = `${loop}.acceptance`;
  await ok(await request.post("/api/v1/metrics", { data: { key: metric, name: "Acceptance", kind: "acceptance-rate", loop } }), [201]);
  // A year no other journey's season uses (one organisation's seasons never overlap), and an early
  // one: the season that starts latest is the organisation's current season when none is active, and
  // the leader's journey plans the current season's goals.
  const year = 2021;
  const season = await ok(
    await request.post("/api/v1/seasons", {
      data: {
        name: `Budget season ${year}`,
        thesis: "Experts teach the model",
        problems: ["Suggestions miss the plan"],
        winning: "Clinicians keep most of what is suggested",
        starts_on: `${year}-01-01`,
        ends_on: `${year}-06-30`,
      },
    }),
    [201],
  );
  const objective = await ok(
    await request.post(`/api/v1/seasons/${season.id}/objectives`, { data: { quarter: `${year}-Q1`, title: "Drafts clinicians keep", commitment: "committed" } }),
    [201],
  );
  const kr = await ok(
    await request.post(`/api/v1/objectives/${objective.id}/key-results`, {
      data: { title: "Characters accepted", kind: "increase-to", start: 0.2, target: 0.6, metric },
    }),
    [201],
  );
  await signIn(page, "leader", `/key-results/${kr.id}`);
  const budget = page.getByTestId("annotation-budget");
  await expect(budget.getByRole("heading", { name: "Annotation budget" })).toBeVisible();
  // No promoted iteration has learned from annotations yet: the page says so rather than guess.
  await expect(budget).toContainText("Too little history to estimate");
  await expect(budget).toContainText("power law");
});
