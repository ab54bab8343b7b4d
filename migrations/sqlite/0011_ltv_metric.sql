-- Lifetime value becomes a computed metric kind. SQLite cannot change a CHECK constraint in place, so
-- the definitions table is rebuilt with the wider list (nothing references it by foreign key).
CREATE TABLE metric_definitions_v11 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('acceptance-rate', 'active-users', 'retention', 'ltv', 'eval-score', 'custom')),
    loop_key TEXT,
    variant TEXT,
    unit_filter TEXT,
    granularity TEXT NOT NULL CHECK (granularity IN ('day', 'week')),
    window_days INTEGER,
    freshness_hours INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (org_id, key, version)
);
INSERT INTO metric_definitions_v11 (id, org_id, key, version, name, kind, loop_key, variant, unit_filter, granularity,
    window_days, freshness_hours, created_at)
SELECT id, org_id, key, version, name, kind, loop_key, variant, unit_filter, granularity, window_days, freshness_hours,
    created_at
FROM metric_definitions;
DROP TABLE metric_definitions;
ALTER TABLE metric_definitions_v11 RENAME TO metric_definitions;

-- Why a computed metric's newest bucket has no point (a lifetime value fit that did not converge),
-- per metric version; cleared when a later computation succeeds.
CREATE TABLE metric_problems (
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    metric_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    bucket TEXT NOT NULL,
    message TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (org_id, metric_key, version)
);
