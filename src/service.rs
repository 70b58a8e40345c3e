//! The use cases and read models, the only door to the store. This file
//! holds what they share (the service handle, its errors, commit-and-wake);
//! each family lives in a child module: `identity` (who is asking, links),
//! `request` (asking), `decide` (approve, deny, break-glass, letting an
//! approved request through), `revoke` (cancel, early revoke, group
//! removal, retries), `outbox` (the jobs a transition writes), and
//! `extension`, `kill_switch`, `identity_links`, `provisioning`, `sign_in`,
//! `credentials`, `reconcile`, `job_reads`, `job_outcomes`, `cards`, `home_tabs`, `review`,
//! `audit_seal`, `queries` (the read models the transports show) and
//! `report` (the access report over a period).
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
use crate::providers::{GrantSpec, GrantUser, Providers};
use crate::store::{Db, NewRequest, StoreError, TransitionFields, Tx};

mod audit_seal;
mod authority;
mod cards;
mod credentials;
mod decide;
mod extension;
mod home_tabs;
mod identity;
mod identity_links;
mod job_outcomes;
mod job_reads;
mod kill_switch;
mod outbox;
mod provisioning;
mod queries;
mod reconcile;
mod refusal;
mod report;
mod request;
mod review;
mod revoke;
mod sign_in;

/// What a revocation's and a grant's lease step decided, as the job handlers see it.
pub use crate::store::{LeaseRelease, LeaseStart};
pub use authority::AdminProof;
use authority::Decider;
pub use cards::PostedCard;
pub use credentials::{CredentialsLink, IssuedLink, PasswordOutcome, UsableLink};
use decide::{Approval, LetThrough, audit_extension};
pub use extension::{ExtendCommand, ExtendOutcome};
pub use home_tabs::{HOME_REDRAW_DELAY, REVOCATION_LINES_PER_MINUTE, RevocationLine};
pub use identity_links::{LinkForRefresh, LinkRefresh, ScimPerson, UnlinkOutcome};
pub use job_outcomes::{OverdueCheck, RevokeStart};
pub use kill_switch::{REVOKE_ALL_REASON_MIN, RevokeAllOutcome};
pub(crate) use outbox::{insert_job, requester_of, schedule, schedule_dm};
use outbox::{schedule_expiry, schedule_timeout};
pub use provisioning::{ScimLookup, ScimResource, ScimResourceWrite, ScimWriteOutcome};
pub use queries::{AWAITING_LIMIT, LinkSummary, ListedLink, RECENT_LIMIT};
pub use reconcile::ReconcileFinding;
pub use refusal::Refusal;
pub use review::REVIEW_NOTE_MIN;
use revoke::cancel_pending_extension;
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
    #[error("jitbot is busy right now; nothing was changed — try again in a moment")]
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
    /// The providers, for the checks a request makes in its target before
    /// it is written (see [`crate::providers::Provider::check_requester`]);
    /// `None` for the CLI, which makes no requests.
    providers: Option<Providers>,
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
        Self { db, config, wake, providers: None }
    }

    /// The service with the providers requests are checked against.
    pub fn with_providers(mut self, providers: Providers) -> Self {
        self.providers = Some(providers);
        self
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    async fn load(&self, id: RequestId) -> ServiceResult<AccessRequest> {
        self.db.request(id).await?.ok_or(ServiceError::NotFound(id))
    }
}
