//! The durable scheduler: everything that must happen later, or that talks
//! to another system, is a row in `jobs` written by the transaction that
//! decided it, and is run from here.
//!
//! The loop claims due jobs with a fenced lease, runs them with bounded
//! concurrency, renews leases while they run, and retries failures with
//! capped exponential backoff. Jobs wait in lanes ([`JobLane`], stored with
//! each job when it is written): each lane is claimed on its own, most
//! overdue first and many jobs per statement, into slots of its own, so a
//! backlog of notices never delays a revocation. When idle it sleeps until the next due job
//! through the [`Clock`], so it costs no CPU and a test's manual clock wakes
//! it; a commit that schedules sooner work wakes it early.
//!
//! Several replicas may run this loop on one PostgreSQL database: claims skip
//! each other's rows, leases are judged by the database's clock (see
//! [`crate::store`]), and an idle replica also wakes, in real time, when
//! another replica's lease runs out, so the work of a replica that died is
//! taken over. A replica also writes a heartbeat every few seconds, and the
//! running jobs of one silent for longer than the heartbeat timeout are
//! taken over without waiting for their leases (still fenced by attempt).
//! On SQLite only one process serves the database, so at start-up a
//! scheduler frees every job a dead process left running. A database outage
//! makes the loop back off and retry; it never ends it.
//!
//! The scheduler knows no job kinds: it gives each claimed job to the
//! [`JobHandler`] it was built with, which runs it and records its outcome
//! under the job's fence.
//!
//! [`Clock`]: crate::clock::Clock

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::SchedulerOptions;
use crate::clock::SharedClock;
use crate::domain::Timestamp;
use crate::job_kinds::{JobLane, JobOutcome};
use crate::metrics::{Collector, Gauge, Metrics};
/// A claimed job as its [`JobHandler`] gets it.
pub use crate::store::JobRow;
use crate::store::{Claim, Db, JobWake, StoreError};

/// The first retry delay; it doubles per attempt.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// The longest retry delay.
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// The scheduler re-reads the queue at least this often even with nothing
/// due, so jobs written by another replica are picked up even where no
/// notification arrives (SQLite; a PostgreSQL listener reconnecting).
pub const IDLE_RECHECK: Duration = Duration::from_secs(30);
/// How often expired sign-in rows are deleted (the loop looks at least
/// every [`IDLE_RECHECK`]).
pub const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(3600);
/// The shortest sleep before re-checking an expiring lease, so a lease that
/// runs out between two statements cannot make the loop spin.
const LEASE_POLL_FLOOR: Duration = Duration::from_millis(20);
/// How long the loop waits when due work exists but its claim came back
/// empty: another replica is claiming the same rows right now.
const CONTENDED_PAUSE: Duration = Duration::from_millis(50);

/// How long workers not heard of are remembered in `workers`.
const FORGET_WORKERS_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Attempts at recording a job's outcome while the database answers
/// "busy" (SQLite's lock, a PostgreSQL serialization failure or a dropped
/// connection) before the job is left to its lease.
const RECORD_ATTEMPTS: u32 = 6;
/// The first pause between those attempts; it doubles (50 ms … 800 ms).
const RECORD_RETRY_FIRST: Duration = Duration::from_millis(50);

/// Capped exponential backoff for the `attempt`-th failure, with a small
/// per-job spread so retries of many jobs do not arrive at once.
pub fn backoff(attempt: i64, job_id: i64) -> Duration {
    let exp = u32::try_from(attempt.clamp(1, 20) - 1).unwrap_or(0);
    let delay = BACKOFF_BASE.saturating_mul(2u32.saturating_pow(exp)).min(BACKOFF_CAP);
    delay + Duration::from_millis(u64::try_from(job_id.rem_euclid(1000)).unwrap_or(0))
}

