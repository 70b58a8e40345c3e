//! The use cases: request, approve, deny, break-glass, cancel, revoke, and
//! the administrator's link changes; ending a link with the access it
//! vouched for and SCIM deprovisioning ([`Service::remove_link`],
//! [`Service::deprovision`]), extending live access
//! ([`Service::extend`]), the kill switch ([`Service::revoke_all`]) and the
//! read models the transports show (roles I may request, what waits for
//! me) live in child modules.
//!
//! Each use case is one transaction that makes a conditional state change,
//! schedules the jobs that change implies (grant, revocation at expiry,
//! notices) and appends its audit event. Work that talks to other systems
//! never happens here: it happens in [`crate::jobs`], after commit. This
//! module knows nothing about Slack; transports parse their payloads into
//! these calls and render the results.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::Notify;

use crate::audit::{self, Actor, Event};
use crate::config::Config;
use crate::domain::{
    AccessDuration, AccessRequest, Decision, Identity, PolicyError, RequestId, RequestState, RoleName, RolePolicy,
    SlackUser, Timestamp,
};
use crate::job_kinds::{JobKind, REVOKE_OVERDUE_AFTER};
use crate::notify::NoticeKind;
use crate::providers::GrantSpec;
use crate::store::{Db, NewRequest, StoreError, TransitionFields, Tx};

mod audit_seal;
mod authority;
mod cards;
mod credentials;
mod extension;
mod identity_links;
mod job_outcomes;
mod kill_switch;
mod provisioning;
mod queries;
mod reconcile;
mod refusal;
mod review;
mod sign_in;

pub use authority::AdminProof;
use authority::Decider;
pub use cards::PostedCard;
pub use credentials::{CredentialsLink, IssuedLink, PasswordOutcome, UsableLink};
pub use extension::{ExtendCommand, ExtendOutcome};
pub use identity_links::{LinkForRefresh, LinkRefresh, ScimPerson, UnlinkOutcome};
pub use job_outcomes::{OverdueCheck, RevokeStart};
pub use kill_switch::{REVOKE_ALL_REASON_MIN, RevokeAllOutcome};
pub use provisioning::{ScimLookup, ScimResource, ScimResourceWrite, ScimWriteOutcome};
pub use queries::{LinkSummary, RECENT_LIMIT};
pub use reconcile::ReconcileFinding;
pub use refusal::Refusal;
pub use review::REVIEW_NOTE_MIN;
pub use sign_in::{LinkToken, OidcLogin};

/// Why a use case refused or failed. `Display` is written for the person who
/// acted; internal causes are logged, not shown.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The acting Slack user has no identity link.
    #[error("you have not linked your Slack account to your company identity yet")]
    NotLinked,
    /// No such role in the config.
    #[error("there is no role called {role:?} (roles: {known})")]
    UnknownRole {
        /// What was asked for.
        role: String,
        /// What exists.
        known: String,
    },
    /// The policy said no.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The person already has an open request for the role.
    #[error("{}", describe_open(.existing))]
    AlreadyOpen {
        /// The open request.
        existing: Box<AccessRequest>,
    },
    /// No such request.
    #[error("there is no request {0}")]
    NotFound(RequestId),
    /// The request is no longer in a state where this is possible.
    #[error("request {id} is already {}", .state.describe())]
    AlreadyDecided {
        /// The request.
        id: RequestId,
        /// Where it is now.
        state: RequestState,
    },
    /// This approver already decided on this request.
    #[error("you already decided on request {0}")]
    AlreadyVoted(RequestId),
    /// The actor may not do this.
    #[error("{0}")]
    NotAllowed(Refusal),
    /// The person must sign in at the IdP (again): the link is stale, or the
    /// role needs a recent authentication. The transport offers a sign-in button.
    #[error("{reason}")]
    SignInRequired {
        /// Why, for the person.
        reason: String,
        /// How recent the authentication must be (step-up), if that is the reason.
        max_age: Option<Duration>,
    },
    /// The person's groups are being re-checked with the IdP (a refresh job
    /// was scheduled); asking again shortly will use the fresh groups.
    #[error(
        "jitbot is re-checking your groups with the identity provider; please try again in a few seconds \
         (if this keeps happening, the identity provider may be unreachable)"
    )]
    GroupsRefreshing,
    /// The kill switch is engaged: nothing is granted until an
    /// administrator releases it.
    #[error(
        "all access was revoked by {by} ({reason}) and jitbot grants nothing until an administrator releases the kill switch \
         (`/jit unfreeze <reason>` or `jitbot unfreeze`); nothing was changed"
    )]
    KillSwitchEngaged {
        /// Who engaged it.
        by: String,
        /// What they said.
        reason: String,
    },
    /// The database is busy or unreachable; nothing was written.
    #[error("jitbot is busy right now and nothing was changed: please try again in a moment")]
    Unavailable,
    /// An internal failure; details are in the log.
    #[error("something went wrong inside jitbot; the administrators can find the details in its log")]
    Internal(#[source] StoreError),
}

