-- Jobs that wait behind an earlier job of their series (a request's
-- notices, one person's refreshes) are kept out of the claimable queue.
--
-- A job written while an earlier job of its series is still live is
-- `waiting`, not `queued`; when a series job ends, the earliest waiting
-- job of its series becomes `queued`. So `jobs_queued_by_lane` holds only
-- jobs that may run, and a claim stops at the first due entry. Before,
-- blocked jobs sat in that index too, and every claim walked past all of
-- them: with 10,000 revocation notices waiting behind grant notices that
-- Slack's pacing had pushed back, a claim of the notice lane took 4 ms
-- under the write lock, and the revocations queued behind it.
DROP INDEX jobs_live_series;
CREATE INDEX jobs_live_series ON jobs (series, id)
WHERE series IS NOT NULL AND state IN ('queued', 'running', 'waiting');
UPDATE jobs SET state = 'waiting'
 WHERE series IS NOT NULL AND state = 'queued'
   AND EXISTS (SELECT 1 FROM jobs e
                WHERE e.series = jobs.series AND e.id < jobs.id AND e.state IN ('queued', 'running'));
-- The single-instance kinds (checkpoint, report digest) have no series and
-- never wait, so their unique indexes keep their two live states.
