-- Issue 14: committed migrations are never edited, because a database that applied the earlier text
-- refuses to start on the checksum mismatch. Three edits had been made in place and are undone (the
-- store accepts the edited texts' checksums as the originals', see `migrations/CHECKSUMS`); this
-- migration carries what they changed.
--
-- From 0001: `orgs.write_seq` is bumped at the start of every plan write: caches compare it to see
-- whether the plan changed, and writing the row first makes one organisation's writes run one at a time
-- (season rules rely on it); 0001's comment predates the caches.
--
-- From 0002: `event_batches.content_hash` is the SHA-256 of the (decompressed) body, so a byte-identical
-- retry without a key is recognised too; 0002's comment predates that.
--
-- From 0005: at most one open reversal per metric and season, whichever server detected it first. A
-- database that ran 0005 before the rule may hold duplicates, which would stop the index from being
-- built; every open duplicate but the earliest is closed with a note saying why. A database that ran the
-- edited 0005 already has the index, hence IF NOT EXISTS.
UPDATE thesis_signals
SET resolved_at = raised_at,
    resolved_by = 'slope',
    resolution = 'Closed as a duplicate of an earlier open reversal of the same metric when one open reversal per metric became the rule.'
WHERE kind = 'metric-reversal'
  AND resolved_at IS NULL
  AND id NOT IN (
      SELECT MIN(id) FROM thesis_signals
      WHERE kind = 'metric-reversal' AND resolved_at IS NULL
      GROUP BY org_id, season_id, subject
  );
CREATE UNIQUE INDEX IF NOT EXISTS thesis_signals_open_reversal ON thesis_signals (org_id, season_id, subject)
    WHERE kind = 'metric-reversal' AND resolved_at IS NULL;
