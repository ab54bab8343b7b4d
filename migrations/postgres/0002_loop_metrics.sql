-- Loop metrics: ingested event batches, their Parquet segments, metric definitions with their
-- materialised series, experiments, drift alerts, and the link from key results and squad goals to a
-- metric. Events themselves live in segments outside the database; the database holds the manifest.

-- One accepted batch: the idempotency record whose acknowledgement a retry receives again.
CREATE TABLE event_batches (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    loop_key TEXT NOT NULL,
    idempotency_key TEXT,
    -- SHA-256 of the validated rows, so a retry without a key is recognised too.
    content_hash TEXT NOT NULL,
    rows BIGINT NOT NULL,
    stored BIGINT NOT NULL,
    duplicates BIGINT NOT NULL,
    min_ts TIMESTAMPTZ,
    max_ts TIMESTAMPTZ,
    received_at TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX event_batches_key ON event_batches (org_id, loop_key, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX event_batches_hash ON event_batches (org_id, loop_key, content_hash);

-- The manifest of Parquet segments. A segment is visible to readers once its row is committed; a
-- compacted segment is retired (and its file deleted later) rather than removed at once, so a reader
-- that listed it a moment ago can still open it.
CREATE TABLE event_segments (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    loop_key TEXT NOT NULL,
    path TEXT NOT NULL UNIQUE,
    rows BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    min_ts TIMESTAMPTZ NOT NULL,
    max_ts TIMESTAMPTZ NOT NULL,
    -- False until the metric series of the buckets this segment touches have been recomputed; a
    -- server that restarts picks up what a crash left unmaterialised.
    materialized BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMPTZ NOT NULL,
    retired_at TIMESTAMPTZ
);
CREATE INDEX event_segments_live ON event_segments (org_id, loop_key, min_ts) WHERE retired_at IS NULL;

-- Every version of every metric definition; the highest version is the current one.
CREATE TABLE metric_definitions (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    key TEXT NOT NULL,
    version BIGINT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('acceptance-rate', 'active-users', 'retention', 'eval-score', 'custom')),
    loop_key TEXT,
    variant TEXT,
    unit_filter TEXT,
    granularity TEXT NOT NULL CHECK (granularity IN ('day', 'week')),
    window_days BIGINT,
    freshness_hours BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (org_id, key, version)
);

-- The materialised series of a metric definition's version.
CREATE TABLE metric_points (
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    metric_key TEXT NOT NULL,
    version BIGINT NOT NULL,
    bucket DATE NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    n BIGINT,
    ci_low DOUBLE PRECISION,
    ci_high DOUBLE PRECISION,
    -- The newest data behind the point (latest event, or the pushed point's time): staleness counts
    -- from here, not from when the point was last recomputed.
    observed_at TIMESTAMPTZ NOT NULL,
    computed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (org_id, metric_key, version, bucket)
);

CREATE TABLE experiments (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    key TEXT NOT NULL,
    name TEXT NOT NULL,
    loop_key TEXT NOT NULL,
    control TEXT NOT NULL,
    treatment TEXT NOT NULL,
    starts_on DATE NOT NULL,
    ends_on DATE NOT NULL,
    expected_share DOUBLE PRECISION NOT NULL CHECK (expected_share > 0 AND expected_share < 1),
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (org_id, key)
);

CREATE TABLE drift_alerts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    loop_key TEXT NOT NULL,
    field TEXT NOT NULL,
    reference_start DATE NOT NULL,
    reference_end DATE NOT NULL,
    current_start DATE NOT NULL,
    current_end DATE NOT NULL,
    psi DOUBLE PRECISION NOT NULL,
    js_distance DOUBLE PRECISION NOT NULL,
    band TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX drift_alerts_recent ON drift_alerts (org_id, created_at);

-- A key result or squad goal fed by a metric. The latest point's time and the metric's freshness limit
-- are copied here when the value is fed, so that reading a plan needs no join with the series.
ALTER TABLE key_results DROP COLUMN metric_id;
ALTER TABLE key_results ADD COLUMN metric_key TEXT;
ALTER TABLE key_results ADD COLUMN metric_observed_at TIMESTAMPTZ;
ALTER TABLE key_results ADD COLUMN metric_freshness_hours BIGINT;
ALTER TABLE squad_goals ADD COLUMN metric_key TEXT;
ALTER TABLE squad_goals ADD COLUMN metric_observed_at TIMESTAMPTZ;
ALTER TABLE squad_goals ADD COLUMN metric_freshness_hours BIGINT;
