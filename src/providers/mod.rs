//! Providers apply and remove access in target systems, behind one trait.
//!
//! Contract every provider keeps: granting twice is one grant; revoking
//! something absent is success; a provider never removes access jitbot did
//! not give. A provider only ever sees an [`ApprovedGrant`], which the
//! service layer constructs after the policy said yes and the request
//! reached `granting`: there is no way to call `grant` on a whim.
//!
//! What a grant means in the target is fixed when the request is made: a
//! [`GrantSpec`] snapshot (the database role, the login, the command
//! arguments) is stored with the request and travels in the [`GrantTarget`],
//! so the revocation removes exactly what was granted even if the config
//! changed in between. Providers that can read the target's state say so
//! through [`Provider::inspect`]; the scheduler uses that, and
//! [`Provider::access_key`], to keep overlapping grants of the same access
//! as leases (see [`crate::store::LeaseStart`]).

pub mod aws_identity_center;
pub mod command;
pub mod ldap_group;
pub mod postgres;
pub mod spec;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use crate::config::{Config, ProviderConfig};
use crate::domain::{AccessRequest, RequestId, RoleName, Timestamp};

pub use aws_identity_center::AwsIdentityCenterProvider;
pub use command::CommandProvider;
pub use ldap_group::LdapGroupProvider;
pub use postgres::PostgresRoleProvider;
pub use spec::GrantSpec;
pub use webhook::WebhookProvider;

/// The person access is for, as providers see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantUser {
    /// Verified email from the IdP.
    pub email: String,
    /// IdP subject.
    pub subject: String,
    /// Slack user id.
    pub slack_id: String,
}

/// What to grant or revoke: the same facts for both, so a revocation removes
/// exactly what the grant applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantTarget {
    /// The request the access belongs to.
    pub request_id: RequestId,
    /// The role.
    pub role: RoleName,
    /// Who holds it.
    pub user: GrantUser,
    /// When it ends.
    pub expires_at: Timestamp,
    /// What the grant means in the target, as snapshotted when the request
    /// was made (`None` for providers that need nothing beyond the role name).
    pub spec: Option<GrantSpec>,
}

impl GrantTarget {
    /// Builds the target of a request that has an expiry (any request past
    /// approval), without a spec; see [`GrantTarget::with_spec`].
    pub(crate) fn of(request: &AccessRequest) -> Option<Self> {
        Some(Self {
            request_id: request.id,
            role: request.role.clone(),
            user: GrantUser {
                email: request.requester_email.clone(),
                subject: request.requester_subject.clone(),
                slack_id: request.requester.user_id().to_owned(),
            },
            expires_at: request.expires_at?,
            spec: None,
        })
    }

    /// Attaches the request's stored grant spec.
    pub fn with_spec(mut self, spec: Option<GrantSpec>) -> Self {
        self.spec = spec;
        self
    }

    /// Whether this is a one-time action (nothing to revoke).
    pub fn is_one_shot(&self) -> bool {
        self.spec.as_ref().is_some_and(GrantSpec::is_one_shot)
    }
}

/// A grant the workflow has approved. Only the service layer can make one
/// (the constructor is crate-private), so holding one is proof of approval.
#[derive(Debug, Clone)]
pub struct ApprovedGrant {
    target: GrantTarget,
}

impl ApprovedGrant {
    /// Wraps a target once the request is in `granting` and not expired.
    pub(crate) fn new(target: GrantTarget) -> Self {
        Self { target }
    }

    /// What is granted.
    pub fn target(&self) -> &GrantTarget {
        &self.target
    }
}

/// What a successful provider call has to say, for the audit trail (and,
/// for one-shot actions, for the requester).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderReport {
    /// Captured program output, already truncated.
    pub output: Option<String>,
    /// Short facts worth recording ("terminated 2 sessions of alice").
    pub notes: Vec<String>,
}

impl ProviderReport {
    /// A report with one note.
    pub fn note(note: impl Into<String>) -> Self {
        Self { output: None, notes: vec![note.into()] }
    }
}

/// Why a provider call failed. Messages are shown to approvers and stored in
/// audit rows: they never carry secrets.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    /// What went wrong, safe to show.
    pub message: String,
    /// Whether trying again may help (timeouts, 5xx) or not (a 4xx refusal).
    pub retryable: bool,
    /// Captured program output, already truncated, for the audit trail.
    pub output: Option<String>,
}

