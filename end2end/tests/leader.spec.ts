import { expect } from "@playwright/test";
import { hydrated, open, signIn, test } from "./helpers";

// A leader defines a season and its plan in the browser, from an empty database.
test("a leader plans a season, checks in and sees roll-up and slope share", async ({ page }) => {
  await signIn(page, "leader");
  await open(page, "/");
  // Pages load in full (only the forms are islands that hydrate), so wait after each navigation.
  await page.getByRole("link", { name: "New season" }).click();
  await expect(page.getByRole("heading", { name: "New season" })).toBeVisible();
  await hydrated(page);

  // The domain's rules run in the browser before anything is sent.
  await page.getByLabel("Name").fill("Agents everywhere");
  await page.getByLabel("Starts on").fill("2027-01-01");
  await page.getByLabel("Ends on").fill("2026-12-01");
  await page.getByRole("button", { name: "Create season" }).click();
  await expect(page.locator("#ends_on-error")).toContainText("after the start date");
  await expect(page.locator("#thesis-error")).toContainText("required");

  await page.getByLabel("Thesis").fill("Agents replace forms in clinical software.");
  await page.getByLabel("Customer problems").fill("Notes take too long\nSuggestions are slow");
  await page.getByLabel("What winning looks like").fill("Half of all notes drafted by agents.");
  await page.getByLabel("Ends on").fill("2027-06-30");
  await page.getByLabel("Slope target (%)").fill("20");
  await page.getByRole("button", { name: "Create season" }).click();
  await expect(page).toHaveURL(/\/seasons\/\d+$/);
  await expect(page.getByRole("heading", { level: 1, name: "Agents everywhere" })).toBeVisible();
  const seasonUrl = page.url();

  // An objective with an increasing and a decreasing key result.
  await page.getByRole("link", { name: "Add objective" }).click();
  await hydrated(page);
  await page.getByLabel("Title").fill("Clinicians trust the drafts");
  await page.getByLabel("Quarter").selectOption("2027-Q1");
  await page.getByRole("button", { name: "Create objective" }).click();
  await expect(page).toHaveURL(/\/seasons\/\d+/);
  await expect(page.getByRole("heading", { name: "Clinicians trust the drafts" })).toBeVisible();

  for (const kr of [
    { title: "Acceptance rate", kind: "increase-to", start: "20", target: "40", unit: "%" },
    { title: "Suggestion latency", kind: "decrease-to", start: "200", target: "0", unit: "ms" },
  ]) {
    await page.getByRole("link", { name: "Add key result" }).click();
    await hydrated(page);
    await page.getByLabel("Title").fill(kr.title);
    await page.getByLabel("Kind").selectOption(kr.kind);
    await page.getByLabel("Start", { exact: true }).fill(kr.start);
    await page.getByLabel("Target", { exact: true }).fill(kr.target);
    await page.getByLabel("Unit").fill(kr.unit);
    await page.getByRole("button", { name: "Create key result" }).click();
    await expect(page.getByRole("heading", { level: 1, name: kr.title })).toBeVisible();
    await page.goto(seasonUrl);
    await hydrated(page);
  }

  // A squad with one snapshot and one slope goal.
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Squads" }).click();
  await page.getByRole("link", { name: "New squad" }).click();
  await hydrated(page);
  await page.getByLabel("Name").fill("Drafts");
  await page.getByLabel("Unit").fill("Clinical");
  await page.getByLabel("Capacity").fill("10");
  await page.getByRole("button", { name: "Create squad" }).click();
  await expect(page.getByRole("heading", { level: 2, name: "Drafts" })).toBeVisible();
  // The squad's column on the board (other journeys may have added squads of their own).
  const drafts = page.locator("section.column", { has: page.getByRole("heading", { level: 2, name: "Drafts" }) });

  const goals = [
    { title: "Inline completions", kr: /Acceptance rate/, end: "2027-02-01", investment: "snapshot", capacity: "8" },
    { title: "Full drafts from transcripts", kr: /Suggestion latency/, end: "2027-02-15", investment: "slope", capacity: "2" },
  ];
  for (const goal of goals) {
    await drafts.getByRole("link", { name: "Add goal" }).click();
    await hydrated(page);
    await page.getByLabel("Title").fill(goal.title);
    const option = page.getByLabel("Ladders up to").locator("option", { hasText: goal.kr });
    await page.getByLabel("Ladders up to").selectOption((await option.getAttribute("value"))!);
    await page.getByLabel("Starts on").fill("2027-01-04");
    await page.getByLabel("Ends on").fill(goal.end);
    await page.getByLabel("Investment").selectOption(goal.investment);
    await page.getByLabel("Planned capacity").fill(goal.capacity);
    if (goal.investment === "slope") {
      await page.getByLabel("Belief it challenges").fill("Clinicians want completions, not drafts");
      await page.getByLabel("Kill criteria").fill("Acceptance of drafts below 15 % after three weeks");
    }
    await page.getByRole("button", { name: "Create goal" }).click();
    await expect(page.getByRole("heading", { level: 1, name: goal.title })).toBeVisible();
    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Squads" }).click();
    await hydrated(page);
  }
  await expect(drafts).toContainText("slope 2 of 10 pw = 20 %");

  // An eight-week goal is refused with the domain's message.
  await drafts.getByRole("link", { name: "Add goal" }).click();
  await hydrated(page);
  const formUrl = page.url();
  await page.getByLabel("Title").fill("Too long a goal");
  await page.getByLabel("Starts on").fill("2027-01-04");
  await page.getByLabel("Ends on").fill("2027-03-01");
  await page.getByLabel("Planned capacity").fill("3");
  await page.getByRole("button", { name: "Create goal" }).click();
  await expect(page.locator("#ends_on-error")).toContainText("4 to 6 weeks");
  await expect(page.locator("#ends_on-error")).toContainText("56 days");
  expect(page.url()).toBe(formUrl);

  // A check-in on the decreasing key result: from 200 down to 0, a value of 100 is halfway.
  await page.goto(seasonUrl);
  await hydrated(page);
  await page.getByRole("link", { name: "Suggestion latency" }).click();
  await hydrated(page);
  await page.getByLabel("Value").fill("100");
  await page.getByLabel("Confidence (%)").fill("70");
  await page.getByLabel("Your name").fill("Ana");
  await page.getByRole("button", { name: "Record check-in" }).click();
  await expect(page.locator("table.history tbody tr")).toHaveCount(1);
  await expect(page.getByRole("progressbar", { name: "Key result progress" })).toHaveAttribute("aria-valuenow", "50");

  // The roll-up: one key result at 50 %, one without data, equal weights: the objective and the season
  // are at 25 %. Slope share is 2 of 10 person-weeks.
  const check = async () => {
    await expect(page.getByRole("progressbar", { name: "Season progress" })).toHaveAttribute("aria-valuenow", "25");
    await expect(page.getByRole("progressbar", { name: "Clinicians trust the drafts progress" })).toHaveAttribute("aria-valuenow", "25");
    await expect(page.getByText("slope 2 of 10 pw = 20 % (target 20 %)").first()).toBeVisible();
    await expect(page.getByRole("link", { name: "Full drafts from transcripts" })).toBeVisible();
  };
  await page.goto(seasonUrl);
  await hydrated(page);
  await check();
  await page.reload();
  await hydrated(page);
  await check();
});
