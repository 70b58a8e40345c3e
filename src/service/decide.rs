//! Deciding: approve, deny and break-glass, and letting an approved
//! request (or extension) through to its grant.

#[allow(unused_imports)]
use super::*;

impl Service {
    /// Loads what a decider needs and checks the policy (again, at decision
    /// time: group membership may have changed since the request).
    pub(super) async fn check_decider(
        &self,
        id: RequestId,
        approver: &SlackUser,
        now: Timestamp,
    ) -> ServiceResult<Decider> {
        let request = self.load(id).await?;
        let step_up =
            self.config.roles.get(request.role.as_str()).filter(|r| r.approver_step_up).and_then(|r| r.step_up);
        let approver = self.identity(approver, Purpose::Decide, step_up, now).await?;
        if request.state != RequestState::Pending {
            return Err(ServiceError::AlreadyDecided { id, state: request.state });
        }
        let policy = self
            .config
            .role_policy(&request.role)
            .ok_or_else(|| ServiceError::NotAllowed(Refusal::RoleGoneUndecidable { role: request.role.clone() }))?;
        policy.check_approver(&approver, &requester_of(&request))?;
        Ok(Decider { request, identity: approver })
    }

    /// An approver's **Approve**. Exactly one of any number of concurrent
    /// final approvals moves the request on; the others are told it was
    /// already decided.
    #[tracing::instrument(skip_all, fields(request_id = id.get(), approver = %approver))]
    pub async fn approve(&self, id: RequestId, approver: &SlackUser, now: Timestamp) -> ServiceResult<ApprovalOutcome> {
        let Decider { request, identity: approver_identity } = self.check_decider(id, approver, now).await?;
        // The requester must still be allowed to hold the role.
        let policy = self.config.role_policy(&request.role).ok_or(ServiceError::NotFound(id))?;
        match self.db.link(&request.requester).await? {
            Some(link) => policy
                .check_requester(&link.identity()?)
                .map_err(|_| ServiceError::NotAllowed(Refusal::RequesterLeftGroups { role: request.role.clone() }))?,
            None => {
                return Err(ServiceError::NotAllowed(Refusal::RequesterUnlinked));
            }
        }

        let mut tx = self.db.begin().await?;
        if !tx.lock_request(id, Some(RequestState::Pending), now).await? {
            return self.already_decided(tx, id).await;
        }
        // One person, one vote, however many Slack accounts they link.
        if tx.person_decided(id, &approver_identity.subject, &approver_identity.email).await? {
            tx.rollback().await?;
            return Err(ServiceError::AlreadyVoted(id));
        }
        match tx.insert_approval(id, &approver_identity, Decision::Approve, None, now).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => {
                tx.rollback().await?;
                return Err(ServiceError::AlreadyVoted(id));
            }
            Err(e) => return Err(e.into()),
        }
        let count = tx.count_approvals(id).await?;
        let actor = Actor::Slack(approver.clone());
        let outcome_approved = count >= request.approvals_required;
        if outcome_approved {
            let outcome = self.let_through(&mut tx, &request, &Approval::Approvers, &policy, now).await?;
            let LetThrough::Done { expires_at, extended } = outcome else {
                return self.nothing_to_extend(tx, &request, outcome, &actor, now).await;
            };
            let event = Event::RequestApproved { approvals: count, required: request.approvals_required, expires_at };
            audit::append(&mut tx, now, &actor, Some(id), event).await?;
            audit_extension(&mut tx, &actor, id, extended, expires_at, now).await?;
        } else {
            schedule(&mut tx, JobKind::Notify(NoticeKind::ApprovalRecorded), id, now, now).await?;
            let event = Event::ApprovalRecorded { approvals: count, required: request.approvals_required };
            audit::append(&mut tx, now, &actor, Some(id), event).await?;
        }
        self.commit_and_wake(tx).await?;
        let request = self.load(id).await?;
        Ok(if outcome_approved {
            ApprovalOutcome::Approved(request)
        } else {
            ApprovalOutcome::Recorded { request, approvals: count }
        })
    }

    pub(super) async fn already_decided<T>(&self, tx: Tx, id: RequestId) -> ServiceResult<T> {
        tx.rollback().await?;
        let state = self.load(id).await?.state;
        Err(ServiceError::AlreadyDecided { id, state })
    }

    /// An approver's **Deny**: one denial ends the request.
    #[tracing::instrument(skip_all, fields(request_id = id.get(), approver = %approver))]
    pub async fn deny(
        &self,
        id: RequestId,
        approver: &SlackUser,
        reason: Option<&str>,
        now: Timestamp,
    ) -> ServiceResult<AccessRequest> {
        let Decider { identity: approver_identity, .. } = self.check_decider(id, approver, now).await?;
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        let mut tx = self.db.begin().await?;
        if !tx.lock_request(id, Some(RequestState::Pending), now).await? {
            return self.already_decided(tx, id).await;
        }
        match tx.insert_approval(id, &approver_identity, Decision::Deny, reason, now).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => {
                tx.rollback().await?;
                return Err(ServiceError::AlreadyVoted(id));
            }
            Err(e) => return Err(e.into()),
        }
        let fields = TransitionFields {
            decided_at: Some(now),
            ended_at: Some(now),
            detail: reason.map(str::to_owned),
            ..Default::default()
        };
        if !tx.transition(id, RequestState::Denied, &fields, now).await? {
            return self.already_decided(tx, id).await;
        }
        schedule(&mut tx, JobKind::Notify(NoticeKind::Denied), id, now, now).await?;
        audit::append(&mut tx, now, &Actor::Slack(approver.clone()), Some(id), Event::RequestDenied { reason }).await?;
        self.commit_wake_and_load(tx, id).await
    }

    /// The requester approves their own request alone, on a role with
    /// `break_glass = true`: it counts as all the approvals it needs, needs
    /// a reason, is announced on the card and in the audit channel, and
    /// flags the request for review.
    #[tracing::instrument(skip_all, fields(request_id = id.get(), actor = %actor))]
    pub async fn break_glass(
        &self,
        id: RequestId,
        actor: &SlackUser,
        reason: &str,
        now: Timestamp,
    ) -> ServiceResult<AccessRequest> {
        let request = self.load(id).await?;
        let role = self.config.roles.get(request.role.as_str());
        // A decision like any other: groups must be fresh, and a step-up role
        // needs a recent sign-in (break-glass is the riskiest decision there is).
        let step_up = role.and_then(|r| r.step_up);
        let actor_identity = self.identity(actor, Purpose::Decide, step_up, now).await?;
        if request.state != RequestState::Pending {
            return Err(ServiceError::AlreadyDecided { id, state: request.state });
        }
        let policy = self
            .config
            .role_policy(&request.role)
            .ok_or_else(|| ServiceError::NotAllowed(Refusal::RoleGone { role: request.role.clone() }))?;
        let reason = reason.trim();
        policy.check_break_glass(&actor_identity, &requester_of(&request), reason)?;

        let mut tx = self.db.begin().await?;
        if !tx.lock_request(id, Some(RequestState::Pending), now).await? {
            return self.already_decided(tx, id).await;
        }
        match tx.insert_approval(id, &actor_identity, Decision::BreakGlass, Some(reason), now).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => {
                tx.rollback().await?;
                return Err(ServiceError::AlreadyVoted(id));
            }
            Err(e) => return Err(e.into()),
        }
        let actor = Actor::Slack(actor.clone());
        let outcome =
            self.let_through(&mut tx, &request, &Approval::BreakGlass(reason.to_owned()), &policy, now).await?;
        let LetThrough::Done { expires_at, extended } = outcome else {
            return self.nothing_to_extend(tx, &request, outcome, &actor, now).await;
        };
        audit::append(&mut tx, now, &actor, Some(id), Event::RequestBreakGlass { reason, expires_at }).await?;
        audit_extension(&mut tx, &actor, id, extended, expires_at, now).await?;
        self.commit_wake_and_load(tx, id).await
    }

    /// Moves a pending request on once it is approved (by its approvers,
    /// the auto-approval rule or a break-glass), inside `tx`. An ordinary
    /// request enters `granting` with its grant, revocation and expiry
    /// warning scheduled; an extension moves the expiry of the request it
    /// extends, reschedules that request's revocation and warning, and ends
    /// `extended`. The caller appends the audit events and commits.
    pub(super) async fn let_through(
        &self,
        tx: &mut Tx,
        request: &AccessRequest,
        approval: &Approval,
        policy: &RolePolicy,
        now: Timestamp,
    ) -> ServiceResult<LetThrough> {
        let id = request.id;
        // Read under the lock the kill switch waits for (see
        // `store::kill_switch`): no approval slips past `revoke-all`.
        if let Some(engaged) = tx.kill_switch_for_decision().await? {
            return Err(ServiceError::KillSwitchEngaged { by: engaged.engaged_by, reason: engaged.reason });
        }
        let (kind, auto_approved, break_glass_reason) = match approval {
            Approval::Approvers => (NoticeKind::Approved, None, None),
            Approval::Auto(why) => (NoticeKind::AutoApproved, Some(why.clone()), None),
            Approval::BreakGlass(reason) => (NoticeKind::BreakGlass, None, Some(reason.clone())),
        };
        let Some(parent) = request.extends else {
            let expires_at = now.plus(request.duration.get());
            let fields = TransitionFields {
                decided_at: Some(now),
                expires_at: Some(expires_at),
                auto_approved,
                break_glass_reason,
                ..Default::default()
            };
            if !tx.transition(id, RequestState::Granting, &fields, now).await? {
                return Ok(LetThrough::Lost);
            }
            // The revocation exists from the moment the request enters
            // `granting`: a crash anywhere after this commit still revokes.
            // A one-shot action has nothing to revoke.
            schedule(tx, JobKind::Grant, id, now, now).await?;
            if !self.is_one_shot(tx, id).await? {
                schedule_expiry(tx, id, expires_at, policy.warn_before, now).await?;
            }
            schedule(tx, JobKind::Notify(kind), id, now, now).await?;
            return Ok(LetThrough::Done { expires_at, extended: None });
        };
        // The request it extends must still hold (or be getting) access:
        // the conditional update fails if it ended or its expiry moved.
        // The role's limit on one grant's total length is checked at each
        // decision too: the config may have changed since it was asked for.
        let live =
            tx.request(parent).await?.filter(|p| matches!(p.state, RequestState::Granting | RequestState::Active));
        let ended = || format!("the access of request #{} ended before the extension was approved", parent.get());
        let moved = match live.and_then(|p| Some((p.decided_at.unwrap_or(p.created_at), p.expires_at?))) {
            Some((started, from)) if from > now => {
                let to = from.plus(request.duration.get());
                match policy.check_total(started, to) {
                    Ok(()) => tx.extend_expiry(parent, from, to, now).await?.then_some((from, to)).ok_or_else(ended),
                    Err(e) => Err(e.to_string()),
                }
            }
            _ => Err(ended()),
        };
        let (from, to) = match moved {
            Ok(moved) => moved,
            Err(why) => {
                let fields = TransitionFields {
                    decided_at: Some(now),
                    ended_at: Some(now),
                    detail: Some(why.clone()),
                    ..Default::default()
                };
                if !tx.transition(id, RequestState::Cancelled, &fields, now).await? {
                    return Ok(LetThrough::Lost);
                }
                schedule(tx, JobKind::Notify(NoticeKind::Cancelled), id, now, now).await?;
                return Ok(LetThrough::NothingToExtend(why));
            }
        };
        let fields = TransitionFields {
            decided_at: Some(now),
            expires_at: Some(to),
            auto_approved,
            break_glass_reason,
            ..Default::default()
        };
        if !tx.transition(id, RequestState::Extended, &fields, now).await? {
            return Ok(LetThrough::Lost);
        }
        // The jobs for the old expiry stay queued and do nothing when they
        // fire (they carry the expiry they were written for).
        schedule_expiry(tx, parent, to, policy.warn_before, now).await?;
        let payload = json!({"expires_at": to.millis()}).to_string();
        insert_job(tx, JobKind::ExtendGrant, Some(parent), &payload, now, now).await?;
        schedule(tx, JobKind::Notify(kind), id, now, now).await?;
        schedule(tx, JobKind::Notify(NoticeKind::Extended), parent, now, now).await?;
        Ok(LetThrough::Done { expires_at: to, extended: Some((parent, from)) })
    }

    /// Finishes a decision whose extension found nothing left to extend:
    /// the cancellation [`Service::let_through`] wrote is committed with its
    /// audit event, and the decider is told.
    pub(super) async fn nothing_to_extend<T>(
        &self,
        mut tx: Tx,
        request: &AccessRequest,
        outcome: LetThrough,
        actor: &Actor,
        now: Timestamp,
    ) -> ServiceResult<T> {
        let id = request.id;
        let LetThrough::NothingToExtend(why) = outcome else {
            return self.already_decided(tx, id).await;
        };
        audit::append(&mut tx, now, actor, Some(id), Event::RequestCancelled { why: &why }).await?;
        self.commit_and_wake(tx).await?;
        Err(ServiceError::NotAllowed(Refusal::ExtensionCancelled { id, why }))
    }
}

