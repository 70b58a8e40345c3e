-- Lanes, series and worker heartbeats for the job queue.
--
-- `lane` separates jobs that change access (grant, revoke, extend_grant,
-- overdue_check: the `access` lane) from everything people are told (the
-- `notice` lane), so each lane is claimed on its own with slots of its
-- own: a backlog of notices never delays a revocation. The lane is
-- decided by the job's kind when it is written (`JobKind::lane`); the
-- backfill below gives existing rows theirs.
--
-- `series` names the jobs that must run one at a time and in order (a
-- request's notices; one person's group refreshes). A claim looks up only
-- the earlier live jobs of the same series, through `jobs_live_series`,
-- instead of scanning the queue per candidate.
ALTER TABLE jobs ADD COLUMN lane TEXT NOT NULL DEFAULT 'notice';
ALTER TABLE jobs ADD COLUMN series TEXT;
UPDATE jobs SET lane = 'access' WHERE kind IN ('grant', 'revoke', 'extend_grant', 'overdue_check');
UPDATE jobs SET series = 'notify:' || request_id
 WHERE kind = 'notify' AND request_id IS NOT NULL AND state IN ('queued', 'running');
UPDATE jobs SET series = 'refresh_link:' || payload WHERE kind = 'refresh_link' AND state IN ('queued', 'running');

-- Claiming: the due queued jobs of one lane, most overdue first, straight
-- off the index; running jobs (few) are looked at on their own path.
CREATE INDEX jobs_queued_by_lane ON jobs (lane, due_at, id) WHERE state = 'queued';
CREATE INDEX jobs_running_by_lane ON jobs (lane, lease_until) WHERE state = 'running';
CREATE INDEX jobs_live_series ON jobs (series, id) WHERE series IS NOT NULL AND state IN ('queued', 'running');

-- One row per scheduler (process start): on PostgreSQL each replica
-- writes `seen_at` every few seconds (by the database's clock), and the
-- running jobs of a worker silent for longer than the heartbeat timeout
-- may be taken over before their lease runs out. `process` tells a
-- scheduler of this process from one of a process that died (SQLite).
CREATE TABLE workers (
    id         TEXT   PRIMARY KEY,
    process    TEXT   NOT NULL,
    seen_at    BIGINT NOT NULL,
    started_at BIGINT NOT NULL
);
