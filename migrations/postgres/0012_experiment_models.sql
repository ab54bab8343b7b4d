-- An experiment records the model each arm served, so that the promotion gate weighs only an
-- experiment of exactly the challenger against the champion.
ALTER TABLE experiments ADD COLUMN control_model_id BIGINT;
ALTER TABLE experiments ADD COLUMN treatment_model_id BIGINT;

-- What online evidence each loop's promotion gate asks for; a loop without a row asks that the
-- challenger be not significantly worse.
CREATE TABLE gate_policies (
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    loop_key TEXT NOT NULL,
    online TEXT NOT NULL CHECK (online IN ('not-worse', 'better')),
    set_by TEXT NOT NULL,
    set_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (org_id, loop_key)
);
