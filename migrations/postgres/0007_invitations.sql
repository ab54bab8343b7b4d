-- An invitation to join an organisation. An admin names an e-mail address, a role and squads; nothing
-- about the address's account is looked at then, so the answer is the same whether one exists. The
-- holder of the invitation's secret accepts it, with the account's password or a new account's, and
-- only then does the account become a member.
CREATE TABLE invitations (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    -- Lower-cased, like users.email.
    email TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'leader', 'squad-member', 'exec')),
    -- The squads a squad member will work in, as a JSON list of ids.
    squads JSONB NOT NULL DEFAULT '[]'::jsonb,
    -- SHA-256 of the secret; secrets are 256 random bits, so a fast hash is enough.
    token_hash TEXT NOT NULL UNIQUE,
    -- The inviter's audit label: the membership an acceptance creates is recorded as theirs.
    invited_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    accepted_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ
);

CREATE INDEX invitations_by_org ON invitations (org_id, id);