fn describe_open(r: &AccessRequest) -> String {
    match (r.state, r.expires_at) {
        (RequestState::Active, Some(t)) => {
            format!("you already have {} access until {t} (request {})", r.role, r.id)
        }
        (RequestState::Pending, _) => {
            format!("you already have request {} for {} waiting for approval", r.id, r.role)
        }
        (state, _) => format!("you already have request {} for {} ({})", r.id, r.role, state.describe()),
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                ServiceError::Unavailable
            }
            other => {
                tracing::error!(error = ?other, "store error");
                ServiceError::Internal(other)
            }
        }
    }
}

/// Shorthand.
pub type ServiceResult<T> = Result<T, ServiceError>;

/// How long a `/jit link` sign-in link works.
pub const LINK_TOKEN_TTL: Duration = Duration::from_secs(600);

/// What an identity is about to be used for; decides how fresh it must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// Asking for access: the link must be within `link_max_age`.
    Request,
    /// Approving, denying, revoking others: groups within `groups_max_age`.
    Decide,
    /// Being auto-approved: the groups that qualify must be as fresh as an
    /// approver's, since no approver looks at them.
    AutoApprove,
}

/// A request as asked for, already parsed from its transport.
#[derive(Debug, Clone)]
pub struct RequestCommand {
    /// Who asks.
    pub requester: SlackUser,
    /// Which role (as typed; checked against the config here).
    pub role: String,
    /// How long, if said; the role's default otherwise.
    pub duration: Option<AccessDuration>,
    /// Why.
    pub reason: String,
    /// Optional ticket reference.
    pub ticket: Option<String>,
    /// The delivery's idempotency key: a retried delivery returns the first
    /// delivery's request instead of making a second one.
    pub client_key: Option<String>,
}

/// What an approval did.
#[derive(Debug, Clone)]
pub enum ApprovalOutcome {
    /// Recorded; more approvals are needed.
    Recorded {
        /// The request.
        request: AccessRequest,
        /// Approvals so far.
        approvals: u32,
    },
    /// That was the last approval needed: grant and revocation are scheduled.
    Approved(AccessRequest),
}

/// The use cases, over a database, the config and a wake-up for the scheduler.
#[derive(Clone)]
pub struct Service {
    db: Db,
    config: Arc<Config>,
    wake: Wake,
}

/// Wakes schedulers after a commit that wrote jobs: this process's at once,
/// and on PostgreSQL every other replica's (see [`Db::announce_jobs`]), so
/// whichever replica took the Slack request, an idle one may run the job.
#[derive(Clone)]
struct Wake {
    local: Arc<Notify>,
    db: Db,
}

impl Wake {
    fn notify_one(&self) {
        self.local.notify_one();
        self.db.announce_jobs();
    }
}

impl Service {
    /// Commits `tx`, which wrote jobs, and wakes the schedulers.
    pub(crate) async fn commit_and_wake(&self, tx: Tx) -> Result<(), StoreError> {
        tx.commit().await?;
        self.wake.notify_one();
        Ok(())
    }

    /// [`Service::commit_and_wake`], then reads request `id` as it now is.
    async fn commit_wake_and_load(&self, tx: Tx, id: RequestId) -> ServiceResult<AccessRequest> {
        self.commit_and_wake(tx).await?;
        self.load(id).await
    }
}

