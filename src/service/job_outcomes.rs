//! What jobs record after they ran: each outcome of a provider call or a
//! timer is one use case here, one transaction with its job bookkeeping
//! (fenced by the job's id and attempt: a run whose lease was taken over
//! writes nothing), its state transition, its audit event and the jobs it
//! implies. The job handlers (in `jobs`) only load, call the provider and
//! hand the result over.

use super::{Service, schedule};
use crate::audit::{self, Actor, CallError, CallOutput, Event};
use crate::domain::{AccessRequest, RequestId, RequestState, Timestamp};
use crate::job_kinds::{CheckpointPayload, JobFence, JobKind, JobOutcome};
use crate::notify::NoticeKind;
use crate::providers::{ProviderError, ProviderReport};
use crate::store::{LeaseRelease, LeaseStart, StoreError, TransitionFields};

/// What the step before a revocation's provider call decided.
#[derive(Debug)]
pub enum RevokeStart {
    /// A grant call is still in flight: the job was put back (or its lease
    /// was lost); nothing else happened.
    Deferred(JobOutcome),
    /// Go ahead; with shared access, what this request's release does.
    Proceed(Option<LeaseRelease>),
}

/// What an overdue check recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverdueCheck {
    /// A revocation attempt is running: the check was put back.
    Deferred(JobOutcome),
    /// The access may still exist: people are alerted.
    Alerted(JobOutcome),
}

impl Service {
    /// Marks a job done.
    pub async fn complete_job(&self, job: JobFence, now: Timestamp) -> Result<JobOutcome, StoreError> {
        let mut tx = self.db.begin().await?;
        let ok = tx.complete_job(job.id, job.attempt, now).await?;
        tx.commit().await?;
        Ok(if ok { JobOutcome::Done } else { JobOutcome::LostLease })
    }

    /// Marks a job failed for good with `error`.
    pub async fn fail_job(&self, job: JobFence, error: &str, now: Timestamp) -> Result<JobOutcome, StoreError> {
        let mut tx = self.db.begin().await?;
        let ok = tx.fail_job(job.id, job.attempt, error, now).await?;
        tx.commit().await?;
        Ok(if ok { JobOutcome::Failed } else { JobOutcome::LostLease })
    }

    /// Puts a job back for another attempt at `due`, remembering `error`.
    pub async fn retry_job(&self, job: JobFence, due: Timestamp, error: &str) -> Result<JobOutcome, StoreError> {
        let mut tx = self.db.begin().await?;
        let ok = tx.retry_job(job.id, job.attempt, due, error).await?;
        tx.commit().await?;
        Ok(if ok { JobOutcome::Retried } else { JobOutcome::LostLease })
    }

    /// Completes `job` and writes `kind`'s notice in the same transaction.
    pub async fn complete_job_with_notice(
        &self,
        job: JobFence,
        id: RequestId,
        kind: NoticeKind,
        now: Timestamp,
    ) -> Result<JobOutcome, StoreError> {
        let mut tx = self.db.begin().await?;
        if !tx.complete_job(job.id, job.attempt, now).await? {
            return Ok(JobOutcome::LostLease);
        }
        schedule(&mut tx, JobKind::Notify(kind), id, now, now).await?;
        self.commit_and_wake(tx).await?;
        Ok(JobOutcome::Done)
    }

    /// Makes sure the recurring audit checkpoint job exists (at start-up,
    /// when an audit key and an audit channel are configured). It lives in
    /// `jobs` like all later work: it survives restarts with the head it
    /// last posted, and a unique index keeps it single across replicas.
    /// The first run is due at once, anchoring the head as it is at start.
    pub async fn ensure_audit_checkpoints(&self, now: Timestamp) -> Result<bool, StoreError> {
        let payload = serde_json::to_string(&CheckpointPayload::default()).unwrap_or_default();
        self.ensure_recurring_job(JobKind::AuditCheckpoint, &payload, now, now).await
    }

