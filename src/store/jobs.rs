//! The durable job queue: rows that say "do this at that time", claimed with
//! a fenced lease.
//!
//! A claim increments `attempt` and sets `lease_until`; every later write
//! about the job (renew, complete, retry, fail) names the attempt it belongs
//! to, so a worker whose lease ran out and was taken over can no longer
//! complete or reschedule the job.
//!
//! Two clocks meet here, on purpose. `due_at` is the application's clock (the
//! `now` every caller passes), because due times come from the workflow and
//! tests move them with a manual clock. Leases are a different matter: on
//! PostgreSQL several replicas judge each other's leases, and their clocks
//! may disagree by more than a lease is long, so there a lease is set,
//! renewed and judged expired by the database server's clock alone. SQLite
//! has one process and no server clock, so leases use the caller's `now`.

use std::time::Duration;

use crate::domain::{RequestId, Timestamp};

use super::{Db, StoreResult, Tx, on_conn};

/// The database server's clock in epoch milliseconds. `clock_timestamp()`
/// rather than `now()`: `now()` stands still for a whole transaction.
const PG_CLOCK_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// The SQL for "now" as leases measure it: the server clock on PostgreSQL,
/// otherwise the placeholder that carries the caller's `now`. (PostgreSQL
/// accepts that placeholder bound but unused, so both backends bind the same
/// values and only this fragment differs.)
fn lease_clock(postgres: bool, app_now: &'static str) -> &'static str {
    if postgres { PG_CLOCK_MS } else { app_now }
}

/// A lease length in milliseconds, for SQL arithmetic.
fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2)
}

/// When the scheduler next has something to do, in the two clocks jobs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JobWake {
    /// The earliest `due_at` of a queued job that may be claimed once due
    /// (the application's clock).
    pub next_due: Option<Timestamp>,
    /// How long until the earliest running lease runs out, measured by the
    /// lease clock (zero if one already has). A replica sleeps this long in
    /// real time to take over the work of a replica that died.
    pub lease_expires_in: Option<Duration>,
}

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