impl Service {
    /// Builds the service. `wake` is notified after every commit that
    /// scheduled jobs, so the scheduler does not wait for its next timer.
    pub fn new(db: Db, config: Arc<Config>, wake: Arc<Notify>) -> Self {
        let wake = Wake { local: wake, db: db.clone() };
        Self { db, config, wake }
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The identity behind `user`, if it is fresh enough for `purpose`.
    /// Without `[idp]`, links are made by hand and never go stale.
    async fn identity(
        &self,
        user: &SlackUser,
        purpose: Purpose,
        step_up: Option<Duration>,
        now: Timestamp,
    ) -> ServiceResult<Identity> {
        let link = self.db.link(user).await?.ok_or(ServiceError::NotLinked)?;
        if let Some(idp) = &self.config.idp {
            let max_age = match purpose {
                Purpose::Request => idp.link_max_age,
                Purpose::Decide | Purpose::AutoApprove => idp.groups_max_age.min(idp.link_max_age),
            };
            // A step-up role needs a recent authentication at the IdP, which
            // only a new sign-in (with max_age) can give.
            let step_up_missing = step_up.filter(|s| link.auth_time().is_none_or(|t| t.plus(*s) < now));
            if link.confirmed_at().plus(max_age) < now {
                if link.refresh_token.is_some() && step_up_missing.is_none() {
                    self.schedule_refresh(user, now).await?;
                    return Err(ServiceError::GroupsRefreshing);
                }
                return Err(ServiceError::SignInRequired {
                    reason: format!(
                        "your sign-in with {} is more than {} old; sign in again to continue",
                        idp.display_name,
                        humantime::format_duration(max_age)
                    ),
                    max_age: step_up_missing,
                });
            }
            if let Some(step_up) = step_up_missing {
                return Err(ServiceError::SignInRequired {
                    reason: format!(
                        "this role needs you to have signed in with {} within the last {}; sign in again to continue",
                        idp.display_name,
                        humantime::format_duration(step_up)
                    ),
                    max_age: Some(step_up),
                });
            }
        }
        Ok(link.identity()?)
    }

    /// Schedules one group refresh for `user`, unless one is already queued or running.
    async fn schedule_refresh(&self, user: &SlackUser, now: Timestamp) -> ServiceResult<()> {
        let payload = crate::job_kinds::PersonPayload::json(user, None);
        let mut tx = self.db.begin().await?;
        if !tx.person_job_pending(JobKind::RefreshLink.name(), &payload).await? {
            tx.insert_job(JobKind::RefreshLink.name(), None, &payload, now, now).await?;
        }
        self.commit_and_wake(tx).await?;
        Ok(())
    }

    /// Issues a single-use sign-in link token for `user` (stored hashed),
    /// valid for [`LINK_TOKEN_TTL`]. `max_age` asks the IdP for a fresh
    /// authentication (step-up).
    pub async fn start_link(
        &self,
        user: &SlackUser,
        max_age: Option<Duration>,
        now: Timestamp,
    ) -> ServiceResult<String> {
        // Housekeeping rides along with the writes it cleans up after.
        if let Err(e) = self.db.purge_expired_sign_ins(now).await {
            tracing::debug!(error = %e, "could not purge expired sign-ins");
        }
        let token = crate::domain::random_token();
        let max_age_ms = max_age.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        self.db
            .insert_link_token(&crate::domain::hash_token(&token), user, max_age_ms, now, now.plus(LINK_TOKEN_TTL))
            .await?;
        Ok(token)
    }

    /// Stores the link a verified OIDC sign-in established, consuming its
    /// link token; DMs the person the result.
    pub async fn link_from_oidc(
        &self,
        token_hash: &str,
        identity: &Identity,
        auth_time: Option<Timestamp>,
        sealed_refresh_token: Option<&str>,
        groups_claim_missing: bool,
        now: Timestamp,
    ) -> ServiceResult<()> {
        self.check_may_link(identity).await?;
        let mut tx = self.db.begin().await?;
        if !tx.consume_link_token(token_hash, now).await? {
            tx.rollback().await?;
            return Err(ServiceError::NotAllowed(Refusal::SignInLinkUsed));
        }
        tx.upsert_link_with(identity, "oidc", auth_time, sealed_refresh_token, now).await?;
        tx.set_groups_claim_missing(&identity.slack, groups_claim_missing).await?;
        let groups = identity.groups.iter().cloned().collect::<Vec<_>>().join(", ");
        let groups = match (groups_claim_missing, &self.config.idp) {
            (true, Some(idp)) => crate::domain::policy::missing_groups_note(&idp.groups_claim),
            _ if groups.is_empty() => "none".to_owned(),
            _ => groups,
        };
        let text = format!("Linked as {} — groups: {}.", identity.email, groups);
        schedule_dm(&mut tx, &identity.slack, &text, now).await?;
        let event = Event::LinkSignedIn { identity, groups_claim_missing, auth_time };
        audit::append(&mut tx, now, &Actor::Slack(identity.slack.clone()), None, event).await?;
        self.commit_and_wake(tx).await?;
        Ok(())
    }

    fn role(&self, name: &str) -> ServiceResult<(RoleName, crate::domain::RolePolicy, String)> {
        let unknown = || ServiceError::UnknownRole {
            role: name.to_owned(),
            known: self.config.roles.keys().cloned().collect::<Vec<_>>().join(", "),
        };
        let role = RoleName::parse(name).map_err(|_| unknown())?;
        let policy = self.config.role_policy(&role).ok_or_else(unknown)?;
        let provider = self.config.roles.get(role.as_str()).map(|r| r.provider.clone()).ok_or_else(unknown)?;
        Ok((role, policy, provider))
    }

    async fn load(&self, id: RequestId) -> ServiceResult<AccessRequest> {
        self.db.request(id).await?.ok_or(ServiceError::NotFound(id))
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

    /// Loads what a decider needs and checks the policy (again, at decision
    /// time: group membership may have changed since the request).
    async fn check_decider(&self, id: RequestId, approver: &SlackUser, now: Timestamp) -> ServiceResult<Decider> {
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

    async fn already_decided<T>(&self, tx: Tx, id: RequestId) -> ServiceResult<T> {
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
    async fn end_requests<'r>(
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

    async fn is_one_shot(&self, tx: &mut Tx, id: RequestId) -> ServiceResult<bool> {
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

    /// Whether `requester` gets `duration` of `policy`'s role without
    /// approvers, and why. Nobody looks at an auto-approval, so the groups
    /// that qualify must be as fresh as an approver's: stale without a
    /// refresh token, the request simply goes to the approvers.
    async fn auto_approval(
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

    /// Moves a pending request on once it is approved (by its approvers,
    /// the auto-approval rule or a break-glass), inside `tx`. An ordinary
    /// request enters `granting` with its grant, revocation and expiry
    /// warning scheduled; an extension moves the expiry of the request it
    /// extends, reschedules that request's revocation and warning, and ends
    /// `extended`. The caller appends the audit events and commits.
    async fn let_through(
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
        tx.insert_job(JobKind::ExtendGrant.name(), Some(parent), &payload, now, now).await?;
        schedule(tx, JobKind::Notify(kind), id, now, now).await?;
        schedule(tx, JobKind::Notify(NoticeKind::Extended), parent, now, now).await?;
        Ok(LetThrough::Done { expires_at: to, extended: Some((parent, from)) })
    }

    /// Finishes a decision whose extension found nothing left to extend:
    /// the cancellation [`Service::let_through`] wrote is committed with its
    /// audit event, and the decider is told.
    async fn nothing_to_extend<T>(
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

    /// Creates or replaces an identity link by hand (`jitbot link add`).
    /// Refused for an identity SCIM deprovisioned, and for an email that
    /// another person's link holds.
    pub async fn add_link(&self, identity: &Identity, actor: &Actor, now: Timestamp) -> ServiceResult<()> {
        self.check_may_link(identity).await?;
        self.check_email_free(identity).await?;
        let mut tx = self.db.begin().await?;
        tx.upsert_link(identity, "admin", now).await?;
        audit::append(&mut tx, now, actor, None, Event::LinkAddedByAdmin { identity }).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Writes a direct message to one person into the transaction.
pub(crate) async fn schedule_dm(tx: &mut Tx, user: &SlackUser, text: &str, now: Timestamp) -> Result<(), StoreError> {
    let payload = crate::job_kinds::PersonPayload::json(user, Some(text));
    tx.insert_job(JobKind::DirectMessage.name(), None, &payload, now, now).await?;
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

/// How a pending request was let through.
#[derive(Debug, Clone)]
enum Approval {
    /// Its approvers reached the number needed.
    Approvers,
    /// The role's auto-approval rule, and why it applied.
    Auto(String),
    /// The requester's break-glass, with its reason.
    BreakGlass(String),
}

/// What [`Service::let_through`] did.
#[derive(Debug, Clone)]
enum LetThrough {
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
async fn audit_extension(
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

/// Cancels the pending extension of a request whose access is ending early.
async fn cancel_pending_extension(tx: &mut Tx, id: RequestId, now: Timestamp) -> Result<Option<RequestId>, StoreError> {
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

/// Schedules the timeout of a pending request (and the reminder halfway,
/// when the role has an approval timeout).
async fn schedule_timeout(
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
async fn schedule_expiry(
    tx: &mut Tx,
    id: RequestId,
    expires_at: Timestamp,
    warn_before: Duration,
    now: Timestamp,
) -> Result<(), StoreError> {
    let payload = json!({"expires_at": expires_at.millis()}).to_string();
    tx.insert_job(JobKind::Revoke.name(), Some(id), &payload, expires_at, now).await?;
    // People are alerted if access still exists a minute after it should have ended.
    let overdue_at = expires_at.plus(REVOKE_OVERDUE_AFTER);
    tx.insert_job(JobKind::OverdueCheck.name(), Some(id), &payload, overdue_at, now).await?;
    let warn_at = expires_at.minus(warn_before);
    if !warn_before.is_zero() && warn_at > now {
        tx.insert_job(JobKind::WarnExpiry.name(), Some(id), &payload, warn_at, now).await?;
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
    tx.insert_job(kind.name(), Some(id), &kind.payload(), due, now).await?;
    Ok(())
}
