import { expect, type APIRequestContext } from "@playwright/test";
import { ok, open, runJob, signIn, test } from "./helpers";
import { noteEvents, noteTexts, TINY_MODEL } from "./notes";

// One turn of a loop, driven through the API the way the demo's simulated operator drives it (the e2e
// server runs without demo data or a base model): events with a context and what the user wrote, a tiny
// base model, datasets built from the events, a fine-tune with an eval on held-out text, and the
// promotion gate. The loop page then shows the iteration with its promotion.

async function addDataset(request: APIRequestContext, name: string, body: string): Promise<number> {
  const response = await request.post(`/api/v1/datasets?name=${name}`, {
    data: body,
    headers: { "Content-Type": "application/x-ndjson" },
  });
  return (await ok(response)).dataset.id;
}

test("the loop page shows an iteration after a promotion", async ({ page, request }) => {
  test.setTimeout(240_000);
  const loop = `e2e-iteration-${Date.now()}`;
  const ingested = await request.post(`/api/v1/loops/${loop}/events`, {
    data: noteEvents(loop, 60, { suggestion: "rest", suggestedChars: 10, accepted: (i) => i % 3 }),
    headers: { "Content-Type": "application/x-ndjson" },
  });
  await ok(ingested, [201]);

  // A tiny base model of its own, so nothing depends on the shipped one.
  const corpus = await addDataset(request, `${loop}-corpus`, noteTexts(40, 0));
  const held = await addDataset(request, `${loop}-held-out`, noteTexts(12, 3));
  const base = await runJob(request, {
    kind: "pretrain",
    dataset_id: corpus,
    model_config: TINY_MODEL,
    train: { steps: 30, batch_size: 4, seq_len: 32, checkpoint_every: 0 },
    name: `${loop}-base`,
  });

  // The loop's events become an SFT set with lineage to them; a challenger is fine-tuned on it and
  // evaluated on the held-out text in the same job.
  const built = await ok(await request.post(`/api/v1/loops/${loop}/datasets`));
  expect(built.sft.rows).toBe(60);
  const sft = await runJob(request, {
    kind: "sft",
    loop,
    model_id: base.result.model_id,
    dataset_id: built.sft.id,
    held_out_id: held,
    train: { steps: 20, batch_size: 4, seq_len: 48, checkpoint_every: 0 },
    name: `${loop}-challenger`,
  });
  const challenger = sft.result.model_id;

  // The gate: the loop has no champion yet, so an evaluated challenger becomes the first one.
  const decision = await ok(await request.post(`/api/v1/loops/${loop}/promote`, { data: { model_id: challenger } }));
  expect(decision.accepted, decision.reason).toBe(true);

  await signIn(page, "leader");
  await open(page, `/loops/${loop}`);
  const iterations = page.locator("table.iterations tbody tr");
  await expect(iterations).toHaveCount(1);
  const row = iterations.first();
  await expect(row.getByRole("rowheader")).toHaveText(`${loop}-challenger`);
  await expect(row).toContainText(`${loop}-sft #${built.sft.id}`);
  await expect(row).toContainText(`#${sft.id}`);
  await expect(row.locator(".badge")).toHaveText("promoted");
  const stage = page.locator(".stage-card", { has: page.getByRole("heading", { name: "Iteration" }) });
  await expect(stage).toContainText(`${loop}-challenger promoted`);
  // Outside demo mode nothing is simulated, so no banner says so.
  await expect(page.getByTestId("simulator-banner")).toHaveCount(0);
});
