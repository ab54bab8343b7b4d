-- The fine-tune and eval runner: datasets (versioned by content digest), a job queue with leases, the
-- per-step metrics of jobs, the model registry with its aliases and promotion decisions, and serving
-- impressions that wait for their outcome before they become ordinary events.

-- A dataset version. The digest names the content, so registering the same rows again finds this row
-- instead of storing a second copy.
CREATE TABLE datasets (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    digest TEXT NOT NULL,
    rows BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    -- The object-store path of the JSONL file.
    path TEXT NOT NULL,
    -- Lineage (JSON): the loop and batches it was built from, or the file it was uploaded as.
    source JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (org_id, digest)
);

-- The job queue. A worker claims a job by taking its lease and keeps it by heartbeats; a job whose lease
-- runs out (its worker died) is claimed again and resumes from its newest checkpoint.
CREATE TABLE jobs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    kind TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')),
    spec JSONB NOT NULL,
    step BIGINT NOT NULL DEFAULT 0,
    total_steps BIGINT NOT NULL,
    progress DOUBLE PRECISION NOT NULL DEFAULT 0.0,
    -- Claims so far: a job that keeps losing its worker is failed rather than retried for ever.
    attempts BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_expires_at TIMESTAMPTZ,
    heartbeat_at TIMESTAMPTZ,
    -- Set while the job runs; its worker sees it at the next heartbeat and stops.
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    checkpoint_path TEXT,
    checkpoint_step BIGINT,
    result JSONB,
    error TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ
);
-- Claiming scans only the jobs that may still be claimed, oldest first.
CREATE INDEX jobs_open ON jobs (id) WHERE status IN ('pending', 'running');
CREATE INDEX jobs_org ON jobs (org_id, id);

-- Per-step training metrics. A resumed job redoes the steps after its checkpoint and records them again,
-- so a step's row is replaced rather than duplicated. The float columns accept NULL like SQLite's do
-- (SQLite stores a NaN, a diverged loss, as NULL), so that both databases take the same rows.
CREATE TABLE job_metrics (
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    job_id BIGINT NOT NULL REFERENCES jobs (id),
    step BIGINT NOT NULL,
    loss DOUBLE PRECISION,
    lr DOUBLE PRECISION,
    grad_norm DOUBLE PRECISION,
    tokens_per_s DOUBLE PRECISION,
    reward_margin DOUBLE PRECISION,
    reward_accuracy DOUBLE PRECISION,
    at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (job_id, step)
);
CREATE INDEX job_metrics_org ON job_metrics (org_id, job_id, step);

-- The model registry. A model is a set of files under `path` in the object store; its lineage (base
-- model, dataset, job) and its latest eval are kept here.
CREATE TABLE models (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    name TEXT NOT NULL,
    loop_key TEXT,
    kind TEXT NOT NULL,
    base_model_id BIGINT REFERENCES models (id),
    dataset_digest TEXT,
    job_id BIGINT REFERENCES jobs (id),
    path TEXT NOT NULL,
    config JSONB NOT NULL,
    parameters BIGINT NOT NULL,
    train_metrics JSONB NOT NULL,
    eval JSONB,
    reward DOUBLE PRECISION,
    evaluated_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (org_id, name)
);
CREATE INDEX models_loop ON models (org_id, loop_key, id);

-- Named pointers of a loop at models ("champion" serves, "challenger" waits for its promotion).
CREATE TABLE model_aliases (
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    loop_key TEXT NOT NULL,
    alias TEXT NOT NULL,
    model_id BIGINT NOT NULL REFERENCES models (id),
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (org_id, loop_key, alias)
);

-- Every promotion decision, accepted or refused, with the evidence it was based on.
CREATE TABLE model_promotions (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    loop_key TEXT NOT NULL,
    challenger_id BIGINT NOT NULL REFERENCES models (id),
    champion_id BIGINT REFERENCES models (id),
    accepted BOOLEAN NOT NULL,
    decision JSONB NOT NULL,
    at TIMESTAMPTZ NOT NULL
);
CREATE INDEX model_promotions_loop ON model_promotions (org_id, loop_key, at);

-- Served suggestions waiting for their outcome (or for their timeout). They are a short-lived queue
-- that the service drains into ordinary event batches, so the served model is recorded as a plain id:
-- the event keeps it even if the registry changes.
CREATE TABLE serving_impressions (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    event_id TEXT NOT NULL,
    loop_key TEXT NOT NULL,
    user_id TEXT NOT NULL,
    variant TEXT NOT NULL,
    model_id BIGINT NOT NULL,
    context TEXT NOT NULL,
    suggestion TEXT NOT NULL,
    latency_ms DOUBLE PRECISION NOT NULL,
    unit TEXT,
    accepted_chars BIGINT,
    final_text TEXT,
    at TIMESTAMPTZ NOT NULL,
    outcome_at TIMESTAMPTZ,
    UNIQUE (org_id, event_id)
);
CREATE INDEX serving_impressions_at ON serving_impressions (at);
