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
//! [`Clock`]: crate::clock::Clock

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use crate::audit::{self, Actor, AuditAction};
use crate::clock::SharedClock;
use crate::domain::{AccessRequest, RequestId, RequestState, SlackUser, Timestamp};
use crate::metrics::{Counter, Metrics};
use crate::notify::{Notice, NoticeKind, Notifier, NotifyError};
use crate::providers::{
    self, ApprovedGrant, GrantTarget, Presence, Provider, ProviderError, ProviderReport, Providers,
};
use crate::service::schedule;
use crate::store::{Db, JobRow, JobWake, LeaseRelease, LeaseStart, StoreError, TransitionFields};

/// Grant attempts before a request is marked `grant_failed` (about 2.5
/// minutes of retrying with the default backoff).
pub const GRANT_ATTEMPTS: i64 = 6;
/// Failed revocation attempts after which people are alerted. Revocation is
/// never abandoned: it keeps retrying at the backoff cap.
pub const REVOKE_ALERT_AFTER: i64 = 3;
/// Notice delivery attempts before giving up on that notice.
pub const NOTIFY_ATTEMPTS: i64 = 8;
/// The first retry delay; it doubles per attempt.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// The longest retry delay.
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// How long a revocation waits for a grant call that is still in flight.
pub const WAIT_FOR_GRANT: Duration = Duration::from_secs(5);
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
/// How long after its expiry a revocation may still be unfinished before
/// people are alerted (the revocation is due at expiry; a healthy one takes
/// seconds).
pub const REVOKE_OVERDUE_AFTER: Duration = Duration::from_secs(60);
/// How many times the overdue check waits for a revocation attempt that is
/// running at that moment before alerting anyway.
const OVERDUE_DEFERRALS: i64 = 3;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Apply the grant of a request in `granting`.
    Grant,
    /// Remove the access of a request (at expiry, or early).
    Revoke,
    /// Tell people about a change.
    Notify(NoticeKind),
    /// Send one person a direct message (payload: team, user, text).
    DirectMessage,
    /// Re-read a person's groups with their refresh token (payload: team, user).
    RefreshLink,
    /// A minute after expiry: alert if the access may still exist.
    OverdueCheck,
    /// End a request nobody decided in time (its role's `approval_timeout`).
    TimeOut,
    /// Remind the approvers of a request still pending halfway to its timeout.
    Remind,
    /// Warn the holder shortly before their access ends (payload: the expiry it is for).
    WarnExpiry,
    /// Tell the provider an extension moved the expiry (payload: the new expiry).
    ExtendGrant,
    /// Tell the audit channel something that concerns no single request
    /// (payload: an [`crate::notify::Announcement`]), such as the kill switch.
    Announce,
    /// Post a signed checkpoint of the audit trail's head to the audit
    /// channel, then schedule the next one (payload: a [`CheckpointPayload`]).
    /// One exists at a time across replicas.
    AuditCheckpoint,
}

impl JobKind {
    /// The stored kind.
    pub fn name(self) -> &'static str {
        match self {
            Self::Grant => "grant",
            Self::Revoke => "revoke",
            Self::Notify(_) => "notify",
            Self::DirectMessage => "direct_message",
            Self::RefreshLink => "refresh_link",
            Self::OverdueCheck => "overdue_check",
            Self::TimeOut => "time_out",
            Self::Remind => "remind",
            Self::WarnExpiry => "warn_expiry",
            Self::ExtendGrant => "extend_grant",
            Self::Announce => "announce",
            Self::AuditCheckpoint => "audit_checkpoint",
        }
    }

    /// The stored payload of request jobs (person jobs carry a [`PersonPayload`]).
    pub fn payload(self) -> String {
        match self {
            Self::Notify(kind) => json!({ "notice": kind }).to_string(),
            _ => "{}".to_owned(),
        }
    }

    fn parse(row: &JobRow) -> Option<Self> {
        match row.kind.as_str() {
            "grant" => Some(Self::Grant),
            "revoke" => Some(Self::Revoke),
            "direct_message" => Some(Self::DirectMessage),
            "refresh_link" => Some(Self::RefreshLink),
            "overdue_check" => Some(Self::OverdueCheck),
            "time_out" => Some(Self::TimeOut),
            "remind" => Some(Self::Remind),
            "warn_expiry" => Some(Self::WarnExpiry),
            "extend_grant" => Some(Self::ExtendGrant),
            "announce" => Some(Self::Announce),
            "audit_checkpoint" => Some(Self::AuditCheckpoint),
            "notify" => {
                let v: serde_json::Value = serde_json::from_str(&row.payload).ok()?;
                serde_json::from_value(v.get("notice")?.clone()).ok().map(Self::Notify)
            }
            _ => None,
        }
    }
}

/// Tunables of the scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Jobs run at once by this replica. Capped at half the database pool
    /// (each running job holds at most one connection at a time), so a burst
    /// of expiries never leaves Slack requests waiting for a connection.
    pub concurrency: usize,
    /// How long a claim lasts without renewal. Longer than any provider
    /// timeout, so a healthy slow call is never taken over.
    pub lease: Duration,
    /// How often a running job's lease is renewed (real time).
    pub renew_every: Duration,
    /// Names this replica in the `worker` column.
    pub worker_id: String,
    /// Where the scheduler counts what operators alert on (served on `/metrics`).
    pub metrics: Metrics,
    /// How often the audit checkpoint job looks at the head (`audit.checkpoint_interval`).
    pub audit_checkpoint_interval: Duration,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            concurrency: 16,
            lease: Duration::from_secs(60),
            renew_every: Duration::from_secs(15),
            worker_id: format!("jitbot-{}", std::process::id()),
            metrics: Metrics::default(),
            audit_checkpoint_interval: Duration::from_secs(3600),
        }
    }
}

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
    providers: Providers,
    notifier: Arc<dyn Notifier>,
    wake: Arc<Notify>,
    options: SchedulerOptions,
    refresher: Option<Arc<dyn LinkRefresher>>,
    /// When (domain clock, epoch ms) housekeeping is next due; 0 at start,
    /// so a fresh process cleans up at once.
    next_housekeeping: std::sync::atomic::AtomicI64,
}