/// The condition (on a job aliased `j`) that no earlier job of its series is
/// still queued or running. Two kinds of jobs form series:
///
/// - notices about one request are delivered in the order they were written
///   (a card must be posted before it can be updated);
/// - group refreshes of one person run one at a time, so a rotating refresh
///   token is never spent twice by two replicas;
/// - App Home redraws of one person run one at a time, so an older picture
///   never lands after a newer one.
///
/// Other kinds skip the subquery altogether (it would cost a scan per
/// candidate: quadratic in a large queue).
const SERIAL: &str = "NOT (
        (j.kind = 'notify' AND EXISTS (
            SELECT 1 FROM jobs e WHERE e.request_id = j.request_id AND e.kind = 'notify'
              AND e.id < j.id AND e.state IN ('queued', 'running')))
        OR (j.kind = 'refresh_link' AND EXISTS (
            SELECT 1 FROM jobs e WHERE e.kind = 'refresh_link' AND e.payload = j.payload
              AND e.id < j.id AND e.state IN ('queued', 'running')))
        OR (j.kind = 'redraw_home' AND EXISTS (
            SELECT 1 FROM jobs e WHERE e.kind = 'redraw_home' AND e.payload = j.payload
              AND e.id < j.id AND e.state IN ('queued', 'running'))))";

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

    /// Schedules a job of `kind` unless one is already queued or running;
    /// returns whether it was added. For recurring jobs that must exist
    /// once, not once per replica: two replicas starting together may both
    /// pass the `NOT EXISTS`, so the kind also needs a partial unique index
    /// (`jobs_one_audit_checkpoint`), which makes the second insert a no-op.
    pub async fn insert_job_unless_pending(
        &mut self,
        kind: &str,
        payload: &str,
        due_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let n = on_conn!(tx self, |c| {
            sqlx::query(
                "INSERT INTO jobs (kind, request_id, payload, state, due_at, attempt, created_at)
                 SELECT $1, NULL, $2, 'queued', $3, 0, $4
                 WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE kind = $1 AND state IN ('queued', 'running'))
                 ON CONFLICT DO NOTHING",
            )
            .bind(kind)
            .bind(payload)
            .bind(due_at.millis())
            .bind(now.millis())
            .execute(c)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
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

    /// Whether a job of `kind` with exactly `payload` is queued or running
    /// (one refresh per person at a time).
    pub async fn person_job_pending(&mut self, kind: &str, payload: &str) -> StoreResult<bool> {
        let n: i64 = on_conn!(tx self, |c| {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM jobs WHERE kind = $1 AND payload = $2 AND state IN ('queued', 'running')",
            )
            .bind(kind)
            .bind(payload)
            .fetch_one(c)
            .await?
        });
        Ok(n > 0)
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

    /// Whether the request's revocation has not had its chance yet: an
    /// attempt is running right now (its job holds a live lease), or the job
    /// is due but no worker has tried it (after a restart, or on a busy
    /// queue, the expiry's revoke and its overdue check come due together).
    pub async fn revoke_in_flight(&mut self, request: RequestId, now: Timestamp) -> StoreResult<bool> {
        let sql = format!(
            "SELECT COUNT(*) FROM jobs
             WHERE request_id = $1 AND kind = 'revoke'
               AND ((state = 'running' AND lease_until > {}) OR (state = 'queued' AND attempt = 0))",
            lease_clock(self.is_postgres(), "$2")
        );
        let n: i64 = on_conn!(tx self, |c| {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
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
        self.job_in_flight("grant", request, now).await
    }

    /// Whether a `kind` job of the request holds a live lease (judged by the
    /// clock leases are kept in: the database's on PostgreSQL).
    async fn job_in_flight(&mut self, kind: &'static str, request: RequestId, now: Timestamp) -> StoreResult<bool> {
        let sql = format!(
            "SELECT COUNT(*) FROM jobs
             WHERE request_id = $1 AND kind = $3 AND state = 'running' AND lease_until > {}",
            lease_clock(self.is_postgres(), "$2")
        );
        let n: i64 = on_conn!(tx self, |c| {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(request.get())
                .bind(now.millis())
                .bind(kind)
                .fetch_one(c)
                .await?
        });
        Ok(n > 0)
    }
}

impl Db {
    /// Claims up to `limit` jobs that are due at `now`, or whose previous
    /// claim's lease ran out, for `worker`, with a lease of `lease`.
    pub async fn claim_jobs(
        &self,
        worker: &str,
        now: Timestamp,
        lease: Duration,
        limit: i64,
    ) -> StoreResult<Vec<JobRow>> {
        // PostgreSQL: concurrent claimers skip each other's rows instead of
        // waiting, and a row another replica claimed meanwhile is re-checked
        // against its new state before it is locked. SQLite: the single
        // UPDATE is atomic under its write lock.
        //
        // Jobs of one series run one at a time, in order (see `SERIAL`).
        let postgres = self.is_postgres();
        let sql = format!(
            "UPDATE jobs SET state = 'running', attempt = attempt + 1, lease_until = {lease_now} + $1, worker = $2
             WHERE id IN (SELECT j.id FROM jobs j
                          WHERE ((j.state = 'queued' AND j.due_at <= $3)
                                 OR (j.state = 'running' AND j.lease_until <= {lease_now}))
                            AND {SERIAL}
                          ORDER BY j.due_at, j.id LIMIT $4{lock})
             RETURNING id, kind, request_id, payload, attempt, due_at",
            lease_now = lease_clock(postgres, "$3"),
            lock = if postgres { " FOR UPDATE SKIP LOCKED" } else { "" },
        );
        Ok(on_conn!(db self, |c| {
            sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(sql))
                .bind(lease_ms(lease))
                .bind(worker)
                .bind(now.millis())
                .bind(limit)
                .fetch_all(c)
                .await?
        }))
    }

    /// Extends the lease of a running job to `lease` from now (by the lease
    /// clock); `false` means the claim was lost.
    pub async fn renew_job(&self, id: i64, attempt: i64, now: Timestamp, lease: Duration) -> StoreResult<bool> {
        let sql = format!(
            "UPDATE jobs SET lease_until = {} + $4 WHERE id = $1 AND attempt = $2 AND state = 'running'",
            lease_clock(self.is_postgres(), "$3")
        );
        let n = on_conn!(db self, |c| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .bind(attempt)
                .bind(now.millis())
                .bind(lease_ms(lease))
                .execute(c)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    /// When the scheduler next has something to do: the earliest due queued
    /// job and the earliest lease to run out. Jobs waiting behind an earlier
    /// job of their series do not count: the earlier one's completion wakes
    /// the scheduler.
    pub async fn next_job_wake(&self, now: Timestamp) -> StoreResult<JobWake> {
        let sql = format!(
            "SELECT
               (SELECT MIN(j.due_at) FROM jobs j WHERE j.state = 'queued' AND {SERIAL}),
               (SELECT MIN(r.lease_until) - {} FROM jobs r WHERE r.state = 'running')",
            lease_clock(self.is_postgres(), "$1")
        );
        let (due, lease_left): (Option<i64>, Option<i64>) = on_conn!(db self, |c| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(now.millis()).fetch_one(c).await?
        });
        Ok(JobWake {
            next_due: due.map(Timestamp::from_millis),
            lease_expires_in: lease_left.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
        })
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
