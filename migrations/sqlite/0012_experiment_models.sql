-- An experiment records the model each arm served, so that the promotion gate weighs only an
-- experiment of exactly the challenger against the champion.
ALTER TABLE experiments ADD COLUMN control_model_id INTEGER;
ALTER TABLE experiments ADD COLUMN treatment_model_id INTEGER;

-- What online evidence each loop's promotion gate asks for; a loop without a row asks that the
-- challenger be not significantly worse.
CREATE TABLE gate_policies (
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    loop_key TEXT NOT NULL,
    online TEXT NOT NULL CHECK (online IN ('not-worse', 'better')),
    set_by TEXT NOT NULL,
    set_at TEXT NOT NULL,
    PRIMARY KEY (org_id, loop_key)
);
