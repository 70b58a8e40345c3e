//! `[idp]`: the OpenID Connect identity provider people link with.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use super::urls::IssuerUrl;
use super::{At, Secret, default_true, std_duration};

/// `[idp]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdpConfig {
    /// The issuer URL, exactly as the IdP's discovery document states it
    /// (kept as written: a trailing slash matters).
    pub issuer: IssuerUrl,
    /// jitbot's client id at the IdP.
    pub client_id: String,
    /// jitbot's client secret at the IdP.
    pub client_secret: Secret,
    /// Shown on the "Sign in with ..." button.
    #[serde(default = "default_idp_name")]
    pub display_name: String,
    /// The claim that carries group names (ID token or userinfo).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Scopes requested at sign-in. Add `offline_access` to get refresh
    /// tokens (groups are then re-checked without a new sign-in).
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Requesting and approving need a link confirmed this recently.
    #[serde(default = "default_link_max_age", deserialize_with = "std_duration")]
    pub link_max_age: Duration,
    /// Approving needs groups confirmed this recently.
    #[serde(default = "default_groups_max_age", deserialize_with = "std_duration")]
    pub groups_max_age: Duration,
    /// The ID token's verified email must equal the Slack profile email.
    #[serde(default = "default_true")]
    pub require_email_match: bool,
    /// Splits a groups claim the IdP sends as one string (`"a,b"`) into
    /// groups. None (the default): a string is one group, so a group named
    /// `db admins` stays one group. Arrays are always read as they are.
    #[serde(default)]
    pub groups_delimiter: Option<String>,
    /// How the `email_verified` claim is judged; some IdPs (Entra ID)
    /// never send it.
    #[serde(default)]
    pub email_verified: EmailVerifiedRule,
    /// Base64 of 32 random bytes; encrypts refresh tokens at rest. Required
    /// when `scopes` has `offline_access`.
    pub token_encryption_key: Option<Secret>,
}

/// `[idp] email_verified`: when a sign-in's email counts as verified.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailVerifiedRule {
    /// The IdP must send `email_verified: true` (the safe default).
    #[default]
    Required,
    /// Refused only when the IdP sends `email_verified: false`; an IdP
    /// that sends no such claim is trusted for its emails.
    IfPresent,
    /// The claim is not looked at: only for IdPs whose emails are all
    /// verified by the organisation itself.
    Ignore,
}

impl EmailVerifiedRule {
    /// Whether a sign-in whose `email_verified` claim was `claim` passes.
    pub fn accepts(self, claim: Option<bool>) -> bool {
        match self {
            Self::Required => claim == Some(true),
            Self::IfPresent => claim != Some(false),
            Self::Ignore => true,
        }
    }
}

fn default_idp_name() -> String {
    "your company account".to_owned()
}

fn default_groups_claim() -> String {
    "groups".to_owned()
}

fn default_scopes() -> Vec<String> {
    vec!["openid".to_owned(), "email".to_owned(), "profile".to_owned()]
}

fn default_link_max_age() -> Duration {
    Duration::from_secs(12 * 3600)
}

fn default_groups_max_age() -> Duration {
    Duration::from_secs(15 * 60)
}

/// Reads `idp.token_encryption_key`: base64 of exactly 32 bytes (an
/// AES-256 key). Checked here, at load, so a bad key stops the start rather
/// than the first refresh; the IdP adapter builds its cipher from the bytes.
pub fn decode_token_key(key: &str) -> Result<[u8; 32], String> {
    let bytes =
        STANDARD.decode(key.trim()).map_err(|_| "must be base64 (e.g. `openssl rand -base64 32`)".to_owned())?;
    let len = bytes.len();
    bytes.try_into().map_err(|_| format!("must decode to 32 bytes, not {len}"))
}

