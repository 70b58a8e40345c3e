-- OIDC linking: single-use link tokens (stored hashed), in-flight logins
-- (state, nonce, PKCE verifier, bound to one browser), and the encrypted
-- refresh token of a link.
CREATE TABLE link_tokens (
    token_hash TEXT   PRIMARY KEY,
    team_id    TEXT   NOT NULL,
    user_id    TEXT   NOT NULL,
    max_age_ms BIGINT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);

CREATE TABLE oidc_logins (
    state_hash    TEXT   PRIMARY KEY,
    token_hash    TEXT   NOT NULL,
    browser_hash  TEXT   NOT NULL,
    nonce         TEXT   NOT NULL,
    pkce_verifier TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    used_at       BIGINT
);

ALTER TABLE identity_links ADD COLUMN refresh_token TEXT;