    /// Completes this checkpoint job and schedules the next at `due`,
    /// remembering the head last `posted`, in one transaction.
    pub async fn next_audit_checkpoint(
        &self,
        job: JobFence,
        posted: &CheckpointPayload,
        due: Timestamp,
        now: Timestamp,
    ) -> Result<JobOutcome, StoreError> {
        let payload = serde_json::to_string(posted).unwrap_or_default();
        self.complete_recurring_job(job, JobKind::AuditCheckpoint, &payload, due, now).await
    }

    /// Ends the grant job of a request whose access expired before it could
    /// be granted, saying what is known. A `one_shot` action has no
    /// revocation to end the request: it ends here, unrun, so its open slot
    /// is freed.
    pub async fn record_grant_skipped(
        &self,
        job: JobFence,
        id: RequestId,
        one_shot: bool,
        now: Timestamp,
    ) -> Result<JobOutcome, StoreError> {
        let mut tx = self.db.begin().await?;
        if !tx.complete_job(job.id, job.attempt, now).await? {
            return Ok(JobOutcome::LostLease);
        }
        if one_shot {
            let why = "not run: the approval expired before the action could run".to_owned();
            let fields = TransitionFields { ended_at: Some(now), detail: Some(why), ..Default::default() };
            if tx.transition(id, RequestState::ActionFailed, &fields, now).await? {
                schedule(&mut tx, JobKind::Notify(NoticeKind::ActionFinished), id, now, now).await?;
            }
        }
        // Say what is known: an attempt that was recorded and never
        // answered may have reached the target before jitbot died.
        let event = if tx.grant_was_attempted(id).await? { Event::GrantInterrupted } else { Event::GrantSkipped };
        audit::append(&mut tx, now, &Actor::System, Some(id), event).await?;
        tx.commit().await?;
        Ok(JobOutcome::Done)
    }

    /// The step before a grant's provider call: takes the request's row lock
    /// once more (a revocation that committed first is seen here, and one
    /// that comes after sees the job's live lease and waits for the call to
    /// finish); a provider whose grants can overlap takes its lease on `key`
    /// in the same transaction. Returns whether the request is still
    /// granting, and the lease.
    pub async fn begin_grant_attempt(
        &self,
        job: JobFence,
        id: RequestId,
        provider: &str,
        key: Option<&str>,
        now: Timestamp,
    ) -> Result<(bool, Option<LeaseStart>), StoreError> {
        let mut tx = self.db.begin().await?;
        let ok = tx.lock_request(id, Some(RequestState::Granting), now).await?;
        let lease = match (key, ok) {
            (Some(k), true) => Some(tx.start_lease(id, provider, k, now).await?),
            _ => None,
        };
        // Recorded before the call: if jitbot dies while the call is in
        // flight, the trail still says the target may have the access.
        if ok && lease != Some(LeaseStart::Released) {
            let event = Event::GrantAttempted { provider, attempt: job.attempt };
            audit::append(&mut tx, now, &Actor::System, Some(id), event).await?;
        }
        tx.commit().await?;
        Ok((ok, lease))
    }

