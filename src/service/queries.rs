//! Read models for the transports: which roles a person may ask for, what
//! waits for their decision, their recent requests. Nothing here writes,
//! and nothing here decides: every use case checks the policy again (with
//! fresh groups) when the person acts.

use super::{Service, ServiceResult, requester_of};
use crate::domain::{AccessRequest, Identity, RequestId, RequestState, RoleName, RolePolicy, SlackUser, Timestamp};

/// How many ended requests "recent" shows.
pub const RECENT_LIMIT: i64 = 5;

impl Service {
    /// The identity `user` is linked to, however old the link: good for
    /// showing things (forms, lists), never for deciding.
    pub async fn linked_identity(&self, user: &SlackUser) -> ServiceResult<Option<Identity>> {
        Ok(match self.db.link(user).await? {
            Some(link) => Some(link.identity()?),
            None => None,
        })
    }

    /// The roles `identity` may request, with their descriptions, by name.
    pub fn requestable_roles(&self, identity: &Identity) -> Vec<(RolePolicy, String)> {
        self.config
            .roles
            .iter()
            .filter_map(|(name, role)| {
                let policy = self.config.role_policy(&RoleName::parse(name).ok()?)?;
                policy.check_requester(identity).is_ok().then(|| (policy, role.description.clone()))
            })
            .collect()
    }

    /// Pending requests `approver` may decide and has not decided yet,
    /// oldest first (by their current, possibly stale, groups).
    pub async fn awaiting_decision(&self, approver: &Identity) -> ServiceResult<Vec<AccessRequest>> {
        let mut out = Vec::new();
        for r in self.db.requests_in_states(&[RequestState::Pending]).await? {
            let may =
                self.config.role_policy(&r.role).is_some_and(|p| p.check_approver(approver, &requester_of(&r)).is_ok());
            if may && !self.db.approvals(r.id).await?.iter().any(|a| a.approver_id == approver.slack.user_id()) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The requests of `user` that ended most recently, newest first.
    pub async fn recent_requests(&self, user: &SlackUser) -> ServiceResult<Vec<AccessRequest>> {
        Ok(self.db.ended_requests_of(user, RECENT_LIMIT).await?)
    }

    /// Checks, without deciding, that `user` may decide on request `id` now
    /// (the same checks as Approve and Deny), so a form is only opened for
    /// someone whose decision would count.
    pub async fn may_decide(&self, id: RequestId, user: &SlackUser, now: Timestamp) -> ServiceResult<AccessRequest> {
        Ok(self.check_decider(id, user, now).await?.0)
    }

    /// Whether `user` may be offered break-glass on request `id`: their own
    /// pending request of a role that allows it. The full check (fresh
    /// groups, the reason) happens when they submit.
    pub async fn may_break_glass(&self, id: RequestId, user: &SlackUser) -> ServiceResult<(AccessRequest, usize)> {
        let request = self.load(id).await?;
        let policy = self.config.role_policy(&request.role).filter(|p| p.break_glass).ok_or_else(|| {
            super::ServiceError::Policy(crate::domain::PolicyError::BreakGlassNotAllowed { role: request.role.clone() })
        })?;
        if &request.requester != user {
            return Err(crate::domain::PolicyError::BreakGlassNotRequester.into());
        }
        if request.state != RequestState::Pending {
            return Err(super::ServiceError::AlreadyDecided { id, state: request.state });
        }
        Ok((request, policy.reason_min_length))
    }
}
