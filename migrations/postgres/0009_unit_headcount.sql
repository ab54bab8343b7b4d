-- A unit's headcount: how many people work in it, when an admin has said so. The adoption dashboard
-- takes its AI fluency share over it; NULL means not known, and then only people seen in events count.
ALTER TABLE units ADD COLUMN headcount BIGINT CHECK (headcount IS NULL OR headcount > 0);
