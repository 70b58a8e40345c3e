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
    /// Behind an earlier live job of its series; queued when that one ends.
    Waiting,
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
            Self::Waiting => "waiting",
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

/// The states in which a job of a series holds its place: the text of
/// `jobs_live_series`' predicate, spelled exactly so that SQLite uses the
/// partial index. A macro so that `concat!` can build statements from it.
macro_rules! live {
    () => {
        "('queued', 'running', 'waiting')"
    };
}
const LIVE: &str = live!();

/// The condition (on a queued job aliased `j`) that no earlier job of its
/// series is still live (queued, running or waiting): jobs of one series (a request's
/// notices, one person's refreshes; see `JobKind::series`) run one at a
/// time, in order. Jobs without a series skip it; for the others it is one
/// probe of `jobs_live_series` (series, id), not a scan of the queue.
///
/// Jobs written behind a live job of their series wait apart (`waiting`,
/// see [`Tx::insert_job`]), so this probe rarely refuses a candidate; it
/// stays as the rule that holds when two jobs of a series were queued
/// before either could see the other.
const SERIES_FREE: &str = concat!(
    "(j.series IS NULL OR NOT EXISTS (SELECT 1 FROM jobs e WHERE e.series = j.series AND e.id < j.id AND e.state IN ",
    live!(),
    "))"
);

/// The first key of the PostgreSQL advisory locks on job series (see
/// `Tx::lock_series`); the second is the series' hash.
const SERIES_LOCK_SPACE: i32 = 0x6a69_7431;

/// A job to write: its kind, and where it queues (both decided by the
/// caller from the job's kind: see `JobKind::lane` and `JobKind::series`).
#[derive(Debug, Clone, Copy)]
pub struct NewJob<'a> {
    /// What to do (`grant`, `revoke`, `notify`, ...).
    pub kind: &'a str,
    /// The lane it is claimed in (`access` or `notice`).
    pub lane: &'a str,
    /// The series it runs in order with, if any.
    pub series: Option<&'a str>,
    /// The request it concerns, if any.
    pub request_id: Option<RequestId>,
    /// Kind-specific JSON.
    pub payload: &'a str,
    /// When it becomes claimable.
    pub due_at: Timestamp,
}

/// One claim: who claims, in which lane, how many, for how long.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// The claiming worker (`jobs.worker`).
    pub worker: &'a str,
    /// Only jobs of this lane; `None` claims from every lane (tools, tests).
    pub lane: Option<&'a str>,
    /// The lease each claimed job gets.
    pub lease: Duration,
    /// At most this many jobs.
    pub limit: i64,
    /// PostgreSQL: the running jobs of another worker whose heartbeat is
    /// older than this are claimable before their lease ends (their old
    /// attempt is fenced off all the same). Ignored on SQLite, where a
    /// process reclaims its dead predecessor's jobs at start-up instead
    /// ([`Db::reclaim_jobs_of_dead_processes`]).
    pub dead_after: Option<Duration>,
}

/// Due, unclaimed jobs of one lane (for `/metrics`).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LaneBacklog {
    /// The lane.
    pub lane: String,
    /// Queued jobs due now.
    pub due: i64,
    /// The earliest `due_at` among them.
    pub oldest_due_at: Option<i64>,
}

impl Tx {
    /// Schedules a job; it becomes claimable at `due_at`, or, in a series
    /// with a live job already, once the jobs before it have ended (it
    /// waits as `waiting` until then, out of the claimable queue).
    ///
    /// PostgreSQL: see [`Tx::lock_series`]; no new job can wait behind a
    /// job that ended without queueing it.
    pub async fn insert_job(&mut self, job: &NewJob<'_>, now: Timestamp) -> StoreResult<i64> {
        if let Some(series) = job.series {
            self.lock_series(series).await?;
        }
        let sql = format!(
            "INSERT INTO jobs (kind, request_id, payload, state, due_at, attempt, created_at, lane, series)
             VALUES ($1, $2, $3,
                     CASE WHEN $7 IS NOT NULL AND EXISTS (
                         SELECT 1 FROM jobs e WHERE e.series = $7 AND e.state IN {LIVE})
                          THEN 'waiting' ELSE 'queued' END,
                     $4, 0, $5, $6, $7) RETURNING id"
        );
        Ok(on_conn!(tx self, |c| {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(job.kind)
            .bind(job.request_id.map(RequestId::get))
            .bind(job.payload)
            .bind(job.due_at.millis())
            .bind(now.millis())
            .bind(job.lane)
            .bind(job.series)
            .fetch_one(c)
            .await?
        }))
    }