/// Runs jobs.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    clock: SharedClock,
    wake: Arc<Notify>,
    options: SchedulerOptions,
    /// Slots per lane, most urgent lane first (the order of claims).
    lanes: Vec<(JobLane, usize)>,
    handler: Arc<dyn JobHandler>,
    /// Statements that read the queue (claims and wake-up reads): what an
    /// idle scheduler must not spend (tests and benchmarks read it).
    queue_reads: AtomicU64,
    /// When (domain clock, epoch ms) housekeeping is next due; 0 at start,
    /// so a fresh process cleans up at once.
    next_housekeeping: std::sync::atomic::AtomicI64,
}

/// Why running a job could not even record its outcome.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Scheduler {
    /// Builds a scheduler; `wake` is the handle the service notifies after
    /// commits; `handler` runs the jobs it claims (see
    /// [`super::JobHandlers`]).
    pub fn new(
        db: Db,
        clock: SharedClock,
        wake: Arc<Notify>,
        options: SchedulerOptions,
        handler: Arc<dyn JobHandler>,
    ) -> Self {
        let cap = usize::try_from(db.max_connections() / 2).unwrap_or(1);
        let lanes = lane_slots(options.concurrency, options.notice_concurrency, cap);
        let used: usize = lanes.iter().map(|(_, n)| n).sum();
        if used < options.concurrency + options.notice_concurrency {
            tracing::info!(
                configured_access = options.concurrency,
                configured_notice = options.notice_concurrency,
                access = lanes[0].1,
                notice = lanes[1].1,
                "job concurrency capped at half of database.max_connections"
            );
        }
        Self {
            inner: Arc::new(Inner {
                db,
                clock,
                wake,
                options,
                lanes,
                handler,
                queue_reads: AtomicU64::new(0),
                next_housekeeping: std::sync::atomic::AtomicI64::new(0),
            }),
        }
    }

    /// How many jobs this scheduler runs at once, all lanes together
    /// (after the pool cap).
    pub fn concurrency(&self) -> usize {
        self.inner.lanes.iter().map(|(_, n)| n).sum()
    }

    /// How many jobs of `lane` this scheduler runs at once.
    pub fn lane_concurrency(&self, lane: JobLane) -> usize {
        self.inner.lanes.iter().find(|(l, _)| *l == lane).map_or(0, |(_, n)| *n)
    }

    /// How many statements this scheduler has sent to read the queue
    /// (claims and wake-up reads): flat while it is idle.
    pub fn queue_reads(&self) -> u64 {
        self.inner.queue_reads.load(Ordering::Relaxed)
    }

    /// Claims up to `limit` jobs of `lane`.
    async fn claim(&self, lane: JobLane, now: Timestamp, limit: usize) -> Result<Vec<JobRow>, StoreError> {
        self.inner.queue_reads.fetch_add(1, Ordering::Relaxed);
        let options = &self.inner.options;
        let claim = Claim {
            worker: &options.worker_id,
            lane: Some(lane.as_str()),
            lease: options.lease,
            limit: i64::try_from(limit).unwrap_or(1),
            dead_after: Some(options.heartbeat_timeout),
        };
        let started = std::time::Instant::now();
        let claimed = self.inner.db.claim(&claim, now).await;
        tracing::debug!(
            lane = lane.as_str(),
            limit,
            claimed = claimed.as_ref().map_or(0, Vec::len),
            elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "claim"
        );
        claimed
    }

    /// Announces this scheduler in `workers` and, on SQLite, frees the jobs
    /// a dead process left running, so they run now rather than after
    /// their lease. `false` when the database could not be reached (the
    /// loop tries again).
    async fn start_up(&self) -> bool {
        let options = &self.inner.options;
        let now = self.inner.clock.now();
        if let Err(e) = self.inner.db.worker_heartbeat(&options.worker_id, &options.process, now).await {
            tracing::warn!(error = %e, "cannot register the scheduler; will try again");
            return false;
        }
        if self.inner.db.is_postgres() {
            // Replicas: a dead one's jobs are taken over once its heartbeat stops.
            return true;
        }
        match self.inner.db.reclaim_jobs_of_dead_processes(&options.process, now).await {
            Ok(0) => true,
            Ok(n) => {
                tracing::info!(jobs = n, "jobs left running by a process that ended are claimable again");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot reclaim jobs left running by a process that ended; will try again");
                false
            }
        }
    }

    /// Writes this replica's heartbeat every `heartbeat_every` (real time)
    /// until dropped. PostgreSQL only: there other replicas judge it.
    fn heartbeat(&self) -> Option<AbortOnDrop> {
        if !self.inner.db.is_postgres() {
            return None;
        }
        let this = self.clone();
        Some(AbortOnDrop(tokio::spawn(async move {
            let options = &this.inner.options;
            let mut tick = tokio::time::interval(options.heartbeat_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let now = this.inner.clock.now();
                if let Err(e) = this.inner.db.worker_heartbeat(&options.worker_id, &options.process, now).await {
                    tracing::warn!(error = %e, "scheduler heartbeat not written");
                }
            }
        })))
    }

    /// Deletes expired sign-in rows (link tokens, link logins, browser
    /// sessions) when [`HOUSEKEEPING_EVERY`] has passed on the clock since
    /// the last time. Not a job: nothing is lost if a process dies before it
    /// runs, the next one (or another replica) simply does it, and every
    /// replica doing it is harmless. Failure is logged and retried next time.
    async fn housekeeping(&self, now: Timestamp) {
        let due = self.inner.next_housekeeping.load(Ordering::Relaxed);
        if now.millis() < due {
            return;
        }
        let next = now.plus(HOUSEKEEPING_EVERY).millis();
        // One caller per period, even with the loop and a drain racing.
        if self.inner.next_housekeeping.compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed).is_err() {
            return;
        }
        if let Err(e) = self.inner.db.purge_expired_sign_ins(now).await {
            tracing::warn!(error = %e, "could not purge expired sign-ins; will try again");
            self.inner.next_housekeeping.store(now.plus(BACKOFF_BASE).millis(), Ordering::Relaxed);
        }
        if let Err(e) = self.inner.db.purge_workers(FORGET_WORKERS_AFTER, now).await {
            tracing::debug!(error = %e, "could not forget old workers; will try again");
        }
    }

    /// Claims the jobs due now, lane by lane (each up to its slots), and
    /// runs them to completion; returns how many ran. Tests call this (or
    /// [`Scheduler::drain`]) instead of the loop.
    pub async fn run_due_once(&self) -> Result<usize, JobError> {
        let now = self.inner.clock.now();
        self.housekeeping(now).await;
        let mut set = JoinSet::new();
        let mut n = 0;
        for &(lane, slots) in &self.inner.lanes {
            let jobs = self.claim(lane, now, slots).await?;
            n += jobs.len();
            for job in jobs {
                let this = self.clone();
                set.spawn(async move { this.run_claimed(job).await });
            }
        }
        while let Some(res) = set.join_next().await {
            if let Ok(Err(e)) = res {
                tracing::warn!(error = %e, "job outcome could not be recorded; it will be retried when its lease ends");
            }
        }
        Ok(n)
    }

    /// Runs due jobs until none is due at the current clock time.
    pub async fn drain(&self) -> Result<usize, JobError> {
        let mut total = 0;
        loop {
            let n = self.run_due_once().await?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    }

    /// The scheduler loop, until `shutdown` resolves. Jobs already running
    /// finish (their leases would hand them to another replica otherwise).
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        // Jobs other replicas write wake this loop at once (PostgreSQL).
        let _listener = self.inner.db.listen_for_jobs(self.inner.wake.clone()).map(AbortOnDrop);
        let mut started = self.start_up().await;
        let _heartbeat = self.heartbeat();
        let options = &self.inner.options;
        let lanes: Vec<(JobLane, Arc<Semaphore>)> =
            self.inner.lanes.iter().map(|&(lane, n)| (lane, Arc::new(Semaphore::new(n)))).collect();
        let mut running = JoinSet::new();
        let mut db_failures: u32 = 0;
        loop {
            while running.try_join_next().is_some() {}
            if !lanes.iter().any(|(_, s)| s.available_permits() > 0) {
                // Every slot is busy; a finishing job notifies.
                tokio::select! {
                    _ = self.inner.wake.notified() => continue,
                    _ = &mut shutdown => break,
                }
            }
            if !started {
                started = self.start_up().await;
            }
            let now = self.inner.clock.now();
            self.housekeeping(now).await;
            // Most urgent lane first; each claims what its free slots take.
            let mut more_due = false;
            let mut failure = None;
            for (lane, slots) in &lanes {
                let free = slots.available_permits();
                if free == 0 {
                    continue;
                }
                let claimed = match self.claim(*lane, now, free).await {
                    Ok(c) => c,
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                };
                more_due |= claimed.len() == free;
                for job in claimed {
                    let Ok(permit) = slots.clone().acquire_owned().await else { break };
                    let this = self.clone();
                    running.spawn(async move {
                        if let Err(e) = this.run_claimed(job).await {
                            tracing::warn!(error = %e, "job outcome could not be recorded; it will be retried when its lease ends");
                        }
                        drop(permit);
                        this.inner.wake.notify_one();
                    });
                }
            }
            if let Some(e) = failure {
                db_failures = db_failures.saturating_add(1);
                let pause = Duration::from_millis(500u64.saturating_mul(1 << db_failures.min(6)));
                tracing::warn!(error = %e, retry_in = ?pause, "cannot claim jobs");
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    // A commit in this process: the database is back, try at once.
                    _ = self.inner.wake.notified() => {}
                    _ = &mut shutdown => break,
                }
                continue;
            }
            if db_failures > 0 {
                tracing::info!(failures = db_failures, "database reachable again; scheduler resumed");
                db_failures = 0;
            }
            if more_due {
                continue;
            }
            // Only lanes with a free slot matter: a full lane's finishing job notifies.
            let open: Vec<&str> =
                lanes.iter().filter(|(_, s)| s.available_permits() > 0).map(|(l, _)| l.as_str()).collect();
            if open.is_empty() {
                continue;
            }
            let now = self.inner.clock.now();
            self.inner.queue_reads.fetch_add(1, Ordering::Relaxed);
            let wake = self
                .inner
                .db
                .next_job_wake(now, &open, &options.worker_id, Some(options.heartbeat_timeout))
                .await
                .unwrap_or_else(|e| {
                    tracing::debug!(error = %e, "cannot read the next wake-up; looking again in a second");
                    JobWake { next_due: None, lease_expires_in: Some(Duration::from_secs(1)) }
                });
            let due = wake.next_due.map_or(now.plus(IDLE_RECHECK), |t| t.min(now.plus(IDLE_RECHECK)));
            if due <= now {
                // Due work exists but the claim saw none: another replica is
                // claiming it right now. Look again shortly.
                tokio::select! {
                    _ = tokio::time::sleep(CONTENDED_PAUSE) => {}
                    _ = &mut shutdown => break,
                }
                continue;
            }
            // Leases run in real time (on PostgreSQL by the database's
            // clock), so a dead replica's lease is watched with a real sleep;
            // the same deadline on the domain clock covers SQLite, where the
            // lease is measured by the domain clock.
            let lease_left = wake.lease_expires_in.map(|d| d.max(LEASE_POLL_FLOOR));
            let deadline = lease_left.map_or(due, |d| due.min(now.plus(d)));
            let lease_sleep = async move {
                match lease_left {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.inner.clock.sleep_until(deadline) => {}
                _ = lease_sleep => {}
                _ = self.inner.wake.notified() => {}
                _ = &mut shutdown => break,
            }
        }
        while running.join_next().await.is_some() {}
    }

    /// Runs one claimed job, renewing its lease while it runs.
    async fn run_claimed(&self, job: JobRow) -> Result<JobOutcome, JobError> {
        let renew = {
            let this = self.clone();
            let (id, attempt) = (job.id, job.attempt);
            AbortOnDrop(tokio::spawn(async move {
                let options = &this.inner.options;
                let mut tick = tokio::time::interval(options.renew_every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    match this.inner.db.renew_job(id, attempt, this.inner.clock.now(), options.lease).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(job_id = id, "lease lost to another worker");
                            break;
                        }
                        Err(e) => tracing::warn!(job_id = id, error = %e, "lease renewal failed"),
                    }
                }
            }))
        };
        // One span per run: every line the handler logs carries the job,
        // its attempt and the request it is about.
        let span = tracing::info_span!(
            "job",
            job_id = job.id,
            kind = %job.kind,
            attempt = job.attempt,
            request_id = job.request_id,
        );
        let result = self.inner.handler.run(&job).instrument(span).await;
        drop(renew);
        match &result {
            Ok(outcome) => {
                tracing::debug!(job_id = job.id, kind = %job.kind, attempt = job.attempt, ?outcome, "job ran")
            }
            Err(e) => tracing::warn!(job_id = job.id, kind = %job.kind, error = %e, "job failed to record"),
        }
        result
    }
}

