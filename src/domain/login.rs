//! Database logins and roles as jitbot names them, independent of any
//! connection: the safe shape a login made from an IdP claim must have, the
//! login templates that make it, and the checks on a configured role name.
//! The config checks them at load; the PostgreSQL provider quotes them.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Identity, RequestId};

/// PostgreSQL truncates identifiers to 63 bytes (NAMEDATALEN - 1); a longer
/// name would silently refer to a different role.
pub const MAX_NAME_BYTES: usize = 63;

/// Checks a configured database role name: non-empty, no NUL, at most 63
/// bytes. Anything else is allowed because it is always quoted.
pub fn check_role_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains('\0') || name.len() > MAX_NAME_BYTES {
        return Err(format!("{name:?} is not a PostgreSQL role name (1 to {MAX_NAME_BYTES} bytes, no NUL)"));
    }
    Ok(())
}

/// A configured database role (the `pg_role` handed out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PgRoleName(String);

impl PgRoleName {
    /// Accepts what [`check_role_name`] accepts.
    pub fn parse(name: &str) -> Result<Self, String> {
        check_role_name(name)?;
        Ok(Self(name.to_owned()))
    }

    /// The name as text (bound as a parameter, or quoted as an identifier).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PgRoleName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<PgRoleName> for String {
    fn from(n: PgRoleName) -> String {
        n.0
    }
}

impl fmt::Display for PgRoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A database login that jitbot may grant to, create or drop: it matches
/// `^[a-z_][a-z0-9_.-]{0,62}$`. The value is still always quoted; the
/// pattern is the second line of defence and keeps logins readable.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LoginName(String);

impl LoginName {
    /// Accepts a login of the safe shape.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut chars = s.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'));
        if first_ok && rest_ok && s.len() <= MAX_NAME_BYTES {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "{s:?} is not a safe database login name (allowed: a-z, 0-9, '_', '.', '-', starting with a letter or '_', at most {MAX_NAME_BYTES} characters)"
            ))
        }
    }

    /// The name of a login created for one request only:
    /// `<prefix><id>_<hint>` (prefix `jit_` by default), where the hint is
    /// the requester's email local part reduced to `a-z0-9_`, so a DBA
    /// reading `pg_stat_activity` sees whose it is. `prefix` is checked by
    /// the config (`a-z0-9_`, not starting with a digit, at most 20 bytes).
    pub fn ephemeral(prefix: &str, id: RequestId, email: &str) -> Self {
        let prefix = format!("{prefix}{}", id.get());
        let local = email.split('@').next().unwrap_or("").to_ascii_lowercase();
        let hint: String =
            local.chars().map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '_' }).collect();
        let room = MAX_NAME_BYTES.saturating_sub(prefix.len() + 1);
        let hint: String = hint.chars().take(room).collect();
        if hint.is_empty() { Self(prefix) } else { Self(format!("{prefix}_{hint}")) }
    }

    /// The name as text (bound as a parameter, or quoted as an identifier).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for LoginName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<LoginName> for String {
    fn from(n: LoginName) -> String {
        n.0
    }
}

impl fmt::Display for LoginName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Placeholder {
    Email,
    EmailLocal,
    Subject,
    SlackId,
    /// `{claims.NAME}`: a claim the IdP sent at the last sign-in.
    Claim(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Value(Placeholder),
}

/// A login template such as `"{email_local}"` or `"ext_{subject}"`.
///
/// Placeholders: `{email}`, `{email_local}` (before the `@`), `{subject}`
/// (the IdP `sub`), `{slack_id}`, and `{claims.NAME}` (a string or number
/// claim of the ID token or userinfo, e.g. `{claims.preferred_username}`;
/// jitbot keeps exactly the claims its templates name, at each sign-in).
/// Email-derived values and Slack ids are lower-cased (both are
/// case-insensitive); the subject and claims are used as they are, so a
/// value with upper-case letters is refused rather than folded onto someone
/// else's login. Literal text may only use the login alphabet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginTemplate {
    source: String,
    pieces: Vec<Piece>,
}

