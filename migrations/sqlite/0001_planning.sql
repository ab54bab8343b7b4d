-- The planning core. Every row carries org_id so that tenants fit later without a change of meaning.
-- Dates are ISO 8601 TEXT (YYYY-MM-DD) and times RFC 3339 TEXT, which sort correctly as text.

CREATE TABLE orgs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    -- Bumped at the start of every plan write that checks rules across rows (season overlap, one active
    -- season), so that such writes for one organisation run one at a time.
    write_seq INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);

CREATE TABLE seasons (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    name TEXT NOT NULL,
    thesis TEXT NOT NULL,
    problems TEXT NOT NULL,
    winning TEXT NOT NULL,
    starts_on TEXT NOT NULL,
    ends_on TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('draft', 'active', 'closed')),
    slope_target REAL NOT NULL CHECK (slope_target >= 0 AND slope_target <= 0.6),
    retrospective TEXT,
    version INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    CHECK (starts_on < ends_on)
);
CREATE INDEX seasons_org ON seasons (org_id, starts_on);
-- The last line of defence for "at most one active season per organisation".
CREATE UNIQUE INDEX seasons_one_active ON seasons (org_id) WHERE status = 'active';

CREATE TABLE objectives (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    season_id INTEGER NOT NULL REFERENCES seasons (id),
    quarter TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT,
    commitment TEXT NOT NULL CHECK (commitment IN ('committed', 'aspirational')),
    owner TEXT,
    weight REAL NOT NULL CHECK (weight > 0),
    version INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX objectives_season ON objectives (org_id, season_id);

CREATE TABLE key_results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    objective_id INTEGER NOT NULL REFERENCES objectives (id),
    title TEXT NOT NULL,
    kind TEXT NOT NULL,
    start_value REAL,
    target_value REAL,
    threshold REAL,
    low_value REAL,
    high_value REAL,
    unit TEXT NOT NULL DEFAULT '',
    current_value REAL,
    weight REAL NOT NULL CHECK (weight > 0),
    confidence REAL CHECK (confidence >= 0 AND confidence <= 1),
    metric_id INTEGER,
    version INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX key_results_objective ON key_results (org_id, objective_id);

CREATE TABLE squads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    name TEXT NOT NULL,
    unit TEXT NOT NULL,
    capacity REAL NOT NULL CHECK (capacity >= 0),
    version INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE squad_goals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    squad_id INTEGER NOT NULL REFERENCES squads (id),
    key_result_id INTEGER NOT NULL REFERENCES key_results (id),
    title TEXT NOT NULL,
    starts_on TEXT NOT NULL,
    ends_on TEXT NOT NULL,
    investment TEXT NOT NULL CHECK (investment IN ('snapshot', 'slope')),
    challenges TEXT,
    kill_criteria TEXT,
    planned_capacity REAL NOT NULL CHECK (planned_capacity > 0),
    status TEXT NOT NULL CHECK (status IN ('planned', 'active', 'done', 'killed')),
    kind TEXT NOT NULL,
    start_value REAL,
    target_value REAL,
    threshold REAL,
    low_value REAL,
    high_value REAL,
    unit TEXT NOT NULL DEFAULT '',
    current_value REAL,
    confidence REAL CHECK (confidence >= 0 AND confidence <= 1),
    version INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX squad_goals_squad ON squad_goals (org_id, squad_id);
CREATE INDEX squad_goals_key_result ON squad_goals (org_id, key_result_id);

CREATE TABLE check_ins (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    subject_kind TEXT NOT NULL CHECK (subject_kind IN ('key-result', 'squad-goal')),
    subject_id INTEGER NOT NULL,
    value REAL NOT NULL,
    confidence REAL,
    note TEXT,
    author TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE INDEX check_ins_subject ON check_ins (org_id, subject_kind, subject_id, recorded_at);

-- Every stored state of every plan entity, so a plan can be read "as known on" any past date.
CREATE TABLE revisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    entity TEXT NOT NULL,
    entity_id INTEGER NOT NULL,
    version INTEGER NOT NULL,
    recorded_at TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX revisions_org_time ON revisions (org_id, recorded_at);
