//! Extending live access: the holder asks for more time shortly before
//! their access ends (from the expiry warning, or `/jit extend`). An
//! extension goes through the role's policy like a request: auto-approved
//! when the rule allows it, otherwise it gets a card of its own and the
//! approvers decide. What approval does to the extended request (a later
//! expiry, rescheduled revocation and warning) lives in
//! [`Service::let_through`], shared with ordinary approvals.

use super::{
    Approval, LetThrough, Purpose, Refusal, Service, ServiceError, ServiceResult, audit_extension, schedule,
    schedule_timeout,
};
use crate::audit::{self, Actor, Event};
use crate::domain::{AccessDuration, AccessRequest, RequestId, RequestState, SlackUser, Timestamp};
use crate::job_kinds::JobKind;
use crate::notify::NoticeKind;
use crate::store::{NewRequest, StoreError};

/// An extension as asked for, already parsed from its transport.
#[derive(Debug, Clone)]
pub struct ExtendCommand {
    /// Who asks: only the holder of the access may.
    pub requester: SlackUser,
    /// The request whose access should last longer.
    pub request: RequestId,
    /// How much longer; the role's default when not said.
    pub duration: Option<AccessDuration>,
    /// Why; the original reason when not said.
    pub reason: Option<String>,
    /// The delivery's idempotency key (a retried click extends once).
    pub client_key: Option<String>,
}

/// What asking for an extension did.
#[derive(Debug, Clone)]
pub enum ExtendOutcome {
    /// Auto-approved: the access already ends later.
    Extended {
        /// The extended request, with its new expiry.
        request: Box<AccessRequest>,
        /// The extension (ended `extended`).
        extension: Box<AccessRequest>,
    },
    /// Waiting for approvers on a card of its own.
    Pending(Box<AccessRequest>),
}

impl Service {
    /// Asks for more time on live access.
    #[tracing::instrument(skip_all, fields(request_id = cmd.request.get(), requester = %cmd.requester))]
    pub async fn extend(&self, cmd: ExtendCommand, now: Timestamp) -> ServiceResult<ExtendOutcome> {
        if let Some(key) = &cmd.client_key
            && let Some(existing) = self.db.request_by_client_key(key).await?
        {
            return self.extend_outcome(existing).await;
        }
        let id = cmd.request;
        let parent = self.load(id).await?;
        if parent.requester != cmd.requester {
            return Err(ServiceError::NotAllowed(Refusal::NotTheHolder(id)));
        }
        let live = matches!(parent.state, RequestState::Granting | RequestState::Active);
        let Some(expires_at) = parent.expires_at.filter(|t| live && *t > now) else {
            return Err(ServiceError::NotAllowed(Refusal::NotLive { id, state: parent.state }));
        };
        let (role, policy, provider) = self.role(parent.role.as_str())?;
        let step_up = self.config.roles.get(role.as_str()).and_then(|r| r.step_up);
        let requester = self.identity(&cmd.requester, Purpose::Request, step_up, now).await?;
        let reason = cmd.reason.as_deref().map(str::trim).filter(|r| !r.is_empty()).unwrap_or(&parent.reason);
        let duration = policy.check_request(&requester, cmd.duration, reason)?;
        policy.check_total(parent.decided_at.unwrap_or(parent.created_at), expires_at.plus(duration.get()))?;
        let ticket = policy.check_ticket(parent.ticket.as_deref(), reason)?;
        if let Some(existing) = self.db.open_extension(id).await? {
            return Err(ServiceError::AlreadyOpen { existing: Box::new(existing) });
        }
        let auto = self.auto_approval(&cmd.requester, &policy, &requester, duration, step_up, now).await?;
        // An undecided extension is moot once the access it extends ended.
        let decide_by = match policy.approval_timeout {
            Some(t) => Some(now.plus(t).min(expires_at)),
            None => Some(expires_at),
        };
        let mut tx = self.db.begin().await?;
        let new = NewRequest {
            requester: &requester,
            role: &role,
            provider: &provider,
            duration,
            reason,
            ticket: ticket.as_deref(),
            approvals_required: policy.approvals_required,
            client_key: cmd.client_key.as_deref(),
            decide_by: decide_by.filter(|_| auto.is_none()),
            extends: Some(id),
        };
        let ext = match tx.insert_request(&new, now).await {
            Ok(ext) => ext,
            Err(StoreError::Conflict) => {
                tx.rollback().await?;
                if let Some(key) = &cmd.client_key
                    && let Some(existing) = self.db.request_by_client_key(key).await?
                {
                    return self.extend_outcome(existing).await;
                }
                return Err(match self.db.open_extension(id).await? {
                    Some(existing) => ServiceError::AlreadyOpen { existing: Box::new(existing) },
                    None => ServiceError::Unavailable,
                });
            }
            Err(e) => return Err(e.into()),
        };
        let mut applied = None;
        if let Some(why) = &auto {
            let extension = tx.request(ext).await?.ok_or(ServiceError::NotFound(ext))?;
            match self.let_through(&mut tx, &extension, &Approval::Auto(why.clone()), &policy, now).await? {
                LetThrough::Done { expires_at, extended } => applied = Some((expires_at, extended)),
                LetThrough::Lost => {
                    tx.rollback().await?;
                    return Err(ServiceError::NotAllowed(Refusal::EndedWhileExtending(id)));
                }
                LetThrough::NothingToExtend(why) => {
                    tx.rollback().await?;
                    return Err(ServiceError::NotAllowed(Refusal::NothingToExtend(why)));
                }
            }
        } else {
            schedule(&mut tx, JobKind::Notify(NoticeKind::RequestCreated), ext, now, now).await?;
            schedule_timeout(&mut tx, ext, &policy, decide_by, now).await?;
        }
        let actor = Actor::Slack(cmd.requester.clone());
        let event = Event::ExtensionCreated {
            extends: id,
            role: role.as_str(),
            provider: &provider,
            duration,
            reason,
            ticket: ticket.as_deref(),
            approvals_required: policy.approvals_required,
            decide_by,
        };
        audit::append(&mut tx, now, &actor, Some(ext), event).await?;
        if let (Some(why), Some((to, extended))) = (&auto, applied) {
            let event = Event::RequestAutoApproved { why, expires_at: Some(to) };
            audit::append(&mut tx, now, &Actor::System, Some(ext), event).await?;
            audit_extension(&mut tx, &Actor::System, ext, extended, to, now).await?;
        }
        self.commit_and_wake(tx).await?;
        let extension = self.load(ext).await?;
        self.extend_outcome(extension).await
    }

    async fn extend_outcome(&self, extension: AccessRequest) -> ServiceResult<ExtendOutcome> {
        match (extension.state, extension.extends) {
            (RequestState::Extended, Some(parent)) => Ok(ExtendOutcome::Extended {
                request: Box::new(self.load(parent).await?),
                extension: Box::new(extension),
            }),
            _ => Ok(ExtendOutcome::Pending(Box::new(extension))),
        }
    }
}
