-- Core schema, PostgreSQL flavour of migrations/sqlite/0001_core.sql: the
-- same tables and columns, with identity columns instead of AUTOINCREMENT.

CREATE TABLE identity_links (
    team_id      TEXT   NOT NULL,
    user_id      TEXT   NOT NULL,
    issuer       TEXT   NOT NULL,
    subject      TEXT   NOT NULL,
    email        TEXT   NOT NULL,
    groups_json  TEXT   NOT NULL,
    source       TEXT   NOT NULL,
    auth_time    BIGINT,
    confirmed_at BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (team_id, user_id)
);

CREATE TABLE access_requests (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    team_id            TEXT   NOT NULL,
    requester_id       TEXT   NOT NULL,
    requester_issuer   TEXT   NOT NULL,
    requester_subject  TEXT   NOT NULL,
    requester_email    TEXT   NOT NULL,
    role               TEXT   NOT NULL,
    provider           TEXT   NOT NULL,
    duration_ms        BIGINT NOT NULL,
    reason             TEXT   NOT NULL,
    ticket             TEXT,
    approvals_required BIGINT NOT NULL,
    state              TEXT   NOT NULL,
    state_detail       TEXT,
    open_slot          TEXT UNIQUE,
    client_key         TEXT UNIQUE,
    created_at         BIGINT NOT NULL,
    decided_at         BIGINT,
    granted_at         BIGINT,
    expires_at         BIGINT,
    ended_at           BIGINT,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX access_requests_by_state ON access_requests (state);
CREATE INDEX access_requests_by_requester ON access_requests (team_id, requester_id);

CREATE TABLE approvals (
    request_id       BIGINT NOT NULL REFERENCES access_requests (id),
    team_id          TEXT   NOT NULL,
    approver_id      TEXT   NOT NULL,
    approver_subject TEXT   NOT NULL,
    decision         TEXT   NOT NULL,
    comment          TEXT,
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (request_id, team_id, approver_id)
);

CREATE TABLE jobs (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        TEXT   NOT NULL,
    request_id  BIGINT,
    payload     TEXT   NOT NULL,
    state       TEXT   NOT NULL,
    due_at      BIGINT NOT NULL,
    attempt     BIGINT NOT NULL DEFAULT 0,
    lease_until BIGINT,
    worker      TEXT,
    last_error  TEXT,
    created_at  BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX jobs_by_due ON jobs (state, due_at);
CREATE INDEX jobs_by_request ON jobs (request_id, kind);

CREATE TABLE audit_events (
    seq        BIGINT PRIMARY KEY,
    at         BIGINT NOT NULL,
    actor      TEXT   NOT NULL,
    action     TEXT   NOT NULL,
    request_id BIGINT,
    detail     TEXT   NOT NULL,
    prev_hash  TEXT   NOT NULL,
    hash       TEXT   NOT NULL
);

CREATE TABLE audit_head (
    id   BIGINT PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT   NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE FUNCTION audit_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
