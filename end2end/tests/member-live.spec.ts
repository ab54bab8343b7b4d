import { expect, type APIRequestContext } from "@playwright/test";
import { apiAs, invitedMember, open, signIn, test } from "./helpers";

// A squad member follows their goal on the squad dashboard: the goal's key result is fed by the
// acceptance rate of the squad's loop, and a new batch of events moves the value the member sees.

/** NDJSON of 20 users on `day`, each suggested 100 characters of which `accepted` were kept. */
function batch(prefix: string, day: string, accepted: number): string {
  return (
    Array.from({ length: 20 }, (_, u) =>
      JSON.stringify({
        event_id: `${prefix}-${u}`,
        ts: `${day}T09:${String(u).padStart(2, "0")}:00Z`,
        user_id: `live-${u}`,
        variant: "a",
        suggested_chars: 100,
        accepted_chars: accepted,
      }),
    ).join("\n") + "\n"
  );
}

async function send(request: APIRequestContext, path: string, data: unknown, status = 201) {
  const response = await request.post(path, { data });
  expect(response.status(), `${path}: ${await response.text()}`).toBe(status);
  return response.json();
}

async function ingest(request: APIRequestContext, loop: string, body: string) {
  const response = await request.post(`/api/v1/loops/${loop}/events`, {
    data: body,
    headers: { "Content-Type": "application/x-ndjson" },
  });
  expect(response.status(), await response.text()).toBe(201);
}

test("a squad member sees a live metric move on their goal after an ingested batch", async ({ page, request, baseURL }) => {
  const stamp = String(Date.now());
  const loop = `e2e-live-${stamp}`;
  const metric = `e2e-live-acceptance-${stamp}`;
  const today = new Date().toISOString().slice(0, 10);
  const yesterday = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);

  // The leader's plan: a metric over the loop feeding a key result, and the squad's goal under it.
  await ingest(request, loop, batch(`${stamp}-a`, yesterday, 30));
  await send(request, "/api/v1/metrics", { key: metric, name: `Live acceptance ${stamp}`, kind: "acceptance-rate", loop, granularity: "day" });
  const season = await send(request, "/api/v1/seasons", {
    name: `Live goals ${stamp}`,
    thesis: "Acceptance is the loop's pulse.",
    problems: ["Drafts are rejected"],
    winning: "Drafts are kept.",
    starts_on: "2043-01-01",
    ends_on: "2043-06-30",
    slope_target: 0.2,
  });
  const objective = await send(request, `/api/v1/seasons/${season.id}/objectives`, {
    quarter: "2043-Q1",
    title: "Drafts are kept",
    commitment: "committed",
  });
  const kr = await send(request, `/api/v1/objectives/${objective.id}/key-results`, {
    title: "Kept characters",
    kind: "increase-to",
    start: 0.2,
    target: 0.6,
    metric,
  });
  const squad = await send(request, "/api/v1/squads", { name: `Live squad ${stamp}`, unit: "Clinical", capacity: 6 });
  await send(request, `/api/v1/squads/${squad.id}/goals`, {
    key_result_id: kr.id,
    title: `Keep more drafts ${stamp}`,
    starts_on: "2043-01-05",
    ends_on: "2043-02-09",
    investment: "snapshot",
    planned_capacity: 3,
    kind: "milestone",
  });

  // The admin adds the squad member.
  const admin = await apiAs(baseURL!, "admin");
  const credentials = { email: `live-member-${stamp}@e2e.slope`, password: "live-member-password-1" };
  await invitedMember(admin, baseURL!, { ...credentials, name: "Live member" }, "squad-member", [squad.id]);
  await admin.dispose();

  await signIn(page, credentials);
  await open(page, `/squads/${squad.id}/dashboard?season=${season.id}`);
  const goal = page.locator(".dashboard-goal").filter({ hasText: `Keep more drafts ${stamp}` });
  await expect(goal.locator(".goal-latest")).toContainText(`latest 30.0 % for ${yesterday}`);

  // Today's batch: 60 of 100 characters kept. The member's next look shows it.
  await ingest(request, loop, batch(`${stamp}-b`, today, 60));
  await page.reload();
  await expect(goal.locator(".goal-latest")).toContainText(`latest 60.0 % for ${today}`);
  await expect(goal.locator("circle.point")).toHaveCount(2);
});
