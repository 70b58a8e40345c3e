//! What each kind of job does: load what it needs, call the provider or
//! the notifier, and hand the result to a service use case, which records
//! it in one transaction with its audit event and the jobs it implies.
//! The [`Scheduler`](super::Scheduler) gives claimed jobs to
//! [`JobHandlers`] through the [`JobHandler`] trait.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::SharedClock;
use crate::domain::{AccessRequest, RequestId, RequestState, SlackUser, Timestamp};
use crate::job_kinds::{CheckpointPayload, DigestPayload, ExpiryPayload, JobFence, JobKind, JobOutcome, PersonPayload};
use crate::metrics::{Counter, Histogram, Metrics};
use crate::notify::{Notice, NoticeKind, Notifier, NotifyError};
use crate::providers::{ApprovedGrant, GrantTarget, Presence, Provider, ProviderError, ProviderReport, Providers};
use crate::service::{LeaseRelease, LeaseStart, OverdueCheck, RevokeStart, Service};

use super::SchedulerOptions;
use super::scheduler::{JobError, JobHandler, JobRow, backoff, record_with_retry};

/// Grant attempts before a request is marked `grant_failed` (about 2.5
/// minutes of retrying with the default backoff).
pub const GRANT_ATTEMPTS: i64 = 6;
/// Failed revocation attempts after which people are alerted. Revocation is
/// never abandoned: it keeps retrying at the backoff cap.
pub const REVOKE_ALERT_AFTER: i64 = 3;
/// Notice delivery attempts before giving up on that notice.
pub const NOTIFY_ATTEMPTS: i64 = 8;
/// How long a revocation waits for a grant call that is still in flight.
pub const WAIT_FOR_GRANT: Duration = Duration::from_secs(5);
/// How many times the overdue check waits for a revocation attempt that is
/// running at that moment before alerting anyway.
const OVERDUE_DEFERRALS: i64 = 3;

/// Re-reads a person's groups at the IdP (implemented by [`crate::idp`]).
#[async_trait::async_trait]
pub trait LinkRefresher: Send + Sync + 'static {
    /// Refreshes the link of `user`: updates groups, or ends the link when
    /// the IdP refuses the refresh token. `Err` means "try again later".
    async fn refresh(&self, user: &SlackUser, now: crate::domain::Timestamp) -> Result<(), String>;
}

/// Runs every kind of job jitbot writes.
pub struct JobHandlers {
    service: Service,
    clock: SharedClock,
    providers: Providers,
    notifier: Arc<dyn Notifier>,
    refresher: Option<Arc<dyn LinkRefresher>>,
    metrics: Metrics,
    audit_checkpoint_interval: Duration,
}

#[async_trait::async_trait]
impl JobHandler for JobHandlers {
    async fn run(&self, job: &JobRow) -> Result<JobOutcome, JobError> {
        self.execute(job).await
    }
}

impl JobHandlers {
    /// The handlers; `service` loads what a job needs and records every
    /// outcome, `refresher` re-reads groups at the IdP (with `[idp]`).
    pub fn new(
        service: Service,
        clock: SharedClock,
        providers: Providers,
        notifier: Arc<dyn Notifier>,
        refresher: Option<Arc<dyn LinkRefresher>>,
        options: &SchedulerOptions,
    ) -> Self {
        Self {
            service,
            clock,
            providers,
            notifier,
            refresher,
            metrics: options.metrics.clone(),
            audit_checkpoint_interval: options.audit_checkpoint_interval,
        }
    }

    async fn execute(&self, job: &JobRow) -> Result<JobOutcome, JobError> {
        let Some(kind) = JobKind::from_stored(&job.kind, &job.payload) else {
            return self.fail(job, "unknown job kind or payload").await;
        };
        match kind {
            JobKind::DirectMessage => return self.direct_message(job).await,
            JobKind::Announce => return self.announce(job).await,
            JobKind::RefreshLink => return self.refresh_link(job).await,
            JobKind::AuditCheckpoint => return self.audit_checkpoint(job).await,
            JobKind::RedrawHome => return self.redraw_home(job).await,
            JobKind::AuditDigest => return self.audit_digest(job).await,
            JobKind::ReportDigest => return self.report_digest(job).await,
            _ => {}
        }
        let Some(request_id) = job.request_id.map(RequestId::new) else {
            return self.fail(job, "job has no request").await;
        };
        let Some(request) = self.service.job_request(request_id).await? else {
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
            JobKind::DirectMessage
            | JobKind::RefreshLink
            | JobKind::Announce
            | JobKind::AuditCheckpoint
            | JobKind::RedrawHome
            | JobKind::AuditDigest
            | JobKind::ReportDigest => self.fail(job, "not a request job").await,
        }
    }

