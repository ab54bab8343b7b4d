-- The adoption dashboard's rules as settings of each organisation: every change an admin makes is the
-- next version, kept, so a verdict can always be traced to the rules it was judged by. An organisation
-- without a row judges by the defaults (version 0).
CREATE TABLE adoption_rules (
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    version BIGINT NOT NULL CHECK (version > 0),
    rules JSONB NOT NULL,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (org_id, version)
);
