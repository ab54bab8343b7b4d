-- Watching the loop: monitors evaluated on a schedule, the alerts they fire with their history,
-- contact points (outgoing webhooks), the outbox of deliveries with each attempt's log, and each
-- person's inbox.
CREATE TABLE monitors (
    id BIGSERIAL PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    key TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('drift', 'staleness', 'job-failed', 'promotion-refused', 'trend-reversal', 'key-result-behind')),
    squad_id BIGINT REFERENCES squads (id),
    every_minutes BIGINT NOT NULL CHECK (every_minutes >= 1),
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    -- The kind's settings (a tagged `MonitorRule`).
    rule JSONB NOT NULL,
    last_run_at TIMESTAMPTZ,
    last_error TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    UNIQUE (org_id, key)
);

-- One evaluation per monitor and schedule slot, whichever server gets there first: the row is the claim.
CREATE TABLE monitor_runs (
    monitor_id BIGINT NOT NULL REFERENCES monitors (id),
    slot BIGINT NOT NULL,
    claimed_by TEXT NOT NULL,
    claimed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (monitor_id, slot)
);

CREATE TABLE alerts (
    id BIGSERIAL PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    monitor_id BIGINT NOT NULL REFERENCES monitors (id),
    fingerprint TEXT NOT NULL,
    summary TEXT NOT NULL,
    evidence JSONB NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    last_seen_at TIMESTAMPTZ NOT NULL,
    resolved_at TIMESTAMPTZ,
    silenced_until TIMESTAMPTZ,
    silenced_by TEXT
);
-- A finding fires at most one open alert, however many servers evaluate at once.
CREATE UNIQUE INDEX alerts_one_open ON alerts (monitor_id, fingerprint) WHERE resolved_at IS NULL;
CREATE INDEX alerts_recent ON alerts (org_id, started_at);

CREATE TABLE alert_events (
    id BIGSERIAL PRIMARY KEY,
    alert_id BIGINT NOT NULL REFERENCES alerts (id),
    at TIMESTAMPTZ NOT NULL,
    change TEXT NOT NULL CHECK (change IN ('fired', 'resolved', 'silenced', 'unsilenced')),
    actor TEXT NOT NULL,
    note TEXT
);
CREATE INDEX alert_events_alert ON alert_events (alert_id, id);

CREATE TABLE contact_points (
    id BIGSERIAL PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    name TEXT NOT NULL,
    url TEXT NOT NULL,
    format TEXT NOT NULL CHECK (format IN ('json', 'slack')),
    squad_id BIGINT REFERENCES squads (id),
    -- The HMAC-SHA256 signing key, shown once at creation; kept in clear because signing needs it.
    secret TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    -- Removed contact points keep their delivery log.
    deleted_at TIMESTAMPTZ
);

-- The outbox: written in the transaction that changes the alert, delivered at least once from here.
CREATE TABLE deliveries (
    id BIGSERIAL PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    contact_point_id BIGINT NOT NULL REFERENCES contact_points (id),
    alert_id BIGINT NOT NULL REFERENCES alerts (id),
    change TEXT NOT NULL CHECK (change IN ('fired', 'resolved', 'silenced', 'unsilenced')),
    idempotency_key TEXT NOT NULL UNIQUE,
    -- The notification as it was when the alert changed (a `Notification`): every attempt sends the same.
    payload JSONB NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ,
    lease_owner TEXT,
    leased_until TIMESTAMPTZ,
    last_status_code BIGINT,
    last_error TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    delivered_at TIMESTAMPTZ
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_contact_point ON deliveries (contact_point_id, id);

CREATE TABLE delivery_attempts (
    delivery_id BIGINT NOT NULL REFERENCES deliveries (id),
    attempt BIGINT NOT NULL,
    at TIMESTAMPTZ NOT NULL,
    status_code BIGINT,
    error TEXT,
    duration_ms BIGINT NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

CREATE TABLE inbox (
    id BIGSERIAL PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    user_id BIGINT NOT NULL REFERENCES users (id),
    alert_id BIGINT NOT NULL REFERENCES alerts (id),
    change TEXT NOT NULL CHECK (change IN ('fired', 'resolved', 'silenced', 'unsilenced')),
    summary TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    read_at TIMESTAMPTZ
);
CREATE INDEX inbox_user ON inbox (org_id, user_id, id);

CREATE TABLE notification_settings (
    org_id BIGINT PRIMARY KEY REFERENCES orgs (id),
    allow_internal_webhooks BOOLEAN NOT NULL DEFAULT FALSE,
    set_by TEXT NOT NULL,
    set_at TIMESTAMPTZ NOT NULL
);
