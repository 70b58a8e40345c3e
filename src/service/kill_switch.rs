//! The kill switch for incidents: every live grant is revoked and every
//! pending request cancelled, in one transaction, and the audit channel is
//! told. An administrator in Slack (`/jit revoke-all`, members of
//! `policy.admin_groups`, behind a confirmation) or an operator on the
//! command line (`jitbot revoke-all`) pulls it.
//!
//! Like an early revoke, this only moves requests to `revoking` and makes
//! their revocation jobs due now; the jobs do the provider calls.

use super::{
    AdminProof, Purpose, Refusal, Service, ServiceError, ServiceResult, cancel_pending_extension, insert_job, schedule,
};
use crate::audit::{self, Actor, Event};
use crate::domain::{RequestId, RequestState, SlackUser, Timestamp};
use crate::job_kinds::JobKind;
use crate::notify::{Announcement, NoticeKind};
use crate::store::{KillSwitchRow, TransitionFields};

/// The states the kill switch ends: everything that holds, or may come to
/// hold, access.
const LIVE: [RequestState; 6] = [
    RequestState::Pending,
    RequestState::Granting,
    RequestState::Active,
    RequestState::GrantFailed,
    RequestState::Revoking,
    RequestState::RevokeFailed,
];

/// The shortest reason the kill switch accepts: people will ask why.
pub const REVOKE_ALL_REASON_MIN: usize = 4;

/// What the kill switch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevokeAllOutcome {
    /// Requests whose access is now being revoked (or whose failing
    /// revocation was made due now).
    pub revoking: Vec<RequestId>,
    /// Pending requests (and extensions) cancelled.
    pub cancelled: Vec<RequestId>,
}

impl Service {
    /// Whether `user` may pull the kill switch: a member of
    /// `policy.admin_groups`, with groups as fresh as an approver's. The
    /// proof is what the administrator's use cases take.
    pub async fn check_admin(&self, user: &SlackUser, now: Timestamp) -> ServiceResult<AdminProof> {
        self.admin_proof(user, now).await?.ok_or(ServiceError::NotAllowed(Refusal::NotAdmin))
    }

    /// An administrator's proof for `user`, `None` when they are not one
    /// (each caller says what was refused); errors when their identity
    /// cannot be checked (no link, groups too old).
    pub(super) async fn admin_proof(&self, user: &SlackUser, now: Timestamp) -> ServiceResult<Option<AdminProof>> {
        let identity = self.identity(user, Purpose::Decide, None, now).await?;
        let admin = identity.groups.iter().any(|g| self.config.policy.admin_groups.contains(g));
        Ok(admin.then(|| AdminProof::new(Actor::Slack(user.clone()))))
    }

    /// `/jit revoke-all <reason>`, confirmed: an administrator pulls the kill switch.
    #[tracing::instrument(skip_all, fields(actor = %admin))]
    pub async fn revoke_all(&self, admin: &SlackUser, reason: &str, now: Timestamp) -> ServiceResult<RevokeAllOutcome> {
        let proof = self.check_admin(admin, now).await?;
        self.kill_switch(proof, reason, now).await
    }

    /// `jitbot revoke-all`: an operator with access to the config and the
    /// database pulls the kill switch.
    #[tracing::instrument(skip_all, fields(operator = %operator))]
    pub async fn revoke_all_as_operator(
        &self,
        operator: &str,
        reason: &str,
        now: Timestamp,
    ) -> ServiceResult<RevokeAllOutcome> {
        self.kill_switch(Self::operator(operator), reason, now).await
    }

