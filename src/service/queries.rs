//! Read models for the transports: which roles a person may ask for, what
//! waits for their decision, their open and recent requests, the decisions
//! on a request, what `/jit whoami` shows. Nothing here writes,
//! and nothing here decides: every use case checks the policy again (with
//! fresh groups) when the person acts.

use super::{Service, ServiceResult, requester_of};
use crate::domain::{AccessRequest, Approval, Identity, RequestId, RequestState, RolePolicy, SlackUser, Timestamp};

/// One identity link as `jitbot link list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedLink {
    /// The Slack user.
    pub slack: SlackUser,
    /// `admin` (made with `jitbot link add`) or `oidc`.
    pub source: String,
    /// Who the IdP says they are.
    pub summary: LinkSummary,
}

/// How many ended requests "recent" shows.
pub const RECENT_LIMIT: i64 = 5;

/// How many requests "waiting for your approval" reads at most: lists show
/// the oldest few and say how many more there are, counted up to this.
pub const AWAITING_LIMIT: i64 = 200;

/// A person's link as `/jit whoami` shows it: who the IdP says they are and
/// what it last said about them, however old. For showing, never deciding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSummary {
    /// Verified email.
    pub email: String,
    /// IdP subject.
    pub subject: String,
    /// IdP issuer.
    pub issuer: String,
    /// The groups, sorted (empty if the stored list cannot be read).
    pub groups: Vec<String>,
    /// The kept claims login templates read, by name (empty if unreadable).
    pub claims: Vec<(String, String)>,
    /// The IdP sent no groups claim last time, so the empty groups say
    /// nothing about the person.
    pub missing_groups_claim: bool,
    /// When the groups were last confirmed.
    pub confirmed_at: Timestamp,
}

impl Service {
    /// The identity `user` is linked to, however old the link: good for
    /// showing things (forms, lists), never for deciding.
    pub async fn linked_identity(&self, user: &SlackUser) -> ServiceResult<Option<Identity>> {
        Ok(match self.db.link(user).await? {
            Some(link) => Some(link.identity()?),
            None => None,
        })
    }

    /// `user`'s link as `/jit whoami` shows it, or `None` if they have none.
    pub async fn link_summary(&self, user: &SlackUser) -> ServiceResult<Option<LinkSummary>> {
        Ok(self.db.link(user).await?.map(|link| LinkSummary {
            groups: link.groups().map(|g| g.into_iter().collect()).unwrap_or_default(),
            claims: link.claims().unwrap_or_default().into_iter().collect(),
            missing_groups_claim: link.missing_groups_claim(),
            confirmed_at: link.confirmed_at(),
            email: link.email,
            subject: link.subject,
            issuer: link.issuer,
        }))
    }

    /// Every identity link, by workspace and user, for operators. A link
    /// whose stored groups or claims cannot be read is an error, not an
    /// empty list: an operator reading this must not be misled.
    pub async fn all_links(&self) -> ServiceResult<Vec<ListedLink>> {
        let mut out = Vec::new();
        for link in self.db.links().await? {
            let identity = link.identity()?;
            out.push(ListedLink {
                slack: identity.slack,
                source: link.source.clone(),
                summary: LinkSummary {
                    groups: identity.groups.into_iter().collect(),
                    claims: identity.claims.into_iter().collect(),
                    missing_groups_claim: link.missing_groups_claim(),
                    confirmed_at: link.confirmed_at(),
                    email: link.email,
                    subject: link.subject,
                    issuer: link.issuer,
                },
            });
        }
        Ok(out)
    }

    /// Request `id` as it is now, if there is one.
    pub async fn find_request(&self, id: RequestId) -> ServiceResult<Option<AccessRequest>> {
        Ok(self.db.request(id).await?)
    }

    /// The open requests of `user` (pending or holding access), oldest
    /// first, as the lists and the home tab show them.
    pub async fn open_requests(&self, user: &SlackUser) -> ServiceResult<Vec<AccessRequest>> {
        Ok(self.db.open_requests_of(user).await?)
    }

    /// The decisions on request `id` so far, in order.
    pub async fn approvals(&self, id: RequestId) -> ServiceResult<Vec<Approval>> {
        Ok(self.db.approvals(id).await?)
    }

    /// How many requests are in any of `states` (for a confirmation that
    /// says what an action would touch).
    pub async fn count_in_states(&self, states: &[RequestState]) -> ServiceResult<usize> {
        Ok(self.db.requests_in_states(states).await?.len())
    }

    /// The roles `identity` may request, with their descriptions, by name.
    pub fn requestable_roles(&self, identity: &Identity) -> Vec<(RolePolicy, String)> {
        self.config
            .roles
            .iter()
            .filter_map(|(name, role)| {
                let policy = self.config.role_policy(name)?;
                policy.check_requester(identity).is_ok().then(|| (policy, role.description.clone()))
            })
            .collect()
    }

    /// Pending requests `approver` may decide and has not decided yet,
    /// oldest first (by their current, possibly stale, groups), at most
    /// [`AWAITING_LIMIT`]. The database filters by the roles they approve,
    /// their own requests and their decisions (one indexed query, however
    /// long the backlog); the policy then checks each of the few rows left
    /// exactly as deciding would.
    pub async fn awaiting_decision(&self, approver: &Identity) -> ServiceResult<Vec<AccessRequest>> {
        let roles: Vec<&str> = self
            .config
            .roles
            .keys()
            .filter(|name| {
                self.config.role_policy(name).is_some_and(|p| p.approvers.iter().any(|g| approver.groups.contains(g)))
            })
            .map(|name| name.as_str())
            .collect();
        let candidates = self
            .db
            .pending_for_approver(&roles, &approver.slack, &approver.issuer, &approver.subject, AWAITING_LIMIT)
            .await?;
        Ok(candidates
            .into_iter()
            .filter(|r| {
                self.config.role_policy(&r.role).is_some_and(|p| p.check_approver(approver, &requester_of(r)).is_ok())
            })
            .collect())
    }

    /// The requests of `user` that ended most recently, newest first.
    pub async fn recent_requests(&self, user: &SlackUser) -> ServiceResult<Vec<AccessRequest>> {
        Ok(self.db.ended_requests_of(user, RECENT_LIMIT).await?)
    }

    /// Checks, without deciding, that `user` may decide on request `id` now
    /// (the same checks as Approve and Deny), so a form is only opened for
    /// someone whose decision would count.
    pub async fn may_decide(&self, id: RequestId, user: &SlackUser, now: Timestamp) -> ServiceResult<AccessRequest> {
        Ok(self.check_decider(id, user, now).await?.request)
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
