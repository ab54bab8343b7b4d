-- What each model's latest eval measured on every held-out item (texts, perplexity windows, rows,
-- pairs), kept apart from the model so that listing models stays small: the promotion gate resamples
-- the items of the challenger and the champion for the interval of the reward margin.
CREATE TABLE eval_items (
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    model_id BIGINT NOT NULL REFERENCES models (id),
    items JSONB NOT NULL,
    PRIMARY KEY (org_id, model_id)
);

-- What offline evidence each loop's gate asks for: a reward margin whose bootstrap interval lies above
-- zero (the default), or only a higher reward.
ALTER TABLE gate_policies ADD COLUMN offline TEXT NOT NULL DEFAULT 'interval-above-zero'
    CHECK (offline IN ('interval-above-zero', 'beats'));
