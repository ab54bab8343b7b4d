import { expect, type APIRequestContext, type APIResponse, type Page } from "@playwright/test";
import { hydrated, invitedMember, open, signIn, test } from "./helpers";

// What each role sees and may do in the browser. The plans are prepared through the API by the admin
// (the `request` fixture); the people under test only use the browser.
test.use({ apiRole: "admin" });

async function created(response: APIResponse) {
  expect(response.status(), await response.text()).toBe(201);
  return response.json();
}

/** A season (in `year`'s first half, so the journeys' seasons never overlap) with one objective and key result. */
async function plan(request: APIRequestContext, name: string, year: number) {
  const season = await created(
    await request.post("/api/v1/seasons", {
      data: {
        name,
        thesis: "Roles decide who changes the plan.",
        problems: ["Everyone edits everything"],
        winning: "Each role sees exactly what it may change.",
        starts_on: `${year}-01-01`,
        ends_on: `${year}-06-30`,
      },
    }),
  );
  const objective = await created(
    await request.post(`/api/v1/seasons/${season.id}/objectives`, {
      data: { quarter: `${year}-Q1`, title: `${name}: plans are trusted`, commitment: "committed" },
    }),
  );
  const keyResult = await created(
    await request.post(`/api/v1/objectives/${objective.id}/key-results`, {
      data: { title: `${name}: edits by the right people`, kind: "increase-to", start: 0, target: 100, unit: "%" },
    }),
  );
  return { season, objective, keyResult };
}

async function squad(request: APIRequestContext, name: string) {
  return created(await request.post("/api/v1/squads", { data: { name, unit: "Clinical", capacity: 10 } }));
}

async function goal(request: APIRequestContext, squadId: number, keyResultId: number, title: string, year: number) {
  return created(
    await request.post(`/api/v1/squads/${squadId}/goals`, {
      data: {
        key_result_id: keyResultId,
        title,
        starts_on: `${year}-01-04`,
        ends_on: `${year}-02-01`,
        investment: "snapshot",
        planned_capacity: 4,
        kind: "milestone",
      },
    }),
  );
}

/** A new account in the organisation, invited by the admin and accepted; `squads` only for squad members. */
async function member(
  request: APIRequestContext,
  baseURL: string,
  label: string,
  role: string,
  squads: number[] = [],
) {
  const credentials = { email: `${label}-${Date.now()}@e2e.slope`, password: `${label}-password-1` };
  await invitedMember(request, baseURL, { ...credentials, name: label }, role, squads);
  return credentials;
}

/** No link to a form that changes something, and no form that posts, in the page's main part. */
async function noEditControls(page: Page) {
  const main = page.locator("main");
  await expect(main.locator("a[href$='/edit'], a[href$='/new']")).toHaveCount(0);
  await expect(main.locator("form[method='post']")).toHaveCount(0);
  for (const name of ["New season", "Edit season", "Add objective", "Edit", "Add key result", "New squad", "Add goal"]) {
    await expect(main.getByRole("link", { name, exact: true })).toHaveCount(0);
  }
  for (const name of ["Activate season", "Close season", "Record check-in"]) {
    await expect(main.getByRole("button", { name, exact: true })).toHaveCount(0);
  }
}

