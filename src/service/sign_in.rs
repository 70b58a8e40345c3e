//! The OIDC sign-in flow's rows: link tokens issued in Slack, logins in
//! flight (`oidc_logins`) and browser sessions after a plain sign-in.
//! Tokens, states and cookies are only ever stored as their hashes
//! ([`hash_token`]); callers pass the values the browser holds.

use std::time::Duration;

use super::{Service, ServiceResult};
use crate::domain::{Timestamp, hash_token};

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
