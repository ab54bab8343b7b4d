import { expect } from "@playwright/test";
import { hydrated, test } from "./helpers";

// An admin invites a new colleague; the colleague opens the invitation's link, chooses a name and a
// password, and is signed in to the organisation with the invited role. The link works once.
test.use({ apiRole: "admin" });

test("an invited colleague accepts in the browser and is signed in with the invited role", async ({ page, request }) => {
  const email = `invitee-${Date.now()}@e2e.slope`;
  const invited = await request.put("/api/v1/members", { data: { email, role: "exec" } });
  expect(invited.status(), await invited.text()).toBe(202);
  const { accept_path: link } = await invited.json();

  await page.goto(link);
  await hydrated(page);
  await expect(page.locator("#invitation")).toContainText("as exec");
  await expect(page.locator("#invitation")).toContainText(email);
  await page.getByLabel("Your name").fill("Ivy Invitee");
  // A password that is too short is refused with the reason, and the link still works.
  await page.getByLabel("Password").fill("short");
  await page.getByRole("button", { name: "Accept and sign in" }).click();
  await expect(page.locator("#accept-error")).toContainText("at least 10 characters");
  await page.getByLabel("Password").fill("ivy's long password");
  await page.getByRole("button", { name: "Accept and sign in" }).click();
  await expect(page.locator("#signed-in-as")).toHaveText(email);
  await expect(page.locator(".signed-in .badge")).toHaveText("exec");

  // The admin sees the invitation accepted; the link is spent.
  const invitations = await (await request.get("/api/v1/invitations")).json();
  const mine = invitations.find((i: { email: string }) => i.email === email);
  expect(mine.accepted_at, JSON.stringify(mine)).toBeTruthy();
  await page.goto(link);
  await expect(page.locator("main")).toContainText("no open invitation");
});