    /// Records what the target showed for shared access `key` before jitbot
    /// first changed it; returns whether it counts as held before jitbot.
    pub async fn record_presence(&self, key: &str, present: bool) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        let effective = tx.record_presence(key, present).await?;
        tx.commit().await?;
        Ok(effective)
    }

    /// Records a grant call's result: the request becomes active, or the
    /// job is put back until `retry_at` (when the failure may be retried),
    /// or the grant failed for good and its cleanup is made due now.
    pub async fn record_grant_result(
        &self,
        job: JobFence,
        id: RequestId,
        provider: &str,
        result: &Result<ProviderReport, ProviderError>,
        retry_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<JobOutcome, StoreError> {
        let mut tx = self.db.begin().await?;
        match (result, retry_at) {
            (Ok(report), _) => {
                if !tx.complete_job(job.id, job.attempt, now).await? {
                    return Ok(JobOutcome::LostLease);
                }
                let fields = TransitionFields { granted_at: Some(now), ..Default::default() };
                if tx.transition(id, RequestState::Active, &fields, now).await? {
                    schedule(&mut tx, JobKind::Notify(NoticeKind::Granted), id, now, now).await?;
                    let event =
                        Event::GrantApplied { provider, revocation_pending: false, report: with_report(report) };
                    audit::append(&mut tx, now, &Actor::System, Some(id), event).await?;
                } else {
                    // Revoked while the call was in flight: the revocation job
                    // (which waited for this call) removes what was just applied.
                    let event = Event::GrantApplied { provider, revocation_pending: true, report: with_report(report) };
                    audit::append(&mut tx, now, &Actor::System, Some(id), event).await?;
                }
                self.commit_and_wake(tx).await?;
                Ok(JobOutcome::Done)
            }
            (Err(e), Some(due)) => {
                if !tx.retry_job(job.id, job.attempt, due, &e.message).await? {
                    return Ok(JobOutcome::LostLease);
                }
                let event =
                    Event::GrantAttemptFailed { attempt: job.attempt, error: with_error_output(e), retry_at: due };
                audit::append(&mut tx, now, &Actor::System, Some(id), event).await?;
                tx.commit().await?;
                Ok(JobOutcome::Retried)
            }
            (Err(e), None) => {
                if !tx.fail_job(job.id, job.attempt, &e.message, now).await? {
                    return Ok(JobOutcome::LostLease);
                }
                let fields = TransitionFields { detail: Some(e.message.clone()), ..Default::default() };
                if tx.transition(id, RequestState::GrantFailed, &fields, now).await? {
                    // Clean up anything half-applied now rather than at expiry.
                    tx.expedite_revoke(id, now).await?;
                    schedule(&mut tx, JobKind::Notify(NoticeKind::GrantFailed), id, now, now).await?;
                }
                let event = Event::GrantFailed { attempt: job.attempt, error: with_error_output(e) };
                audit::append(&mut tx, now, &Actor::System, Some(id), event).await?;
                self.commit_and_wake(tx).await?;
                Ok(JobOutcome::Failed)
            }
        }
    }

    /// The step before a one-shot action runs: whether its request is still
    /// granting (under the request's row lock).
    pub async fn lock_granting(&self, id: RequestId, now: Timestamp) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        let ok = tx.lock_request(id, Some(RequestState::Granting), now).await?;
        tx.commit().await?;
        Ok(ok)
    }

    /// Records a one-shot action's result: the request ends (completed or
    /// failed) without a revocation; the job is never retried.
    pub async fn record_one_shot_result(
        &self,
        job: JobFence,
        id: RequestId,
        provider: &str,
        result: &Result<ProviderReport, ProviderError>,
        now: Timestamp,
    ) -> Result<JobOutcome, StoreError> {
        let mut tx = self.db.begin().await?;
        let recorded = match result {
            Ok(_) => tx.complete_job(job.id, job.attempt, now).await?,
            Err(e) => tx.fail_job(job.id, job.attempt, &e.message, now).await?,
        };
        if !recorded {
            return Ok(JobOutcome::LostLease);
        }
        let (state, detail, event) = match result {
            Ok(report) => (
                RequestState::Completed,
                report.output.clone().unwrap_or_else(|| "(no output)".to_owned()),
                Event::ActionCompleted { provider, report: with_report(report) },
            ),
            Err(e) => (
                RequestState::ActionFailed,
                e.message.clone(),
                Event::ActionFailed { provider, error: with_error_output(e) },
            ),
        };
        let fields =
            TransitionFields { granted_at: Some(now), ended_at: Some(now), detail: Some(detail), ..Default::default() };
        if tx.transition(id, state, &fields, now).await? {
            schedule(&mut tx, JobKind::Notify(NoticeKind::ActionFinished), id, now, now).await?;
        }
        audit::append(&mut tx, now, &Actor::System, Some(id), event).await?;
        self.commit_and_wake(tx).await?;
        Ok(if result.is_ok() { JobOutcome::Done } else { JobOutcome::Failed })
    }

    /// The step before a revocation's provider call, under the request's row
    /// lock: waits (puts the job back until `wait_until`) for a grant call
    /// still in flight, moves the request to `revoking`, and with
    /// `shared_access` begins this request's release of it (only the last
    /// holder removes it in the target).
    pub async fn begin_revoke(
        &self,
        job: JobFence,
        request: &AccessRequest,
        shared_access: bool,
        wait_until: Timestamp,
        now: Timestamp,
    ) -> Result<RevokeStart, StoreError> {
        let id = request.id;
        let mut tx = self.db.begin().await?;
        tx.lock_request(id, None, now).await?;
        if tx.grant_in_flight(id, now).await? {
            // Let the grant call finish first, so it cannot land after us.
            if !tx.retry_job(job.id, job.attempt, wait_until, "waiting for a grant call in flight").await? {
                return Ok(RevokeStart::Deferred(JobOutcome::LostLease));
            }
            tx.commit().await?;
            return Ok(RevokeStart::Deferred(JobOutcome::Retried));
        }
        if matches!(request.state, RequestState::Granting | RequestState::Active | RequestState::GrantFailed) {
            let detail = if request.state == RequestState::GrantFailed { None } else { Some("expired".to_owned()) };
            let fields = TransitionFields { detail, ..Default::default() };
            tx.transition(id, RequestState::Revoking, &fields, now).await?;
        }
        let release = if shared_access { Some(tx.begin_release(id, now).await?) } else { None };
        tx.commit().await?;
        Ok(RevokeStart::Proceed(release))
    }

    /// Records a revocation call's result: the request is revoked, or the
    /// job is put back until `retry_at` (a revocation is never abandoned),
    /// and with `alert` people are told it keeps failing.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_revoke_result(
        &self,
        job: JobFence,
        request: &AccessRequest,
        release: Option<&LeaseRelease>,
        result: &Result<ProviderReport, ProviderError>,
        retry_at: Timestamp,
        alert: bool,
        now: Timestamp,
    ) -> Result<JobOutcome, StoreError> {
        let id = request.id;
        let mut tx = self.db.begin().await?;
        match result {
            Ok(report) => {
                if !tx.complete_job(job.id, job.attempt, now).await? {
                    return Ok(JobOutcome::LostLease);
                }
                if release.is_some_and(LeaseRelease::removes_access) {
                    tx.finish_release(id, now).await?;
                }
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
                let event = Event::RevokeApplied { provider: &request.provider, early, report: with_report(report) };
                audit::append(&mut tx, now, &Actor::System, Some(id), event).await?;
                self.commit_and_wake(tx).await?;
                Ok(JobOutcome::Done)
            }
            Err(e) => {
                let due = retry_at;
                if !tx.retry_job(job.id, job.attempt, due, &e.message).await? {
                    return Ok(JobOutcome::LostLease);
                }
                if alert {
                    let fields = TransitionFields { detail: Some(e.message.clone()), ..Default::default() };
                    if tx.transition(id, RequestState::RevokeFailed, &fields, now).await? {
                        schedule(&mut tx, JobKind::Notify(NoticeKind::RevokeFailing), id, now, now).await?;
                    }
                }
                let event =
                    Event::RevokeAttemptFailed { attempt: job.attempt, error: with_error_output(e), retry_at: due };
                audit::append(&mut tx, now, &Actor::System, Some(id), event).await?;
                tx.commit().await?;
                Ok(JobOutcome::Retried)
            }
        }
    }

    /// A minute after expiry, the access of `request` may still exist. With
    /// `may_defer`, a revocation attempt that is running (or not tried yet)
    /// gets until `wait_until` first; otherwise people are alerted.
    pub async fn record_overdue_check(
        &self,
        job: JobFence,
        request: &AccessRequest,
        may_defer: bool,
        wait_until: Timestamp,
        now: Timestamp,
    ) -> Result<OverdueCheck, StoreError> {
        let mut tx = self.db.begin().await?;
        if may_defer && tx.revoke_in_flight(request.id, now).await? {
            let ok = tx.retry_job(job.id, job.attempt, wait_until, "a revocation attempt is running").await?;
            tx.commit().await?;
            return Ok(OverdueCheck::Deferred(if ok { JobOutcome::Retried } else { JobOutcome::LostLease }));
        }
        if !tx.complete_job(job.id, job.attempt, now).await? {
            return Ok(OverdueCheck::Alerted(JobOutcome::LostLease));
        }
        schedule(&mut tx, JobKind::Notify(NoticeKind::RevokeOverdue), request.id, now, now).await?;
        let event = Event::RevokeOverdue {
            state: request.state,
            expires_at: request.expires_at,
            last_error: request.state_detail.as_deref(),
        };
        audit::append(&mut tx, now, &Actor::System, Some(request.id), event).await?;
        self.commit_and_wake(tx).await?;
        Ok(OverdueCheck::Alerted(JobOutcome::Done))
    }

    /// Ends a request still pending at its deadline. A request decided in
    /// the meantime is left alone (the conditional update finds nothing).
    pub async fn time_out_request(
        &self,
        job: JobFence,
        request: &AccessRequest,
        now: Timestamp,
    ) -> Result<JobOutcome, StoreError> {
        let id = request.id;
        let waited = request.created_at.until(now);
        let mut tx = self.db.begin().await?;
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
            let event = Event::RequestTimedOut { decide_by: request.decide_by };
            audit::append(&mut tx, now, &Actor::System, Some(id), event).await?;
        }
        self.commit_and_wake(tx).await?;
        Ok(JobOutcome::Done)
    }

    /// Records the result of telling the target that an extension moved
    /// the expiry to `expires_at`: done, put back until `retry_at`, or
    /// failed for good (the target may then end access before jitbot's
    /// revocation: earlier than promised, never later).
    #[allow(clippy::too_many_arguments)]
    pub async fn record_extend_result(
        &self,
        job: JobFence,
        id: RequestId,
        provider: &str,
        expires_at: Timestamp,
        result: &Result<ProviderReport, ProviderError>,
        retry_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<JobOutcome, StoreError> {
        let mut tx = self.db.begin().await?;
        match (result, retry_at) {
            (Ok(report), _) => {
                if !tx.complete_job(job.id, job.attempt, now).await? {
                    return Ok(JobOutcome::LostLease);
                }
                let event = Event::GrantExtended { provider, expires_at, report: with_report(report) };
                audit::append(&mut tx, now, &Actor::System, Some(id), event).await?;
                tx.commit().await?;
                Ok(JobOutcome::Done)
            }
            (Err(e), Some(due)) => {
                let ok = tx.retry_job(job.id, job.attempt, due, &e.message).await?;
                tx.commit().await?;
                Ok(if ok { JobOutcome::Retried } else { JobOutcome::LostLease })
            }
            (Err(e), None) => {
                if !tx.fail_job(job.id, job.attempt, &e.message, now).await? {
                    return Ok(JobOutcome::LostLease);
                }
                let event = Event::GrantExtendFailed { provider, error: &e.message };
                audit::append(&mut tx, now, &Actor::System, Some(id), event).await?;
                tx.commit().await?;
                Ok(JobOutcome::Failed)
            }
        }
    }
}

/// A provider's notes and output, for an audit event (added to its detail
/// only when there are any, so details of providers that report nothing
/// stay as they were).
fn with_report(report: &ProviderReport) -> CallOutput<'_> {
    CallOutput { notes: &report.notes, output: report.output.as_deref() }
}

/// A failed call's message and captured output, for an audit event.
fn with_error_output(e: &ProviderError) -> CallError<'_> {
    CallError { message: &e.message, output: e.output.as_deref() }
}
