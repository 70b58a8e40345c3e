//! Ending access: cancel, early revoke, group removal, ending everything a
//! link vouched for, and an administrator's retry of a failing revocation.

#[allow(unused_imports)]
use super::*;

impl Service {
    /// The requester withdraws a pending request.
    #[tracing::instrument(skip_all, fields(request_id = id.get(), actor = %actor))]
    pub async fn cancel(&self, id: RequestId, actor: &SlackUser, now: Timestamp) -> ServiceResult<AccessRequest> {
        let request = self.load(id).await?;
        if &request.requester != actor {
            return Err(ServiceError::NotAllowed(Refusal::NotTheRequester(id)));
        }
        let mut tx = self.db.begin().await?;
        let fields = TransitionFields { decided_at: Some(now), ended_at: Some(now), ..Default::default() };
        if !tx.transition(id, RequestState::Cancelled, &fields, now).await? {
            return self.already_decided(tx, id).await;
        }
        schedule(&mut tx, JobKind::Notify(NoticeKind::Cancelled), id, now, now).await?;
        audit::append(&mut tx, now, &Actor::Slack(actor.clone()), Some(id), Event::RequestWithdrawn).await?;
        self.commit_wake_and_load(tx, id).await
    }

    /// Ends access before its expiry: the requester ("I'm done") or a member
    /// of `policy.admin_groups`. The revocation job is made due at once.
    #[tracing::instrument(skip_all, fields(request_id = id.get(), actor = %actor))]
    pub async fn revoke(&self, id: RequestId, actor: &SlackUser, now: Timestamp) -> ServiceResult<AccessRequest> {
        let request = self.load(id).await?;
        let is_requester = &request.requester == actor;
        // Anyone else needs an administrator's proof; it names who ends it.
        let admin = if is_requester {
            None
        } else {
            let Some(proof) = self.admin_proof(actor, now).await? else {
                return Err(ServiceError::NotAllowed(Refusal::NotRequesterOrAdmin(id)));
            };
            Some(proof)
        };
        if !matches!(request.state, RequestState::Granting | RequestState::Active | RequestState::GrantFailed) {
            return Err(ServiceError::AlreadyDecided { id, state: request.state });
        }
        if self.db.grant_spec(id).await?.is_some_and(|s| GrantSpec::from_json(&s).is_ok_and(|s| s.is_one_shot())) {
            return Err(ServiceError::NotAllowed(Refusal::OneShot(id)));
        }
        let detail = match &admin {
            None => "ended early by the requester".to_owned(),
            Some(_) => format!("revoked early by {actor}"),
        };
        let mut tx = self.db.begin().await?;
        let fields = TransitionFields { detail: Some(detail.clone()), ..Default::default() };
        if !tx.transition(id, RequestState::Revoking, &fields, now).await? {
            return self.already_decided(tx, id).await;
        }
        tx.expedite_revoke(id, now).await?;
        let actor = match admin {
            Some(proof) => proof.actor().clone(),
            None => Actor::Slack(actor.clone()),
        };
        let cancelled = cancel_pending_extension(&mut tx, id, now).await?;
        audit::append(&mut tx, now, &actor, Some(id), Event::RevokeRequested { detail: &detail }).await?;
        if let Some(ext) = cancelled {
            audit::append(&mut tx, now, &actor, Some(ext), Event::RequestCancelled { why: "access ended" }).await?;
        }
        self.commit_wake_and_load(tx, id).await
    }

    /// The identity provider removed `user` from `removed` groups: the link
    /// keeps only the other groups, and each grant that needed a removed
    /// group (and whose role says `revoke_on_group_removal`) is revoked.
    pub async fn remove_groups(
        &self,
        user: &SlackUser,
        removed: &std::collections::BTreeSet<String>,
        now: Timestamp,
    ) -> ServiceResult<usize> {
        let Some(link) = self.db.link(user).await? else { return Ok(0) };
        let before = link.groups()?;
        let after: std::collections::BTreeSet<String> = before.difference(removed).cloned().collect();
        if after == before {
            return Ok(0);
        }
        let lost: Vec<String> = before.intersection(removed).cloned().collect();
        let open = self.db.open_requests_of(user).await?;
        let doomed: Vec<RequestId> = open
            .into_iter()
            .filter(|r| {
                self.config.roles.get(r.role.as_str()).is_some_and(|role| {
                    role.revoke_on_group_removal
                        && role.requesters.iter().any(|g| lost.contains(g))
                        && !role.requesters.iter().any(|g| after.contains(g))
                })
            })
            .map(|r| r.id)
            .collect();
        let reason = format!("removed from {} at the identity provider", lost.join(", "));
        let mut tx = self.db.begin().await?;
        tx.set_link_groups(user, &after).await?;
        let events = self.end_requests(&mut tx, &doomed, &reason, now).await?;
        let touched = events.len();
        for (id, event) in events {
            audit::append(&mut tx, now, &Actor::Scim, Some(id), event).await?;
        }
        let event = Event::LinkGroupsRemoved { slack: user, removed: &lost, groups: &after };
        audit::append(&mut tx, now, &Actor::Scim, None, event).await?;
        self.commit_and_wake(tx).await?;
        Ok(touched)
    }

