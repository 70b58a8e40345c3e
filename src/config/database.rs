//! `[database]`: where state lives.

use serde::Deserialize;

use super::{At, Secret};

/// `[database]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://jitbot.db` (created if missing) or `postgres://...`. A secret
    /// because a PostgreSQL URL may carry a password.
    #[serde(default = "default_database_url")]
    pub url: Secret,
    /// Upper bound of pooled connections.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

fn default_database_url() -> Secret {
    Secret::from("sqlite://jitbot.db")
}

fn default_max_connections() -> u32 {
    20
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { url: default_database_url(), max_connections: default_max_connections() }
    }
}

impl DatabaseConfig {
    /// A URL of a supported database and at least one connection.
    pub(super) fn validate(&self, at: &At) -> Result<(), String> {
        let db = self.url.expose();
        if !(db.starts_with("sqlite:") || db.starts_with("postgres://") || db.starts_with("postgresql://")) {
            return Err(format!(
                "{}database.url must start with sqlite:// or postgres://",
                at("database", Some("url"))
            ));
        }
        if self.max_connections == 0 {
            return Err(format!(
                "{}database.max_connections must be at least 1",
                at("database", Some("max_connections"))
            ));
        }
        Ok(())
    }
}
