import { defineConfig } from "@playwright/test";
import { ACCOUNTS } from "./accounts";

// `cargo xtask test` builds the server and the site, then sets these; the defaults fit a manual run
// from this folder after `cargo xtask build`.
const server = process.env.SLOPE_E2E_SERVER ?? "../target/debug/slope";
const site = process.env.SLOPE_E2E_SITE ?? "../target/site";
const data = process.env.SLOPE_E2E_DATA ?? "./test-results/data";
const port = Number(process.env.SLOPE_E2E_PORT ?? 3217);

// Every page needs a signed-in user, so the accounts the journeys sign in with are created on the fresh
// database before the server starts, the way an operator would (`slope admin`, password on standard
// input). No demo data: each journey creates what it needs. Running the commands again on an existing
// database changes nothing.
const quote = (text: string) => `'${text.replaceAll("'", `'\\''`)}'`;
const accounts = Object.values(ACCOUNTS).map(({ email, password, role }) => {
  const command = role === "admin" ? "admin create" : `admin member --role ${role}`;
  return `printf '%s\\n' ${quote(password)} | ${quote(server)} ${command} --email ${email} --data-dir ${quote(data)}`;
});

export default defineConfig({
  testDir: "./tests",
  // One worker: the journeys share one server and one database, and the machine has two cores.
  workers: 1,
  fullyParallel: false,
  timeout: 90_000,
  // One retry: a journey that fails and then passes is reported as "flaky" in the list, with the trace of
  // its failed attempt kept under test-results/, so a one-off does not block a landing and stays visible.
  // (Such a trace showed an HTML page served without its policy; the server now writes every page's
  // policy at its edge, from the nonce it minted for the request.)
  retries: 1,
  expect: { timeout: 10_000 },
  reporter: [["list"]],
  use: {
    baseURL: `http://127.0.0.1:${port}`,
    trace: "retain-on-failure",
  },
  projects: [
    {
      name: "chromium",
      use: {
        browserName: "chromium",
        launchOptions: {
          // Debian's Chromium: Playwright's own browser download is not available here.
          executablePath: "/usr/bin/chromium",
          args: [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
          ],
        },
      },
    },
  ],
  webServer: {
    // Run by a shell: the accounts first, then the server in the shell's place.
    command: [
      ...accounts,
      `exec ${quote(server)} serve --bind 127.0.0.1:${port} --data-dir ${quote(data)} --site-root ${quote(site)}`,
    ].join(" && "),
    url: `http://127.0.0.1:${port}/readyz`,
    reuseExistingServer: false,
    timeout: 120_000,
    stdout: "pipe",
    stderr: "pipe",
    // One job slot and no shipped base model, whatever the developer's environment says: the runner
    // journeys queue their own tiny models and wait for them in turn.
    env: { SLOPE_WORKERS: "1", SLOPE_BASE_MODEL: "" },
  },
});
