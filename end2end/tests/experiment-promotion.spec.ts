import { expect, type APIRequestContext } from "@playwright/test";
import { ok, open, runJob, signIn, test } from "./helpers";
import { noteEvents, noteTexts, TINY_MODEL } from "./notes";

// A leader follows an A/B experiment to a promotion. A tiny base model is evaluated and becomes the
// loop's first champion; a challenger fine-tuned on the loop's events is tested against it in an
// experiment that records both arms' models; the arms' outcomes arrive as events; the gate weighs
// exactly that experiment (and the reward margin's interval over the held-out items) and promotes. The
// loop page then shows the promotion's measured online lift and the acceptance chart per arm.

const NDJSON = { "Content-Type": "application/x-ndjson" };

async function addDataset(request: APIRequestContext, name: string, body: string): Promise<number> {
  const response = await request.post(`/api/v1/datasets?name=${name}`, { data: body, headers: NDJSON });
  return (await ok(response)).dataset.id;
}

/** Outcomes of `users` users split between the experiment's arms: the challenger's users keep more. */
function armOutcomes(experiment: string, users: number): string {
  const now = new Date(Date.now() - 5 * 60_000).toISOString();
  const lines = [];
  for (let i = 0; i < users; i++) {
    const treated = i % 2 === 1;
    lines.push(
      JSON.stringify({
        event_id: `${experiment}-${i}`,
        ts: now,
        user_id: `${experiment}-user-${i}`,
        variant: `${experiment}-${treated ? "challenger" : "champion"}`,
        suggested_chars: 100,
        accepted_chars: treated ? 60 + (i % 7) : 40 + (i % 5),
      }),
    );
  }
  return lines.join("\n") + "\n";
}

test("a leader follows an experiment to a promotion and sees the online lift per arm", async ({ page, request }) => {
  test.setTimeout(300_000);
  const loop = `e2e-ab-${Date.now()}`;
  // Datasets are kept by their content's digest, so a loop whose events gave the same rows as another
  // journey's would be handed that journey's dataset (and lineage); 61 to 65 interactions keep this
  // journey's rows its own (the loop journey sends 60).
  const interactions = 61 + (Date.now() % 5);
  const events = noteEvents(loop, interactions, { suggestion: "rest", suggestedChars: 10, accepted: (i) => i % 3 });
  await ok(await request.post(`/api/v1/loops/${loop}/events`, { data: events, headers: NDJSON }), [201]);

  // The base: pre-trained, evaluated on held-out text, and the loop's first champion.
  const corpus = await addDataset(request, `${loop}-corpus`, noteTexts(40, 0));
  const held = await addDataset(request, `${loop}-held-out`, noteTexts(12, 3));
  const pretrained = await runJob(request, {
    kind: "pretrain",
    dataset_id: corpus,
    model_config: TINY_MODEL,
    train: { steps: 30, batch_size: 4, seq_len: 32, checkpoint_every: 0 },
    name: `${loop}-base`,
  });
  const base = pretrained.result.model_id;
  await runJob(request, { kind: "eval", model_id: base, held_out_id: held });
  const first = await ok(await request.post(`/api/v1/loops/${loop}/promote`, { data: { model_id: base } }));
  expect(first.accepted, first.reason).toBe(true);

  // The challenger, fine-tuned on the loop's events and evaluated on the same held-out text.
  const built = await ok(await request.post(`/api/v1/loops/${loop}/datasets`));
  const sft = await runJob(request, {
    kind: "sft",
    loop,
    model_id: base,
    dataset_id: built.sft.id,
    held_out_id: held,
    train: { steps: 80, batch_size: 4, seq_len: 48, lr: 0.003, checkpoint_every: 0 },
    name: `${loop}-challenger`,
  });
  const challenger = sft.result.model_id;

  // Without an experiment of exactly these two models the gate refuses, naming what it needs.
  const refused = await request.post(`/api/v1/loops/${loop}/promote`, { data: { model_id: challenger } });
  expect(refused.status()).toBe(409);
  expect(await refused.text()).toContain(`control_model ${base} and treatment_model ${challenger}`);

  // The experiment records both arms' models; its outcomes arrive as the loop's events.
  const experiment = `${loop}-test`;
  // The experiment starts yesterday: its outcomes are stamped minutes back, which is yesterday just
  // after midnight UTC.
  const yesterday = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
  const week = new Date(Date.now() + 7 * 86_400_000).toISOString().slice(0, 10);
  await ok(
    await request.post("/api/v1/experiments", {
      data: {
        key: experiment,
        name: `Challenger against the base (${loop})`,
        loop,
        control: `${experiment}-champion`,
        treatment: `${experiment}-challenger`,
        starts_on: yesterday,
        ends_on: week,
        control_model: base,
        treatment_model: challenger,
      },
    }),
    [201],
  );
  await ok(await request.post(`/api/v1/loops/${loop}/events`, { data: armOutcomes(experiment, 40), headers: NDJSON }), [201]);

  const decision = await ok(await request.post(`/api/v1/loops/${loop}/promote`, { data: { model_id: challenger } }));
  expect(decision.accepted, decision.reason).toBe(true);
  expect(decision.reason).toContain(`experiment ${experiment}`);
  expect(decision.reason).toContain("95 % bootstrap interval");

  // The loop page: the iteration with its measured online lift and the reward change's interval.
  await signIn(page, "leader");
  await open(page, `/loops/${loop}`);
  const row = page.locator("table.iterations tbody tr").filter({ hasText: `${loop}-challenger` });
  await expect(row.locator(".badge")).toHaveText("promoted");
  await expect(row).toContainText(new RegExp(`\\+\\d+\\.\\d pp \\[[^\\]]+\\] \\(${experiment}\\)`));
  await expect(row).toContainText(/[+-]\d\.\d{4} \[[+-]\d\.\d{4}, [+-]\d\.\d{4}\]/);
  await expect(page.locator(".gate-policy")).toContainText("a reward margin whose 95 % interval lies above zero");

  // The acceptance chart: one line per arm (named by its model), the earlier variant pooled, 0–100 %.
  const chart = page.getByRole("img", { name: "Acceptance rate per arm and day" });
  await expect(chart.locator("desc")).toContainText(`control: ${loop}-base`);
  await expect(chart.locator("desc")).toContainText(`treatment: ${loop}-challenger`);
  await expect(chart.locator("desc")).toContainText("earlier models");
  await expect(chart.locator("text.axis").filter({ hasText: "100.0 %" })).toHaveCount(1);
  await expect(page.locator(".earlier-models")).toContainText("pools 1 variant served before: v1");
});