    /// Cancels pending requests and revokes live grants, inside `tx`. Each
    /// request is locked and re-read first, so one that an approver moved on
    /// meanwhile is handled in its new state. Returns the audit events to
    /// append, which the caller does last (the audit head is locked last in
    /// every transaction).
    pub(super) async fn end_requests<'r>(
        &self,
        tx: &mut Tx,
        ids: &[RequestId],
        reason: &'r str,
        now: Timestamp,
    ) -> ServiceResult<Vec<(RequestId, Event<'r>)>> {
        let mut events = Vec::new();
        for &id in ids {
            tx.lock_request(id, None, now).await?;
            let Some(r) = tx.request(id).await? else { continue };
            match r.state {
                RequestState::Pending => {
                    let fields = TransitionFields {
                        decided_at: Some(now),
                        ended_at: Some(now),
                        detail: Some(reason.to_owned()),
                        ..Default::default()
                    };
                    if tx.transition(id, RequestState::Cancelled, &fields, now).await? {
                        schedule(tx, JobKind::Notify(NoticeKind::Cancelled), id, now, now).await?;
                        events.push((id, Event::RequestCancelledForLink { reason }));
                    }
                }
                // A one-shot action has nothing to revoke: it is not run.
                RequestState::Granting if self.is_one_shot(tx, id).await? => {
                    let fields =
                        TransitionFields { ended_at: Some(now), detail: Some(reason.to_owned()), ..Default::default() };
                    if tx.transition(id, RequestState::ActionFailed, &fields, now).await? {
                        schedule(tx, JobKind::Notify(NoticeKind::ActionFinished), id, now, now).await?;
                        events.push((id, Event::RequestCancelledForLink { reason }));
                    }
                }
                RequestState::Granting | RequestState::Active | RequestState::GrantFailed => {
                    let fields = TransitionFields { detail: Some(reason.to_owned()), ..Default::default() };
                    if tx.transition(id, RequestState::Revoking, &fields, now).await? {
                        tx.expedite_revoke(id, now).await?;
                        events.push((id, Event::RevokeRequested { detail: reason }));
                    }
                }
                _ => {}
            }
        }
        Ok(events)
    }

    pub(super) async fn is_one_shot(&self, tx: &mut Tx, id: RequestId) -> ServiceResult<bool> {
        Ok(tx.grant_spec(id).await?.is_some_and(|s| GrantSpec::from_json(&s).is_ok_and(|s| s.is_one_shot())))
    }

    /// An administrator's "try that revocation again now": makes the
    /// request's queued revocation due at once (or queues a new one), for
    /// after the cause of a `revoke_failed` was fixed. Only with an
    /// administrator's proof ([`Service::retry_revoke_as`] gets it for Slack
    /// users, [`Service::operator`] for the command line).
    #[tracing::instrument(skip_all, fields(request_id = id.get(), actor = %by.actor()))]
    pub async fn retry_revoke(&self, id: RequestId, by: &AdminProof, now: Timestamp) -> ServiceResult<AccessRequest> {
        let request = self.load(id).await?;
        if !matches!(request.state, RequestState::Revoking | RequestState::RevokeFailed) {
            return Err(ServiceError::NotAllowed(Refusal::NoRevocationWaiting { id, state: request.state }));
        }
        let mut tx = self.db.begin().await?;
        let queued_new = if tx.revoke_due_now(id, now).await? {
            false
        } else {
            schedule(&mut tx, JobKind::Revoke, id, now, now).await?;
            true
        };
        let event = Event::RevokeRetryRequested {
            state: request.state,
            last_error: request.state_detail.as_deref(),
            queued_new,
        };
        audit::append(&mut tx, now, by.actor(), Some(id), event).await?;
        self.commit_wake_and_load(tx, id).await
    }

    /// [`Service::retry_revoke`] for a Slack user: only members of
    /// `policy.admin_groups` may.
    pub async fn retry_revoke_as(
        &self,
        id: RequestId,
        actor: &SlackUser,
        now: Timestamp,
    ) -> ServiceResult<AccessRequest> {
        let Some(proof) = self.admin_proof(actor, now).await? else {
            return Err(ServiceError::NotAllowed(Refusal::NotAdminToRetry));
        };
        self.retry_revoke(id, &proof, now).await
    }
}

/// Cancels the pending extension of a request whose access is ending early.
pub(super) async fn cancel_pending_extension(
    tx: &mut Tx,
    id: RequestId,
    now: Timestamp,
) -> Result<Option<RequestId>, StoreError> {
    let Some(ext) = tx.pending_extension(id).await? else { return Ok(None) };
    let fields = TransitionFields {
        decided_at: Some(now),
        ended_at: Some(now),
        detail: Some(format!("the access of request #{} was ended", id.get())),
        ..Default::default()
    };
    if !tx.transition(ext, RequestState::Cancelled, &fields, now).await? {
        return Ok(None);
    }
    schedule(tx, JobKind::Notify(NoticeKind::Cancelled), ext, now, now).await?;
    Ok(Some(ext))
}
