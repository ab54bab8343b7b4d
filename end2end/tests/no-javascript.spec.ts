import { expect } from "@playwright/test";
import { signIn, test } from "./helpers";

// Pages render completely on the server, so a reader without JavaScript sees the whole plan; signing in
// is a plain form too.
test.use({ javaScriptEnabled: false });

test("a season page is readable without JavaScript", async ({ page, request }) => {
  const created = await request.post("/api/v1/seasons", {
    data: {
      name: "Readable without scripts",
      thesis: "Server rendering is enough to read a plan.",
      problems: ["Locked-down browsers"],
      winning: "Everyone can read the plan.",
      starts_on: "2031-01-01",
      ends_on: "2031-06-30",
    },
  });
  expect(created.status()).toBe(201);
  const season = await created.json();
  const objective = await request.post(`/api/v1/seasons/${season.id}/objectives`, {
    data: { quarter: "2031-Q1", title: "Plans read everywhere", commitment: "aspirational" },
  });
  expect(objective.status()).toBe(201);

  // Signing in without JavaScript sends the browser on to the page it asked for.
  await page.goto(`/seasons/${season.id}`);
  await expect(page).toHaveURL(new RegExp(`/login\\?next=/seasons/${season.id}$`));
  await signIn(page, "exec", `/seasons/${season.id}`);
  await expect(page).toHaveURL(new RegExp(`/seasons/${season.id}$`));
  await expect(page.getByRole("heading", { level: 1, name: "Readable without scripts" })).toBeVisible();
  await expect(page.getByText("Locked-down browsers")).toBeVisible();
  await expect(page.getByRole("heading", { name: "Plans read everywhere" })).toBeVisible();
  await expect(page.getByText("Loading…")).toHaveCount(0);

  // A missing season is a real 404, not an error page served as 200.
  const missing = await page.goto("/seasons/999999");
  expect(missing?.status()).toBe(404);
});
