//! The OIDC sign-in flow's rows: link tokens issued in Slack, logins in
//! flight (`oidc_logins`) and browser sessions after a plain sign-in.
//! Tokens, states and cookies are only ever stored as their hashes
//! ([`hash_token`]); callers pass the values the browser holds.

use std::time::Duration;

use super::{Service, ServiceResult};
use crate::domain::{Timestamp, hash_token};
use crate::store::LoginRow;

impl Service {
    /// The `(issuer, subject)` of the unexpired browser session whose cookie
    /// is `session`.
    pub async fn browser_session(&self, session: &str, now: Timestamp) -> ServiceResult<Option<(String, String)>> {
        Ok(self.db.browser_session(&hash_token(session), now).await?)
    }

    /// Starts a browser session for someone the IdP just vouched for.
    pub async fn start_browser_session(
        &self,
        session: &str,
        issuer: &str,
        subject: &str,
        now: Timestamp,
        ttl: Duration,
    ) -> ServiceResult<()> {
        Ok(self.db.insert_browser_session(&hash_token(session), issuer, subject, now, now.plus(ttl)).await?)
    }
}

/// A link token issued in Slack, as the sign-in pages read it.
#[derive(Debug, Clone)]
pub struct LinkToken {
    /// Slack workspace it was issued for.
    pub team_id: String,
    /// Slack user it was issued for.
    pub user_id: String,
    /// Required freshness of the IdP authentication (step-up), if any.
    pub max_age_ms: Option<i64>,
    /// When it stops working, epoch ms.
    pub expires_at: i64,
    /// When it was consumed, epoch ms.
    pub used_at: Option<i64>,
}

/// A login in flight between `/oidc/start` and `/oidc/callback`.
#[derive(Clone)]
pub struct OidcLogin {
    /// The hash of the link token it continues.
    pub token_hash: String,
    /// Hash of the browser-binding cookie.
    pub browser_hash: String,
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// The PKCE verifier for the code exchange.
    pub pkce_verifier: String,
    /// When it stops working, epoch ms.
    pub expires_at: i64,
    /// When its callback was used, epoch ms.
    pub used_at: Option<i64>,
}

// Written by hand so that the PKCE verifier never reaches a log line.
impl std::fmt::Debug for OidcLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcLogin")
            .field("token_hash", &self.token_hash)
            .field("browser_hash", &self.browser_hash)
            .field("nonce", &self.nonce)
            .field("pkce_verifier", &"[REDACTED]")
            .field("expires_at", &self.expires_at)
            .field("used_at", &self.used_at)
            .finish()
    }
}

impl From<LoginRow> for OidcLogin {
    fn from(r: LoginRow) -> Self {
        let LoginRow { token_hash, browser_hash, nonce, pkce_verifier, expires_at, used_at } = r;
        Self { token_hash, browser_hash, nonce, pkce_verifier, expires_at, used_at }
    }
}

impl Service {
    /// The link token with this hash, used or not. Changes nothing (link
    /// scanners fetch the confirmation page).
    pub async fn link_token(&self, token_hash: &str) -> ServiceResult<Option<LinkToken>> {
        Ok(self.db.link_token(token_hash).await?.map(|r| LinkToken {
            team_id: r.team_id,
            user_id: r.user_id,
            max_age_ms: r.max_age_ms,
            expires_at: r.expires_at,
            used_at: r.used_at,
        }))
    }

    /// Stores a login started in a browser under the hash of its `state`,
    /// unless its link token already has `max_per_token` logins (then
    /// `false`), so a token holder looping on it cannot fill the table.
    pub async fn begin_oidc_login(
        &self,
        state_hash: &str,
        login: &OidcLogin,
        max_per_token: i64,
        now: Timestamp,
    ) -> ServiceResult<bool> {
        let row = LoginRow {
            token_hash: login.token_hash.clone(),
            browser_hash: login.browser_hash.clone(),
            nonce: login.nonce.clone(),
            pkce_verifier: login.pkce_verifier.clone(),
            expires_at: login.expires_at,
            used_at: login.used_at,
        };
        Ok(self.db.insert_login(state_hash, &row, max_per_token, now).await?)
    }

    /// Takes the login with this state hash, exactly once: a second
    /// callback with the same state gets `None`.
    pub async fn take_oidc_login(&self, state_hash: &str, now: Timestamp) -> ServiceResult<Option<OidcLogin>> {
        Ok(self.db.take_login(state_hash, now).await?.map(OidcLogin::from))
    }
}
