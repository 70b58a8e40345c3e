//! The webhook provider: POSTs a signed JSON body to a URL for each grant and
//! revocation, so any system with an HTTP endpoint can be a target.
//!
//! Body: `{"action", "request_id", "sequence", "role", "user": {"email",
//! "subject", "slack_id"}, "expires_at"}`. `action` is `grant`, `extend` (an
//! approved extension moved `expires_at` later) or `revoke`. `sequence` is 1
//! for the grant and its extensions and 2 for the revocation of a request, so
//! a receiver that sees them out of order can tell. Headers:
//!
//! - `Jitbot-Timestamp`: Unix seconds when signed.
//! - `Jitbot-Key-Id`: which secret signed (for rotation).
//! - `Jitbot-Signature`: `v1=` + hex HMAC-SHA256 over `v1:{timestamp}:{body}`.
//! - `Idempotency-Key`: `jitbot-{request_id}-{action}`, the same on every retry
//!   (`jitbot-{request_id}-extend-{expiry in Unix seconds}` for an extension).
//!
//! A receiver recomputes the HMAC over the raw body, compares in constant
//! time, and refuses timestamps more than 5 minutes from its clock.

use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::{ApprovedGrant, GrantTarget, Provider, ProviderError, ProviderReport};
use crate::config::{Secret, WebhookProviderConfig};
use crate::domain::Timestamp;

/// Signs the body as receivers verify it: hex HMAC-SHA256 of `v1:{ts}:{body}`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(format!("v1:{timestamp}:").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Calls one webhook endpoint.
pub struct WebhookProvider {
    url: reqwest::Url,
    secret: Secret,
    key_id: String,
    client: reqwest::Client,
}

impl WebhookProvider {
    /// Builds the provider; redirects are not followed (a signed call must go
    /// where it was configured to go).
    pub fn new(config: &WebhookProviderConfig) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("jitbot/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { url: config.url.clone(), secret: config.secret.clone(), key_id: config.key_id.clone(), client })
    }

    async fn call(
        &self,
        action: &str,
        sequence: u32,
        target: &GrantTarget,
        now: Timestamp,
    ) -> Result<ProviderReport, ProviderError> {
        let body = json!({
            "action": action,
            "request_id": target.request_id.get(),
            "sequence": sequence,
            "role": target.role.as_str(),
            "user": target.user,
            "expires_at": target.expires_at.to_string(),
        })
        .to_string();
        let ts = now.seconds();
        let signature = sign(self.secret.expose().as_bytes(), ts, body.as_bytes());
        let response = self
            .client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header("jitbot-timestamp", ts.to_string())
            .header("jitbot-key-id", &self.key_id)
            .header("jitbot-signature", format!("v1={signature}"))
            .header("idempotency-key", idempotency_key(action, target))
            .body(body)
            .send()
            .await
            .map_err(|e| ProviderError::retryable(format!("webhook {} unreachable: {}", self.host(), describe(&e))))?;
        let status = response.status();
        if status.is_success() {
            return Ok(ProviderReport::default());
        }
        Err(ProviderError {
            message: format!("webhook {} answered HTTP {}", self.host(), status.as_u16()),
            // 4xx other than 408/429 means the receiver refuses this call; it
            // is still retried (a receiver can be fixed), but flagged as such.
            retryable: status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429,
            output: None,
        })
    }

    fn host(&self) -> String {
        format!(
            "{}{}",
            self.url.host_str().unwrap_or("?"),
            self.url.port().map(|p| format!(":{p}")).unwrap_or_default()
        )
    }
}

fn describe(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    }
}

#[async_trait]
impl Provider for WebhookProvider {
    async fn grant(&self, grant: &ApprovedGrant, now: Timestamp) -> Result<ProviderReport, ProviderError> {
        self.call("grant", 1, grant.target(), now).await
    }

    async fn revoke(&self, target: &GrantTarget, now: Timestamp) -> Result<ProviderReport, ProviderError> {
        self.call("revoke", 2, target, now).await
    }

    /// `action: "extend"` with the new `expires_at`, in the grant's place
    /// in the sequence (a revocation still comes after it).
    async fn extend(&self, target: &GrantTarget, now: Timestamp) -> Result<ProviderReport, ProviderError> {
        self.call("extend", 1, target, now).await
    }
}

/// The same on every retry of one call; each extension is a call of its own.
fn idempotency_key(action: &str, target: &GrantTarget) -> String {
    match action {
        "extend" => format!("jitbot-{}-extend-{}", target.request_id.get(), target.expires_at.seconds()),
        _ => format!("jitbot-{}-{action}", target.request_id.get()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_reference_hmac() {
        // Reference computed independently: printf 'v1:1700000000:{}' | openssl dgst -sha256 -hmac key
        let sig = sign(b"key", 1_700_000_000, b"{}");
        assert_eq!(sig, "584e59c409146d134b9c5f3551be5110dcd1cf3262710509ae10c5cc17a991cb");
        assert_ne!(sig, sign(b"key", 1_700_000_001, b"{}"));
        assert_ne!(sig, sign(b"other", 1_700_000_000, b"{}"));
    }
}

#[cfg(test)]
#[path = "webhook_proptests.rs"]
mod proptests;
