-- Grants that really grant, PostgreSQL flavour of
-- migrations/sqlite/0005_provider_grants.sql (the same tables and columns):
-- the spec snapshot of each request, leases on shared target access, and
-- one-time credential links.

-- What the request's access means in its target (JSON, see
-- providers::spec::GrantSpec), fixed when the request is made so that the
-- revocation removes exactly what was granted even if the config changes.
ALTER TABLE access_requests ADD COLUMN grant_spec TEXT;

-- One row per target access that live requests share (e.g. "login alice is a
-- member of readonly" on one provider), present while any lease on it is not
-- released. Upserting it is also the lock that serialises lease decisions on
-- one access. `preexisting`: NULL not yet inspected, 0 jitbot granted it,
-- 1 it existed before jitbot granted it (then jitbot never revokes it).
CREATE TABLE target_access (
    access_key  TEXT   PRIMARY KEY,
    provider    TEXT   NOT NULL,
    preexisting BIGINT,
    updated_at  BIGINT NOT NULL
);

-- Which request holds which access: 'held' from just before the grant call,
-- 'releasing' while the revocation of the last holder runs (new grants of
-- the same access wait), 'released' after. `outcome` says what the release
-- did: 'revoked' (removed in the target), 'kept_shared' (another request
-- still held it), 'kept_preexisting' (it was there before jitbot) or
-- 'not_granted'; the reconciler only expects 'revoked' access to be gone.
CREATE TABLE grant_leases (
    request_id  BIGINT PRIMARY KEY REFERENCES access_requests (id),
    access_key  TEXT   NOT NULL,
    state       TEXT   NOT NULL,
    outcome     TEXT,
    created_at  BIGINT NOT NULL,
    released_at BIGINT
);
CREATE INDEX grant_leases_by_key ON grant_leases (access_key, state);

-- Single-use links to the one-time credentials page. Only the SHA-256 of the
-- token is stored; a link is bound to its request and requester.
CREATE TABLE credential_tokens (
    token_hash TEXT   PRIMARY KEY,
    request_id BIGINT NOT NULL REFERENCES access_requests (id),
    team_id    TEXT   NOT NULL,
    user_id    TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    superseded_at BIGINT
);
CREATE INDEX credential_tokens_by_request ON credential_tokens (request_id);
