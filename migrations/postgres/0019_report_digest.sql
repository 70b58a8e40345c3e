-- At most one weekly report digest job queued or running, across replicas:
-- the digest is posted once per week, and none is lost (the job that posts
-- one schedules the next in the same transaction that completes it).
CREATE UNIQUE INDEX jobs_one_report_digest ON jobs (kind)
WHERE kind = 'report_digest' AND state IN ('queued', 'running');
