-- Access, tenants and audit: accounts, memberships with roles, units, sessions, API tokens, login
-- attempts and the audit trail; and stable keys for plan entities, which plan files name them by.

-- Rows written before keys existed get a key made from their id; new rows get one made from their title.
ALTER TABLE seasons ADD COLUMN key TEXT;
UPDATE seasons SET key = 'season-' || id;
CREATE UNIQUE INDEX seasons_key ON seasons (org_id, key);
ALTER TABLE objectives ADD COLUMN key TEXT;
UPDATE objectives SET key = 'objective-' || id;
CREATE UNIQUE INDEX objectives_key ON objectives (org_id, key);
ALTER TABLE key_results ADD COLUMN key TEXT;
UPDATE key_results SET key = 'kr-' || id;
CREATE UNIQUE INDEX key_results_key ON key_results (org_id, key);
ALTER TABLE squads ADD COLUMN key TEXT;
UPDATE squads SET key = 'squad-' || id;
CREATE UNIQUE INDEX squads_key ON squads (org_id, key);
ALTER TABLE squad_goals ADD COLUMN key TEXT;
UPDATE squad_goals SET key = 'goal-' || id;
CREATE UNIQUE INDEX squad_goals_key ON squad_goals (org_id, key);

CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Lower-cased, so one address is one account whatever its spelling.
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    -- An argon2id PHC string; the password itself is never stored.
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE memberships (
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    user_id INTEGER NOT NULL REFERENCES users (id),
    role TEXT NOT NULL CHECK (role IN ('admin', 'leader', 'squad-member', 'exec')),
    -- The squads a squad member works in, as a JSON list of ids.
    squads TEXT NOT NULL DEFAULT '[]',
    version INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (org_id, user_id)
);

CREATE TABLE units (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    name TEXT NOT NULL,
    parent_id INTEGER REFERENCES units (id),
    version INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    UNIQUE (org_id, name)
);
-- Squads named their unit as free text before units existed; those names become top-level units.
INSERT INTO units (org_id, name, created_at) SELECT DISTINCT org_id, unit, MIN(created_at) FROM squads GROUP BY org_id, unit;

CREATE TABLE sessions (
    -- SHA-256 of the cookie's value: a copy of this table does not let anyone sign in.
    id_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id),
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    -- SHA-256 of the token; tokens are 256 random bits, so a fast hash is enough.
    token_hash TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at TEXT
);

CREATE TABLE login_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL,
    address TEXT NOT NULL,
    at TEXT NOT NULL,
    succeeded INTEGER NOT NULL
);
CREATE INDEX login_attempts_email ON login_attempts (email, at);
CREATE INDEX login_attempts_address ON login_attempts (address, at);

-- Every change of a plan entity, membership, unit or token: who, when, and the state before and after
-- (JSON; NULL before a creation and after a deletion). Written in the transaction of the change.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    actor TEXT NOT NULL,
    at TEXT NOT NULL,
    entity TEXT NOT NULL,
    entity_id INTEGER NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('create', 'update', 'delete')),
    before TEXT,
    after TEXT
);
CREATE INDEX audit_log_org ON audit_log (org_id, id);
CREATE INDEX audit_log_entity ON audit_log (org_id, entity, entity_id, id);