impl LoginTemplate {
    /// `"{email_local}"`, the default template of a postgres provider.
    pub fn email_local() -> Self {
        Self { source: "{email_local}".to_owned(), pieces: vec![Piece::Value(Placeholder::EmailLocal)] }
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Parses a template; unknown placeholders and unsafe literal text are errors.
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('{') {
                let end = after.find('}').ok_or_else(|| format!("unclosed {{ in login template {template:?}"))?;
                let placeholder = match &after[..end] {
                    "email" => Placeholder::Email,
                    "email_local" => Placeholder::EmailLocal,
                    "subject" => Placeholder::Subject,
                    "slack_id" => Placeholder::SlackId,
                    other => match other.strip_prefix("claims.") {
                        Some(name) if is_claim_name(name) => Placeholder::Claim(name.to_owned()),
                        Some(name) => {
                            return Err(format!(
                                "login template {template:?}: {name:?} is not a claim name (letters, digits, '_', '-', '.', ':', '/')"
                            ));
                        }
                        None => {
                            return Err(format!(
                                "unknown placeholder {{{other}}} in login template {template:?} (known: {{email}}, {{email_local}}, {{subject}}, {{slack_id}}, {{claims.NAME}})"
                            ));
                        }
                    },
                };
                pieces.push(Piece::Value(placeholder));
                rest = &after[end + 1..];
            } else {
                let end = rest.find('{').unwrap_or(rest.len());
                let literal = &rest[..end];
                if !literal
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'))
                {
                    return Err(format!(
                        "login template {template:?}: literal text may only use a-z, 0-9, '_', '.', '-'"
                    ));
                }
                pieces.push(Piece::Literal(literal.to_owned()));
                rest = &rest[end..];
            }
        }
        if !pieces.iter().any(|p| matches!(p, Piece::Value(_))) {
            return Err(format!(
                "login template {template:?} has no placeholder: every requester would get the same login"
            ));
        }
        Ok(Self { source: template.to_owned(), pieces })
    }

    /// Whether the template reads `{email_local}`, which is only
    /// unambiguous within one email domain.
    pub fn uses_email_local(&self) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::Value(Placeholder::EmailLocal)))
    }

    /// The IdP claims this template reads (`{claims.NAME}`), which sign-ins
    /// must keep.
    pub fn claim_names(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Value(Placeholder::Claim(name)) => Some(name.as_str()),
            _ => None,
        })
    }

    /// The login for `who`, or a message saying why their identity does not
    /// make a safe login (the value is shown quoted, never interpreted).
    pub fn render(&self, who: &Identity) -> Result<LoginName, String> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(s) => out.push_str(s),
                Piece::Value(Placeholder::Claim(name)) => match who.claims.get(name) {
                    Some(value) => out.push_str(value),
                    None => {
                        return Err(format!(
                            "your identity provider did not send the claim `{name}` that this role's database login is made from; \
                             run `/jit link` to sign in again, and ask an administrator if this persists"
                        ));
                    }
                },
                Piece::Value(Placeholder::Email) => out.push_str(&who.email.to_ascii_lowercase()),
                Piece::Value(Placeholder::EmailLocal) => {
                    out.push_str(&who.email.split('@').next().unwrap_or("").to_ascii_lowercase())
                }
                Piece::Value(Placeholder::Subject) => out.push_str(&who.subject),
                Piece::Value(Placeholder::SlackId) => out.push_str(&who.slack.user_id().to_ascii_lowercase()),
            }
        }
        LoginName::parse(&out).map_err(|e| {
            format!("your identity does not make a usable database login with the template {:?}: {e}", self.source)
        })
    }
}

/// Claim names as IdPs write them, namespaced ones included
/// (`https://example.com/db_user`); never `}` or spaces.
fn is_claim_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SlackUser;

    fn who(email: &str, subject: &str) -> Identity {
        Identity {
            slack: SlackUser::parse("T0WORK", "U0ALICE").unwrap(),
            issuer: "https://idp.example".into(),
            subject: subject.into(),
            email: email.into(),
            groups: Default::default(),
            claims: [("preferred_username".to_owned(), "alice_s".to_owned())].into(),
        }
    }

    #[test]
    fn logins_must_have_the_safe_shape() {
        assert!(LoginName::parse("alice").is_ok());
        assert!(LoginName::parse("_svc.alice-2").is_ok());
        assert!(LoginName::parse(&"a".repeat(63)).is_ok());
        for bad in ["", "Alice", "1alice", "al ice", "a\"b", &"a".repeat(64), "x\"; drop role postgres; --"] {
            assert!(LoginName::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn templates_render_identities_and_refuse_injection() {
        let t = LoginTemplate::parse("{email_local}").unwrap();
        assert_eq!(t.render(&who("Alice.Smith@Example.com", "x")).unwrap().as_str(), "alice.smith");
        let t = LoginTemplate::parse("ext_{subject}").unwrap();
        assert_eq!(t.render(&who("a@b", "u123")).unwrap().as_str(), "ext_u123");
        let e = t.render(&who("a@b", r#"x"; DROP ROLE postgres; --"#)).unwrap_err();
        assert!(e.contains("not a safe database login name"), "{e}");
        let t = LoginTemplate::parse("app_{claims.preferred_username}").unwrap();
        assert_eq!(t.claim_names().collect::<Vec<_>>(), ["preferred_username"]);
        assert_eq!(t.render(&who("a@b", "x")).unwrap().as_str(), "app_alice_s");
        let mut injected = who("a@b", "x");
        injected.claims.insert("preferred_username".into(), r#"x"; DROP ROLE postgres; --"#.into());
        assert!(t.render(&injected).unwrap_err().contains("not a safe database login name"));
        let e = LoginTemplate::parse("{claims.db_user}").unwrap().render(&who("a@b", "x")).unwrap_err();
        assert!(e.contains("did not send the claim `db_user`"), "{e}");
        assert!(LoginTemplate::parse("{claims.https://example.com/db_user}").is_ok());
        assert!(LoginTemplate::parse("{claims.}").unwrap_err().contains("not a claim name"));
        assert!(LoginTemplate::parse("{claims.a b}").unwrap_err().contains("not a claim name"));
        assert!(LoginTemplate::parse("{nope}").unwrap_err().contains("unknown placeholder"));
        assert!(LoginTemplate::parse("fixed").unwrap_err().contains("no placeholder"));
        assert!(LoginTemplate::parse("x\";{email}").is_err());
        assert!(LoginTemplate::parse("{email").is_err());
    }

    #[test]
    fn ephemeral_logins_fit_the_limit_and_the_pattern() {
        let l = LoginName::ephemeral("jit_", RequestId::new(12), "Alice.O'Brien+x@example.com");
        assert_eq!(l.as_str(), "jit_12_alice_o_brien_x");
        let long = LoginName::ephemeral(&"p".repeat(20), RequestId::new(i64::MAX), &format!("{}@x", "b".repeat(100)));
        assert_eq!(long.as_str().len(), MAX_NAME_BYTES);
        assert!(LoginName::parse(long.as_str()).is_ok());
        assert_eq!(LoginName::ephemeral("jit_", RequestId::new(3), "@x").as_str(), "jit_3");
    }
}
