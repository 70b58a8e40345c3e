//! Asking for access: the role, the policy checks, the request and its
//! auto-approval.

#[allow(unused_imports)]
use super::*;

impl Service {
    pub(super) fn role(&self, name: &str) -> ServiceResult<(RoleName, crate::domain::RolePolicy, String)> {
        let unknown = || ServiceError::UnknownRole {
            role: name.to_owned(),
            known: self.config.roles.keys().cloned().collect::<Vec<_>>().join(", "),
        };
        let role = RoleName::parse(name).map_err(|_| unknown())?;
        let policy = self.config.role_policy(&role).ok_or_else(unknown)?;
        let provider = self.config.roles.get(role.as_str()).map(|r| r.provider.clone()).ok_or_else(unknown)?;
        Ok((role, policy, provider))
    }

    /// `/jit request`: checks the policy and creates a pending request.
    #[tracing::instrument(skip_all, fields(requester = %cmd.requester, role = %cmd.role))]
    pub async fn request(&self, cmd: RequestCommand, now: Timestamp) -> ServiceResult<AccessRequest> {
        if let Some(key) = &cmd.client_key
            && let Some(existing) = self.db.request_by_client_key(key).await?
        {
            return Ok(existing);
        }
        // Who asks comes first: someone who is not linked learns nothing
        // about the roles, and a linked person is only told the names of
        // the roles they may request.
        let Some(linked) = self.linked_identity(&cmd.requester).await? else { return Err(ServiceError::NotLinked) };
        let (role, policy, provider) = self.role(&cmd.role).map_err(|e| match e {
            ServiceError::UnknownRole { role, .. } => {
                let mine: Vec<String> =
                    self.requestable_roles(&linked).into_iter().map(|(p, _)| p.role.to_string()).collect();
                let known = if mine.is_empty() { "none that you may request".to_owned() } else { mine.join(", ") };
                ServiceError::UnknownRole { role, known }
            }
            other => other,
        })?;
        let step_up = self.config.roles.get(role.as_str()).and_then(|r| r.step_up);
        let requester = self.identity(&cmd.requester, Purpose::Request, step_up, now).await?;
        let duration = policy.check_request(&requester, cmd.duration, &cmd.reason)?;
        let ticket = policy.check_ticket(cmd.ticket.as_deref(), &cmd.reason)?;
        if let Some(existing) = self.db.open_request(&cmd.requester, &role).await? {
            return Err(ServiceError::AlreadyOpen { existing: Box::new(existing) });
        }
        let auto = self.auto_approval(&cmd.requester, &policy, &requester, duration, step_up, now).await?;
        let decide_by = match (&auto, policy.approval_timeout) {
            (None, Some(t)) => Some(now.plus(t)),
            _ => None,
        };
        self.check_requester_in_target(&role, &provider, &requester).await?;
        let mut tx = self.db.begin().await?;
        let new = NewRequest {
            requester: &requester,
            role: &role,
            provider: &provider,
            duration,
            reason: cmd.reason.trim(),
            ticket: ticket.as_deref(),
            approvals_required: policy.approvals_required,
            client_key: cmd.client_key.as_deref(),
            decide_by,
            extends: None,
        };
        let id = match tx.insert_request(&new, now).await {
            Ok(id) => id,
            Err(StoreError::Conflict) => {
                // Lost a race with a concurrent ask (or a retried delivery).
                tx.rollback().await?;
                if let Some(key) = &cmd.client_key
                    && let Some(existing) = self.db.request_by_client_key(key).await?
                {
                    return Ok(existing);
                }
                let existing = self.db.open_request(&cmd.requester, &role).await?;
                return Err(match existing {
                    Some(existing) => ServiceError::AlreadyOpen { existing: Box::new(existing) },
                    None => ServiceError::Unavailable,
                });
            }
            Err(e) => return Err(e.into()),
        };
        // Fix what the grant means in the target now (the login from the
        // requester's identity, the database role), so approvers approve and
        // the revocation removes exactly this, whatever the config says later.
        match GrantSpec::for_request(&self.config, &role, &requester, id) {
            Ok(Some(spec)) => tx.set_grant_spec(id, &spec.to_json()).await?,
            Ok(None) => {}
            Err(why) => {
                tx.rollback().await?;
                tracing::warn!(role = %role, reason = %why, "request refused: no usable grant for this requester");
                return Err(ServiceError::NotAllowed(Refusal::CannotBeGranted { role, why: why.to_string() }));
            }
        }
        let mut expires_at = None;
        if let Some(why) = &auto {
            let request = tx.request(id).await?.ok_or(ServiceError::NotFound(id))?;
            match self.let_through(&mut tx, &request, &Approval::Auto(why.clone()), &policy, now).await? {
                LetThrough::Done { expires_at: t, .. } => expires_at = Some(t),
                LetThrough::Lost | LetThrough::NothingToExtend(_) => return self.already_decided(tx, id).await,
            }
        } else {
            schedule(&mut tx, JobKind::Notify(NoticeKind::RequestCreated), id, now, now).await?;
            schedule_timeout(&mut tx, id, &policy, decide_by, now).await?;
        }
        let actor = Actor::Slack(cmd.requester.clone());
        let event = Event::RequestCreated {
            role: role.as_str(),
            provider: &provider,
            duration,
            reason: cmd.reason.trim(),
            ticket: ticket.as_deref(),
            approvals_required: policy.approvals_required,
            decide_by,
            requester: &requester,
        };
        audit::append(&mut tx, now, &actor, Some(id), event).await?;
        if let Some(why) = &auto {
            let event = Event::RequestAutoApproved { why, expires_at };
            audit::append(&mut tx, now, &Actor::System, Some(id), event).await?;
        }
        self.commit_wake_and_load(tx, id).await
    }