/// Runs claimed jobs: what each kind does lives behind this trait, so the
/// scheduler itself stays free of job kinds.
#[async_trait::async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// Runs one claimed job and records its outcome, every write fenced by
    /// the job's id and attempt.
    async fn run(&self, job: &JobRow) -> Result<JobOutcome, JobError>;
}

/// Records a job's outcome with `record`, again after a short pause while
/// the database answers "busy" (SQLite's write lock after its busy
/// timeout, a PostgreSQL serialization failure, a dropped connection).
/// The access change already happened at the target: giving up at the
/// first busy answer would leave the job to its lease, a minute later, and
/// make the provider call again. Every recording is fenced by the job's
/// attempt, so one that did commit before its answer was lost is a no-op
/// the second time.
pub async fn record_with_retry<T, F, Fut>(mut record: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut pause = RECORD_RETRY_FIRST;
    let mut attempt = 1;
    loop {
        match record().await {
            Err(StoreError::Unavailable(e)) if attempt < RECORD_ATTEMPTS => {
                tracing::info!(error = %e, attempt, retry_in = ?pause, "database busy while recording a job outcome; trying again");
                tokio::time::sleep(pause).await;
                pause = pause.saturating_mul(2);
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Splits the job slots between the lanes: `access` and `notice` as
/// configured, together at most `cap` (half the database pool: each running
/// job holds at most one connection at a time, and the other half stays
/// free for Slack requests), and at least one slot per lane. When the cap
/// bites, the notice lane keeps at most a third of it (but two slots once
/// the cap is four or more: a notice waiting on Slack's pacing must not stop
/// every other notice): access changes come first.
fn lane_slots(access: usize, notice: usize, cap: usize) -> Vec<(JobLane, usize)> {
    let cap = cap.max(2);
    let (access, notice) = (access.max(1), notice.max(1));
    let (access, notice) = if access + notice <= cap {
        (access, notice)
    } else {
        let notice = notice.min((cap / 3).max((cap / 2).min(2))).max(1);
        (access.min(cap - notice), notice)
    };
    vec![(JobLane::Access, access), (JobLane::Notice, notice)]
}

/// Fills the queue gauges (`jitbot_jobs_due`, `jitbot_oldest_due_job_seconds`,
/// by lane) when `/metrics` is scraped: one indexed read then, and nothing
/// while nobody looks.
pub struct QueueGauges {
    db: Db,
    clock: SharedClock,
}

impl QueueGauges {
    /// Gauges over the queue in `db`, "due" judged by `clock`.
    pub fn new(db: Db, clock: SharedClock) -> Self {
        Self { db, clock }
    }
}

#[async_trait::async_trait]
impl Collector for QueueGauges {
    async fn collect(&self, metrics: &Metrics) {
        let now = self.clock.now();
        let backlog = match self.db.job_backlog(now).await {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the job backlog for /metrics");
                return;
            }
        };
        for lane in JobLane::ALL {
            let row = backlog.iter().find(|b| b.lane == lane.as_str());
            let due = row.map_or(0, |b| b.due);
            let oldest = row
                .and_then(|b| b.oldest_due_at)
                .map_or(0.0, |t| Duration::from_millis(u64::try_from(now.millis() - t).unwrap_or(0)).as_secs_f64());
            let labels = [("lane", lane.as_str())];
            #[allow(clippy::cast_precision_loss)]
            metrics.set_gauge(Gauge::JobsDue, &labels, due as f64);
            metrics.set_gauge(Gauge::OldestDueJobSeconds, &labels, oldest);
        }
    }
}

/// Aborts a spawned task when dropped. A job's lease renewal is tied to the
/// job's own future this way, so it also stops when that future is cancelled
/// (a replica's tasks aborted): a renewal that outlived its job would keep
/// the lease alive forever and no other replica could ever take the job over.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_share_half_the_pool_with_access_first() {
        let slots = |a, n, cap| lane_slots(a, n, cap).into_iter().map(|(_, s)| s).collect::<Vec<_>>();
        assert_eq!(slots(16, 4, 16), vec![12, 4]);
        assert_eq!(slots(16, 4, 10), vec![7, 3], "the default pool of 20");
        assert_eq!(slots(16, 4, 5), vec![3, 2], "a pool of 10: notices keep two slots");
        assert_eq!(slots(16, 4, 3), vec![2, 1], "access keeps the larger share");
        assert_eq!(slots(16, 4, 50), vec![16, 4]);
        assert_eq!(slots(16, 4, 0), vec![1, 1], "each lane keeps a slot");
        assert_eq!(slots(2, 2, 10), vec![2, 2]);
    }

    #[tokio::test]
    async fn outcome_recording_retries_while_the_database_is_busy() {
        let tries = std::sync::atomic::AtomicU32::new(0);
        let busy = || StoreError::Unavailable(sqlx::Error::PoolTimedOut);
        let recorded =
            record_with_retry(|| async { if tries.fetch_add(1, Ordering::SeqCst) < 2 { Err(busy()) } else { Ok(7) } })
                .await;
        assert_eq!(recorded.unwrap(), 7);
        assert_eq!(tries.load(Ordering::SeqCst), 3);
        let tries = std::sync::atomic::AtomicU32::new(0);
        let gave_up: Result<(), _> = record_with_retry(|| async {
            tries.fetch_add(1, Ordering::SeqCst);
            Err(busy())
        })
        .await;
        assert!(matches!(gave_up, Err(StoreError::Unavailable(_))));
        assert_eq!(tries.load(Ordering::SeqCst), RECORD_ATTEMPTS);
        let tries = std::sync::atomic::AtomicU32::new(0);
        let other: Result<(), _> = record_with_retry(|| async {
            tries.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::Conflict)
        })
        .await;
        assert!(matches!(other, Err(StoreError::Conflict)), "only a busy database is waited for");
        assert_eq!(tries.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1, 0), Duration::from_secs(5));
        assert_eq!(backoff(2, 0), Duration::from_secs(10));
        assert_eq!(backoff(4, 0), Duration::from_secs(40));
        assert_eq!(backoff(30, 0), BACKOFF_CAP);
        assert_eq!(backoff(1, 1234), Duration::from_millis(5234));
    }
}