    /// Schedules a job of its kind unless one is already queued or running;
    /// returns whether it was added. For recurring jobs that must exist
    /// once, not once per replica: two replicas starting together may both
    /// pass the `NOT EXISTS`, so the kind also needs a partial unique index
    /// (`jobs_one_audit_checkpoint`), which makes the second insert a no-op.
    pub async fn insert_job_unless_pending(&mut self, job: &NewJob<'_>, now: Timestamp) -> StoreResult<bool> {
        let n = on_conn!(tx self, |c| {
            sqlx::query(
                "INSERT INTO jobs (kind, request_id, payload, state, due_at, attempt, created_at, lane, series)
                 SELECT $1, $2, $3, 'queued', $4, 0, $5, $6, $7
                 WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE kind = $1 AND state IN ('queued', 'running'))
                 ON CONFLICT DO NOTHING",
            )
            .bind(job.kind)
            .bind(job.request_id.map(RequestId::get))
            .bind(job.payload)
            .bind(job.due_at.millis())
            .bind(now.millis())
            .bind(job.lane)
            .bind(job.series)
            .execute(c)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Marks a claimed job done, if this attempt still holds it.
    pub async fn complete_job(&mut self, id: i64, attempt: i64, now: Timestamp) -> StoreResult<bool> {
        let ended: Option<Option<String>> = on_conn!(tx self, |c| {
            sqlx::query_scalar(
                "UPDATE jobs SET state = 'done', finished_at = $3, lease_until = NULL
                 WHERE id = $1 AND attempt = $2 AND state = 'running' RETURNING series",
            )
            .bind(id)
            .bind(attempt)
            .bind(now.millis())
            .fetch_optional(c)
            .await?
        });
        self.job_ended(ended).await
    }

    /// Marks a claimed job failed for good, if this attempt still holds it.
    pub async fn fail_job(&mut self, id: i64, attempt: i64, error: &str, now: Timestamp) -> StoreResult<bool> {
        let ended: Option<Option<String>> = on_conn!(tx self, |c| {
            sqlx::query_scalar(
                "UPDATE jobs SET state = 'failed', finished_at = $3, lease_until = NULL, last_error = $4
                 WHERE id = $1 AND attempt = $2 AND state = 'running' RETURNING series",
            )
            .bind(id)
            .bind(attempt)
            .bind(now.millis())
            .bind(error)
            .fetch_optional(c)
            .await?
        });
        self.job_ended(ended).await
    }

    /// After a job ended (`Some(its series)`; `None` when this attempt no
    /// longer held it): the earliest live job of its series, if it is
    /// waiting, is queued. Returns whether the job ended here.
    async fn job_ended(&mut self, ended: Option<Option<String>>) -> StoreResult<bool> {
        let Some(series) = ended else { return Ok(false) };
        let Some(series) = series else { return Ok(true) };
        self.lock_series(&series).await?;
        let sql = format!(
            "UPDATE jobs SET state = 'queued'
             WHERE id = (SELECT w.id FROM jobs w WHERE w.series = $1 AND w.state IN {LIVE} ORDER BY w.id LIMIT 1)
               AND state = 'waiting'"
        );
        on_conn!(tx self, |c| {
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&series).execute(c).await?;
        });
        Ok(true)
    }

    /// PostgreSQL: takes the transaction's lock on `series` (an advisory
    /// lock, no row is written), before writing a job into it or queueing
    /// its next job. Without it, a job written while the one before it ends
    /// could read that one as still live and wait, while the ending one read
    /// no waiter to queue: stranded. With it, whichever comes second runs
    /// after the first committed and sees its write. SQLite writes one
    /// transaction at a time and needs nothing.
    async fn lock_series(&mut self, series: &str) -> StoreResult<()> {
        if self.is_postgres() {
            on_conn!(tx self, |c| {
                sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                    .bind(SERIES_LOCK_SPACE)
                    .bind(series)
                    .execute(c)
                    .await?;
            });
        }
        Ok(())
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
            sqlx::query_scalar(concat!("SELECT COUNT(*) FROM jobs WHERE kind = $1 AND payload = $2 AND state IN ", live!()))
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
    /// Claims up to `limit` jobs of any lane that are due at `now`, or
    /// whose previous claim's lease ran out, for `worker`, with a lease of
    /// `lease`. (The scheduler claims per lane, with [`Db::claim`].)
    pub async fn claim_jobs(
        &self,
        worker: &str,
        now: Timestamp,
        lease: Duration,
        limit: i64,
    ) -> StoreResult<Vec<JobRow>> {
        self.claim(&Claim { worker, lane: None, lease, limit, dead_after: None }, now).await
    }

    /// Claims up to `claim.limit` jobs, most overdue first: queued jobs due
    /// at `now`, and running jobs whose claim lapsed (lease ran out, or on
    /// PostgreSQL their worker's heartbeat stopped). One statement, so a
    /// catch-up after an outage takes its jobs in batches.
    ///
    /// The two sources are read apart so each uses an index. Queued jobs
    /// come off `jobs_queued_by_lane` (lane, due_at, id) in order, stopping
    /// at the limit; a candidate with a series costs one probe of
    /// `jobs_live_series`. Running jobs (a few per replica) come off
    /// `jobs_running_by_lane`; only the outer sort of at most `limit` plus
    /// the lapsed rows is done apart. Measured with 100,000 due notices,
    /// 2,000 due revocations and 100,000 done jobs, limit 16:
    ///
    /// - SQLite 3.40: `SEARCH j USING INDEX jobs_queued_by_lane (lane=? AND
    ///   due_at<?)`, `CORRELATED SCALAR SUBQUERY: SEARCH e USING INDEX
    ///   jobs_live_series (series=? AND id<?)`, `SEARCH r USING INDEX
    ///   jobs_running_by_lane (lane=?)`: under 1 ms (0.2–0.4 ms CPU). The
    ///   former OR-over-state claim scanned the table (`SCAN j`) with a
    ///   temporary B-tree: 100–140 ms (40 ms CPU).
    /// - PostgreSQL 15: `Limit -> LockRows -> Index Scan using
    ///   jobs_queued_by_lane` (the series `SubPlan` an `Index Only Scan using
    ///   jobs_live_series`), `Index Scan using jobs_running_by_lane`: 0.6–1
    ///   ms. The former claim: a bitmap scan of all 102,000 due rows, a
    ///   correlated subplan per notice and an external sort, 700–940 ms.
    ///
    /// PostgreSQL: concurrent claimers skip each other's rows instead of
    /// waiting, and a row another replica claimed meanwhile is re-checked
    /// against its new state before it is locked. SQLite: the single
    /// UPDATE is atomic under its write lock.
    pub async fn claim(&self, claim: &Claim<'_>, now: Timestamp) -> StoreResult<Vec<JobRow>> {
        let postgres = self.is_postgres();
        let lane = |alias: &str| match claim.lane {
            Some(_) => format!(" AND {alias}.lane = $6"),
            None => " AND $6 IS NULL".to_owned(),
        };
        let sql = format!(
            "UPDATE jobs SET state = 'running', attempt = attempt + 1, lease_until = {now_sql} + $1, worker = $2
             WHERE id IN (SELECT c.id FROM (
                 SELECT x.id, x.due_at FROM (
                   SELECT r.id, r.due_at FROM jobs r
                   WHERE r.state = 'running'{lane_r}
                     AND (r.lease_until <= {now_sql}
                          OR (r.worker <> $2 AND r.worker IN (
                                SELECT w.id FROM workers w WHERE w.seen_at <= {now_sql} - $5))){lock}) x
                 UNION ALL
                 SELECT q.id, q.due_at FROM (
                   SELECT j.id, j.due_at FROM jobs j
                   WHERE j.state = 'queued'{lane_j} AND j.due_at <= $3 AND {SERIES_FREE}
                   ORDER BY j.due_at, j.id LIMIT $4{lock}) q
               ) c ORDER BY c.due_at, c.id LIMIT $4)
             RETURNING id, kind, request_id, payload, attempt, due_at",
            now_sql = lease_clock(postgres, "$3"),
            lane_r = lane("r"),
            lane_j = lane("j"),
            lock = if postgres { " FOR UPDATE SKIP LOCKED" } else { "" },
        );
        // NULL turns the heartbeat rule off (SQLite, or no timeout given).
        let dead_after = claim.dead_after.filter(|_| postgres).map(lease_ms);
        Ok(on_conn!(write self, |c| {
            sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(sql))
                .bind(lease_ms(claim.lease))
                .bind(claim.worker)
                .bind(now.millis())
                .bind(claim.limit)
                .bind(dead_after)
                .bind(claim.lane)
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
        let n = on_conn!(write self, |c| {
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

    /// When the scheduler next has something to do in `lanes` (those with
    /// a free slot): the earliest due queued job and the earliest running
    /// claim to lapse. Jobs waiting behind an earlier job of their series
    /// do not count: the earlier one's completion wakes the scheduler.
    /// `worker` (this scheduler) and `dead_after` bring the heartbeat rule
    /// of [`Db::claim`] in: another worker's job lapses when its heartbeat
    /// does, if that is sooner than its lease.
    ///
    /// One statement; each lane's earliest job is the first entry of
    /// `jobs_queued_by_lane` that is free of its series (an index walk
    /// stopping at the first hit), running jobs come off
    /// `jobs_running_by_lane`. So an idle scheduler with 100,000 jobs
    /// waiting reads a handful of index pages per wake-up.
    pub async fn next_job_wake(
        &self,
        now: Timestamp,
        lanes: &[&str],
        worker: &str,
        dead_after: Option<Duration>,
    ) -> StoreResult<JobWake> {
        let postgres = self.is_postgres();
        if lanes.is_empty() {
            return Ok(JobWake::default());
        }
        let first_due: Vec<String> = (0..lanes.len())
            .map(|i| {
                format!(
                    "SELECT (SELECT j.due_at FROM jobs j WHERE j.state = 'queued' AND j.lane = ${p} AND {SERIES_FREE}
                             ORDER BY j.due_at, j.id LIMIT 1) AS d",
                    p = i + 4
                )
            })
            .collect();
        let lane_list: Vec<String> = (0..lanes.len()).map(|i| format!("${}", i + 4)).collect();
        let sql = format!(
            "SELECT
               (SELECT MIN(f.d) FROM ({first_due}) f),
               (SELECT MIN(CASE WHEN r.worker <> $2 AND w.seen_at + $3 < r.lease_until THEN w.seen_at + $3
                                ELSE r.lease_until END) - {now_sql}
                FROM jobs r LEFT JOIN workers w ON w.id = r.worker
                WHERE r.state = 'running' AND r.lane IN ({lane_list}))",
            first_due = first_due.join(" UNION ALL "),
            lane_list = lane_list.join(", "),
            now_sql = lease_clock(postgres, "$1"),
        );
        let dead_after = dead_after.filter(|_| postgres).map(lease_ms);
        let (due, lease_left): (Option<i64>, Option<i64>) = on_conn!(db self, |c| {
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(now.millis()).bind(worker).bind(dead_after);
            for lane in lanes {
                q = q.bind(*lane);
            }
            q.fetch_one(c).await?
        });
        Ok(JobWake {
            next_due: due.map(Timestamp::from_millis),
            lease_expires_in: lease_left.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
        })
    }

    /// Queued jobs due at `now` per lane, and the oldest one's due time:
    /// what `/metrics` shows as queue depth. A range of
    /// `jobs_queued_by_lane` per lane, read when scraped, never polled.
    pub async fn job_backlog(&self, now: Timestamp) -> StoreResult<Vec<LaneBacklog>> {
        Ok(on_conn!(db self, |c| {
            sqlx::query_as::<_, LaneBacklog>(
                "SELECT lane, COUNT(*) AS due, MIN(due_at) AS oldest_due_at FROM jobs
                 WHERE state = 'queued' AND due_at <= $1 GROUP BY lane ORDER BY lane",
            )
            .bind(now.millis())
            .fetch_all(c)
            .await?
        }))
    }

    /// Records that `worker` (of process `process`) is alive: on
    /// PostgreSQL by the database's clock, like leases. Written when a
    /// scheduler starts and, on PostgreSQL, every few seconds after.
    pub async fn worker_heartbeat(&self, worker: &str, process: &str, now: Timestamp) -> StoreResult<()> {
        let sql = format!(
            "INSERT INTO workers (id, process, seen_at, started_at) VALUES ($1, $2, {now_sql}, {now_sql})
             ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at",
            now_sql = lease_clock(self.is_postgres(), "$3"),
        );
        on_conn!(write self, |c| {
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(worker).bind(process).bind(now.millis()).execute(c).await?;
        });
        Ok(())
    }

    /// SQLite, at start-up: makes every job left `running` by a scheduler of
    /// another process claimable at once (its lease is set to end now). Only
    /// one process serves a SQLite database, so such a scheduler is dead,
    /// and waiting out its lease would only delay revocations. The claim
    /// that takes the job over bumps its attempt, so the dead run's writes
    /// stay fenced off. Returns how many jobs were freed.
    pub async fn reclaim_jobs_of_dead_processes(&self, process: &str, now: Timestamp) -> StoreResult<u64> {
        Ok(on_conn!(write self, |c| {
            sqlx::query(
                "UPDATE jobs SET lease_until = $2
                 WHERE state = 'running' AND (lease_until IS NULL OR lease_until > $2)
                   AND (worker IS NULL OR worker NOT IN (SELECT id FROM workers WHERE process = $1))",
            )
            .bind(process)
            .bind(now.millis())
            .execute(c)
            .await?
            .rows_affected()
        }))
    }

    /// Forgets workers not heard of for `age` (by the lease clock),
    /// keeping the table small across restarts.
    pub async fn purge_workers(&self, age: Duration, now: Timestamp) -> StoreResult<u64> {
        let sql = format!("DELETE FROM workers WHERE seen_at < {} - $1", lease_clock(self.is_postgres(), "$2"));
        Ok(on_conn!(write self, |c| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(lease_ms(age))
                .bind(now.millis())
                .execute(c)
                .await?
                .rows_affected()
        }))
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
