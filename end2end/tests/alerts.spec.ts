import { expect } from "@playwright/test";
import { apiAs, invitedMember, open, signIn, test } from "./helpers";

// A squad member is told when their squad's metric goes stale. A leader (the `request` fixture) sets up
// a squad, a metric whose only point is three hours old with a freshness limit of one hour, and a
// staleness monitor owned by the squad; evaluating it fires an alert into the squad members' inboxes.
// The member sees the unread count in the header, reads the alert, silences it and marks it read. The
// journeys share one database, so keys carry a stamp.

test("a squad member sees an alert in their inbox and silences it", async ({ page, request, baseURL }) => {
  const stamp = `e2e${Date.now()}`;
  const post = async (path: string, data: unknown, status = 201) => {
    const response = await request.post(path, { data });
    expect(response.status(), `${path}: ${await response.text()}`).toBe(status);
    return response.json();
  };
  const squad = await post("/api/v1/squads", { name: `Watchers ${stamp}`, unit: `Watch ${stamp}`, capacity: 3 });
  const metric = `feed-${stamp}`;
  await post("/api/v1/metrics", { key: metric, name: `Feed ${stamp}`, kind: "custom", granularity: "day", freshness_hours: 1 });
  const threeHoursAgo = new Date(Date.now() - 3 * 3_600_000).toISOString();
  await post(`/api/v1/metrics/${metric}/points`, { points: [{ at: threeHoursAgo, value: 0.5 }] }, 200);
  // Off the schedule, so only this journey's "run now" evaluates it.
  const monitor = `stale-${stamp}`;
  await post("/api/v1/monitors", {
    key: monitor,
    name: `Feed is fresh ${stamp}`,
    kind: "staleness",
    metric,
    squad_id: squad.id,
    enabled: false,
  });
  const admin = await apiAs(baseURL!, "admin");
  const credentials = { email: `watcher-${stamp}@e2e.slope`, password: "watcher-password-1" };
  await invitedMember(admin, baseURL!, { ...credentials, name: "Watcher" }, "squad-member", [squad.id]);
  await admin.dispose();
  const run = await post(`/api/v1/monitors/${monitor}/run`, {}, 200);
  expect(run.fired).toBe(1);

  await signIn(page, credentials);
  const inboxLink = page.locator("#inbox-link");
  await expect(inboxLink).toHaveText("Alerts (1)");
  await inboxLink.click();
  await expect(page.locator("#inbox h2")).toHaveText("Your inbox (1 unread)");
  const entry = page.locator("#inbox li.unread").filter({ hasText: metric });
  await expect(entry).toContainText(`${metric} is stale`);
  await entry.getByRole("link").click();

  // The alert's page: its evidence and history, and the silence form the squad's members may use.
  await expect(page.locator("h1 .badge")).toHaveText("firing");
  await expect(page.locator("#alert-evidence")).toContainText("1 h");
  await expect(page.locator("#alert-history li")).toHaveCount(1);
  await open(page, page.url());
  await page.getByLabel("For how many hours").fill("0");
  await page.getByRole("button", { name: "Silence" }).click();
  await expect(page.locator(".field.invalid")).toContainText("must be above 0");
  await page.getByLabel("For how many hours").fill("2");
  await page.getByLabel("Why").fill("The feed's source is being migrated");
  await page.getByRole("button", { name: "Silence" }).click();
  await expect(page).toHaveURL(/silenced=1/);
  await expect(page.locator("h1 .badge")).toHaveText("silenced");
  await expect(page.locator("#silenced-until")).toContainText(credentials.email);
  await expect(page.locator("#alert-history")).toContainText("The feed's source is being migrated");

  // Marked read, the inbox is quiet again.
  await page.goto("/alerts");
  await page.locator("#inbox li.unread").filter({ hasText: metric }).getByRole("button", { name: "Mark read" }).click();
  await expect(page.locator("#inbox h2")).toHaveText("Your inbox (0 unread)");
  await expect(page.locator("#inbox-link")).toHaveText("Alerts");
  await expect(page.locator(`#alerts tr`).filter({ hasText: metric }).locator(".badge")).toHaveText("silenced");
});
