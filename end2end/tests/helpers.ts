import { expect, request as playwrightRequest, test as base, type APIRequestContext, type APIResponse, type Page } from "@playwright/test";
import { ACCOUNTS, type Credentials, type Role } from "../accounts";

export { ACCOUNTS, type Credentials, type Role };

/** Opens `path` and waits until the browser bundle has hydrated the page; clicks before that are lost. */
export async function open(page: Page, path: string) {
  await page.goto(path);
  await hydrated(page);
}

export async function hydrated(page: Page) {
  await expect(page.locator("body[data-hydrated='true']")).toBeAttached({ timeout: 30_000 });
}

/**
 * Signs the page's browser in through the sign-in form (a plain form, so it works without JavaScript
 * too) and waits until the server has sent it on to `next`. `who` is one of the accounts the e2e server
 * starts with (see `../accounts.ts`) or any other account's credentials.
 */
export async function signIn(page: Page, who: Role | Credentials, next = "/") {
  const { email, password } = typeof who === "string" ? ACCOUNTS[who] : who;
  await page.goto(`/login?next=${encodeURIComponent(next)}`);
  await page.getByLabel("E-mail address").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page).not.toHaveURL(/\/login(\?|$)/);
  await expect(page.locator("#signed-in-as")).toHaveText(email);
}

/**
 * An API client signed in as `who`: it holds the session cookie that `POST /auth/login` sets and sends
 * an `Origin` header, as a browser would (the server refuses cookie-authenticated changes without one).
 */
export async function apiAs(baseURL: string, who: Role | Credentials): Promise<APIRequestContext> {
  const { email, password } = typeof who === "string" ? ACCOUNTS[who] : who;
  const context = await playwrightRequest.newContext({ baseURL, extraHTTPHeaders: { Origin: baseURL } });
  const response = await context.post("/auth/login", { form: { email, password, next: "/" }, maxRedirects: 0 });
  expect(response.status(), `signing in ${email}`).toBe(303);
  expect(response.headers()["location"], `signing in ${email}`).toBe("/");
  return context;
}

/**
 * Makes `credentials` a member of the organisation as `role`: `admin` (an admin's API client) invites
 * the address, and the invitation is accepted with the password, as the invitee's form does. The account
 * is created if the address has none.
 */
export async function invitedMember(
  admin: APIRequestContext,
  baseURL: string,
  credentials: Credentials & { name: string },
  role: string,
  squads: number[] = [],
) {
  const invited = await admin.put("/api/v1/members", {
    data: { email: credentials.email, name: credentials.name, role, squads },
  });
  expect(invited.status(), await invited.text()).toBe(202);
  const { secret } = await invited.json();
  const invitee = await playwrightRequest.newContext({ baseURL, extraHTTPHeaders: { Origin: baseURL } });
  const accepted = await invitee.post("/auth/accept", {
    form: { token: secret, name: credentials.name, password: credentials.password },
    maxRedirects: 0,
  });
  expect(accepted.status(), `accepting ${credentials.email}'s invitation`).toBe(303);
  expect(accepted.headers()["x-slope-accept"], `accepting ${credentials.email}'s invitation`).toBeUndefined();
  await invitee.dispose();
}

/**
 * `test` with a `request` fixture that is signed in (as `apiRole`, the leader by default), so journeys
 * can prepare data through the JSON API, and a `page` that fails the journey when anything on it breaks
 * the server's Content-Security-Policy (an inline script without the page's nonce, a blocked style or
 * WebAssembly compile): every journey doubles as a check that the policy and the bundle agree.
 */
export const test = base.extend<{ apiRole: Role }>({
  apiRole: ["leader", { option: true }],
  page: async ({ page }, use, testInfo) => {
    const violations: string[] = [];
    page.on("console", (message) => {
      if (/content security policy/i.test(message.text())) violations.push(message.text());
    });
    // Chromium logs most violations itself; the event catches the rest (such as reports of blocked
    // attributes), and is registered before any of the page's own scripts run.
    await page.addInitScript(() => {
      document.addEventListener("securitypolicyviolation", (event) => {
        console.error(`Content Security Policy violation: ${event.violatedDirective} blocked ${event.blockedURI}`);
      });
    });
    await use(page);
    // A journey that provokes violations on purpose (to see the policy hold) says how many.
    const expected = testInfo.annotations.filter((a) => a.type === "expected-csp-violation").length;
    expect(violations.length, `the page broke its Content-Security-Policy: ${violations.join(" | ")}`).toBeLessThanOrEqual(
      expected * 2,
    );
    if (expected === 0) expect(violations, "the page broke its Content-Security-Policy").toEqual([]);
  },
  request: async ({ baseURL, apiRole }, use) => {
    const context = await apiAs(baseURL!, apiRole);
    await use(context);
    await context.dispose();
  },
});

/** The JSON body of an answer whose status is one of `statuses`. */
export async function ok(response: APIResponse, statuses = [200, 201]) {
  expect(statuses, await response.text()).toContain(response.status());
  return response.json();
}

/** Queues a job and waits until it has succeeded; returns the finished job. */
export async function runJob(request: APIRequestContext, job: object) {
  const queued = await ok(await request.post("/api/v1/jobs", { data: job }), [201]);
  let done: { id: number; status: string; error?: string; result: { model_id: number } } = queued;
  await expect
    .poll(
      async () => {
        done = await (await request.get(`/api/v1/jobs/${queued.id}`)).json();
        return done.status;
      },
      { timeout: 120_000 },
    )
    .toMatch(/succeeded|failed|cancelled/);
  expect(done.status, done.error ?? "").toBe("succeeded");
  return done;
}
