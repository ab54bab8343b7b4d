-- Expert annotation: queues of a loop's interactions that experts review, their versions, the items
-- sampled into them, the leases that keep two annotators off one item, and the annotations. Also the
-- `annotator` role, for experts who see their queues and nothing else.

-- The role is checked in two tables; their constraints are made again with the new role.
ALTER TABLE memberships DROP CONSTRAINT memberships_role_check;
ALTER TABLE memberships ADD CONSTRAINT memberships_role_check
    CHECK (role IN ('admin', 'leader', 'squad-member', 'exec', 'annotator'));
ALTER TABLE invitations DROP CONSTRAINT invitations_role_check;
ALTER TABLE invitations ADD CONSTRAINT invitations_role_check
    CHECK (role IN ('admin', 'leader', 'squad-member', 'exec', 'annotator'));

-- One row per queue: its loop and current version. Every lease and submission first writes the queue's
-- row (`lease_seq`), which serialises them per queue on PostgreSQL (the row lock) and on SQLite (the
-- database's write lock), so two servers never hand one item to more annotators than it needs.
CREATE TABLE annotation_queues (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    key TEXT NOT NULL,
    loop_key TEXT NOT NULL,
    version BIGINT NOT NULL,
    lease_seq BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (org_id, key)
);

-- Every version of a queue's definition (JSON: sampling, guidelines, labels, overlap, who annotates,
-- lease length); the queue's `version` names the current one.
CREATE TABLE annotation_queue_versions (
    queue_id BIGINT NOT NULL REFERENCES annotation_queues (id),
    version BIGINT NOT NULL,
    settings JSONB NOT NULL,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (queue_id, version)
);

-- An interaction sampled into a queue, copied from its event (events are immutable, and an annotator's
-- page must not read Parquet segments), with the version it was sampled under.
CREATE TABLE annotation_items (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    queue_id BIGINT NOT NULL REFERENCES annotation_queues (id),
    queue_version BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    event_at TIMESTAMPTZ NOT NULL,
    context TEXT NOT NULL,
    suggestion TEXT,
    final_text TEXT,
    suggested_chars BIGINT NOT NULL,
    accepted_chars BIGINT NOT NULL,
    -- The challenger's suggestion for the same context, for preferences.
    alternative TEXT,
    alternative_model_id BIGINT,
    alternative_model TEXT,
    -- Labelled annotations the item needs, and has.
    needed BIGINT NOT NULL,
    done BIGINT NOT NULL DEFAULT 0,
    status TEXT NOT NULL CHECK (status IN ('open', 'done', 'flagged')),
    -- The known answer of a gold item (JSON labels).
    gold JSONB,
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (queue_id, event_id)
);
CREATE INDEX annotation_items_open ON annotation_items (queue_id, status, id);

-- Who holds which item until when. A lease past its time no longer counts.
CREATE TABLE annotation_leases (
    item_id BIGINT NOT NULL REFERENCES annotation_items (id),
    queue_id BIGINT NOT NULL REFERENCES annotation_queues (id),
    annotator TEXT NOT NULL,
    leased_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (item_id, annotator)
);
CREATE INDEX annotation_leases_queue ON annotation_leases (queue_id, annotator);

-- One annotator's answer for one item: labels (JSON), a skip, or a flag with its note.
CREATE TABLE annotations (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    queue_id BIGINT NOT NULL REFERENCES annotation_queues (id),
    item_id BIGINT NOT NULL REFERENCES annotation_items (id),
    annotator TEXT NOT NULL,
    user_id BIGINT REFERENCES users (id),
    outcome TEXT NOT NULL CHECK (outcome IN ('labelled', 'skipped', 'flagged')),
    labels JSONB NOT NULL,
    note TEXT,
    source TEXT NOT NULL CHECK (source IN ('app', 'import')),
    seconds DOUBLE PRECISION,
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (item_id, annotator)
);
CREATE INDEX annotations_by_queue ON annotations (queue_id, id);
CREATE INDEX annotations_by_org ON annotations (org_id, created_at);
