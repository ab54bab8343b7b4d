-- The planning core. Every row carries org_id so that tenants fit later without a change of meaning.
-- PostgreSQL keeps dates as DATE, times as TIMESTAMPTZ and lists as JSONB.

CREATE TABLE orgs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    -- Bumped at the start of every plan write that checks rules across rows (season overlap, one active
    -- season), so that such writes for one organisation run one at a time.
    write_seq BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE seasons (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    name TEXT NOT NULL,
    thesis TEXT NOT NULL,
    problems JSONB NOT NULL,
    winning TEXT NOT NULL,
    starts_on DATE NOT NULL,
    ends_on DATE NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('draft', 'active', 'closed')),
    slope_target DOUBLE PRECISION NOT NULL CHECK (slope_target >= 0 AND slope_target <= 0.6),
    retrospective TEXT,
    version BIGINT NOT NULL DEFAULT 1,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    CHECK (starts_on < ends_on)
);
CREATE INDEX seasons_org ON seasons (org_id, starts_on);
-- The last line of defence for "at most one active season per organisation".
CREATE UNIQUE INDEX seasons_one_active ON seasons (org_id) WHERE status = 'active';

CREATE TABLE objectives (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    season_id BIGINT NOT NULL REFERENCES seasons (id),
    quarter TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT,
    commitment TEXT NOT NULL CHECK (commitment IN ('committed', 'aspirational')),
    owner TEXT,
    weight DOUBLE PRECISION NOT NULL CHECK (weight > 0),
    version BIGINT NOT NULL DEFAULT 1,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX objectives_season ON objectives (org_id, season_id);

CREATE TABLE key_results (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    objective_id BIGINT NOT NULL REFERENCES objectives (id),
    title TEXT NOT NULL,
    kind TEXT NOT NULL,
    start_value DOUBLE PRECISION,
    target_value DOUBLE PRECISION,
    threshold DOUBLE PRECISION,
    low_value DOUBLE PRECISION,
    high_value DOUBLE PRECISION,
    unit TEXT NOT NULL DEFAULT '',
    current_value DOUBLE PRECISION,
    weight DOUBLE PRECISION NOT NULL CHECK (weight > 0),
    confidence DOUBLE PRECISION CHECK (confidence >= 0 AND confidence <= 1),
    metric_id BIGINT,
    version BIGINT NOT NULL DEFAULT 1,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX key_results_objective ON key_results (org_id, objective_id);

CREATE TABLE squads (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    name TEXT NOT NULL,
    unit TEXT NOT NULL,
    capacity DOUBLE PRECISION NOT NULL CHECK (capacity >= 0),
    version BIGINT NOT NULL DEFAULT 1,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE squad_goals (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    squad_id BIGINT NOT NULL REFERENCES squads (id),
    key_result_id BIGINT NOT NULL REFERENCES key_results (id),
    title TEXT NOT NULL,
    starts_on DATE NOT NULL,
    ends_on DATE NOT NULL,
    investment TEXT NOT NULL CHECK (investment IN ('snapshot', 'slope')),
    challenges TEXT,
    kill_criteria TEXT,
    planned_capacity DOUBLE PRECISION NOT NULL CHECK (planned_capacity > 0),
    status TEXT NOT NULL CHECK (status IN ('planned', 'active', 'done', 'killed')),
    kind TEXT NOT NULL,
    start_value DOUBLE PRECISION,
    target_value DOUBLE PRECISION,
    threshold DOUBLE PRECISION,
    low_value DOUBLE PRECISION,
    high_value DOUBLE PRECISION,
    unit TEXT NOT NULL DEFAULT '',
    current_value DOUBLE PRECISION,
    confidence DOUBLE PRECISION CHECK (confidence >= 0 AND confidence <= 1),
    version BIGINT NOT NULL DEFAULT 1,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX squad_goals_squad ON squad_goals (org_id, squad_id);
CREATE INDEX squad_goals_key_result ON squad_goals (org_id, key_result_id);

CREATE TABLE check_ins (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    subject_kind TEXT NOT NULL CHECK (subject_kind IN ('key-result', 'squad-goal')),
    subject_id BIGINT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    confidence DOUBLE PRECISION,
    note TEXT,
    author TEXT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX check_ins_subject ON check_ins (org_id, subject_kind, subject_id, recorded_at);

-- Every stored state of every plan entity, so a plan can be read "as known on" any past date.
CREATE TABLE revisions (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    entity TEXT NOT NULL,
    entity_id BIGINT NOT NULL,
    version BIGINT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    data JSONB NOT NULL
);
CREATE INDEX revisions_org_time ON revisions (org_id, recorded_at);
