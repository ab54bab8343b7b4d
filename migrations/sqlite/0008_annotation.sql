-- Expert annotation: queues of a loop's interactions that experts review, their versions, the items
-- sampled into them, the leases that keep two annotators off one item, and the annotations. Also the
-- `annotator` role, for experts who see their queues and nothing else.

-- SQLite cannot change a CHECK constraint in place: the two tables whose role it checks are rebuilt
-- with the same columns and the new role, their rows copied, and their indexes made again.
CREATE TABLE memberships_new (
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    user_id INTEGER NOT NULL REFERENCES users (id),
    role TEXT NOT NULL CHECK (role IN ('admin', 'leader', 'squad-member', 'exec', 'annotator')),
    -- The squads a squad member works in, as a JSON list of ids.
    squads TEXT NOT NULL DEFAULT '[]',
    version INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
INSERT INTO memberships_new (org_id, user_id, role, squads, version, created_at, updated_at)
    SELECT org_id, user_id, role, squads, version, created_at, updated_at FROM memberships;
DROP TABLE memberships;
ALTER TABLE memberships_new RENAME TO memberships;

CREATE TABLE invitations_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    -- Lower-cased, like users.email.
    email TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'leader', 'squad-member', 'exec', 'annotator')),
    -- The squads a squad member will work in, as a JSON list of ids.
    squads TEXT NOT NULL DEFAULT '[]',
    -- SHA-256 of the secret; secrets are 256 random bits, so a fast hash is enough.
    token_hash TEXT NOT NULL UNIQUE,
    -- The inviter's audit label: the membership an acceptance creates is recorded as theirs.
    invited_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    accepted_at TEXT,
    revoked_at TEXT
);
INSERT INTO invitations_new (id, org_id, email, role, squads, token_hash, invited_by, created_at, expires_at, accepted_at, revoked_at)
    SELECT id, org_id, email, role, squads, token_hash, invited_by, created_at, expires_at, accepted_at, revoked_at FROM invitations;
DROP TABLE invitations;
ALTER TABLE invitations_new RENAME TO invitations;
CREATE INDEX invitations_by_org ON invitations (org_id, id);

-- One row per queue: its loop and current version. Every lease and submission first writes the queue's
-- row (`lease_seq`), which serialises them per queue on PostgreSQL (the row lock) and on SQLite (the
-- database's write lock), so two servers never hand one item to more annotators than it needs.
CREATE TABLE annotation_queues (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    key TEXT NOT NULL,
    loop_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    lease_seq INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    UNIQUE (org_id, key)
);

-- Every version of a queue's definition (JSON: sampling, guidelines, labels, overlap, who annotates,
-- lease length); the queue's `version` names the current one.
CREATE TABLE annotation_queue_versions (
    queue_id INTEGER NOT NULL REFERENCES annotation_queues (id),
    version INTEGER NOT NULL,
    settings TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (queue_id, version)
);

-- An interaction sampled into a queue, copied from its event (events are immutable, and an annotator's
-- page must not read Parquet segments), with the version it was sampled under.
CREATE TABLE annotation_items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    queue_id INTEGER NOT NULL REFERENCES annotation_queues (id),
    queue_version INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    event_at TEXT NOT NULL,
    context TEXT NOT NULL,
    suggestion TEXT,
    final_text TEXT,
    suggested_chars INTEGER NOT NULL,
    accepted_chars INTEGER NOT NULL,
    -- The challenger's suggestion for the same context, for preferences.
    alternative TEXT,
    alternative_model_id INTEGER,
    alternative_model TEXT,
    -- Labelled annotations the item needs, and has.
    needed INTEGER NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL CHECK (status IN ('open', 'done', 'flagged')),
    -- The known answer of a gold item (JSON labels).
    gold TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (queue_id, event_id)
);
CREATE INDEX annotation_items_open ON annotation_items (queue_id, status, id);

-- Who holds which item until when. A lease past its time no longer counts.
CREATE TABLE annotation_leases (
    item_id INTEGER NOT NULL REFERENCES annotation_items (id),
    queue_id INTEGER NOT NULL REFERENCES annotation_queues (id),
    annotator TEXT NOT NULL,
    leased_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (item_id, annotator)
);
CREATE INDEX annotation_leases_queue ON annotation_leases (queue_id, annotator);

-- One annotator's answer for one item: labels (JSON), a skip, or a flag with its note.
CREATE TABLE annotations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    queue_id INTEGER NOT NULL REFERENCES annotation_queues (id),
    item_id INTEGER NOT NULL REFERENCES annotation_items (id),
    annotator TEXT NOT NULL,
    user_id INTEGER REFERENCES users (id),
    outcome TEXT NOT NULL CHECK (outcome IN ('labelled', 'skipped', 'flagged')),
    labels TEXT NOT NULL,
    note TEXT,
    source TEXT NOT NULL CHECK (source IN ('app', 'import')),
    seconds REAL,
    created_at TEXT NOT NULL,
    UNIQUE (item_id, annotator)
);
CREATE INDEX annotations_by_queue ON annotations (queue_id, id);
CREATE INDEX annotations_by_org ON annotations (org_id, created_at);
