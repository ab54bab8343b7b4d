-- Loop metrics: ingested event batches, their Parquet segments, metric definitions with their
-- materialised series, experiments, drift alerts, and the link from key results and squad goals to a
-- metric. Events themselves live in segments outside the database; the database holds the manifest.

-- One accepted batch: the idempotency record whose acknowledgement a retry receives again.
CREATE TABLE event_batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    loop_key TEXT NOT NULL,
    idempotency_key TEXT,
    -- SHA-256 of the validated rows, so a retry without a key is recognised too.
    content_hash TEXT NOT NULL,
    rows INTEGER NOT NULL,
    stored INTEGER NOT NULL,
    duplicates INTEGER NOT NULL,
    min_ts TEXT,
    max_ts TEXT,
    received_at TEXT NOT NULL
);
CREATE UNIQUE INDEX event_batches_key ON event_batches (org_id, loop_key, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX event_batches_hash ON event_batches (org_id, loop_key, content_hash);

-- The manifest of Parquet segments. A segment is visible to readers once its row is committed; a
-- compacted segment is retired (and its file deleted later) rather than removed at once, so a reader
-- that listed it a moment ago can still open it.
CREATE TABLE event_segments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    loop_key TEXT NOT NULL,
    path TEXT NOT NULL UNIQUE,
    rows INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    min_ts TEXT NOT NULL,
    max_ts TEXT NOT NULL,
    -- False until the metric series of the buckets this segment touches have been recomputed; a
    -- server that restarts picks up what a crash left unmaterialised.
    materialized INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    retired_at TEXT
);
CREATE INDEX event_segments_live ON event_segments (org_id, loop_key, min_ts) WHERE retired_at IS NULL;

-- Every version of every metric definition; the highest version is the current one.
CREATE TABLE metric_definitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('acceptance-rate', 'active-users', 'retention', 'eval-score', 'custom')),
    loop_key TEXT,
    variant TEXT,
    unit_filter TEXT,
    granularity TEXT NOT NULL CHECK (granularity IN ('day', 'week')),
    window_days INTEGER,
    freshness_hours INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (org_id, key, version)
);

-- The materialised series of a metric definition's version.
CREATE TABLE metric_points (
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    metric_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    bucket TEXT NOT NULL,
    value REAL NOT NULL,
    n INTEGER,
    ci_low REAL,
    ci_high REAL,
    -- The newest data behind the point (latest event, or the pushed point's time): staleness counts
    -- from here, not from when the point was last recomputed.
    observed_at TEXT NOT NULL,
    computed_at TEXT NOT NULL,
    PRIMARY KEY (org_id, metric_key, version, bucket)
);

CREATE TABLE experiments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    key TEXT NOT NULL,
    name TEXT NOT NULL,
    loop_key TEXT NOT NULL,
    control TEXT NOT NULL,
    treatment TEXT NOT NULL,
    starts_on TEXT NOT NULL,
    ends_on TEXT NOT NULL,
    expected_share REAL NOT NULL CHECK (expected_share > 0 AND expected_share < 1),
    created_at TEXT NOT NULL,
    UNIQUE (org_id, key)
);

CREATE TABLE drift_alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    loop_key TEXT NOT NULL,
    field TEXT NOT NULL,
    reference_start TEXT NOT NULL,
    reference_end TEXT NOT NULL,
    current_start TEXT NOT NULL,
    current_end TEXT NOT NULL,
    psi REAL NOT NULL,
    js_distance REAL NOT NULL,
    band TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX drift_alerts_recent ON drift_alerts (org_id, created_at);

-- A key result or squad goal fed by a metric. The latest point's time and the metric's freshness limit
-- are copied here when the value is fed, so that reading a plan needs no join with the series.
ALTER TABLE key_results DROP COLUMN metric_id;
ALTER TABLE key_results ADD COLUMN metric_key TEXT;
ALTER TABLE key_results ADD COLUMN metric_observed_at TEXT;
ALTER TABLE key_results ADD COLUMN metric_freshness_hours INTEGER;
ALTER TABLE squad_goals ADD COLUMN metric_key TEXT;
ALTER TABLE squad_goals ADD COLUMN metric_observed_at TEXT;
ALTER TABLE squad_goals ADD COLUMN metric_freshness_hours INTEGER;
