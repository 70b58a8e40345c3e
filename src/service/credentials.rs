//! The one-time credentials page's use cases: issuing a link when access
//! to a jitbot-created login becomes active, reading a link, and the
//! claim -> provider call -> audit of setting the password. The page
//! (`crate::credentials`) renders; this decides and records.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;

use super::{Service, ServiceResult};
use crate::audit::{self, Actor, Event};
use crate::domain::{AccessRequest, RequestId, RequestState, Timestamp, hash_token};
use crate::providers::postgres::scram;
use crate::providers::{GrantSpec, ProviderError, Providers, spec::PostgresGrantSpec};

/// A link that was issued.
#[derive(Debug, Clone)]
pub struct IssuedLink {
    /// The full URL (contains the token: never log it).
    pub url: String,
    /// The login it sets a password for.
    pub login: String,
}

/// What a credentials link is, as the page asks before anything else.
#[derive(Debug, Clone)]
pub enum CredentialsLink {
    /// No such link.
    Unknown,
    /// It was used: the password was shown once.
    Used,
    /// A newer link for the same access replaced it.
    Superseded,
    /// It expired with the access it was for.
    Expired,
    /// The access it was for is no longer active.
    Ended,
    /// The access has no jitbot-created login.
    NoLogin,
    /// Usable by its requester (the page still checks who is at the browser).
    Usable(Box<UsableLink>),
}

/// A usable link: its request is active and has a login to set.
#[derive(Debug, Clone)]
pub struct UsableLink {
    /// The token's hash (what claims it).
    pub hash: String,
    /// The request, active.
    pub request: AccessRequest,
    /// The login's grant spec.
    pub spec: PostgresGrantSpec,
    /// The workspace the link was issued to.
    pub team_id: String,
    /// The Slack user the link was issued to.
    pub user_id: String,
}

/// What pressing "Set and show the password" did.
#[derive(Debug)]
pub enum PasswordOutcome {
    /// The link was used meanwhile (of two concurrent posts only one wins).
    AlreadyUsed,
    /// The target refused; the link was given back so the requester can try again.
    NotSet(ProviderError),
    /// The password, to show once.
    Set(String),
}

fn ephemeral_spec(spec: Option<String>) -> Option<PostgresGrantSpec> {
    match GrantSpec::from_json(&spec?).ok()? {
        GrantSpec::Postgres(p) if p.ephemeral => Some(p),
        _ => None,
    }
}

impl Service {
    /// Issues a fresh link for an active request with a jitbot-created login
    /// (`None` for any other request). Called when the "access is active" DM is
    /// sent; a retried DM issues a new link and retires the old one.
    pub async fn issue_credentials_link(
        &self,
        request: &AccessRequest,
        public_url: &str,
        now: Timestamp,
    ) -> ServiceResult<Option<IssuedLink>> {
        if request.state != RequestState::Active {
            return Ok(None);
        }
        let (Some(spec), Some(expires_at)) =
            (ephemeral_spec(self.db.grant_spec(request.id).await?), request.expires_at)
        else {
            return Ok(None);
        };
        let bytes: [u8; 32] = rand::rng().random();
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let mut tx = self.db.begin().await?;
        tx.insert_credential_token(&hash_token(&token), request.id, &request.requester, expires_at, now).await?;
        let event = Event::CredentialsLinkIssued { login: spec.login.as_str(), valid_until: expires_at };
        audit::append(&mut tx, now, &Actor::System, Some(request.id), event).await?;
        tx.commit().await?;
        Ok(Some(IssuedLink {
            url: format!("{}/credentials/{token}", public_url.trim_end_matches('/')),
            login: spec.login.as_str().to_owned(),
        }))
    }

    /// What the credentials link with this token is now. Changes nothing.
    pub async fn credentials_link(&self, token: &str, now: Timestamp) -> ServiceResult<CredentialsLink> {
        let hash = hash_token(token);
        let Some(row) = self.db.credential_token(&hash).await? else { return Ok(CredentialsLink::Unknown) };
        if row.used_at.is_some() {
            return Ok(CredentialsLink::Used);
        }
        if row.superseded_at.is_some() {
            return Ok(CredentialsLink::Superseded);
        }
        if row.expires_at <= now.millis() {
            return Ok(CredentialsLink::Expired);
        }
        let request =
            self.db.request(RequestId::new(row.request_id)).await?.filter(|r| r.state == RequestState::Active);
        let Some(request) = request else { return Ok(CredentialsLink::Ended) };
        let Some(spec) = ephemeral_spec(self.db.grant_spec(request.id).await?) else {
            return Ok(CredentialsLink::NoLogin);
        };
        Ok(CredentialsLink::Usable(Box::new(UsableLink {
            hash,
            request,
            spec,
            team_id: row.team_id,
            user_id: row.user_id,
        })))
    }

    /// Claims the link, makes a fresh random password, sends the target only
    /// its SCRAM verifier and audits it. The claim commits first, so of two
    /// concurrent posts only one gets a password; a refused password gives
    /// the link back. A password that was set is shown even if its audit
    /// event could not be written (the target already has it).
    pub async fn set_credentials_password(
        &self,
        link: &UsableLink,
        providers: &Providers,
        now: Timestamp,
    ) -> ServiceResult<PasswordOutcome> {
        let mut tx = self.db.begin().await?;
        let claimed = tx.claim_credential_token(&link.hash, now).await?;
        tx.commit().await?;
        if !claimed {
            return Ok(PasswordOutcome::AlreadyUsed);
        }
        let (password, verifier) = scram::new_password();
        let result = match (self.grant_target(&link.request).await, providers.get(&link.request.provider)) {
            (Ok(Some(target)), Some(provider)) => provider.set_password(&target, &verifier).await,
            (Err(e), _) => Err(e),
            _ => Err(ProviderError::permanent("the provider of this access is not configured")),
        };
        if let Err(e) = result {
            tracing::warn!(request_id = link.request.id.get(), error = %e, "could not set a password from the credentials page");
            let released = async {
                let mut tx = self.db.begin().await?;
                tx.unclaim_credential_token(&link.hash, now).await?;
                tx.commit().await
            };
            if let Err(e) = released.await {
                tracing::warn!(error = %e, "could not give the credentials link back");
            }
            return Ok(PasswordOutcome::NotSet(e));
        }
        let audited = async {
            let mut tx = self.db.begin().await?;
            let event = Event::CredentialsPasswordSet {
                login: link.spec.login.as_str(),
                requester_subject: &link.request.requester_subject,
            };
            audit::append(&mut tx, now, &Actor::System, Some(link.request.id), event).await?;
            tx.commit().await
        };
        if let Err(e) = audited.await {
            tracing::error!(error = ?e, request_id = link.request.id.get(), "password set but its audit event could not be written");
        }
        Ok(PasswordOutcome::Set(password))
    }
}