/// How one run of a job ended, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// Finished.
    Done,
    /// Put back for a later attempt.
    Retried,
    /// Gave up.
    Failed,
    /// Another worker owns the job now; nothing was written.
    LostLease,
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
    /// commits; `refresher` re-reads groups at the IdP (with `[idp]`).
    pub fn new(
        db: Db,
        clock: SharedClock,
        providers: Providers,
        notifier: Arc<dyn Notifier>,
        wake: Arc<Notify>,
        mut options: SchedulerOptions,
        refresher: Option<Arc<dyn LinkRefresher>>,
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
                providers,
                notifier,
                wake,
                options,
                refresher,
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
        let result = self.execute(&job).await;
        drop(renew);
        match &result {
            Ok(outcome) => {
                tracing::debug!(job_id = job.id, kind = %job.kind, attempt = job.attempt, ?outcome, "job ran")
            }
            Err(e) => tracing::warn!(job_id = job.id, kind = %job.kind, error = %e, "job failed to record"),
        }
        result
    }

    async fn execute(&self, job: &JobRow) -> Result<JobOutcome, JobError> {
        let Some(kind) = JobKind::parse(job) else {
            return self.fail(job, "unknown job kind or payload").await;
        };
        match kind {
            JobKind::DirectMessage => return self.direct_message(job).await,
            JobKind::Announce => return self.announce(job).await,
            JobKind::RefreshLink => return self.refresh_link(job).await,
            JobKind::AuditCheckpoint => return self.audit_checkpoint(job).await,
            _ => {}
        }
        let Some(request_id) = job.request_id.map(RequestId::new) else {
            return self.fail(job, "job has no request").await;
        };
        let Some(request) = self.inner.db.request(request_id).await? else {
            return self.fail(job, "request not found").await;
        };
        match kind {
            JobKind::Grant => self.grant(job, request).await,
            JobKind::Revoke => self.revoke(job, request).await,
            JobKind::Notify(kind) => self.notify(job, request, kind).await,
            JobKind::OverdueCheck => self.check_overdue(job, request).await,
            JobKind::TimeOut => self.time_out(job, request).await,
            JobKind::Remind => self.remind(job, request).await,
            JobKind::WarnExpiry => self.warn_expiry(job, request).await,
            JobKind::ExtendGrant => self.extend_grant(job, request).await,
            JobKind::DirectMessage | JobKind::RefreshLink | JobKind::Announce | JobKind::AuditCheckpoint => {
                self.fail(job, "not a request job").await
            }
        }
    }

    async fn direct_message(&self, job: &JobRow) -> Result<JobOutcome, JobError> {
        let Ok(payload) = serde_json::from_str::<PersonPayload>(&job.payload) else {
            return self.fail(job, "malformed direct message payload").await;
        };
        let Ok(user) = SlackUser::parse(&payload.team_id, &payload.user_id) else {
            return self.fail(job, "malformed user in payload").await;
        };
        let result = self.inner.notifier.direct_message(&user, payload.text.as_deref().unwrap_or("")).await;
        self.finish_delivery(job, result).await
    }

    async fn announce(&self, job: &JobRow) -> Result<JobOutcome, JobError> {
        let Ok(announcement) = serde_json::from_str::<crate::notify::Announcement>(&job.payload) else {
            return self.fail(job, "malformed announcement payload").await;
        };
        let result = self.inner.notifier.announce(&announcement).await;
        self.finish_delivery(job, result).await
    }

    /// Makes sure the recurring audit checkpoint job exists (at start-up,
    /// when an audit key and an audit channel are configured). It lives in
    /// `jobs` like all later work: it survives restarts with the head it
    /// last posted, and a unique index keeps it single across replicas.
    /// The first run is due at once, anchoring the head as it is at start.
    pub async fn ensure_audit_checkpoints(&self) -> Result<bool, JobError> {
        let now = self.inner.clock.now();
        let mut tx = self.inner.db.begin().await?;
        let payload = serde_json::to_string(&CheckpointPayload::default()).unwrap_or_default();
        let added = tx.insert_job_unless_pending(JobKind::AuditCheckpoint.name(), &payload, now, now).await?;
        tx.commit().await?;
        if added {
            self.inner.wake.notify_one();
        }
        Ok(added)
    }

    /// Posts a signed checkpoint of the audit head when it moved since the
    /// last one, then schedules the next look one interval later. It never
    /// gives up (a series that ended would anchor nothing until a restart):
    /// a failed post is retried with backoff, at most an interval later.
    async fn audit_checkpoint(&self, job: &JobRow) -> Result<JobOutcome, JobError> {
        let last: CheckpointPayload = serde_json::from_str(&job.payload).unwrap_or_default();
        let now = self.inner.clock.now();
        let Some(checkpoint) = audit::checkpoint(&self.inner.db, now).await? else {
            if self.inner.db.audit_key().is_none() {
                tracing::info!("no audit.key any more: audit checkpoints stop");
                return self.complete(job).await;
            }
            // Nothing written yet: nothing to anchor.
            return self.next_checkpoint(job, &last, now).await;
        };
        if checkpoint.seq == last.seq && checkpoint.head == last.hash {
            return self.next_checkpoint(job, &last, now).await;
        }
        let rewound = last.seq > 0
            && match self.inner.db.audit_row(last.seq).await? {
                Some(row) => row.hash != last.hash,
                None => true,
            };
        if rewound {
            tracing::error!(
                previous = last.seq,
                head = checkpoint.seq,
                "the audit trail no longer reaches the previous checkpoint: rows were deleted or rewritten"
            );
        }
        let announcement = crate::notify::Announcement::AuditCheckpoint {
            line: checkpoint.line(),
            rewound_from: rewound.then_some(last.seq),
        };
        match self.inner.notifier.announce(&announcement).await {
            Ok(()) => {
                let posted = CheckpointPayload { seq: checkpoint.seq, hash: checkpoint.head };
                self.next_checkpoint(job, &posted, now).await
            }
            Err(e) => {
                let interval = self.inner.options.audit_checkpoint_interval;
                let delay = e.retry_after.unwrap_or_else(|| backoff(job.attempt, job.id)).min(interval);
                tracing::warn!(job_id = job.id, error = %e, retry_in = ?delay, "audit checkpoint not posted; will retry");
                let mut tx = self.inner.db.begin().await?;
                let ok = tx.retry_job(job.id, job.attempt, now.plus(delay), &e.message).await?;
                tx.commit().await?;
                Ok(if ok { JobOutcome::Retried } else { JobOutcome::LostLease })
            }
        }
    }

    /// Completes this checkpoint job and schedules the next, remembering
    /// the head last posted, in one transaction.
    async fn next_checkpoint(
        &self,
        job: &JobRow,
        posted: &CheckpointPayload,
        now: Timestamp,
    ) -> Result<JobOutcome, JobError> {
        let due = now.plus(self.inner.options.audit_checkpoint_interval);
        let payload = serde_json::to_string(posted).unwrap_or_default();
        let mut tx = self.inner.db.begin().await?;
        let ok = tx.complete_job(job.id, job.attempt, now).await?;
        if ok {
            tx.insert_job(JobKind::AuditCheckpoint.name(), None, &payload, due, now).await?;
        }
        tx.commit().await?;
        Ok(if ok { JobOutcome::Done } else { JobOutcome::LostLease })
    }

    async fn refresh_link(&self, job: &JobRow) -> Result<JobOutcome, JobError> {
        let Ok(payload) = serde_json::from_str::<PersonPayload>(&job.payload) else {
            return self.fail(job, "malformed refresh payload").await;
        };
        let Ok(user) = SlackUser::parse(&payload.team_id, &payload.user_id) else {
            return self.fail(job, "malformed user in payload").await;
        };
        let Some(refresher) = self.inner.refresher.clone() else {
            return self.fail(job, "no identity provider is configured").await;
        };
        match refresher.refresh(&user, self.inner.clock.now()).await {
            Ok(()) => self.complete(job).await,
            Err(e) if job.attempt < NOTIFY_ATTEMPTS => {
                let now = self.inner.clock.now();
                let due = now.plus(backoff(job.attempt, job.id));
                tracing::warn!(job_id = job.id, error = %e, "group refresh failed; will retry");
                let mut tx = self.inner.db.begin().await?;
                let ok = tx.retry_job(job.id, job.attempt, due, &e).await?;
                tx.commit().await?;
                Ok(if ok { JobOutcome::Retried } else { JobOutcome::LostLease })
            }
            Err(e) => self.fail(job, &e).await,
        }
    }

    async fn complete(&self, job: &JobRow) -> Result<JobOutcome, JobError> {
        let now = self.inner.clock.now();
        let mut tx = self.inner.db.begin().await?;
        let ok = tx.complete_job(job.id, job.attempt, now).await?;
        tx.commit().await?;
        Ok(if ok { JobOutcome::Done } else { JobOutcome::LostLease })
    }

    async fn fail(&self, job: &JobRow, error: &str) -> Result<JobOutcome, JobError> {
        tracing::error!(job_id = job.id, kind = %job.kind, error, "job failed permanently");
        let now = self.inner.clock.now();
        let mut tx = self.inner.db.begin().await?;
        let ok = tx.fail_job(job.id, job.attempt, error, now).await?;
        tx.commit().await?;
        Ok(if ok { JobOutcome::Failed } else { JobOutcome::LostLease })
    }

    async fn grant(&self, job: &JobRow, request: AccessRequest) -> Result<JobOutcome, JobError> {
        let now = self.inner.clock.now();
        let id = request.id;
        // Re-checked at run time: a grant never happens after its revocation
        // started, nor after the access would already have expired.
        if request.state != RequestState::Granting {
            return self.complete(job).await;
        }
        let target = providers::target_of(&self.inner.db, &request).await;
        let expired = request.expires_at.is_none_or(|t| now >= t);
        let target = match target {
            Ok(Some(t)) if !expired => Ok(t),
            Ok(target) => {
                let mut tx = self.inner.db.begin().await?;
                if !tx.complete_job(job.id, job.attempt, now).await? {
                    return Ok(JobOutcome::LostLease);
                }
                // A one-shot action has no revocation to end the request: it
                // ends here, unrun, so its open slot is freed.
                if target.as_ref().is_some_and(GrantTarget::is_one_shot) {
                    let why = "not run: the approval expired before the action could run".to_owned();
                    let fields = TransitionFields { ended_at: Some(now), detail: Some(why), ..Default::default() };
                    if tx.transition(id, RequestState::ActionFailed, &fields, now).await? {
                        schedule(&mut tx, JobKind::Notify(NoticeKind::ActionFinished), id, now, now).await?;
                    }
                }
                // Say what is known: an attempt that was recorded and never
                // answered may have reached the target before jitbot died.
                let (action, why) = if tx.grant_was_attempted(id).await? {
                    (
                        AuditAction::GrantInterrupted,
                        "grant attempt interrupted; access may have been applied; it is revoked at expiry",
                    )
                } else {
                    (AuditAction::GrantSkipped, "expired before it could be granted")
                };
                audit::append(&mut tx, now, &Actor::System, action, Some(id), json!({"why": why})).await?;
                tx.commit().await?;
                return Ok(JobOutcome::Done);
            }
            Err(e) => Err(e),
        };
        if target.as_ref().is_ok_and(GrantTarget::is_one_shot) {
            return self.run_one_shot(job, request, target).await;
        }
        let provider = self.inner.providers.get(&request.provider);
        let key = match (&provider, &target) {
            (Some(p), Ok(t)) => p.access_key(t),
            _ => None,
        };
        // Take the request's row lock once more before calling out: a
        // revocation that committed first is seen here, and one that comes
        // after sees this job's live lease and waits for the call to finish.
        // A provider whose grants can overlap takes its lease in the same
        // transaction, before the call.
        let (still_granting, lease) = {
            let mut tx = self.inner.db.begin().await?;
            let ok = tx.lock_request(id, Some(RequestState::Granting), now).await?;
            let lease = match (&key, ok) {
                (Some(k), true) => Some(tx.start_lease(id, &request.provider, k, now).await?),
                _ => None,
            };
            // Recorded before the call: if jitbot dies while the call is in
            // flight, the trail still says the target may have the access.
            if ok && lease != Some(LeaseStart::Released) {
                audit::append(
                    &mut tx,
                    now,
                    &Actor::System,
                    AuditAction::GrantAttempted,
                    Some(id),
                    json!({"provider": request.provider, "attempt": job.attempt}),
                )
                .await?;
            }
            tx.commit().await?;
            (ok, lease)
        };
        if !still_granting || lease == Some(LeaseStart::Released) {
            return self.complete(job).await;
        }
        let result = match (target, provider) {
            (Err(e), _) => Err(e),
            (Ok(_), None) => Err(ProviderError::permanent(format!("provider {} is not configured", request.provider))),
            (Ok(target), Some(provider)) => match (lease, key) {
                (Some(LeaseStart::Wait { releasing }), _) => Err(ProviderError::retryable(format!(
                    "waiting for the revocation of request {releasing}, which holds the same access, to finish"
                ))),
                (Some(LeaseStart::Held { preexisting }), Some(key)) => {
                    self.grant_leased(provider.as_ref(), &key, preexisting, target, now).await?
                }
                _ => provider.grant(&ApprovedGrant::new(target), now).await,
            },
        };
        let now = self.inner.clock.now();
        let mut tx = self.inner.db.begin().await?;
        match result {
            Ok(report) => {
                if !tx.complete_job(job.id, job.attempt, now).await? {
                    return Ok(JobOutcome::LostLease);
                }
                self.inner.options.metrics.inc(Counter::GrantsApplied);
                let fields = TransitionFields { granted_at: Some(now), ..Default::default() };
                if tx.transition(id, RequestState::Active, &fields, now).await? {
                    schedule(&mut tx, JobKind::Notify(NoticeKind::Granted), id, now, now).await?;
                    audit::append(
                        &mut tx,
                        now,
                        &Actor::System,
                        AuditAction::GrantApplied,
                        Some(id),
                        with_report(json!({"provider": request.provider}), &report),
                    )
                    .await?;
                } else {
                    // Revoked while the call was in flight: the revocation job
                    // (which waited for this call) removes what was just applied.
                    audit::append(
                        &mut tx,
                        now,
                        &Actor::System,
                        AuditAction::GrantApplied,
                        Some(id),
                        with_report(
                            json!({"provider": request.provider, "note": "applied while a revocation was pending"}),
                            &report,
                        ),
                    )
                    .await?;
                }
                tx.commit().await?;
                self.inner.wake.notify_one();
                Ok(JobOutcome::Done)
            }
            Err(e) if job.attempt < GRANT_ATTEMPTS && e.retryable => {
                self.inner.options.metrics.inc(Counter::GrantAttemptsFailed);
                let due = now.plus(backoff(job.attempt, job.id));
                if !tx.retry_job(job.id, job.attempt, due, &e.message).await? {
                    return Ok(JobOutcome::LostLease);
                }
                audit::append(
                    &mut tx,
                    now,
                    &Actor::System,
                    AuditAction::GrantAttemptFailed,
                    Some(id),
                    with_error_output(
                        json!({"attempt": job.attempt, "error": e.message, "retry_at": due.to_string()}),
                        &e,
                    ),
                )
                .await?;
                tx.commit().await?;
                Ok(JobOutcome::Retried)
            }
            Err(e) => {
                self.inner.options.metrics.inc(Counter::GrantAttemptsFailed);
                if !tx.fail_job(job.id, job.attempt, &e.message, now).await? {
                    return Ok(JobOutcome::LostLease);
                }
                let fields = TransitionFields { detail: Some(e.message.clone()), ..Default::default() };
                if tx.transition(id, RequestState::GrantFailed, &fields, now).await? {
                    // Clean up anything half-applied now rather than at expiry.
                    tx.expedite_revoke(id, now).await?;
                    schedule(&mut tx, JobKind::Notify(NoticeKind::GrantFailed), id, now, now).await?;
                }
                audit::append(
                    &mut tx,
                    now,
                    &Actor::System,
                    AuditAction::GrantFailed,
                    Some(id),
                    with_error_output(json!({"attempt": job.attempt, "error": e.message}), &e),
                )
                .await?;
                tx.commit().await?;
                self.inner.wake.notify_one();
                Ok(JobOutcome::Failed)
            }
        }
    }

    /// Grants access that other requests may share. The first time anyone
    /// takes a lease on it, the target is read and what it showed is
    /// recorded before any change, so access the login held before jitbot
    /// granted it is never revoked by jitbot, even across crashes.
    async fn grant_leased(
        &self,
        provider: &dyn Provider,
        key: &str,
        preexisting: Option<bool>,
        target: GrantTarget,
        now: Timestamp,
    ) -> Result<Result<ProviderReport, ProviderError>, JobError> {
        let preexisting = match preexisting {
            Some(p) => p,
            None => {
                let present = match provider.inspect(&target).await {
                    Ok(p) => p == Presence::Present,
                    Err(e) => return Ok(Err(e)),
                };
                let mut tx = self.inner.db.begin().await?;
                let effective = tx.record_presence(key, present).await?;
                tx.commit().await?;
                effective
            }
        };
        if preexisting {
            return Ok(Ok(ProviderReport::note(
                "the login already held this access before jitbot granted it; jitbot will leave it in place",
            )));
        }
        Ok(provider.grant(&ApprovedGrant::new(target), now).await)
    }

    /// Runs a one-shot action: at most once (a job claimed before, by a
    /// worker that died, may have started it, so it is not started again),
    /// never retried, and the request ends without a revocation.
    async fn run_one_shot(
        &self,
        job: &JobRow,
        request: AccessRequest,
        target: Result<GrantTarget, ProviderError>,
    ) -> Result<JobOutcome, JobError> {
        let id = request.id;
        let now = self.inner.clock.now();
        let result = if job.attempt > 1 {
            Err(ProviderError::permanent(
                "jitbot was interrupted while the action was starting or running; it was not run again (it may or may not have completed)",
            ))
        } else {
            let still_granting = {
                let mut tx = self.inner.db.begin().await?;
                let ok = tx.lock_request(id, Some(RequestState::Granting), now).await?;
                tx.commit().await?;
                ok
            };
            if !still_granting {
                return self.complete(job).await;
            }
            match (target, self.inner.providers.get(&request.provider)) {
                (Err(e), _) => Err(e),
                (Ok(_), None) => {
                    Err(ProviderError::permanent(format!("provider {} is not configured", request.provider)))
                }
                (Ok(target), Some(provider)) => {
                    self.inner.options.metrics.inc(Counter::ActionsRun);
                    provider.grant(&ApprovedGrant::new(target), now).await
                }
            }
        };
        let now = self.inner.clock.now();
        let mut tx = self.inner.db.begin().await?;
        let recorded = match &result {
            Ok(_) => tx.complete_job(job.id, job.attempt, now).await?,
            Err(e) => tx.fail_job(job.id, job.attempt, &e.message, now).await?,
        };
        if !recorded {
            return Ok(JobOutcome::LostLease);
        }
        let (state, detail, action, audit_detail) = match &result {
            Ok(report) => (
                RequestState::Completed,
                report.output.clone().unwrap_or_else(|| "(no output)".to_owned()),
                AuditAction::ActionCompleted,
                with_report(json!({"provider": request.provider}), report),
            ),
            Err(e) => (
                RequestState::ActionFailed,
                e.message.clone(),
                AuditAction::ActionFailed,
                with_error_output(json!({"provider": request.provider, "error": e.message}), e),
            ),
        };
        let fields =
            TransitionFields { granted_at: Some(now), ended_at: Some(now), detail: Some(detail), ..Default::default() };
        if tx.transition(id, state, &fields, now).await? {
            schedule(&mut tx, JobKind::Notify(NoticeKind::ActionFinished), id, now, now).await?;
        }
        audit::append(&mut tx, now, &Actor::System, action, Some(id), audit_detail).await?;
        tx.commit().await?;
        self.inner.wake.notify_one();
        Ok(if result.is_ok() { JobOutcome::Done } else { JobOutcome::Failed })
    }

    async fn revoke(&self, job: &JobRow, request: AccessRequest) -> Result<JobOutcome, JobError> {
        let id = request.id;
        if !RequestState::MAY_HOLD_ACCESS.contains(&request.state) {
            return self.complete(job).await;
        }
        if superseded(job, &request) {
            // An extension moved the expiry and wrote the revocation for the
            // new one in the same transaction: that job revokes, not this one.
            tracing::debug!(job_id = job.id, request_id = id.get(), "revocation superseded by an extension");
            return self.complete(job).await;
        }
        let target = providers::target_of(&self.inner.db, &request).await;
        let provider = self.inner.providers.get(&request.provider);
        let key = match (&provider, &target) {
            (Some(p), Ok(Some(t))) => p.access_key(t),
            _ => None,
        };
        let now = self.inner.clock.now();
        let release = {
            let mut tx = self.inner.db.begin().await?;
            tx.lock_request(id, None, now).await?;
            if tx.grant_in_flight(id, now).await? {
                // Let the grant call finish first, so it cannot land after us.
                if !tx
                    .retry_job(job.id, job.attempt, now.plus(WAIT_FOR_GRANT), "waiting for a grant call in flight")
                    .await?
                {
                    return Ok(JobOutcome::LostLease);
                }
                tx.commit().await?;
                return Ok(JobOutcome::Retried);
            }
            if matches!(request.state, RequestState::Granting | RequestState::Active | RequestState::GrantFailed) {
                let detail = if request.state == RequestState::GrantFailed { None } else { Some("expired".to_owned()) };
                let fields = TransitionFields { detail, ..Default::default() };
                tx.transition(id, RequestState::Revoking, &fields, now).await?;
            }
            // Shared access: only the last holder removes it in the target.
            let release = match &key {
                Some(_) => Some(tx.begin_release(id, now).await?),
                None => None,
            };
            tx.commit().await?;
            release
        };
        let result = match target {
            Err(e) => Err(e),
            Ok(None) => return self.fail(job, "request has no expiry; nothing was granted").await,
            Ok(Some(target)) => match (&release, provider) {
                (Some(r), _) if !r.removes_access() => Ok(ProviderReport::note(describe_release(r))),
                (_, Some(provider)) => provider.revoke(&target, now).await,
                (_, None) => Err(ProviderError::retryable(format!(
                    "provider {} is not configured: access may still exist",
                    request.provider
                ))),
            },
        };
        let now = self.inner.clock.now();
        let mut tx = self.inner.db.begin().await?;
        match result {
            Ok(report) => {
                if !tx.complete_job(job.id, job.attempt, now).await? {
                    return Ok(JobOutcome::LostLease);
                }
                if release.as_ref().is_some_and(LeaseRelease::removes_access) {
                    tx.finish_release(id, now).await?;
                }
                self.inner.options.metrics.inc(Counter::RevocationsApplied);
                let early = request.expires_at.is_some_and(|t| now < t);
                // After failures the detail holds the last error: replace it,
                // so the card does not show a stale error as the reason.
                let detail = (request.state == RequestState::RevokeFailed).then(|| {
                    let why = if early { "ended early" } else { "expired" };
                    format!("{why}; the revocation succeeded after retries")
                });
                let fields = TransitionFields { ended_at: Some(now), detail, ..Default::default() };
                if tx.transition(id, RequestState::Revoked, &fields, now).await? {
                    schedule(&mut tx, JobKind::Notify(NoticeKind::Revoked), id, now, now).await?;
                }
                audit::append(
                    &mut tx,
                    now,
                    &Actor::System,
                    AuditAction::RevokeApplied,
                    Some(id),
                    with_report(json!({"provider": request.provider, "early": early}), &report),
                )
                .await?;
                tx.commit().await?;
                self.inner.wake.notify_one();
                Ok(JobOutcome::Done)
            }
            Err(e) => {
                self.inner.options.metrics.inc(Counter::RevokeAttemptsFailed);
                // Never abandoned: a revocation that silently stops is the worst bug a JIT tool can have.
                let due = now.plus(backoff(job.attempt, job.id));
                if !tx.retry_job(job.id, job.attempt, due, &e.message).await? {
                    return Ok(JobOutcome::LostLease);
                }
                if job.attempt == REVOKE_ALERT_AFTER {
                    let fields = TransitionFields { detail: Some(e.message.clone()), ..Default::default() };
                    if tx.transition(id, RequestState::RevokeFailed, &fields, now).await? {
                        schedule(&mut tx, JobKind::Notify(NoticeKind::RevokeFailing), id, now, now).await?;
                    }
                }
                audit::append(
                    &mut tx,
                    now,
                    &Actor::System,
                    AuditAction::RevokeAttemptFailed,
                    Some(id),
                    with_error_output(
                        json!({"attempt": job.attempt, "error": e.message, "retry_at": due.to_string()}),
                        &e,
                    ),
                )
                .await?;
                tx.commit().await?;
                Ok(JobOutcome::Retried)
            }
        }
    }

    /// Runs a minute after a request's expiry: if its access may still
    /// exist, people are alerted and the overdue counter goes up. The
    /// revocation itself keeps retrying on its own.
    async fn check_overdue(&self, job: &JobRow, request: AccessRequest) -> Result<JobOutcome, JobError> {
        // An extension moved the expiry (and wrote a check for the new one).
        if !RequestState::MAY_HOLD_ACCESS.contains(&request.state) || superseded(job, &request) {
            return self.complete(job).await;
        }
        let now = self.inner.clock.now();
        let mut tx = self.inner.db.begin().await?;
        if job.attempt <= OVERDUE_DEFERRALS && tx.revoke_in_flight(request.id, now).await? {
            // A revocation attempt is running or has not been tried yet
            // (say, right after a restart made both jobs due at once): give
            // it a few seconds, a bounded number of times, so a hung attempt
            // or a stuck queue is still reported.
            let ok =
                tx.retry_job(job.id, job.attempt, now.plus(WAIT_FOR_GRANT), "a revocation attempt is running").await?;
            tx.commit().await?;
            return Ok(if ok { JobOutcome::Retried } else { JobOutcome::LostLease });
        }
        self.inner.options.metrics.inc(Counter::RevocationsOverdue);
        tracing::error!(
            request_id = request.id.get(),
            role = %request.role,
            state = %request.state,
            overdue_total = self.inner.options.metrics.get(Counter::RevocationsOverdue),
            "revocation overdue: access may still exist after its expiry"
        );
        if !tx.complete_job(job.id, job.attempt, now).await? {
            return Ok(JobOutcome::LostLease);
        }
        schedule(&mut tx, JobKind::Notify(NoticeKind::RevokeOverdue), request.id, now, now).await?;
        audit::append(
            &mut tx,
            now,
            &Actor::System,
            AuditAction::RevokeOverdue,
            Some(request.id),
            json!({
                "state": request.state.as_str(),
                "expires_at": request.expires_at.map(|t| t.to_string()),
                "last_error": request.state_detail,
            }),
        )
        .await?;
        tx.commit().await?;
        self.inner.wake.notify_one();
        Ok(JobOutcome::Done)
    }

    /// Ends a request still pending at its deadline. A request decided in
    /// the meantime is left alone (the conditional update finds nothing).
    async fn time_out(&self, job: &JobRow, request: AccessRequest) -> Result<JobOutcome, JobError> {
        if request.state != RequestState::Pending {
            return self.complete(job).await;
        }
        let now = self.inner.clock.now();
        let id = request.id;
        let waited = request.created_at.until(now);
        let mut tx = self.inner.db.begin().await?;
        if !tx.complete_job(job.id, job.attempt, now).await? {
            return Ok(JobOutcome::LostLease);
        }
        let fields = TransitionFields {
            decided_at: Some(now),
            ended_at: Some(now),
            detail: Some(format!("nobody decided within {}", humantime::format_duration(waited))),
            ..Default::default()
        };
        if tx.transition(id, RequestState::TimedOut, &fields, now).await? {
            schedule(&mut tx, JobKind::Notify(NoticeKind::TimedOut), id, now, now).await?;
            audit::append(
                &mut tx,
                now,
                &Actor::System,
                AuditAction::RequestTimedOut,
                Some(id),
                json!({"decide_by": request.decide_by.map(|t| t.to_string())}),
            )
            .await?;
        }
        tx.commit().await?;
        self.inner.wake.notify_one();
        Ok(JobOutcome::Done)
    }

    /// Nudges the approvers of a request that is still pending. The notice
    /// is written now (not when the request was made) so it queues behind
    /// the request's earlier notices instead of holding them up.
    async fn remind(&self, job: &JobRow, request: AccessRequest) -> Result<JobOutcome, JobError> {
        if request.state != RequestState::Pending {
            return self.complete(job).await;
        }
        self.complete_with_notice(job, request.id, NoticeKind::Reminder).await
    }

    /// Completes `job` and writes `kind`'s notice in the same transaction.
    async fn complete_with_notice(
        &self,
        job: &JobRow,
        id: RequestId,
        kind: NoticeKind,
    ) -> Result<JobOutcome, JobError> {
        let now = self.inner.clock.now();
        let mut tx = self.inner.db.begin().await?;
        if !tx.complete_job(job.id, job.attempt, now).await? {
            return Ok(JobOutcome::LostLease);
        }
        schedule(&mut tx, JobKind::Notify(kind), id, now, now).await?;
        tx.commit().await?;
        self.inner.wake.notify_one();
        Ok(JobOutcome::Done)
    }

    /// Warns the holder that their access ends soon, unless the access is
    /// no longer live or an extension moved the expiry this warning was for.
    async fn warn_expiry(&self, job: &JobRow, request: AccessRequest) -> Result<JobOutcome, JobError> {
        // After an outage a warning may come due only after the expiry: by
        // then it would be noise, the revocation is what comes next.
        let past = request.expires_at.is_none_or(|t| self.inner.clock.now() >= t);
        if request.state != RequestState::Active || superseded(job, &request) || past {
            return self.complete(job).await;
        }
        self.complete_with_notice(job, request.id, NoticeKind::ExpiryWarning).await
    }

    /// Tells the target that an extension moved the expiry, so access it
    /// bounds itself (a PostgreSQL login's `VALID UNTIL`, a webhook receiver
    /// that enforces `expires_at`) lasts as long as jitbot's revocation.
    async fn extend_grant(&self, job: &JobRow, request: AccessRequest) -> Result<JobOutcome, JobError> {
        let id = request.id;
        let live = matches!(request.state, RequestState::Granting | RequestState::Active);
        // A later extension wrote its own job; an ended request needs nothing.
        if !live || superseded(job, &request) {
            return self.complete(job).await;
        }
        let target = match providers::target_of(&self.inner.db, &request).await {
            Ok(Some(t)) => t,
            _ => return self.fail(job, "the request has no grant to extend").await,
        };
        let result = match self.inner.providers.get(&request.provider) {
            Some(provider) => provider.extend(&target, self.inner.clock.now()).await,
            None => Err(ProviderError::permanent(format!("provider {} is not configured", request.provider))),
        };
        let now = self.inner.clock.now();
        let mut tx = self.inner.db.begin().await?;
        match result {
            Ok(report) => {
                if !tx.complete_job(job.id, job.attempt, now).await? {
                    return Ok(JobOutcome::LostLease);
                }
                let detail = json!({"provider": request.provider, "expires_at": target.expires_at.to_string()});
                audit::append(
                    &mut tx,
                    now,
                    &Actor::System,
                    AuditAction::GrantExtended,
                    Some(id),
                    with_report(detail, &report),
                )
                .await?;
                tx.commit().await?;
                Ok(JobOutcome::Done)
            }
            Err(e) if job.attempt < GRANT_ATTEMPTS && e.retryable => {
                let due = now.plus(backoff(job.attempt, job.id));
                let ok = tx.retry_job(job.id, job.attempt, due, &e.message).await?;
                tx.commit().await?;
                Ok(if ok { JobOutcome::Retried } else { JobOutcome::LostLease })
            }
            Err(e) => {
                // The target may now end access before jitbot's revocation:
                // earlier than promised, never later.
                if !tx.fail_job(job.id, job.attempt, &e.message, now).await? {
                    return Ok(JobOutcome::LostLease);
                }
                audit::append(
                    &mut tx,
                    now,
                    &Actor::System,
                    AuditAction::GrantExtendFailed,
                    Some(id),
                    json!({"provider": request.provider, "error": e.message}),
                )
                .await?;
                tx.commit().await?;
                Ok(JobOutcome::Failed)
            }
        }
    }

    async fn notify(&self, job: &JobRow, request: AccessRequest, kind: NoticeKind) -> Result<JobOutcome, JobError> {
        let approvals = self.inner.db.approvals(request.id).await?;
        let notice = Notice { kind, request, approvals };
        let result = self.inner.notifier.notify(&notice).await;
        self.finish_delivery(job, result).await
    }

    /// Completes a delivery job, or retries it (after the receiver's
    /// `Retry-After` when it gave one) until its attempts run out.
    async fn finish_delivery(&self, job: &JobRow, result: Result<(), NotifyError>) -> Result<JobOutcome, JobError> {
        match result {
            Ok(()) => self.complete(job).await,
            Err(e) if job.attempt < NOTIFY_ATTEMPTS => {
                let now = self.inner.clock.now();
                let delay = e.retry_after.unwrap_or_else(|| backoff(job.attempt, job.id));
                tracing::warn!(job_id = job.id, error = %e, retry_in = ?delay, "notice not delivered; will retry");
                let mut tx = self.inner.db.begin().await?;
                let ok = tx.retry_job(job.id, job.attempt, now.plus(delay), &e.message).await?;
                tx.commit().await?;
                Ok(if ok { JobOutcome::Retried } else { JobOutcome::LostLease })
            }
            Err(e) => self.fail(job, &e.message).await,
        }
    }
}