    async fn direct_message(&self, job: &JobRow) -> Result<JobOutcome, JobError> {
        let Ok(payload) = serde_json::from_str::<PersonPayload>(&job.payload) else {
            return self.fail(job, "malformed direct message payload").await;
        };
        let Ok(user) = SlackUser::parse(&payload.team_id, &payload.user_id) else {
            return self.fail(job, "malformed user in payload").await;
        };
        let result = self.notifier.direct_message(&user, payload.text.as_deref().unwrap_or("")).await;
        self.finish_delivery(job, result).await
    }

    /// Redraws one person's App Home tab from the state as it is now
    /// (redraws of one person run one at a time, in order).
    async fn redraw_home(&self, job: &JobRow) -> Result<JobOutcome, JobError> {
        let Ok(payload) = serde_json::from_str::<PersonPayload>(&job.payload) else {
            return self.fail(job, "malformed redraw payload").await;
        };
        let Ok(user) = SlackUser::parse(&payload.team_id, &payload.user_id) else {
            return self.fail(job, "malformed user in payload").await;
        };
        let result = self.notifier.redraw_home(&user).await;
        self.finish_delivery(job, result).await
    }

    /// Posts one line for the revocations of a minute held for it.
    async fn audit_digest(&self, job: &JobRow) -> Result<JobOutcome, JobError> {
        let Ok(payload) = serde_json::from_str::<DigestPayload>(&job.payload) else {
            return self.fail(job, "malformed digest payload").await;
        };
        let (held, total) = self.service.held_revocations(payload.minute).await?;
        if held.is_empty() {
            return self.complete(job).await;
        }
        let minute = Timestamp::from_millis(payload.minute.saturating_mul(60_000));
        match self.notifier.revocation_digest(minute, &held, total).await {
            Ok(()) => {
                let ids: Vec<RequestId> = held.iter().map(|r| r.id).collect();
                Ok(self.service.record_digest_posted(fence(job), &ids, self.clock.now()).await?)
            }
            Err(e) => self.finish_delivery(job, Err(e)).await,
        }
    }

    async fn announce(&self, job: &JobRow) -> Result<JobOutcome, JobError> {
        let Ok(announcement) = serde_json::from_str::<crate::notify::Announcement>(&job.payload) else {
            return self.fail(job, "malformed announcement payload").await;
        };
        let result = self.notifier.announce(&announcement).await;
        self.finish_delivery(job, result).await
    }

