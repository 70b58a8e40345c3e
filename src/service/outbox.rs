//! The outbox: the jobs a transition writes in its own transaction
//! (notices, DMs, timeouts, expiry warnings and revocations).

#[allow(unused_imports)]
use super::*;
use crate::job_kinds::{JobFence, JobOutcome};
use crate::store::NewJob;

/// Writes one job of `kind` into the transaction, in the lane and series
/// its kind puts it in: every job the service writes goes through here, so
/// a revocation can never end up queued behind notices.
pub(crate) async fn insert_job(
    tx: &mut Tx,
    kind: JobKind,
    request: Option<RequestId>,
    payload: &str,
    due: Timestamp,
    now: Timestamp,
) -> Result<i64, StoreError> {
    let series = kind.series(request, payload);
    let job = NewJob {
        kind: kind.name(),
        lane: kind.lane().as_str(),
        series: series.as_deref(),
        request_id: request,
        payload,
        due_at: due,
    };
    tx.insert_job(&job, now).await
}

impl Service {
    /// Makes sure the one job of a recurring `kind` exists (at start-up),
    /// due at `due`; `false` when one is already queued or running. A unique
    /// index keeps it single across replicas and restarts.
    pub(crate) async fn ensure_recurring_job(
        &self,
        kind: JobKind,
        payload: &str,
        due: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        let series = kind.series(None, payload);
        let job = NewJob {
            kind: kind.name(),
            lane: kind.lane().as_str(),
            series: series.as_deref(),
            request_id: None,
            payload,
            due_at: due,
        };
        let added = tx.insert_job_unless_pending(&job, now).await?;
        tx.commit().await?;
        if added {
            self.wake.notify_one();
        }
        Ok(added)
    }

    /// Completes a run of a recurring job and schedules its successor at
    /// `due` with `payload`, in one transaction fenced by the run's claim: a
    /// run whose lease was taken over writes nothing, and no period is
    /// skipped or doubled.
    pub(crate) async fn complete_recurring_job(
        &self,
        job: JobFence,
        kind: JobKind,
        payload: &str,
        due: Timestamp,
        now: Timestamp,
    ) -> Result<JobOutcome, StoreError> {
        let mut tx = self.db.begin().await?;
        let ok = tx.complete_job(job.id, job.attempt, now).await?;
        if ok {
            insert_job(&mut tx, kind, None, payload, due, now).await?;
        }
        tx.commit().await?;
        Ok(if ok { JobOutcome::Done } else { JobOutcome::LostLease })
    }
}

/// Writes a direct message to one person into the transaction.
pub(crate) async fn schedule_dm(tx: &mut Tx, user: &SlackUser, text: &str, now: Timestamp) -> Result<(), StoreError> {
    let payload = crate::job_kinds::PersonPayload::json(user, Some(text));
    insert_job(tx, JobKind::DirectMessage, None, &payload, now, now).await?;
    Ok(())
}

/// The requester of `request` as an identity for "same person" checks (the
/// groups and claims are not needed for that and are left empty).
pub(crate) fn requester_of(request: &AccessRequest) -> Identity {
    Identity {
        slack: request.requester.clone(),
        issuer: request.requester_issuer.clone(),
        subject: request.requester_subject.clone(),
        email: request.requester_email.clone(),
        groups: Default::default(),
        claims: Default::default(),
    }
}

/// Schedules the timeout of a pending request (and the reminder halfway,
/// when the role has an approval timeout).
pub(super) async fn schedule_timeout(
    tx: &mut Tx,
    id: RequestId,
    policy: &RolePolicy,
    decide_by: Option<Timestamp>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let Some(deadline) = decide_by else { return Ok(()) };
    if let Some(timeout) = policy.approval_timeout {
        let halfway = now.plus(timeout / 2);
        if halfway < deadline {
            schedule(tx, JobKind::Remind, id, halfway, now).await?;
        }
    }
    schedule(tx, JobKind::TimeOut, id, deadline, now).await?;
    Ok(())
}

/// Schedules the revocation at `expires_at` and the warning `warn_before`
/// it (none when that moment has passed already: a warning right after the
/// grant would be noise). Both carry the expiry they are for, so after an
/// extension the old ones recognise themselves as superseded.
pub(super) async fn schedule_expiry(
    tx: &mut Tx,
    id: RequestId,
    expires_at: Timestamp,
    warn_before: Duration,
    now: Timestamp,
) -> Result<(), StoreError> {
    let payload = json!({"expires_at": expires_at.millis()}).to_string();
    insert_job(tx, JobKind::Revoke, Some(id), &payload, expires_at, now).await?;
    // People are alerted if access still exists a minute after it should have ended.
    let overdue_at = expires_at.plus(REVOKE_OVERDUE_AFTER);
    insert_job(tx, JobKind::OverdueCheck, Some(id), &payload, overdue_at, now).await?;
    let warn_at = expires_at.minus(warn_before);
    if !warn_before.is_zero() && warn_at > now {
        insert_job(tx, JobKind::WarnExpiry, Some(id), &payload, warn_at, now).await?;
    }
    Ok(())
}

/// Writes one job for request `id` into the transaction.
pub(crate) async fn schedule(
    tx: &mut Tx,
    kind: JobKind,
    id: RequestId,
    due: Timestamp,
    now: Timestamp,
) -> Result<(), StoreError> {
    insert_job(tx, kind, Some(id), &kind.payload(), due, now).await?;
    Ok(())
}
