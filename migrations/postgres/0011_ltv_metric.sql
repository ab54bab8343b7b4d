-- Lifetime value becomes a computed metric kind.
ALTER TABLE metric_definitions DROP CONSTRAINT metric_definitions_kind_check;
ALTER TABLE metric_definitions ADD CONSTRAINT metric_definitions_kind_check
    CHECK (kind IN ('acceptance-rate', 'active-users', 'retention', 'ltv', 'eval-score', 'custom'));

-- Why a computed metric's newest bucket has no point (a lifetime value fit that did not converge),
-- per metric version; cleared when a later computation succeeds.
CREATE TABLE metric_problems (
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    metric_key TEXT NOT NULL,
    version BIGINT NOT NULL,
    bucket DATE NOT NULL,
    message TEXT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (org_id, metric_key, version)
);
