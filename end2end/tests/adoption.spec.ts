import { expect, type APIRequestContext } from "@playwright/test";
import { apiAs, hydrated, open, signIn, test } from "./helpers";

// An exec reads the adoption dashboard: each unit's stage with its evidence and what the next stage
// needs, the warnings with theirs, and the stage trend. A leader sends the loop's events through the
// API (the `request` fixture); the exec only reads.
//
// The journeys share one database, so the units here carry a stamp of this run and the checks look
// only at them and at this journey's loop.

const LOOP = "e2e-adoption";

/** NDJSON events of `users` users of `unit` a day ago; the first `shown` of them were shown a suggestion. */
function events(stamp: string, unit: string, users: number, shown: number): string {
  const ts = new Date(Date.now() - 86_400_000).toISOString();
  const lines = [];
  for (let u = 0; u < users; u++) {
    lines.push(
      JSON.stringify({
        event_id: `${stamp}-${unit}-${u}`,
        ts,
        user_id: `${unit}-user-${u}`,
        variant: "a",
        suggested_chars: u < shown ? 80 : 0,
        accepted_chars: 0,
        unit,
      }),
    );
  }
  return lines.join("\n") + "\n";
}

async function ingest(request: APIRequestContext, body: string) {
  const response = await request.post(`/api/v1/loops/${LOOP}/events`, {
    data: body,
    headers: { "Content-Type": "application/x-ndjson" },
  });
  expect(response.status(), await response.text()).toBe(201);
}

test("an exec reads each unit's stage, its evidence, the warnings and the trend", async ({ page, request }) => {
  const stamp = String(Date.now());
  // Wards: all three people work with suggestions. Archive: one of four.
  const wards = `Wards ${stamp}`;
  const archive = `Archive ${stamp}`;
  await ingest(request, events(stamp, wards, 3, 3) + events(stamp, archive, 4, 1));

  await signIn(page, "exec");
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Adoption" }).click();
  await expect(page).toHaveURL(/\/adoption$/);
  await expect(page.getByRole("heading", { level: 1 })).toHaveText("AI adoption");

  // Each unit's stage, the evidence with its numbers, and what the next stage needs.
  const wardsCard = page.getByRole("listitem").filter({ has: page.getByRole("heading", { name: wards }) });
  await expect(wardsCard.locator(".badge")).toHaveText("Stage 1 · AI fluency");
  await expect(wardsCard).toContainText("3 of 3 people (100 %) were shown AI suggestions in the last 4 weeks");
  await expect(wardsCard).toContainText(`Loops: ${LOOP}`);
  await expect(wardsCard).toContainText("Process AI needs a key result of one of the unit's loops measured in money or time");
  // Without a headcount its people are those seen in events, and the card says that is a lower bound.
  await expect(wardsCard.locator(".headcount-note")).toContainText("a lower bound");
  const archiveCard = page.getByRole("listitem").filter({ has: page.getByRole("heading", { name: archive }) });
  await expect(archiveCard.locator(".badge")).toHaveText("Not yet staged");
  await expect(archiveCard).toContainText("1 of 4 people (25 %) were shown AI suggestions");
  await expect(archiveCard).toContainText("1 more needed");

  // The warnings about this journey's loop, each with its evidence.
  const warnings = page.locator("section", { has: page.getByRole("heading", { name: /^Warnings/ }) }).locator("li.warning");
  const unmeasured = warnings.filter({ hasText: `No measurement: loop ${LOOP} is not being measured` });
  await expect(unmeasured).toContainText(`Loop ${LOOP}: the champion has never been evaluated`);
  const unowned = warnings.filter({ hasText: `loop ${LOOP} has no owner squad` });
  await expect(unowned).toContainText(`No squad owns loop ${LOOP}`);
  await expect(warnings.filter({ hasText: `Loop ${LOOP} serves no key result` })).toHaveCount(1);

  // The trend: a chart with a text alternative, and the same numbers in a table.
  const chart = page.getByRole("img", { name: "Units per adoption stage, weekly" });
  await expect(chart).toBeVisible();
  await expect(chart.locator("desc")).toContainText("Units per stage at 6 weekly dates");
  const table = page.getByRole("table", { name: "Units per stage at each weekly date" });
  await expect(table.locator("tbody tr")).toHaveCount(6);
  // The last date counts both units: Wards at stage 1, Archive not yet (other journeys add more).
  const last = table.locator("tbody tr").last().locator("td");
  expect(Number(await last.nth(0).textContent())).toBeGreaterThanOrEqual(1);
  expect(Number(await last.nth(1).textContent())).toBeGreaterThanOrEqual(1);

  // The rules are stated.
  await expect(page.getByRole("term").filter({ hasText: "Stage 1: AI fluency" })).toBeVisible();
  await expect(page.getByRole("definition").first()).toContainText("At least 50 % of the unit's people");
});