/// Payload of jobs tied to one expiry of a request (revocation, warning):
/// an extension writes new ones, and these tell the old ones apart.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ExpiryPayload {
    /// The `expires_at` (epoch milliseconds) the job was written for.
    pub expires_at: i64,
}

/// Whether an extension replaced this job: it was written for another
/// expiry than the request's current one. Jobs written before expiries were
/// recorded carry none and always run.
fn superseded(job: &JobRow, request: &AccessRequest) -> bool {
    serde_json::from_str::<ExpiryPayload>(&job.payload)
        .is_ok_and(|p| request.expires_at != Some(crate::domain::Timestamp::from_millis(p.expires_at)))
}

/// Payload of the audit checkpoint job: the head the last checkpoint
/// posted (row 0 and no hash before the first).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckpointPayload {
    /// The row anchored last.
    #[serde(default)]
    pub seq: i64,
    /// Its hash.
    #[serde(default)]
    pub hash: String,
}

/// Payload of jobs about one person.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct PersonPayload {
    /// Workspace.
    pub team_id: String,
    /// User.
    pub user_id: String,
    /// Message text (direct messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl PersonPayload {
    /// The stored payload of a job about `user` (with `text` for a DM).
    pub fn json(user: &SlackUser, text: Option<&str>) -> String {
        let payload = Self {
            team_id: user.team_id().to_owned(),
            user_id: user.user_id().to_owned(),
            text: text.map(str::to_owned),
        };
        // Serialising two strings and an option cannot fail.
        serde_json::to_string(&payload).unwrap_or_default()
    }
}