/// How a pending request was let through.
#[derive(Debug, Clone)]
pub(super) enum Approval {
    /// Its approvers reached the number needed.
    Approvers,
    /// The role's auto-approval rule, and why it applied.
    Auto(String),
    /// The requester's break-glass, with its reason.
    BreakGlass(String),
}

/// What [`Service::let_through`] did.
#[derive(Debug, Clone)]
pub(super) enum LetThrough {
    /// Granting, or for an extension: its request now ends at `expires_at`
    /// (and `extended` names that request and its old expiry).
    Done { expires_at: Timestamp, extended: Option<(RequestId, Timestamp)> },
    /// The request was no longer pending (a concurrent decision won).
    Lost,
    /// An extension could not apply (its request's access ended, or it
    /// would exceed the role's total); it was cancelled instead, for this
    /// reason.
    NothingToExtend(String),
}

/// Appends the audit event of an applied extension, on the request it extended.
pub(super) async fn audit_extension(
    tx: &mut Tx,
    actor: &Actor,
    extension: RequestId,
    extended: Option<(RequestId, Timestamp)>,
    to: Timestamp,
    now: Timestamp,
) -> Result<(), StoreError> {
    let Some((parent, from)) = extended else { return Ok(()) };
    audit::append(tx, now, actor, Some(parent), Event::AccessExtended { extension, from, to }).await?;
    Ok(())
}