    /// Posts a signed checkpoint of the audit head when it moved since the
    /// last one, then schedules the next look one interval later. It never
    /// gives up (a series that ended would anchor nothing until a restart):
    /// a failed post is retried with backoff, at most an interval later.
    async fn audit_checkpoint(&self, job: &JobRow) -> Result<JobOutcome, JobError> {
        let last: CheckpointPayload = serde_json::from_str(&job.payload).unwrap_or_default();
        let now = self.clock.now();
        let Some(checkpoint) = self.service.audit_checkpoint(now).await? else {
            if !self.service.audit_keyed() {
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
            && match self.service.audit_hash_at(last.seq).await? {
                Some(hash) => hash != last.hash,
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
        match self.notifier.announce(&announcement).await {
            Ok(()) => {
                let posted = CheckpointPayload { seq: checkpoint.seq, hash: checkpoint.head };
                self.next_checkpoint(job, &posted, now).await
            }
            Err(e) => {
                let interval = self.audit_checkpoint_interval;
                let delay = e.retry_after.unwrap_or_else(|| backoff(job.attempt, job.id)).min(interval);
                tracing::warn!(job_id = job.id, error = %e, retry_in = ?delay, "audit checkpoint not posted; will retry");
                Ok(self.service.retry_job(fence(job), now.plus(delay), &e.message).await?)
            }
        }
    }

    /// Posts the weekly access report digest (the last seven days) to the
    /// audit channel, then schedules the next one. Like the checkpoints it
    /// never gives up: a failed post (or a database that cannot answer) is
    /// retried with backoff, at most an hour later. Without `report.digest`
    /// any more, the series ends.
    async fn report_digest(&self, job: &JobRow) -> Result<JobOutcome, JobError> {
        const RETRY_CAP: Duration = Duration::from_secs(3600);
        let now = self.clock.now();
        let Some(schedule) = self.service.config().report.digest_schedule() else {
            tracing::info!("no report.digest any more: the weekly digest stops");
            return self.complete(job).await;
        };
        let week = Duration::from_secs(7 * 86_400);
        let failed = match self.service.report(now.minus(week), now, None).await {
            Ok(report) => {
                let (lines, recommendations) = crate::report::render::digest(&report);
                let link = format!("{}/report", self.service.config().server.public_base());
                let announcement = crate::notify::Announcement::ReportDigest { lines, recommendations, link };
                match self.notifier.announce(&announcement).await {
                    Ok(()) => {
                        return Ok(self.service.next_report_digest(fence(job), schedule.next_after(now), now).await?);
                    }
                    Err(e) => (e.message, e.retry_after),
                }
            }
            Err(e) => (e.to_string(), None),
        };
        let delay = failed.1.unwrap_or_else(|| backoff(job.attempt, job.id)).min(RETRY_CAP);
        tracing::warn!(job_id = job.id, error = %failed.0, retry_in = ?delay, "report digest not posted; will retry");
        Ok(self.service.retry_job(fence(job), now.plus(delay), &failed.0).await?)
    }

    /// Completes this checkpoint job and schedules the next, remembering
    /// the head last posted, in one transaction.
    async fn next_checkpoint(
        &self,
        job: &JobRow,
        posted: &CheckpointPayload,
        now: Timestamp,
    ) -> Result<JobOutcome, JobError> {
        let due = now.plus(self.audit_checkpoint_interval);
        Ok(self.service.next_audit_checkpoint(fence(job), posted, due, now).await?)
    }

    async fn refresh_link(&self, job: &JobRow) -> Result<JobOutcome, JobError> {
        let Ok(payload) = serde_json::from_str::<PersonPayload>(&job.payload) else {
            return self.fail(job, "malformed refresh payload").await;
        };
        let Ok(user) = SlackUser::parse(&payload.team_id, &payload.user_id) else {
            return self.fail(job, "malformed user in payload").await;
        };
        let Some(refresher) = self.refresher.clone() else {
            return self.fail(job, "no identity provider is configured").await;
        };
        match refresher.refresh(&user, self.clock.now()).await {
            Ok(()) => self.complete(job).await,
            Err(e) if job.attempt < NOTIFY_ATTEMPTS => {
                let now = self.clock.now();
                let due = now.plus(backoff(job.attempt, job.id));
                tracing::warn!(job_id = job.id, error = %e, "group refresh failed; will retry");
                Ok(self.service.retry_job(fence(job), due, &e).await?)
            }
            Err(e) => self.fail(job, &e).await,
        }
    }

    async fn complete(&self, job: &JobRow) -> Result<JobOutcome, JobError> {
        let now = self.clock.now();
        Ok(record_with_retry(|| self.service.complete_job(fence(job), now)).await?)
    }

    async fn fail(&self, job: &JobRow, error: &str) -> Result<JobOutcome, JobError> {
        tracing::error!(job_id = job.id, kind = %job.kind, error, "job failed permanently");
        let now = self.clock.now();
        Ok(record_with_retry(|| self.service.fail_job(fence(job), error, now)).await?)
    }

    async fn grant(&self, job: &JobRow, request: AccessRequest) -> Result<JobOutcome, JobError> {
        let now = self.clock.now();
        let id = request.id;
        // Re-checked at run time: a grant never happens after its revocation
        // started, nor after the access would already have expired.
        if request.state != RequestState::Granting {
            return self.complete(job).await;
        }
        let target = self.service.grant_target(&request).await;
        let expired = request.expires_at.is_none_or(|t| now >= t);
        let target = match target {
            Ok(Some(t)) if !expired => Ok(t),
            Ok(target) => {
                let one_shot = target.as_ref().is_some_and(GrantTarget::is_one_shot);
                return Ok(self.service.record_grant_skipped(fence(job), id, one_shot, now).await?);
            }
            Err(e) => Err(e),
        };
        if target.as_ref().is_ok_and(GrantTarget::is_one_shot) {
            return self.run_one_shot(job, request, target).await;
        }
        let provider = self.providers.get(&request.provider);
        let key = match (&provider, &target) {
            (Some(p), Ok(t)) => p.access_key(t),
            _ => None,
        };
        let (still_granting, lease) =
            self.service.begin_grant_attempt(fence(job), id, &request.provider, key.as_deref(), now).await?;
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
                    let call = self.grant_leased(provider.as_ref(), &key, preexisting, target, now);
                    self.timed(&request.provider, "grant", call).await?
                }
                _ => self.timed(&request.provider, "grant", provider.grant(&ApprovedGrant::new(target), now)).await,
            },
        };
        let now = self.clock.now();
        let retry_at = match &result {
            Ok(_) => None,
            Err(e) => {
                self.metrics.inc(Counter::GrantAttemptsFailed);
                (job.attempt < GRANT_ATTEMPTS && e.retryable).then(|| now.plus(backoff(job.attempt, job.id)))
            }
        };
        let outcome = record_with_retry(|| {
            self.service.record_grant_result(fence(job), id, &request.provider, &result, retry_at, now)
        })
        .await?;
        if result.is_ok() && outcome == JobOutcome::Done {
            self.metrics.inc(Counter::GrantsApplied);
        }
        Ok(outcome)
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
                self.service.record_presence(key, present).await?
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
        let now = self.clock.now();
        let result = if job.attempt > 1 {
            Err(ProviderError::permanent(
                "jitbot was interrupted while the action was starting or running; it was not run again (it may or may not have completed)",
            ))
        } else {
            if !self.service.lock_granting(id, now).await? {
                return self.complete(job).await;
            }
            match (target, self.providers.get(&request.provider)) {
                (Err(e), _) => Err(e),
                (Ok(_), None) => {
                    Err(ProviderError::permanent(format!("provider {} is not configured", request.provider)))
                }
                (Ok(target), Some(provider)) => {
                    self.metrics.inc(Counter::ActionsRun);
                    self.timed(&request.provider, "action", provider.grant(&ApprovedGrant::new(target), now)).await
                }
            }
        };
        let now = self.clock.now();
        Ok(record_with_retry(|| self.service.record_one_shot_result(fence(job), id, &request.provider, &result, now))
            .await?)
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
        let target = self.service.grant_target(&request).await;
        let provider = self.providers.get(&request.provider);
        let key = match (&provider, &target) {
            (Some(p), Ok(Some(t))) => p.access_key(t),
            _ => None,
        };
        let now = self.clock.now();
        let wait_until = now.plus(WAIT_FOR_GRANT);
        let release = match self.service.begin_revoke(fence(job), &request, key.is_some(), wait_until, now).await? {
            RevokeStart::Deferred(outcome) => return Ok(outcome),
            RevokeStart::Proceed(release) => release,
        };
        let result = match target {
            Err(e) => Err(e),
            Ok(None) => return self.fail(job, "request has no expiry; nothing was granted").await,
            Ok(Some(target)) => match (&release, provider) {
                (Some(r), _) if !r.removes_access() => Ok(ProviderReport::note(describe_release(r))),
                (_, Some(provider)) => self.timed(&request.provider, "revoke", provider.revoke(&target, now)).await,
                (_, None) => Err(ProviderError::retryable(format!(
                    "provider {} is not configured: access may still exist",
                    request.provider
                ))),
            },
        };
        let now = self.clock.now();
        if result.is_err() {
            self.metrics.inc(Counter::RevokeAttemptsFailed);
        }
        // Never abandoned: a revocation that silently stops is the worst bug a JIT tool can have.
        let retry_at = now.plus(backoff(job.attempt, job.id));
        let alert = job.attempt == REVOKE_ALERT_AFTER;
        let outcome = record_with_retry(|| {
            self.service.record_revoke_result(fence(job), &request, release.as_ref(), &result, retry_at, alert, now)
        })
        .await?;
        if result.is_ok() && outcome == JobOutcome::Done {
            self.metrics.inc(Counter::RevocationsApplied);
            // How late access ended: 0 for an early revocation.
            let late = request.expires_at.map_or(0, |t| (now.millis() - t.millis()).max(0));
            #[allow(clippy::cast_precision_loss)]
            self.metrics.observe(Histogram::RevocationLateness, &[], late as f64 / 1000.0);
        }
        Ok(outcome)
    }

