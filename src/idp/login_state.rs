//! The state of a plain sign-in (`GET /oidc/signin`) while the browser is at
//! the identity provider, kept in the browser itself: an encrypted,
//! authenticated, short-lived cookie instead of a database row.
//!
//! Why: anyone can open `/oidc/signin`, so a row per visit would let anyone
//! make jitbot write without limit. With the state in a sealed cookie an
//! unauthenticated request writes nothing; the first write is the browser
//! session, after the identity provider has vouched for the person.
//!
//! The key is derived from `[idp] client_secret` (HMAC-SHA256 with a fixed
//! label), not generated at start-up: every replica shares the config, so
//! the callback can land on any of them, and a restart does not break the
//! sign-ins in flight. Changing the client secret ends them (they last ten
//! minutes). AES-256-GCM both hides the PKCE verifier and nonce from anyone
//! reading the cookie and refuses a cookie that was altered.
//!
//! What lives elsewhere: the pages ([`super::routes`]); the link flow, whose
//! logins start from a link token issued in Slack and are stored rows.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce as AesNonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::domain::Timestamp;

/// Bound to the sealed value, so a value sealed for another purpose (or a
/// future format) does not open as this one.
const LABEL: &[u8] = b"jitbot sign-in state v1";
/// The longest cookie value accepted (a real one is about 400 bytes).
const MAX_SEALED: usize = 2048;

/// What the callback needs to finish a plain sign-in.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInState {
    /// The OAuth `state`: the callback's `state` parameter must equal it.
    pub state: String,
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// The PKCE verifier for the code exchange.
    pub pkce_verifier: String,
    /// The jitbot page to return to.
    pub return_to: String,
    /// Epoch milliseconds after which the callback refuses it.
    pub expires_at: i64,
}

// Written by hand: the state and PKCE verifier must not reach a log line.
impl std::fmt::Debug for SignInState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInState")
            .field("state", &super::REDACTED)
            .field("nonce", &self.nonce)
            .field("pkce_verifier", &super::REDACTED)
            .field("return_to", &self.return_to)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Seals and opens [`SignInState`] cookies.
#[derive(Clone)]
pub struct SignInSealer(Aes256Gcm);

impl SignInSealer {
    /// The sealer whose key is derived from the IdP client secret.
    pub fn from_client_secret(client_secret: &str) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(client_secret.as_bytes()).unwrap_or_else(|_| unreachable!());
        mac.update(LABEL);
        let key = mac.finalize().into_bytes();
        Self(Aes256Gcm::new(&key))
    }

    /// `base64url(nonce || ciphertext)` of the state, for a cookie value.
    pub fn seal(&self, state: &SignInState) -> Result<String, String> {
        let plain = serde_json::to_vec(state).map_err(|e| e.to_string())?;
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .0
            .encrypt(AesNonce::from_slice(&nonce), Payload { msg: &plain, aad: LABEL })
            .map_err(|_| "encryption failed".to_owned())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// The state in a cookie value, if it was sealed with this key, is
    /// unaltered and has not expired at `now`.
    pub fn open(&self, sealed: &str, now: Timestamp) -> Option<SignInState> {
        if sealed.len() > MAX_SEALED {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if bytes.len() < 13 {
            return None;
        }
        let (nonce, ct) = bytes.split_at(12);
        let plain = self.0.decrypt(AesNonce::from_slice(nonce), Payload { msg: ct, aad: LABEL }).ok()?;
        let state: SignInState = serde_json::from_slice(&plain).ok()?;
        (state.expires_at > now.millis()).then_some(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> SignInState {
        SignInState {
            state: "the-state-value".into(),
            nonce: "the-nonce".into(),
            pkce_verifier: "the-pkce-verifier-0123456789".into(),
            return_to: "/credentials/abc".into(),
            expires_at: 10_000,
        }
    }

    #[test]
    fn a_sealed_state_opens_with_the_same_secret_until_it_expires() {
        let sealer = SignInSealer::from_client_secret("client-secret");
        let sealed = sealer.seal(&state()).unwrap();
        assert!(!sealed.contains("the-pkce-verifier"), "the cookie hides the verifier");
        assert_eq!(sealer.open(&sealed, Timestamp::from_millis(9_999)), Some(state()));
        // Another replica with the same config opens it too.
        let replica = SignInSealer::from_client_secret("client-secret");
        assert_eq!(replica.open(&sealed, Timestamp::from_millis(0)), Some(state()));
        assert_eq!(sealer.open(&sealed, Timestamp::from_millis(10_000)), None, "expired");
    }

    #[test]
    fn altered_foreign_or_garbage_cookies_do_not_open() {
        let sealer = SignInSealer::from_client_secret("client-secret");
        let sealed = sealer.seal(&state()).unwrap();
        let now = Timestamp::from_millis(0);
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(sealer.open(&URL_SAFE_NO_PAD.encode(&bytes), now), None);
        assert_eq!(SignInSealer::from_client_secret("another secret").open(&sealed, now), None);
        for garbage in ["", "x", "!!!!", &"A".repeat(5000)] {
            assert_eq!(sealer.open(garbage, now), None);
        }
    }

    #[test]
    fn debug_hides_the_state_and_verifier() {
        let shown = format!("{:?}", state());
        assert!(!shown.contains("the-pkce-verifier") && !shown.contains("the-state-value"), "{shown}");
    }
}