    async fn kill_switch(&self, by: AdminProof, reason: &str, now: Timestamp) -> ServiceResult<RevokeAllOutcome> {
        let actor = by.actor();
        let reason = reason.trim();
        if reason.chars().count() < REVOKE_ALL_REASON_MIN {
            return Err(ServiceError::NotAllowed(Refusal::RevokeAllReasonTooShort));
        }
        // Engaged first, in a transaction of its own that only touches the
        // switch: decisions in flight commit before it (and are then seen
        // below), later ones find it engaged and refuse. See
        // `store::kill_switch` for the lock that makes this hold.
        let mut tx = self.db.begin().await?;
        tx.engage_kill_switch(&actor.to_string(), reason, now).await?;
        tx.commit().await?;

        let detail = format!("revoke-all by {actor}: {reason}");
        let mut out = RevokeAllOutcome::default();
        let mut tx = self.db.begin().await?;
        let live = tx.request_ids_in_states(&LIVE).await?;
        let mut events = Vec::new();
        for id in live {
            // Re-read under the request's lock: the list above may be older
            // than a transition that committed since.
            tx.lock_request(id, None, now).await?;
            let Some(r) = tx.request(id).await? else { continue };
            match r.state {
                RequestState::Pending => {
                    let fields = TransitionFields {
                        decided_at: Some(now),
                        ended_at: Some(now),
                        detail: Some(format!("all access was revoked ({reason})")),
                        ..Default::default()
                    };
                    if tx.transition(r.id, RequestState::Cancelled, &fields, now).await? {
                        schedule(&mut tx, JobKind::Notify(NoticeKind::Cancelled), r.id, now, now).await?;
                        out.cancelled.push(r.id);
                        events.push((r.id, Event::RequestCancelledByKillSwitch { detail: &detail }));
                    }
                }
                RequestState::Granting | RequestState::Active | RequestState::GrantFailed => {
                    let fields = TransitionFields { detail: Some(detail.clone()), ..Default::default() };
                    if tx.transition(r.id, RequestState::Revoking, &fields, now).await? {
                        tx.expedite_revoke(r.id, now).await?;
                        out.revoking.push(r.id);
                        events.push((r.id, Event::RevokeRequested { detail: &detail }));
                        if let Some(ext) = cancel_pending_extension(&mut tx, r.id, now).await? {
                            out.cancelled.push(ext);
                            events.push((ext, Event::RequestCancelledByKillSwitch { detail: &detail }));
                        }
                    }
                }
                // Already being revoked (perhaps failing and retrying): try now.
                RequestState::Revoking | RequestState::RevokeFailed => {
                    tx.expedite_revoke(r.id, now).await?;
                    out.revoking.push(r.id);
                }
                // Ended meanwhile.
                _ => {}
            }
        }
        out.cancelled.sort();
        out.cancelled.dedup();
        let announcement = Announcement::RevokeAll {
            slack_user: match actor {
                Actor::Slack(u) => Some(u.user_id().to_owned()),
                _ => None,
            },
            actor: actor.to_string(),
            reason: reason.to_owned(),
            revoking: out.revoking.len(),
            cancelled: out.cancelled.len(),
        };
        let payload = serde_json::to_string(&announcement).unwrap_or_default();
        insert_job(&mut tx, JobKind::Announce, None, &payload, now, now).await?;
        for (id, event) in events {
            audit::append(&mut tx, now, actor, Some(id), event).await?;
        }
        let event = Event::RevokeAll { reason, revoking: &out.revoking, cancelled: &out.cancelled };
        audit::append(&mut tx, now, actor, None, event).await?;
        self.commit_and_wake(tx).await?;
        Ok(out)
    }

    /// `/jit unfreeze <reason>`: an administrator releases the kill switch,
    /// so approvals grant again. `None` when it was not engaged.
    #[tracing::instrument(skip_all, fields(actor = %admin))]
    pub async fn release_kill_switch(
        &self,
        admin: &SlackUser,
        reason: &str,
        now: Timestamp,
    ) -> ServiceResult<Option<KillSwitchRow>> {
        let proof = self.check_admin(admin, now).await?;
        self.release(proof, reason, now).await
    }

    /// `jitbot unfreeze`: an operator releases the kill switch.
    #[tracing::instrument(skip_all, fields(operator = %operator))]
    pub async fn release_kill_switch_as_operator(
        &self,
        operator: &str,
        reason: &str,
        now: Timestamp,
    ) -> ServiceResult<Option<KillSwitchRow>> {
        self.release(Self::operator(operator), reason, now).await
    }

    /// The engaged kill switch, if it is.
    pub async fn kill_switch_state(&self) -> ServiceResult<Option<KillSwitchRow>> {
        Ok(self.db.kill_switch().await?)
    }

    async fn release(&self, by: AdminProof, reason: &str, now: Timestamp) -> ServiceResult<Option<KillSwitchRow>> {
        let actor = by.actor();
        let reason = reason.trim();
        if reason.chars().count() < REVOKE_ALL_REASON_MIN {
            return Err(ServiceError::NotAllowed(Refusal::ReleaseReasonTooShort));
        }
        let mut tx = self.db.begin().await?;
        let Some(was) = tx.release_kill_switch().await? else { return Ok(None) };
        let announcement = Announcement::KillSwitchReleased {
            slack_user: match actor {
                Actor::Slack(u) => Some(u.user_id().to_owned()),
                _ => None,
            },
            actor: actor.to_string(),
            reason: reason.to_owned(),
        };
        let payload = serde_json::to_string(&announcement).unwrap_or_default();
        insert_job(&mut tx, JobKind::Announce, None, &payload, now, now).await?;
        let event = Event::KillSwitchReleased {
            reason,
            engaged_by: &was.engaged_by,
            engaged_at: was.engaged_at,
            engaged_reason: &was.reason,
        };
        audit::append(&mut tx, now, actor, None, event).await?;
        self.commit_and_wake(tx).await?;
        Ok(Some(was))
    }
}
