-- Who opened their App Home tab: only they get redrawn tabs when their
-- requests change (a tab nobody opened is not worth a views.publish).
CREATE TABLE home_tabs (
    team_id   TEXT   NOT NULL,
    user_id   TEXT   NOT NULL,
    opened_at BIGINT NOT NULL,
    PRIMARY KEY (team_id, user_id)
);

-- A hash of the approval card as last drawn, so a notice that would draw
-- the same card again makes no chat.update.
ALTER TABLE slack_cards ADD COLUMN rendered_hash TEXT;

-- Revocation lines for the audit channel, one per request, by the minute
-- the notice came in: the first few of a minute are posted one by one,
-- the rest are held for one digest line at the end of the minute.
CREATE TABLE audit_revocation_lines (
    request_id BIGINT PRIMARY KEY REFERENCES access_requests (id),
    minute     BIGINT NOT NULL,
    held       BIGINT NOT NULL,
    posted_at  BIGINT
);
CREATE INDEX audit_revocation_lines_by_minute ON audit_revocation_lines (minute, held);

-- A person's App Home redraws, found by their payload (team and user):
-- one queued at a time is enough, and they run one after another.
CREATE INDEX jobs_redraw_home_by_person ON jobs (payload) WHERE kind = 'redraw_home';
CREATE INDEX jobs_audit_digest_by_minute ON jobs (payload) WHERE kind = 'audit_digest';

-- The messages a notice job already sent: a notice retried after a 429
-- (or a pacing wait) on a later message does not send them again.
CREATE TABLE notice_steps (
    job_id  BIGINT NOT NULL,
    step    TEXT   NOT NULL,
    done_at BIGINT NOT NULL,
    PRIMARY KEY (job_id, step)
);
