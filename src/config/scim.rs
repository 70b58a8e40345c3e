//! `[scim]`: the identity provider pushes users and groups (SCIM 2.0).

use serde::Deserialize;

use super::{At, Secret};

/// `[scim]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScimConfig {
    /// The bearer token the IdP sends (at least 32 characters).
    pub token: Secret,
    /// A second accepted token while rotating.
    pub previous_token: Option<Secret>,
}

impl ScimConfig {
    /// Tokens long enough not to be guessed.
    pub(super) fn validate(&self, at: &At) -> Result<(), String> {
        for (key, token) in [("token", Some(&self.token)), ("previous_token", self.previous_token.as_ref())] {
            if let Some(t) = token
                && t.expose().len() < 32
            {
                return Err(format!(
                    "{}scim.{key} must be at least 32 characters (e.g. `openssl rand -hex 32`)",
                    at("scim", Some(key))
                ));
            }
        }
        Ok(())
    }
}
