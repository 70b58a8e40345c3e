//! Identifiers parsed at the edge. Their fields are private so a value of
//! these types is always valid: logic never re-checks raw strings.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The number of an access request, shown to people as `#12`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(i64);

impl RequestId {
    /// Wraps a database id. Ids are only minted by the store.
    pub fn new(id: i64) -> Self {
        Self(id)
    }

    /// The raw value, for binding into SQL and payloads.
    pub fn get(self) -> i64 {
        self.0
    }

    /// Parses `12` or `#12` as typed by a person.
    pub fn parse(s: &str) -> Option<Self> {
        let digits = s.trim().trim_start_matches('#');
        digits.parse::<i64>().ok().filter(|n| *n > 0).map(Self)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The name of a requestable role, as configured under `[roles.NAME]`.
///
/// Role names end up in Slack action ids, webhook payloads and audit rows, so
/// they are restricted to a conservative alphabet.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RoleName(String);

impl RoleName {
    /// Accepts 1 to 64 characters of `a-z 0-9 - _ .`, starting with a letter or digit.
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' || c == '.');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "invalid role name {s:?}: use 1-64 characters of a-z, 0-9, '-', '_' or '.', starting with a letter or digit"
            ))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A name read from the config file, before the config's own check
    /// (which runs [`RoleName::parse`] on every name, so that its error names
    /// the file, line and key). No config with a bad name is ever used.
    pub(crate) fn from_config_key(s: String) -> Self {
        Self(s)
    }
}

/// Lets a map keyed by role name be looked up with a `&str`.
impl std::borrow::Borrow<str> for RoleName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Slack user, always qualified by the workspace: user ids are only unique
/// within a team, and jitbot refuses other workspaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SlackUser {
    team_id: String,
    user_id: String,
}

impl SlackUser {
    /// Accepts Slack's id shapes: an upper-case letter followed by upper-case
    /// letters and digits (`T0123ABC`, `U0123ABC`, `W0123ABC`).
    pub fn parse(team_id: &str, user_id: &str) -> Result<Self, String> {
        fn slack_id(s: &str, kind: &str) -> Result<(), String> {
            let ok = (2..=32).contains(&s.len())
                && s.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && s.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
            if ok { Ok(()) } else { Err(format!("{s:?} is not a Slack {kind} id (like T0123ABCD / U0123ABCD)")) }
        }
        slack_id(team_id, "team")?;
        slack_id(user_id, "user")?;
        Ok(Self { team_id: team_id.to_owned(), user_id: user_id.to_owned() })
    }

    /// The workspace id (`T...`).
    pub fn team_id(&self) -> &str {
        &self.team_id
    }

    /// The user id within the workspace (`U...` or `W...`).
    pub fn user_id(&self) -> &str {
        &self.user_id
    }
}

impl fmt::Display for SlackUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.team_id, self.user_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_parse_with_or_without_hash() {
        assert_eq!(RequestId::parse("#12"), Some(RequestId::new(12)));
        assert_eq!(RequestId::parse("12"), Some(RequestId::new(12)));
        assert_eq!(RequestId::parse("0"), None);
        assert_eq!(RequestId::parse("x"), None);
        assert_eq!(RequestId::new(7).to_string(), "#7");
    }

    #[test]
    fn role_names_are_restricted() {
        assert!(RoleName::parse("prod-db-readonly").is_ok());
        assert!(RoleName::parse("Prod").is_err());
        assert!(RoleName::parse("a b").is_err());
        assert!(RoleName::parse("").is_err());
        assert!(RoleName::parse("-x").is_err());
    }

    #[test]
    fn slack_users_need_slack_shaped_ids() {
        assert!(SlackUser::parse("T0WORK", "U0ALICE").is_ok());
        assert!(SlackUser::parse("t0", "U0ALICE").is_err());
        assert!(SlackUser::parse("T0WORK", "U0'; DROP").is_err());
    }
}