/// Re-reads a person's groups at the IdP (implemented by [`crate::idp`]).
#[async_trait::async_trait]
pub trait LinkRefresher: Send + Sync + 'static {
    /// Refreshes the link of `user`: updates groups, or ends the link when
    /// the IdP refuses the refresh token. `Err` means "try again later".
    async fn refresh(&self, user: &SlackUser, now: crate::domain::Timestamp) -> Result<(), String>;
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

/// Adds a provider's notes and output to an audit detail (only when there
/// are any, so details of providers that report nothing stay as they were).
fn with_report(mut detail: serde_json::Value, report: &ProviderReport) -> serde_json::Value {
    if !report.notes.is_empty() {
        detail["notes"] = json!(report.notes);
    }
    if let Some(output) = &report.output {
        detail["output"] = json!(output);
    }
    detail
}

/// Adds a failed call's captured output to an audit detail.
fn with_error_output(mut detail: serde_json::Value, e: &ProviderError) -> serde_json::Value {
    if let Some(output) = &e.output {
        detail["output"] = json!(output);
    }
    detail
}

/// What an audit row says when a revocation leaves shared access in place.
fn describe_release(r: &LeaseRelease) -> String {
    match r {
        LeaseRelease::NotGranted => "nothing was granted in the target for this request".to_owned(),
        LeaseRelease::Kept { holders } => format!(
            "left in place: request(s) {} still hold the same access",
            holders.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        ),
        LeaseRelease::Preexisting => "left in place: the login held this access before jitbot granted it".to_owned(),
        LeaseRelease::AlreadyReleased => "already removed by an earlier attempt".to_owned(),
        LeaseRelease::Release => "removed".to_owned(),
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
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

    #[test]
    fn jobs_for_an_older_expiry_are_superseded() {
        use crate::domain::{AccessDuration, RoleName, Timestamp};
        let request = AccessRequest {
            id: RequestId::new(1),
            requester: SlackUser::parse("T0WORK", "U0ALICE").unwrap(),
            requester_issuer: "i".into(),
            requester_subject: "s".into(),
            requester_email: "e@example.com".into(),
            role: RoleName::parse("r").unwrap(),
            provider: "p".into(),
            duration: AccessDuration::parse("1h").unwrap(),
            reason: "r".into(),
            ticket: None,
            approvals_required: 1,
            state: RequestState::Active,
            state_detail: None,
            created_at: Timestamp::from_millis(0),
            decided_at: None,
            granted_at: None,
            expires_at: Some(Timestamp::from_millis(7_200_000)),
            ended_at: None,
            auto_approved: None,
            break_glass_reason: None,
            review_required: false,
            decide_by: None,
            extends: None,
        };
        let job = |payload: &str| JobRow {
            id: 1,
            kind: "revoke".into(),
            request_id: Some(1),
            payload: payload.into(),
            attempt: 1,
            due_at: 0,
        };
        assert!(!superseded(&job(r#"{"expires_at":7200000}"#), &request), "written for the current expiry");
        assert!(superseded(&job(r#"{"expires_at":3600000}"#), &request), "written before an extension");
        assert!(!superseded(&job("{}"), &request), "jobs without an expiry always run");
    }

    #[test]
    fn job_kinds_round_trip_through_rows() {
        for kind in [
            JobKind::Grant,
            JobKind::Revoke,
            JobKind::Notify(NoticeKind::Granted),
            JobKind::TimeOut,
            JobKind::Remind,
            JobKind::Notify(NoticeKind::Reminder),
            JobKind::WarnExpiry,
            JobKind::OverdueCheck,
        ] {
            let row = JobRow {
                id: 1,
                kind: kind.name().into(),
                request_id: Some(1),
                payload: kind.payload(),
                attempt: 1,
                due_at: 0,
            };
            assert_eq!(JobKind::parse(&row), Some(kind));
        }
    }
}