    /// Runs a minute after a request's expiry: if its access may still
    /// exist, people are alerted and the overdue counter goes up. The
    /// revocation itself keeps retrying on its own.
    async fn check_overdue(&self, job: &JobRow, request: AccessRequest) -> Result<JobOutcome, JobError> {
        // An extension moved the expiry (and wrote a check for the new one).
        if !RequestState::MAY_HOLD_ACCESS.contains(&request.state) || superseded(job, &request) {
            return self.complete(job).await;
        }
        let now = self.clock.now();
        // A revocation attempt is running or has not been tried yet (say,
        // right after a restart made both jobs due at once): give it a few
        // seconds, a bounded number of times, so a hung attempt or a stuck
        // queue is still reported.
        let may_defer = job.attempt <= OVERDUE_DEFERRALS;
        let wait_until = now.plus(WAIT_FOR_GRANT);
        match self.service.record_overdue_check(fence(job), &request, may_defer, wait_until, now).await? {
            OverdueCheck::Deferred(outcome) => Ok(outcome),
            OverdueCheck::Alerted(outcome) => {
                self.metrics.inc(Counter::RevocationsOverdue);
                tracing::error!(
                    request_id = request.id.get(),
                    role = %request.role,
                    state = %request.state,
                    overdue_total = self.metrics.get(Counter::RevocationsOverdue),
                    "revocation overdue: access may still exist after its expiry"
                );
                Ok(outcome)
            }
        }
    }

