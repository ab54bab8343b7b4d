-- Watching the loop: monitors evaluated on a schedule, the alerts they fire with their history,
-- contact points (outgoing webhooks), the outbox of deliveries with each attempt's log, and each
-- person's inbox.
CREATE TABLE monitors (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    key TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('drift', 'staleness', 'job-failed', 'promotion-refused', 'trend-reversal', 'key-result-behind')),
    squad_id INTEGER REFERENCES squads (id),
    every_minutes INTEGER NOT NULL CHECK (every_minutes >= 1),
    enabled INTEGER NOT NULL DEFAULT 1,
    -- The kind's settings (a tagged `MonitorRule`).
    rule TEXT NOT NULL,
    last_run_at TEXT,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (org_id, key)
);

-- One evaluation per monitor and schedule slot, whichever server gets there first: the row is the claim.
CREATE TABLE monitor_runs (
    monitor_id INTEGER NOT NULL REFERENCES monitors (id),
    slot INTEGER NOT NULL,
    claimed_by TEXT NOT NULL,
    claimed_at TEXT NOT NULL,
    PRIMARY KEY (monitor_id, slot)
);

CREATE TABLE alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    monitor_id INTEGER NOT NULL REFERENCES monitors (id),
    fingerprint TEXT NOT NULL,
    summary TEXT NOT NULL,
    evidence TEXT NOT NULL,
    started_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    resolved_at TEXT,
    silenced_until TEXT,
    silenced_by TEXT
);
-- A finding fires at most one open alert, however many servers evaluate at once.
CREATE UNIQUE INDEX alerts_one_open ON alerts (monitor_id, fingerprint) WHERE resolved_at IS NULL;
CREATE INDEX alerts_recent ON alerts (org_id, started_at);

CREATE TABLE alert_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id INTEGER NOT NULL REFERENCES alerts (id),
    at TEXT NOT NULL,
    change TEXT NOT NULL CHECK (change IN ('fired', 'resolved', 'silenced', 'unsilenced')),
    actor TEXT NOT NULL,
    note TEXT
);
CREATE INDEX alert_events_alert ON alert_events (alert_id, id);

CREATE TABLE contact_points (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    name TEXT NOT NULL,
    url TEXT NOT NULL,
    format TEXT NOT NULL CHECK (format IN ('json', 'slack')),
    squad_id INTEGER REFERENCES squads (id),
    -- The HMAC-SHA256 signing key, shown once at creation; kept in clear because signing needs it.
    secret TEXT NOT NULL,
    created_at TEXT NOT NULL,
    -- Removed contact points keep their delivery log.
    deleted_at TEXT
);

-- The outbox: written in the transaction that changes the alert, delivered at least once from here.
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    contact_point_id INTEGER NOT NULL REFERENCES contact_points (id),
    alert_id INTEGER NOT NULL REFERENCES alerts (id),
    change TEXT NOT NULL CHECK (change IN ('fired', 'resolved', 'silenced', 'unsilenced')),
    idempotency_key TEXT NOT NULL UNIQUE,
    -- The notification as it was when the alert changed (a `Notification`): every attempt sends the same.
    payload TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    lease_owner TEXT,
    leased_until TEXT,
    last_status_code INTEGER,
    last_error TEXT,
    created_at TEXT NOT NULL,
    delivered_at TEXT
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_contact_point ON deliveries (contact_point_id, id);

CREATE TABLE delivery_attempts (
    delivery_id INTEGER NOT NULL REFERENCES deliveries (id),
    attempt INTEGER NOT NULL,
    at TEXT NOT NULL,
    status_code INTEGER,
    error TEXT,
    duration_ms INTEGER NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

CREATE TABLE inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    user_id INTEGER NOT NULL REFERENCES users (id),
    alert_id INTEGER NOT NULL REFERENCES alerts (id),
    change TEXT NOT NULL CHECK (change IN ('fired', 'resolved', 'silenced', 'unsilenced')),
    summary TEXT NOT NULL,
    created_at TEXT NOT NULL,
    read_at TEXT
);
CREATE INDEX inbox_user ON inbox (org_id, user_id, id);

CREATE TABLE notification_settings (
    org_id INTEGER PRIMARY KEY REFERENCES orgs (id),
    allow_internal_webhooks INTEGER NOT NULL DEFAULT 0,
    set_by TEXT NOT NULL,
    set_at TEXT NOT NULL
);
