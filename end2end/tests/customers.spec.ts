import { expect, type APIRequestContext } from "@playwright/test";
import { apiAs, hydrated, invitedMember, open, signIn, test } from "./helpers";

// An exec reads the customers' lifetime value. A leader's system sends transactions through the API
// (the `request` fixture) and defines a lifetime value metric; the page shows its weekly series, the
// current fit, the value distribution and the P(alive) curve, and the newest week moves when more
// transactions arrive. The journeys share one database, so the metric's key carries a stamp.

/** A small deterministic generator, so the purchases are the same on every run. */
function generator(seed: number) {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state / 2147483648;
  };
}

/** NDJSON purchases of `customers` customers over the `weeks` weeks before `end` (a Date): each buys
 *  at exponential waits at a rate of their own and leaves after a purchase with a chance of their own,
 *  as the BG/NBD model assumes. */
function purchases(stamp: string, customers: number, weeks: number, end: Date, seed: number): string {
  const next = generator(seed);
  const lines = [];
  const span = weeks * 7 * 86_400_000;
  for (let c = 0; c < customers; c++) {
    const rate = (0.2 + 1.2 * next() * next()) / (7 * 86_400_000);
    const leave = 0.05 + 0.3 * next();
    const spend = 40 + 120 * next();
    let t = end.getTime() - span + next() * span * 0.6;
    for (let n = 0; t < end.getTime(); n++) {
      lines.push(
        JSON.stringify({
          event_id: `${stamp}-${seed}-${c}-${n}`,
          customer_id: `${stamp}-c${c}`,
          ts: new Date(t).toISOString(),
          amount: Math.round(spend * (0.6 + 0.8 * next()) * 100) / 100,
        }),
      );
      if (next() < leave) break;
      t += -Math.log(Math.max(next(), 1e-9)) / rate;
    }
  }
  return lines.join("\n") + "\n";
}

async function send(request: APIRequestContext, body: string) {
  const response = await request.post("/api/v1/transactions", {
    data: body,
    headers: { "Content-Type": "application/x-ndjson" },
  });
  expect(response.status(), await response.text()).toBe(201);
}

test("an exec follows lifetime value as transactions arrive", async ({ page, request }) => {
  const stamp = `e2e${Date.now()}`;
  const key = `ltv-${stamp}`;
  const name = `Customer LTV ${stamp}`;
  const created = await request.post("/api/v1/metrics", { data: { key, name, kind: "ltv" } });
  expect(created.status(), await created.text()).toBe(201);
  const dayAgo = new Date(Date.now() - 86_400_000);
  await send(request, purchases(stamp, 400, 20, new Date(dayAgo.getTime() - 7 * 86_400_000), 1));

  await signIn(page, "exec", "/customers");
  await hydrated(page);
  await expect(page.getByRole("heading", { level: 1, name: "Customers" })).toBeVisible();
  const metric = page.locator("article.ltv-metric").filter({ hasText: name });
  const newest = metric.getByText(/^Week of \d{4}-\d{2}-\d{2}: [\d,]+ per customer over 52 weeks/);
  await expect(newest).toBeVisible();
  const before = await newest.textContent();
  await expect(metric.locator("figure.chart svg")).toBeVisible();
  await expect(page.getByRole("img", { name: "Customers by expected value" })).toBeVisible();
  await expect(page.getByRole("img", { name: "P(alive) by weeks since the last purchase" })).toBeVisible();

  // A week more of purchases by new customers: the newest week is a later one, with another value.
  await send(request, purchases(stamp + "b", 150, 1, dayAgo, 2));
  await page.reload();
  await hydrated(page);
  await expect(newest).toBeVisible();
  expect(await newest.textContent()).not.toBe(before);

  // The metric's own page says where it comes from and links back here.
  await metric.getByRole("link", { name }).click();
  await expect(page.getByText(/from transactions · per week/)).toBeVisible();
  await expect(page.locator(".crumbs").getByRole("link", { name: "Customers" })).toBeVisible();
});