test("an exec reads the whole plan and changes nothing", async ({ page, request }) => {
  const { season, objective, keyResult } = await plan(request, "Exec view", 2037);
  const board = await squad(request, "Exec view squad");
  const g = await goal(request, board.id, keyResult.id, "Exec view goal", 2037);

  await signIn(page, "exec");
  await expect(page.locator(".signed-in .badge")).toHaveText("exec");

  // The seasons list.
  await open(page, "/");
  await expect(page.getByRole("link", { name: "Exec view", exact: true })).toBeVisible();
  await noEditControls(page);

  // A season page: the plan is all there, its controls are not.
  await page.getByRole("link", { name: "Exec view", exact: true }).click();
  await expect(page).toHaveURL(new RegExp(`/seasons/${season.id}$`));
  await hydrated(page);
  await expect(page.getByRole("heading", { level: 1, name: "Exec view" })).toBeVisible();
  await expect(page.getByText("Everyone edits everything")).toBeVisible();
  await expect(page.getByRole("heading", { name: objective.title })).toBeVisible();
  await expect(page.getByRole("link", { name: keyResult.title })).toBeVisible();
  await expect(page.getByRole("progressbar", { name: "Season progress" })).toBeVisible();
  await expect(page.getByRole("button", { name: "Show" })).toBeVisible(); // "as known on" is reading
  await noEditControls(page);

  // A key result: no edit link, no check-in form.
  await page.getByRole("link", { name: keyResult.title }).click();
  await expect(page.getByRole("heading", { level: 1, name: keyResult.title })).toBeVisible();
  await expect(page.getByRole("heading", { name: "History" })).toBeVisible();
  await noEditControls(page);

  // The squad board and a goal.
  await open(page, `/squads?season=${season.id}`);
  const column = page.locator(`#squad-${board.id}`);
  await expect(column.getByRole("heading", { level: 2, name: "Exec view squad" })).toBeVisible();
  await expect(column.getByRole("link", { name: "Exec view goal" })).toBeVisible();
  await noEditControls(page);
  await column.getByRole("link", { name: "Exec view goal" }).click();
  await expect(page.getByRole("heading", { level: 1, name: "Exec view goal" })).toBeVisible();
  await noEditControls(page);

  // The edit form, visited directly, is refused by the service, and nothing changes.
  await open(page, `/seasons/${season.id}/edit`);
  await page.getByLabel("Name").fill("Renamed by an exec");
  await page.getByRole("button", { name: "Save season" }).click();
  await expect(page.locator(".form-messages")).toContainText(
    "the exec role may not change seasons, objectives, key results or squads",
  );
  await expect(page).toHaveURL(new RegExp(`/seasons/${season.id}/edit$`));
  expect((await (await request.get(`/api/v1/seasons/${season.id}`)).json()).name).toBe("Exec view");
  // The same for a goal's form.
  await open(page, `/squad-goals/${g.id}/edit`);
  await page.getByLabel("Title").fill("Goal renamed by an exec");
  await page.getByRole("button", { name: "Save goal" }).click();
  await expect(page.locator(".form-messages")).toContainText("the exec role may not change squad goals");
  expect((await (await request.get(`/api/v1/squad-goals/${g.id}`)).json()).goal.title).toBe("Exec view goal");
});