impl ProviderError {
    /// A failure that may go away (the target is down, a timeout).
    pub fn retryable(message: impl Into<String>) -> Self {
        Self { message: message.into(), retryable: true, output: None }
    }

    /// A failure that will not go away by itself (a missing role, a refusal).
    pub fn permanent(message: impl Into<String>) -> Self {
        Self { message: message.into(), retryable: false, output: None }
    }
}

/// What a provider that can read its target's state saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// The access exists in the target.
    Present,
    /// The access does not exist in the target.
    Absent,
    /// This provider cannot read state (webhook, command).
    Unknown,
}

/// Applies and removes access in one target system.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Applies `grant`. Must be idempotent.
    async fn grant(&self, grant: &ApprovedGrant, now: Timestamp) -> Result<ProviderReport, ProviderError>;

    /// Removes what `grant` applied. Absent access is success. Providers
    /// that can read state check afterwards that the access is really gone
    /// and fail (to be retried) if it is not.
    async fn revoke(&self, target: &GrantTarget, now: Timestamp) -> Result<ProviderReport, ProviderError>;

    /// An extension moved `target.expires_at` later. Providers whose target
    /// bounds access by itself update that bound; the default applies the
    /// grant again, which is idempotent and carries the new expiry.
    async fn extend(&self, target: &GrantTarget, now: Timestamp) -> Result<ProviderReport, ProviderError> {
        self.grant(&ApprovedGrant::new(target.clone()), now).await
    }

    /// Names the access in the target when several requests can map to the
    /// same thing (two roles granting `readonly` to the same login). The
    /// scheduler then keeps leases: the access is only removed when the last
    /// request holding it ends, and never when it existed before jitbot
    /// granted it. `None`: every grant is separate.
    fn access_key(&self, _target: &GrantTarget) -> Option<String> {
        None
    }

    /// Reads whether the access exists in the target now, for providers that
    /// can tell (pre-existing memberships, drift reconciliation).
    async fn inspect(&self, _target: &GrantTarget) -> Result<Presence, ProviderError> {
        Ok(Presence::Unknown)
    }

    /// Looks the requester up in the target before their request is made.
    /// Providers that hand access to an account the target already knows
    /// (an Identity Center user, a directory entry) refuse someone it does
    /// not know here, at `/jit request`, rather than when the grant runs
    /// after approval. Called outside any database transaction; a failure's
    /// message is shown to the requester as the reason.
    async fn check_requester(&self, _user: &GrantUser) -> Result<(), ProviderError> {
        Ok(())
    }

    /// Sets the password of a login this provider created for `target`,
    /// given as a SCRAM-SHA-256 verifier so the plain password never reaches
    /// the target. Only providers that create logins support it.
    async fn set_password(&self, _target: &GrantTarget, _scram_verifier: &str) -> Result<(), ProviderError> {
        Err(ProviderError::permanent("this provider does not hand out passwords"))
    }
}

/// The configured providers by name.
#[derive(Clone, Default)]
pub struct Providers {
    by_name: BTreeMap<String, Arc<dyn Provider>>,
}

impl Providers {
    /// Builds every `[providers.NAME]`. Database providers connect lazily,
    /// so a target that is down does not keep jitbot from starting.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let mut by_name: BTreeMap<String, Arc<dyn Provider>> = BTreeMap::new();
        for (name, p) in &config.providers {
            let provider: Arc<dyn Provider> = match p {
                ProviderConfig::Webhook(w) => Arc::new(WebhookProvider::new(w)?),
                ProviderConfig::Postgres(c) => Arc::new(PostgresRoleProvider::new(name, c)?),
                ProviderConfig::Command(c) => Arc::new(CommandProvider::new(c)),
                ProviderConfig::LdapGroup(c) => Arc::new(LdapGroupProvider::new(name, c)?),
                ProviderConfig::AwsIdentityCenter(c) => Arc::new(AwsIdentityCenterProvider::new(name, c)),
            };
            by_name.insert(name.clone(), provider);
        }
        Ok(Self { by_name })
    }

    /// The provider called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Provider>> {
        self.by_name.get(name).cloned()
    }

    /// Replaces or adds a provider (tests use this to wrap or fake targets).
    pub fn insert(&mut self, name: &str, provider: Arc<dyn Provider>) {
        self.by_name.insert(name.to_owned(), provider);
    }
}
