//! The durable scheduler: everything that must happen later, or that talks
//! to another system, is a row in `jobs` written by the transaction that
//! decided it, and is run from here.
//!
//! The loop claims due jobs with a fenced lease, runs them with bounded
//! concurrency, renews leases while they run, and retries failures with
//! capped exponential backoff. When idle it sleeps until the next due job
//! through the [`Clock`], so it costs no CPU and a test's manual clock wakes
//! it; a commit that schedules sooner work wakes it early.
//!
//! Several replicas may run this loop on one PostgreSQL database: claims skip
//! each other's rows, leases are judged by the database's clock (see
//! [`crate::store`]), and an idle replica also wakes, in real time, when
//! another replica's lease runs out, so the work of a replica that died is
//! taken over. A database outage makes the loop back off and retry; it never
//! ends it.
//!
//! The scheduler knows no job kinds: it gives each claimed job to the
//! [`JobHandler`] it was built with, which runs it and records its outcome
//! under the job's fence.
//!
//! [`Clock`]: crate::clock::Clock

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use super::SchedulerOptions;
use crate::clock::SharedClock;
use crate::domain::Timestamp;
use crate::job_kinds::JobOutcome;
/// A claimed job as its [`JobHandler`] gets it.
pub use crate::store::JobRow;
use crate::store::{Db, JobWake, StoreError};

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
    handler: Arc<dyn JobHandler>,
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
        mut options: SchedulerOptions,
        handler: Arc<dyn JobHandler>,
    ) -> Self {
        let cap = usize::try_from(db.max_connections() / 2).unwrap_or(1).max(1);
        if options.concurrency > cap {
            tracing::info!(
                configured = options.concurrency,
                used = cap,
                "job concurrency capped at half of database.max_connections"
            );
            options.concurrency = cap;
        }
        options.concurrency = options.concurrency.max(1);
        Self {
            inner: Arc::new(Inner {
                db,
                clock,
                wake,
                options,
                handler,
                next_housekeeping: std::sync::atomic::AtomicI64::new(0),
            }),
        }
    }

    /// How many jobs this scheduler runs at once (after the pool cap).
    pub fn concurrency(&self) -> usize {
        self.inner.options.concurrency
    }

    /// Deletes expired sign-in rows (link tokens, link logins, browser
    /// sessions) when [`HOUSEKEEPING_EVERY`] has passed on the clock since
    /// the last time. Not a job: nothing is lost if a process dies before it
    /// runs, the next one (or another replica) simply does it, and every
    /// replica doing it is harmless. Failure is logged and retried next time.
    async fn housekeeping(&self, now: Timestamp) {
        use std::sync::atomic::Ordering;
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
    }

    /// Claims the jobs due now and runs them to completion; returns how many
    /// ran. Tests call this (or [`Scheduler::drain`]) instead of the loop.
    pub async fn run_due_once(&self) -> Result<usize, JobError> {
        let now = self.inner.clock.now();
        self.housekeeping(now).await;
        let limit = i64::try_from(self.inner.options.concurrency).unwrap_or(16);
        let jobs =
            self.inner.db.claim_jobs(&self.inner.options.worker_id, now, self.inner.options.lease, limit).await?;
        let n = jobs.len();
        let mut set = JoinSet::new();
        for job in jobs {
            let this = self.clone();
            set.spawn(async move { this.run_claimed(job).await });
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
        let options = &self.inner.options;
        let semaphore = Arc::new(Semaphore::new(options.concurrency));
        let mut running = JoinSet::new();
        let mut db_failures: u32 = 0;
        loop {
            while running.try_join_next().is_some() {}
            let free = semaphore.available_permits();
            if free == 0 {
                // Every slot is busy; a finishing job notifies.
                tokio::select! {
                    _ = self.inner.wake.notified() => continue,
                    _ = &mut shutdown => break,
                }
            }
            let now = self.inner.clock.now();
            self.housekeeping(now).await;
            let limit = i64::try_from(free).unwrap_or(1);
            let claimed = match self.inner.db.claim_jobs(&options.worker_id, now, options.lease, limit).await {
                Ok(c) => {
                    if db_failures > 0 {
                        tracing::info!(failures = db_failures, "database reachable again; scheduler resumed");
                    }
                    db_failures = 0;
                    c
                }
                Err(e) => {
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
            };
            let full_batch = claimed.len() == free;
            for job in claimed {
                let Ok(permit) = semaphore.clone().acquire_owned().await else { break };
                let this = self.clone();
                running.spawn(async move {
                    if let Err(e) = this.run_claimed(job).await {
                        tracing::warn!(error = %e, "job outcome could not be recorded; it will be retried when its lease ends");
                    }
                    drop(permit);
                    this.inner.wake.notify_one();
                });
            }
            if full_batch {
                continue;
            }
            let now = self.inner.clock.now();
            let wake = self.inner.db.next_job_wake(now).await.unwrap_or_else(|e| {
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
        let result = self.inner.handler.run(&job).await;
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
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1, 0), Duration::from_secs(5));
        assert_eq!(backoff(2, 0), Duration::from_secs(10));
        assert_eq!(backoff(4, 0), Duration::from_secs(40));
        assert_eq!(backoff(30, 0), BACKOFF_CAP);
        assert_eq!(backoff(1, 1234), Duration::from_millis(5234));
    }
}