test("a squad member sees their LTV key result move after transactions are ingested", async ({ page, request, baseURL }) => {
  // Every batch refits the weeks it reaches for each LTV metric of the organisation, the other journey's
  // too, on a debug build.
  test.setTimeout(240_000);
  const stamp = `e2e${Date.now()}`;
  // A unit of this run only, so the other journeys' transactions do not move the metric.
  const unit = `Practices ${stamp}`;
  const key = `ltv-member-${stamp}`;
  const post = async (path: string, data: unknown) => {
    const response = await request.post(path, { data });
    expect(response.status(), `${path}: ${await response.text()}`).toBe(201);
    return response.json();
  };
  await post("/api/v1/metrics", { key, name: `Practices' LTV ${stamp}`, kind: "ltv", unit });
  const withUnit = (body: string) =>
    body
      .trim()
      .split("\n")
      .map((line) => JSON.stringify({ ...JSON.parse(line), unit }))
      .join("\n") + "\n";
  const dayAgo = new Date(Date.now() - 86_400_000);
  await send(request, withUnit(purchases(stamp, 300, 12, new Date(dayAgo.getTime() - 7 * 86_400_000), 3)));

  // The leader's plan: a key result in money fed by the metric, and the squad's goal under it. A year no
  // other journey's season uses, and an early one: the season that starts latest is the organisation's
  // current season when none is active, and the leader's journey plans the current season's goals.
  const season = await post("/api/v1/seasons", {
    name: `Practices buy more ${stamp}`,
    thesis: "Notes that write themselves sell seats.",
    problems: ["Practices churn"],
    winning: "Practices stay and buy more.",
    starts_on: "2018-01-01",
    ends_on: "2018-06-30",
    slope_target: 0.2,
  });
  const objective = await post(`/api/v1/seasons/${season.id}/objectives`, {
    quarter: "2018-Q1",
    title: "Practices are worth more",
    commitment: "committed",
  });
  const kr = await post(`/api/v1/objectives/${objective.id}/key-results`, {
    title: "Practices' LTV",
    kind: "increase-to",
    start: 100,
    target: 300,
    unit: "USD",
    metric: key,
  });
  const squad = await post("/api/v1/squads", { name: `Value squad ${stamp}`, unit, capacity: 5 });
  await post(`/api/v1/squads/${squad.id}/goals`, {
    key_result_id: kr.id,
    title: `Practices buy again ${stamp}`,
    starts_on: "2018-01-08",
    ends_on: "2018-02-12",
    investment: "snapshot",
    planned_capacity: 3,
    kind: "milestone",
  });
  const admin = await apiAs(baseURL!, "admin");
  const credentials = { email: `ltv-member-${stamp}@e2e.slope`, password: "ltv-member-password-1" };
  await invitedMember(admin, baseURL!, { ...credentials, name: "Value member" }, "squad-member", [squad.id]);
  await admin.dispose();

  await signIn(page, credentials);
  await open(page, `/squads/${squad.id}/dashboard?season=${season.id}`);
  const goal = page.locator(".dashboard-goal").filter({ hasText: `Practices buy again ${stamp}` });
  const latest = goal.locator(".goal-latest");
  // "latest <value> for <week>": the value and the week it is of, without when the data was newest.
  const reading = /latest [\d,.]+ for \d{4}-\d{2}-\d{2}/;
  await expect(latest).toContainText(reading);
  const before = (await latest.textContent())?.match(reading)?.[0];

  // A week more of purchases: the newest complete week is refitted at once, and the goal follows it.
  await send(request, withUnit(purchases(stamp + "b", 120, 1, dayAgo, 4)));
  await page.reload();
  await expect(latest).toContainText(reading);
  expect((await latest.textContent())?.match(reading)?.[0]).not.toBe(before);
});
