-- Short browser sessions after an IdP sign-in, for pages that must know who
-- is at the browser (the one-time credentials page). Stored hashed.
CREATE TABLE browser_sessions (
    session_hash TEXT   PRIMARY KEY,
    issuer       TEXT   NOT NULL,
    subject      TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