    /// Asks the role's provider whether the target knows `requester` (an
    /// Identity Center user, a directory entry), before anything is
    /// written: someone it does not know is refused now, with the target's
    /// reason, instead of after approvers said yes.
    async fn check_requester_in_target(
        &self,
        role: &RoleName,
        provider: &str,
        requester: &Identity,
    ) -> ServiceResult<()> {
        let Some(p) = self.providers.as_ref().and_then(|all| all.get(provider)) else { return Ok(()) };
        let user = GrantUser {
            email: requester.email.clone(),
            subject: requester.subject.clone(),
            slack_id: requester.slack.user_id().to_owned(),
        };
        match p.check_requester(&user).await {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::warn!(role = %role, provider, reason = %e.message, "request refused by its target");
                let why = if e.retryable {
                    format!(
                        "{provider} could not be asked whether it knows you ({}); nothing was changed, try again in a moment",
                        e.message
                    )
                } else {
                    e.message
                };
                Err(ServiceError::NotAllowed(Refusal::CannotBeGranted { role: role.clone(), why }))
            }
        }
    }

    /// Whether `requester` gets `duration` of `policy`'s role without
    /// approvers, and why. Nobody looks at an auto-approval, so the groups
    /// that qualify must be as fresh as an approver's: stale without a
    /// refresh token, the request simply goes to the approvers.
    pub(super) async fn auto_approval(
        &self,
        user: &SlackUser,
        policy: &RolePolicy,
        requester: &Identity,
        duration: AccessDuration,
        step_up: Option<Duration>,
        now: Timestamp,
    ) -> ServiceResult<Option<String>> {
        let Some(why) = policy.auto_approval(requester, duration) else { return Ok(None) };
        match self.identity(user, Purpose::AutoApprove, step_up, now).await {
            Ok(fresh) => Ok(policy.auto_approval(&fresh, duration).map(|w| w.to_string())),
            Err(ServiceError::SignInRequired { .. }) => {
                tracing::info!(%why, "groups too old for auto-approval; asking the approvers");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}
