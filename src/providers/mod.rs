//! Providers apply and remove access in target systems, behind one trait.
//!
//! Contract every provider keeps: granting twice is one grant; revoking
//! something absent is success; a provider never removes access jitbot did
//! not give. A provider only ever sees an [`ApprovedGrant`], which the
//! service layer constructs after the policy said yes and the request
//! reached `granting`: there is no way to call `grant` on a whim.

pub mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use crate::config::{Config, ProviderConfig};
use crate::domain::{AccessRequest, RequestId, RoleName, Timestamp};

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
}

impl GrantTarget {
    /// Builds the target of a request that has an expiry (any request past approval).
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
        })
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

/// Why a provider call failed. Messages are shown to approvers and stored in
/// audit rows: they never carry secrets.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    /// What went wrong, safe to show.
    pub message: String,
    /// Whether trying again may help (timeouts, 5xx) or not (a 4xx refusal).
    pub retryable: bool,
}

/// Applies and removes access in one target system.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Applies `grant`. Must be idempotent.
    async fn grant(&self, grant: &ApprovedGrant, now: Timestamp) -> Result<(), ProviderError>;
    /// Removes what `grant` applied. Absent access is success.
    async fn revoke(&self, target: &GrantTarget, now: Timestamp) -> Result<(), ProviderError>;
}

/// The configured providers by name.
#[derive(Clone, Default)]
pub struct Providers {
    by_name: BTreeMap<String, Arc<dyn Provider>>,
}

impl Providers {
    /// Builds every `[providers.NAME]`.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let mut by_name: BTreeMap<String, Arc<dyn Provider>> = BTreeMap::new();
        for (name, p) in &config.providers {
            let provider: Arc<dyn Provider> = match p {
                ProviderConfig::Webhook(w) => Arc::new(WebhookProvider::new(w)?),
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
