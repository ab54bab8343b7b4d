// The accounts the e2e server starts with: `playwright.config.ts` creates them with `slope admin` before
// `slope serve` starts, and the journeys sign in with them (`signIn` and `apiAs` in tests/helpers.ts).
// Squad members are made by the journeys that need them, since they belong to squads the journey
// creates.

export type Role = "admin" | "leader" | "exec";

export interface Credentials {
  email: string;
  password: string;
}

export const ACCOUNTS: Record<Role, Credentials & { role: string }> = {
  admin: { email: "admin@e2e.slope", password: "e2e-admin-pass", role: "admin" },
  leader: { email: "leader@e2e.slope", password: "e2e-leader-pass", role: "leader" },
  exec: { email: "exec@e2e.slope", password: "e2e-exec-pass", role: "exec" },
};
