//! The durable job queue: rows that say "do this at that time", claimed with
//! a fenced lease.
//!
//! A claim increments `attempt` and sets `lease_until`; every later write
//! about the job (renew, complete, retry, fail) names the attempt it belongs
//! to, so a worker whose lease ran out and was taken over can no longer
//! complete or reschedule the job.

use crate::domain::{RequestId, Timestamp};

use super::{Db, StoreResult, Tx, on_conn};

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for `due_at`.
    Queued,
    /// Claimed by a worker until `lease_until`.
    Running,
    /// Finished successfully (or found nothing to do).
    Done,
    /// Gave up after its retries.
    Failed,
}

impl JobState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }
}

/// A claimed job.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRow {
    /// Job id.
    pub id: i64,
    /// What to do (`grant`, `revoke`, `notify`).
    pub kind: String,
    /// The request it concerns, if any.
    pub request_id: Option<i64>,
    /// Kind-specific JSON.
    pub payload: String,
    /// The attempt this claim holds (1 for the first run).
    pub attempt: i64,
    /// When it became due.
    pub due_at: i64,
}

impl Tx {
    /// Schedules a job; it becomes claimable at `due_at`.
    pub async fn insert_job(
        &mut self,
        kind: &str,
        request_id: Option<RequestId>,
        payload: &str,
        due_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<i64> {
        Ok(on_conn!(tx self, |c| {
            sqlx::query_scalar(
                "INSERT INTO jobs (kind, request_id, payload, state, due_at, attempt, created_at)
                 VALUES ($1, $2, $3, 'queued', $4, 0, $5) RETURNING id",
            )
            .bind(kind)
            .bind(request_id.map(RequestId::get))
            .bind(payload)
            .bind(due_at.millis())
            .bind(now.millis())
            .fetch_one(c)
            .await?
        }))
    }

    /// Marks a claimed job done, if this attempt still holds it.
    pub async fn complete_job(&mut self, id: i64, attempt: i64, now: Timestamp) -> StoreResult<bool> {
        let n = on_conn!(tx self, |c| {
            sqlx::query(
                "UPDATE jobs SET state = 'done', finished_at = $3, lease_until = NULL
                 WHERE id = $1 AND attempt = $2 AND state = 'running'",
            )
            .bind(id)
            .bind(attempt)
            .bind(now.millis())
            .execute(c)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Marks a claimed job failed for good, if this attempt still holds it.
    pub async fn fail_job(&mut self, id: i64, attempt: i64, error: &str, now: Timestamp) -> StoreResult<bool> {
        let n = on_conn!(tx self, |c| {
            sqlx::query(
                "UPDATE jobs SET state = 'failed', finished_at = $3, lease_until = NULL, last_error = $4
                 WHERE id = $1 AND attempt = $2 AND state = 'running'",
            )
            .bind(id)
            .bind(attempt)
            .bind(now.millis())
            .bind(error)
            .execute(c)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Puts a claimed job back in the queue for `due_at`, if this attempt still holds it.
    pub async fn retry_job(&mut self, id: i64, attempt: i64, due_at: Timestamp, error: &str) -> StoreResult<bool> {
        let n = on_conn!(tx self, |c| {
            sqlx::query(
                "UPDATE jobs SET state = 'queued', due_at = $3, lease_until = NULL, last_error = $4
                 WHERE id = $1 AND attempt = $2 AND state = 'running'",
            )
            .bind(id)
            .bind(attempt)
            .bind(due_at.millis())
            .bind(error)
            .execute(c)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Makes the queued revocation of a request due at once (early revoke).
    pub async fn expedite_revoke(&mut self, request: RequestId, now: Timestamp) -> StoreResult<()> {
        on_conn!(tx self, |c| {
            sqlx::query(
                "UPDATE jobs SET due_at = $2
                 WHERE request_id = $1 AND kind = 'revoke' AND state = 'queued' AND due_at > $2",
            )
            .bind(request.get())
            .bind(now.millis())
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// Makes the request's queued revocation due at `now` (an administrator's
    /// retry); `false` when no revocation job is queued.
    pub async fn revoke_due_now(&mut self, request: RequestId, now: Timestamp) -> StoreResult<bool> {
        let n = on_conn!(tx self, |c| {
            sqlx::query("UPDATE jobs SET due_at = $2 WHERE request_id = $1 AND kind = 'revoke' AND state IN ('queued', 'running')")
                .bind(request.get())
                .bind(now.millis())
                .execute(c)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    /// Whether a revocation attempt for the request is running right now
    /// (its job holds a live lease).
    pub async fn revoke_in_flight(&mut self, request: RequestId, now: Timestamp) -> StoreResult<bool> {
        let n: i64 = on_conn!(tx self, |c| {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM jobs
                 WHERE request_id = $1 AND kind = 'revoke' AND state = 'running' AND lease_until > $2",
            )
            .bind(request.get())
            .bind(now.millis())
            .fetch_one(c)
            .await?
        });
        Ok(n > 0)
    }

    /// Whether a grant call for the request may be in flight right now (a
    /// grant job holds a live lease). A revocation waits for it, so a grant
    /// can never land after the revocation that should remove it.
    pub async fn grant_in_flight(&mut self, request: RequestId, now: Timestamp) -> StoreResult<bool> {
        let n: i64 = on_conn!(tx self, |c| {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM jobs
                 WHERE request_id = $1 AND kind = 'grant' AND state = 'running' AND lease_until > $2",
            )
            .bind(request.get())
            .bind(now.millis())
            .fetch_one(c)
            .await?
        });
        Ok(n > 0)
    }
}

impl Db {
    /// Claims up to `limit` jobs that are due, or whose previous claim's lease
    /// ran out, for `worker` until `lease_until`.
    pub async fn claim_jobs(
        &self,
        worker: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
    ) -> StoreResult<Vec<JobRow>> {
        // PostgreSQL: concurrent claimers skip each other's rows instead of
        // waiting. SQLite: the single UPDATE is atomic under its write lock.
        //
        // Notices about one request are delivered in the order they were
        // written (a card must be posted before it can be updated): a notice
        // is not claimed while an earlier one for the same request is unfinished.
        const SQLITE: &str = "UPDATE jobs SET state = 'running', attempt = attempt + 1, lease_until = $1, worker = $2
             WHERE id IN (SELECT j.id FROM jobs j
                          WHERE ((j.state = 'queued' AND j.due_at <= $3) OR (j.state = 'running' AND j.lease_until <= $3))
                            AND NOT (j.kind = 'notify' AND EXISTS (
                                SELECT 1 FROM jobs e WHERE e.request_id = j.request_id AND e.kind = 'notify'
                                  AND e.id < j.id AND e.state IN ('queued', 'running')))
                          ORDER BY j.due_at, j.id LIMIT $4)
             RETURNING id, kind, request_id, payload, attempt, due_at";
        const POSTGRES: &str = "UPDATE jobs SET state = 'running', attempt = attempt + 1, lease_until = $1, worker = $2
             WHERE id IN (SELECT j.id FROM jobs j
                          WHERE ((j.state = 'queued' AND j.due_at <= $3) OR (j.state = 'running' AND j.lease_until <= $3))
                            AND NOT (j.kind = 'notify' AND EXISTS (
                                SELECT 1 FROM jobs e WHERE e.request_id = j.request_id AND e.kind = 'notify'
                                  AND e.id < j.id AND e.state IN ('queued', 'running')))
                          ORDER BY j.due_at, j.id LIMIT $4 FOR UPDATE SKIP LOCKED)
             RETURNING id, kind, request_id, payload, attempt, due_at";
        let sql = if self.is_postgres() { POSTGRES } else { SQLITE };
        Ok(on_conn!(db self, |c| {
            sqlx::query_as::<_, JobRow>(sql)
                .bind(lease_until.millis())
                .bind(worker)
                .bind(now.millis())
                .bind(limit)
                .fetch_all(c)
                .await?
        }))
    }

    /// Extends the lease of a running job; `false` means the claim was lost.
    pub async fn renew_job(&self, id: i64, attempt: i64, lease_until: Timestamp) -> StoreResult<bool> {
        let n = on_conn!(db self, |c| {
            sqlx::query("UPDATE jobs SET lease_until = $3 WHERE id = $1 AND attempt = $2 AND state = 'running'")
                .bind(id)
                .bind(attempt)
                .bind(lease_until.millis())
                .execute(c)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    /// When the scheduler next has something to do: the earliest due queued
    /// job or the earliest lease to expire. Notices waiting behind an earlier
    /// notice do not count: the earlier one's completion wakes the scheduler.
    pub async fn next_job_wake(&self) -> StoreResult<Option<Timestamp>> {
        let t: Option<i64> = on_conn!(db self, |c| {
            sqlx::query_scalar(
                "SELECT MIN(CASE WHEN j.state = 'queued' THEN j.due_at ELSE j.lease_until END)
                 FROM jobs j WHERE j.state IN ('queued', 'running')
                   AND NOT (j.state = 'queued' AND j.kind = 'notify' AND EXISTS (
                       SELECT 1 FROM jobs e WHERE e.request_id = j.request_id AND e.kind = 'notify'
                         AND e.id < j.id AND e.state IN ('queued', 'running')))",
            )
            .fetch_one(c)
            .await?
        });
        Ok(t.map(Timestamp::from_millis))
    }

    /// Job counts by kind and state, for tests, metrics and `jitbot` status output.
    pub async fn job_counts(&self) -> StoreResult<Vec<(String, String, i64)>> {
        Ok(on_conn!(db self, |c| {
            sqlx::query_as::<_, (String, String, i64)>(
                "SELECT kind, state, COUNT(*) FROM jobs GROUP BY kind, state ORDER BY kind, state",
            )
            .fetch_all(c)
            .await?
        }))
    }
}