test("a squad member edits their own squad's goals and no other's", async ({ page, request, baseURL }) => {
  const { season, keyResult } = await plan(request, "Member view", 2039);
  const agents = await squad(request, "Agents");
  const platform = await squad(request, "Platform");
  const own = await goal(request, agents.id, keyResult.id, "Agents draft notes", 2039);
  const other = await goal(request, platform.id, keyResult.id, "Platform serves drafts", 2039);
  const sam = await member(request, baseURL!, "sam", "squad-member", [agents.id]);

  await signIn(page, sam);
  await expect(page.locator(".signed-in .badge")).toHaveText("squad-member");
  // Squad members change no season, objective, key result or squad.
  await expect(page.getByRole("link", { name: "New season" })).toHaveCount(0);

  // On the board only their own squad offers a new goal, and no squad offers its own edit form.
  await open(page, `/squads?season=${season.id}`);
  const agentsColumn = page.locator(`#squad-${agents.id}`);
  const platformColumn = page.locator(`#squad-${platform.id}`);
  await expect(agentsColumn.getByRole("link", { name: "Add goal" })).toBeVisible();
  await expect(platformColumn.getByRole("link", { name: "Add goal" })).toHaveCount(0);
  await expect(page.locator("main").getByRole("link", { name: "Edit", exact: true })).toHaveCount(0);
  await expect(page.getByRole("link", { name: "New squad" })).toHaveCount(0);

  // Their own squad's goal: edited in the browser, the new title shows after the save.
  await agentsColumn.getByRole("link", { name: "Agents draft notes" }).click();
  await expect(page.getByRole("heading", { level: 1, name: "Agents draft notes" })).toBeVisible();
  await expect(page.getByRole("button", { name: "Record check-in" })).toBeVisible();
  await page.getByRole("link", { name: "Edit", exact: true }).click();
  await expect(page).toHaveURL(new RegExp(`/squad-goals/${own.id}/edit$`));
  await hydrated(page);
  await page.getByLabel("Title").fill("Agents draft whole notes");
  await page.getByRole("button", { name: "Save goal" }).click();
  await expect(page).toHaveURL(new RegExp(`/squad-goals/${own.id}$`));
  await expect(page.getByRole("heading", { level: 1, name: "Agents draft whole notes" })).toBeVisible();
  expect((await (await request.get(`/api/v1/squad-goals/${own.id}`)).json()).goal.title).toBe("Agents draft whole notes");

  // Another squad's goal reads the same, without its controls.
  await open(page, `/squad-goals/${other.id}`);
  await expect(page.getByRole("heading", { level: 1, name: "Platform serves drafts" })).toBeVisible();
  await expect(page.getByRole("heading", { name: "History" })).toBeVisible();
  await noEditControls(page);

  // Its edit form, visited directly, is refused with the service's message, and nothing changes.
  await open(page, `/squad-goals/${other.id}/edit`);
  await page.getByLabel("Title").fill("Renamed by another squad");
  await page.getByRole("button", { name: "Save goal" }).click();
  await expect(page.locator(".form-messages")).toContainText(
    `the squad-member role may not change the goals of squad ${platform.id}`,
  );
  await expect(page).toHaveURL(new RegExp(`/squad-goals/${other.id}/edit$`));
  expect((await (await request.get(`/api/v1/squad-goals/${other.id}`)).json()).goal.title).toBe("Platform serves drafts");
});

test("signing out ends the session", async ({ page, context }) => {
  await signIn(page, "leader", "/squads");
  await expect(page).toHaveURL(/\/squads$/);
  const cookies = await context.cookies();
  expect(cookies.map((c) => c.name)).toContain("slope_session");

  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/\/login$/);
  await expect(page.locator("#signed-in-as")).toHaveCount(0);

  // Any page now asks to sign in first, and comes back to it afterwards.
  await page.goto("/squads");
  await expect(page).toHaveURL(/\/login\?next=\/squads$/);
  await expect(page.getByRole("heading", { level: 1, name: "Sign in" })).toBeVisible();

  // The old session cookie, kept, is worth nothing: the session ended on the server.
  await context.addCookies(cookies);
  await page.goto("/");
  await expect(page).toHaveURL(/\/login\?next=\/$/);
});

test("a wrong password is refused on the sign-in page", async ({ page, request, baseURL }) => {
  // An account of its own, so failed attempts never lock out an account other journeys use.
  const account = await member(request, baseURL!, "typo", "exec");

  await page.goto("/squads");
  await expect(page).toHaveURL(/\/login\?next=\/squads$/);
  await page.getByLabel("E-mail address").fill(account.email);
  await page.getByLabel("Password").fill("not-the-password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page).toHaveURL(/\/login\?/);
  await expect(page.locator("#login-error")).toHaveText("wrong e-mail address or password");
  await expect(page.locator("#signed-in-as")).toHaveCount(0);

  // The form still knows where the person was going; the right password gets them there.
  await page.getByLabel("E-mail address").fill(account.email);
  await page.getByLabel("Password").fill(account.password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page).toHaveURL(/\/squads$/);
  await expect(page.locator("#signed-in-as")).toHaveText(account.email);
});