    /// Ends a request still pending at its deadline.
    async fn time_out(&self, job: &JobRow, request: AccessRequest) -> Result<JobOutcome, JobError> {
        if request.state != RequestState::Pending {
            return self.complete(job).await;
        }
        let now = self.clock.now();
        Ok(self.service.time_out_request(fence(job), &request, now).await?)
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
        let now = self.clock.now();
        Ok(self.service.complete_job_with_notice(fence(job), id, kind, now).await?)
    }

    /// Warns the holder that their access ends soon, unless the access is
    /// no longer live or an extension moved the expiry this warning was for.
    async fn warn_expiry(&self, job: &JobRow, request: AccessRequest) -> Result<JobOutcome, JobError> {
        // After an outage a warning may come due only after the expiry: by
        // then it would be noise, the revocation is what comes next.
        let past = request.expires_at.is_none_or(|t| self.clock.now() >= t);
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
        let target = match self.service.grant_target(&request).await {
            Ok(Some(t)) => t,
            _ => return self.fail(job, "the request has no grant to extend").await,
        };
        let result = match self.providers.get(&request.provider) {
            Some(provider) => self.timed(&request.provider, "extend", provider.extend(&target, self.clock.now())).await,
            None => Err(ProviderError::permanent(format!("provider {} is not configured", request.provider))),
        };
        let now = self.clock.now();
        let retry_at = match &result {
            Err(e) if job.attempt < GRANT_ATTEMPTS && e.retryable => Some(now.plus(backoff(job.attempt, job.id))),
            _ => None,
        };
        Ok(record_with_retry(|| {
            self.service.record_extend_result(
                fence(job),
                id,
                &request.provider,
                target.expires_at,
                &result,
                retry_at,
                now,
            )
        })
        .await?)
    }

    /// Runs one provider call, timing it for `/metrics` by provider and `op`.
    async fn timed<T>(&self, provider: &str, op: &'static str, call: impl std::future::Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let out = call.await;
        self.metrics.observe_duration(
            Histogram::ProviderCall,
            &[("provider", provider), ("op", op)],
            started.elapsed(),
        );
        out
    }

    async fn notify(&self, job: &JobRow, request: AccessRequest, kind: NoticeKind) -> Result<JobOutcome, JobError> {
        let approvals = self.service.job_approvals(request.id).await?;
        let notice = Notice { kind, request, approvals, job_id: Some(job.id), attempt: job.attempt };
        let result = self.notifier.notify(&notice).await;
        self.finish_delivery(job, result).await
    }

    /// Completes a delivery job, or retries it (after the receiver's
    /// `Retry-After` when it gave one) until its attempts run out. Being
    /// told to wait (a 429, or Slack's pacing) is not a failed attempt: such
    /// a notice is retried until it is delivered.
    async fn finish_delivery(&self, job: &JobRow, result: Result<(), NotifyError>) -> Result<JobOutcome, JobError> {
        match result {
            Ok(()) => self.complete(job).await,
            Err(e) if job.attempt < NOTIFY_ATTEMPTS || e.retry_after.is_some() => {
                let now = self.clock.now();
                let delay = e.retry_after.unwrap_or_else(|| backoff(job.attempt, job.id));
                tracing::warn!(job_id = job.id, error = %e, retry_in = ?delay, "notice not delivered; will retry");
                Ok(self.service.retry_job(fence(job), now.plus(delay), &e.message).await?)
            }
            Err(e) => self.fail(job, &e.message).await,
        }
    }
}

/// The fence a run of `job` writes under.
fn fence(job: &JobRow) -> JobFence {
    JobFence { id: job.id, attempt: job.attempt }
}

/// Whether an extension replaced this job: it was written for another
/// expiry than the request's current one. Jobs written before expiries were
/// recorded carry none and always run.
fn superseded(job: &JobRow, request: &AccessRequest) -> bool {
    serde_json::from_str::<ExpiryPayload>(&job.payload)
        .is_ok_and(|p| request.expires_at != Some(crate::domain::Timestamp::from_millis(p.expires_at)))
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
