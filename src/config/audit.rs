//! `[audit]`: the key of the tamper-evident audit trail and how often its
//! head is anchored in Slack.

use std::time::Duration;

use serde::Deserialize;

use super::{At, Secret, std_duration};

/// `[audit]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The HMAC key of the audit chain (at least 32 characters, normally
    /// `"${JITBOT_AUDIT_KEY}"`). Never stored in the database: whoever owns
    /// the database but not this key cannot rewrite the trail unnoticed.
    pub key: Option<Secret>,
    /// How often the chain head is posted, signed, to `slack.audit_channel`
    /// (only when it moved since the last post).
    #[serde(default = "default_checkpoint_interval", deserialize_with = "std_duration")]
    pub checkpoint_interval: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { key: None, checkpoint_interval: default_checkpoint_interval() }
    }
}

fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(3600)
}

/// The shortest checkpoint interval: a line a minute is already more than
/// anyone reads in the audit channel.
pub const MIN_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);

impl AuditConfig {
    /// A key long enough for the HMAC (never echoed) and a sane interval.
    pub(super) fn validate(&self, at: &At) -> Result<(), String> {
        if let Some(key) = &self.key {
            crate::domain::AuditKey::new(key.expose())
                .map_err(|e| format!("{}audit.key {e}", at("audit", Some("key"))))?;
        }
        if self.checkpoint_interval < MIN_CHECKPOINT_INTERVAL {
            return Err(format!(
                "{}audit.checkpoint_interval must be at least 1m",
                at("audit", Some("checkpoint_interval"))
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{GOOD, parse};

    #[test]
    fn the_audit_key_is_a_long_enough_secret() {
        assert!(parse(GOOD).unwrap().audit_key().is_none());
        let e = parse(&format!("{GOOD}\n[audit]\nkey = \"short\"\n")).unwrap_err().to_string();
        assert!(e.contains("audit.key must be at least 32 characters"), "{e}");
        assert!(!e.contains("short"), "the key is never echoed: {e}");
        let c =
            parse(&format!("{GOOD}\n[audit]\nkey = \"{}\"\ncheckpoint_interval = \"15m\"\n", "k".repeat(40))).unwrap();
        assert!(c.audit_key().is_some());
        assert_eq!(c.audit.checkpoint_interval, Duration::from_secs(900));
        assert!(!format!("{c:?}").contains("kkkk"), "the key is a secret");
        let e = parse(&format!("{GOOD}\n[audit]\ncheckpoint_interval = \"5s\"\n")).unwrap_err().to_string();
        assert!(e.contains("audit.checkpoint_interval must be at least 1m"), "{e}");
    }
}