test("an admin gives a unit its headcount, and the dashboard takes fluency over it", async ({ page, request }) => {
  const stamp = String(Date.now());
  // Theatre: three people seen in events, all shown suggestions; the unit is not on the units page yet.
  const theatre = `Theatre ${stamp}`;
  await ingest(request, events(stamp, theatre, 3, 3));

  await signIn(page, "admin", "/units");
  await expect(page.getByRole("heading", { level: 1 })).toHaveText("Units");
  await hydrated(page);
  const form = page.locator("section", { has: page.getByRole("heading", { name: "Add a unit" }) });
  await form.getByLabel("Name").fill(theatre);
  // Nobody: refused by field, nothing stored.
  await form.getByLabel("Headcount").fill("0");
  await form.getByRole("button", { name: "Add unit" }).click();
  await expect(form.locator("#headcount-error")).toContainText("must be at least 1");
  await expect(page.getByRole("rowheader", { name: theatre })).toHaveCount(0);
  // Ten people work there.
  await form.getByLabel("Headcount").fill("10");
  await form.getByRole("button", { name: "Add unit" }).click();
  const row = page.getByRole("row").filter({ has: page.getByRole("rowheader", { name: theatre }) });
  // The row's cells: part of, headcount, version (the unit's name is its row header).
  await expect(row.locator("td").nth(1)).toHaveText("10");

  // 3 of 10 is below the bar: the card says how many more people are needed, with the evidence folded.
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Adoption" }).click();
  const card = page.getByRole("listitem").filter({ has: page.getByRole("heading", { name: theatre }) });
  await expect(card.locator(".badge")).toHaveText("Not yet staged");
  await expect(card).toContainText("headcount 10");
  await expect(card.locator(".next-step")).toHaveText(
    "2 more of its 10 people need to work with AI suggestions to reach the 50 % bar.",
  );
  await expect(card.locator(".headcount-note")).toHaveCount(0);
  await card.getByText("What was measured").click();
  await expect(card.locator("details.missing")).toContainText("3 of 10 people (30 %) were shown AI suggestions");

  // The unit really has four people: editing the headcount makes it fluent.
  await open(page, "/units");
  await page.getByRole("row").filter({ has: page.getByRole("rowheader", { name: theatre }) }).getByRole("link", { name: `Edit ${theatre}` }).click();
  await expect(page.getByRole("heading", { level: 1 })).toHaveText(`Edit unit ${theatre}`);
  await hydrated(page);
  await page.getByLabel("Headcount").fill("4");
  await page.getByRole("button", { name: "Save unit" }).click();
  await expect(page).toHaveURL(/\/units\?saved=\d+#unit-\d+$/);
  await expect(row.locator("td").nth(1)).toHaveText("4");
  await open(page, "/adoption");
  await expect(card.locator(".badge")).toHaveText("Stage 1 · AI fluency");
  await expect(card).toContainText("3 of 4 people (75 %)");
});

test("an admin changes the adoption rules, and the dashboard judges by them and says so", async ({ page, request, baseURL }) => {
  // The rules are the whole organisation's: a failed earlier attempt of this journey may have left the
  // bar at 80 %, so its retry starts from the default rules again.
  const admin = await apiAs(baseURL!, "admin");
  const current = await (await admin.get("/api/v1/adoption/rules")).json();
  if (current.rules.fluency_bar !== 0.5) {
    const reset = { version: current.version, fluency_bar: 0.5, max_active_goals_per_squad: 3, eval_max_age_days: 30 };
    expect((await admin.put("/api/v1/adoption/rules", { data: reset })).status()).toBe(200);
  }
  const stamp = String(Date.now());
  // Ward: two of three people shown suggestions (67 %), fluent under the default 50 % bar.
  const ward = `Ward ${stamp}`;
  await ingest(request, events(stamp, ward, 3, 2));

  await signIn(page, "admin", "/adoption");
  await hydrated(page);
  const card = page.getByRole("listitem").filter({ has: page.getByRole("heading", { name: ward }) });
  await expect(card.locator(".badge")).toHaveText("Stage 1 · AI fluency");
  const bar = page.getByLabel("Fluency bar (% of a unit's people)");
  const save = page.getByRole("button", { name: "Save the rules" });

  // A bar of 0 % would make every unit fluent: refused by field, nothing saved.
  await page.getByText("Change the rules").click();
  await bar.fill("0");
  await save.click();
  await expect(page.locator("#fluency_bar-error")).toHaveText("must be above 0 % and at most 100 %");

  // 80 %: the unit is no longer fluent, and the page says which rules it judged by.
  await bar.fill("80");
  await save.click();
  await expect(page).toHaveURL(/\/adoption\?rules=\d+#rules-heading$/);
  await expect(page.locator("#rules-version")).toContainText("set by admin@e2e.slope");
  await expect(card.locator(".badge")).toHaveText("Not yet staged");
  await expect(page.getByRole("definition").first()).toContainText("At least 80 %");

  // Back to 50 %, as the other journeys expect: the next version, and the unit fluent again.
  await hydrated(page);
  await page.getByText("Change the rules").click();
  await bar.fill("50");
  await save.click();
  await expect(page.getByRole("definition").first()).toContainText("At least 50 %");
  await expect(card.locator(".badge")).toHaveText("Stage 1 · AI fluency");
});
