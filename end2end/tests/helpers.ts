import { expect, type Page } from "@playwright/test";

/** Opens `path` and waits until the browser bundle has hydrated the page; clicks before that are lost. */
export async function open(page: Page, path: string) {
  await page.goto(path);
  await hydrated(page);
}

export async function hydrated(page: Page) {
  await expect(page.locator("body[data-hydrated='true']")).toBeAttached({ timeout: 30_000 });
}
