-- Issue 6: thesis signals on the season dashboard, and experiments that can be stopped before their
-- last day (the demo's simulated loop turns in minutes, so a day is too coarse to end an A/B test).

-- A "review the thesis" item: a linked metric reversed its trend, or a slope bet was killed. Raised by
-- Slope, resolved by a leader with a note. `fingerprint` names the occurrence, so it is raised once.
CREATE TABLE thesis_signals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    season_id INTEGER NOT NULL REFERENCES seasons (id),
    kind TEXT NOT NULL CHECK (kind IN ('metric-reversal', 'bet-killed')),
    fingerprint TEXT NOT NULL,
    subject TEXT NOT NULL,
    summary TEXT NOT NULL,
    evidence TEXT NOT NULL,
    raised_at TEXT NOT NULL,
    resolved_at TEXT,
    resolved_by TEXT,
    resolution TEXT,
    UNIQUE (org_id, season_id, fingerprint)
);
CREATE INDEX thesis_signals_season ON thesis_signals (org_id, season_id, id);

ALTER TABLE experiments ADD COLUMN stopped_at TEXT;