impl IdpConfig {
    /// The issuer, the client, the scopes and the token key; `has_slack`:
    /// whether a `[slack]` is configured (people link through it).
    pub(super) fn validate(&self, has_slack: bool, at: &At) -> Result<(), String> {
        if self.client_secret.expose().trim().is_empty() {
            return Err(format!("{}idp.client_secret must not be empty", at("idp", Some("client_secret"))));
        }
        if !self.scopes.iter().any(|s| s == "openid") {
            return Err(format!("{}idp.scopes must include \"openid\"", at("idp", Some("scopes"))));
        }
        if self.scopes.iter().any(|s| s == "offline_access") && self.token_encryption_key.is_none() {
            return Err(format!(
                "{}idp.token_encryption_key is required when idp.scopes has offline_access (refresh tokens are encrypted at rest)",
                at("idp", None)
            ));
        }
        if self.groups_delimiter.as_deref().is_some_and(str::is_empty) {
            return Err(format!(
                "{}idp.groups_delimiter must not be empty (leave it out to read a groups string as one group)",
                at("idp", Some("groups_delimiter"))
            ));
        }
        if let Some(key) = &self.token_encryption_key {
            decode_token_key(key.expose())
                .map_err(|e| format!("{}idp.token_encryption_key: {e}", at("idp", Some("token_encryption_key"))))?;
        }
        if !has_slack {
            return Err(format!("{}[idp] needs [slack]: people start linking with /jit link", at("idp", None)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Config, ConfigError};

    fn with_idp(idp_extra: &str) -> Result<Config, ConfigError> {
        let text = format!(
            "[slack]\nmode = \"socket\"\nbot_token = \"xoxb-1\"\napp_token = \"xapp-1\"\nteam_id = \"T0WORKSPACE\"\n\
             approvals_channel = \"C0APPROVALS\"\n\n[idp]\nissuer = \"https://idp.example\"\nclient_id = \"jitbot\"\n\
             client_secret = \"secret\"\n{idp_extra}\n"
        );
        Config::parse(Path::new("jitbot.toml"), &text)
    }

    #[test]
    fn groups_delimiter_and_email_verified_have_safe_defaults() {
        let c = with_idp("").unwrap();
        let idp = c.idp.as_ref().unwrap();
        assert_eq!(idp.groups_delimiter, None);
        assert_eq!(idp.email_verified, EmailVerifiedRule::Required);
        let c = with_idp("groups_delimiter = \",\"\nemail_verified = \"if_present\"").unwrap();
        let idp = c.idp.as_ref().unwrap();
        assert_eq!(idp.groups_delimiter.as_deref(), Some(","));
        assert_eq!(idp.email_verified, EmailVerifiedRule::IfPresent);
        let e = with_idp("email_verified = \"maybe\"").unwrap_err().to_string();
        assert!(e.contains("email_verified") && e.contains("if_present"), "{e}");
        let e = with_idp("groups_delimiter = \"\"").unwrap_err().to_string();
        assert!(e.contains("idp.groups_delimiter must not be empty"), "{e}");
    }

    #[test]
    fn the_email_verified_rules() {
        use EmailVerifiedRule::*;
        assert!(Required.accepts(Some(true)) && !Required.accepts(None) && !Required.accepts(Some(false)));
        assert!(IfPresent.accepts(Some(true)) && IfPresent.accepts(None) && !IfPresent.accepts(Some(false)));
        assert!(Ignore.accepts(Some(false)) && Ignore.accepts(None));
    }

    #[test]
    fn check_config_warns_when_the_groups_scope_is_missing() {
        let c = with_idp("").unwrap();
        let warnings = c.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("idp.scopes has no \"groups\" scope"), "{warnings:?}");
        let c = with_idp("scopes = [\"openid\", \"email\", \"groups\"]").unwrap();
        assert!(c.warnings().is_empty());
        // Another claim name: the scope is the IdP's business.
        let c = with_idp("groups_claim = \"roles\"").unwrap();
        assert!(c.warnings().is_empty());
    }

    #[test]
    fn the_token_key_must_be_base64_of_32_bytes() {
        let key =
            |k: &str| with_idp(&format!("scopes = [\"openid\", \"offline_access\"]\ntoken_encryption_key = \"{k}\""));
        let e = key("not base64!").unwrap_err().to_string();
        assert!(e.contains("idp.token_encryption_key: must be base64"), "{e}");
        let e = key("c2hvcnQ=").unwrap_err().to_string();
        assert!(e.contains("idp.token_encryption_key: must decode to 32 bytes, not 5"), "{e}");
        assert!(key(&STANDARD.encode([7u8; 32])).is_ok());
        assert_eq!(decode_token_key(&STANDARD.encode([7u8; 32])), Ok([7u8; 32]));
    }
}
