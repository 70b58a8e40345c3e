//! `[providers.NAME] kind = "ldap_group"`: directory group membership
//! (OpenLDAP `groupOfNames`/`groupOfUniqueNames`, Active Directory groups),
//! and the DN syntax check its settings and roles' `grant.group` share.
//!
//! Everything that would let the bind password cross the network in clear
//! text is refused at load: `ldap://` URLs use StartTLS unless an operator
//! writes both `starttls = false` and `allow_plaintext = true`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::urls::Url;
use super::{At, Secret, std_duration};

/// `kind = "ldap_group"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapGroupProviderConfig {
    /// `ldaps://host[:port]` or `ldap://host[:port]` (then StartTLS).
    #[serde(deserialize_with = "ldap_url")]
    pub url: Url,
    /// Whether an `ldap://` connection is upgraded with StartTLS before the
    /// bind (default: yes). `false` needs `allow_plaintext = true`.
    pub starttls: Option<bool>,
    /// Lets `starttls = false` send the bind password and every change in
    /// clear text: for a directory on the same host or a test only.
    #[serde(default)]
    pub allow_plaintext: bool,
    /// The DN jitbot binds as; see the README for the least-privilege ACL.
    pub bind_dn: String,
    /// Its password (`"${LDAP_BIND_PASSWORD}"` reads the environment).
    pub bind_password: Secret,
    /// Where people's entries are searched for (subtree).
    pub user_base: String,
    /// The attribute a requester's entry is found by.
    pub user_filter_attribute: LdapUserAttribute,
    /// What of the requester's linked identity that attribute holds.
    #[serde(default)]
    pub user_value: LdapUserValue,
    /// The email domains whose people this provider finds by
    /// `{email_local}` (lower case); required with it, as for postgres
    /// logins, so `alice@vendor.example` never finds `alice@example.com`'s entry.
    #[serde(default)]
    pub email_domains: Vec<String>,
    /// The group attribute holding member DNs.
    #[serde(default)]
    pub member_attribute: LdapMemberAttribute,
    /// PEM file of the CA(s) the server's certificate is checked against,
    /// instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// How long connecting and each operation may take.
    #[serde(default = "default_timeout", deserialize_with = "std_duration")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// `user_filter_attribute`: the attributes people are commonly found by.
/// A fixed list, so the search filter never contains a configured string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LdapUserAttribute {
    /// `mail`.
    #[serde(rename = "mail")]
    Mail,
    /// `uid` (OpenLDAP `inetOrgPerson`/`posixAccount`).
    #[serde(rename = "uid")]
    Uid,
    /// `userPrincipalName` (Active Directory).
    #[serde(rename = "userPrincipalName")]
    UserPrincipalName,
    /// `sAMAccountName` (Active Directory).
    #[serde(rename = "sAMAccountName")]
    SamAccountName,
}

impl LdapUserAttribute {
    /// The attribute's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mail => "mail",
            Self::Uid => "uid",
            Self::UserPrincipalName => "userPrincipalName",
            Self::SamAccountName => "sAMAccountName",
        }
    }
}

/// `user_value`: which part of the linked identity is looked up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum LdapUserValue {
    /// The verified email, whole.
    #[default]
    #[serde(rename = "{email}")]
    Email,
    /// The email's part before `@`.
    #[serde(rename = "{email_local}")]
    EmailLocal,
}

/// `member_attribute`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LdapMemberAttribute {
    /// `member` (`groupOfNames`, Active Directory groups).
    #[default]
    #[serde(rename = "member")]
    Member,
    /// `uniqueMember` (`groupOfUniqueNames`).
    #[serde(rename = "uniqueMember")]
    UniqueMember,
}

impl LdapMemberAttribute {
    /// The attribute's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::UniqueMember => "uniqueMember",
        }
    }
}

/// An `ldap_group` role's `grant = { group = "cn=...,dc=..." }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapGroupGrantConfig {
    /// The DN of the existing group whose membership is handed out.
    pub group: String,
}

fn ldap_url<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Url, D::Error> {
    let raw = String::deserialize(d)?;
    parse_ldap_url(&raw).map_err(|e| serde::de::Error::custom(format!("the ldap_group provider's url {e}")))
}

/// Checks `raw` is `ldap://host[:port]` or `ldaps://host[:port]`, with
/// nothing else (credentials belong in `bind_dn`/`bind_password`).
pub fn parse_ldap_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("is not a URL ({raw:?}): {e}"))?;
    if !matches!(url.scheme(), "ldap" | "ldaps") {
        return Err(format!("must be an ldaps:// or ldap:// URL, not {raw:?}"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("names no host: {raw:?}"));
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() || url.fragment().is_some() {
        return Err("must be just ldap(s)://host[:port]: the bind DN and password have keys of their own".into());
    }
    if !matches!(url.path(), "" | "/") {
        return Err(format!(
            "must be just ldap(s)://host[:port] (LDAP URL base DNs and filters are not used): {raw:?}"
        ));
    }
    Ok(url)
}

/// Checks `dn` is a distinguished name in RFC 4514 string form
/// (`cn=x,ou=y,dc=z`, escapes included). Catches typos at load rather than
/// at the first grant; the server does the full check.
pub fn check_dn(dn: &str) -> Result<(), String> {
    if dn.trim().is_empty() {
        return Err("is empty; give a DN like \"cn=prod-readers,ou=groups,dc=example,dc=com\"".into());
    }
    let bad = |why: &str| Err(format!("{dn:?} is not a valid DN ({why})"));
    let mut chars = dn.chars().peekable();
    loop {
        // One attribute type and value assertion.
        let mut attr = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            attr.push(c);
            chars.next();
        }
        if chars.next() != Some('=') {
            return bad("each part must be attribute=value");
        }
        let attr = attr.trim();
        let keystring = attr.starts_with(|c: char| c.is_ascii_alphabetic())
            && attr.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        let oid = !attr.is_empty() && attr.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
        if !(keystring || oid) {
            return bad(&format!("{attr:?} is not an attribute name"));
        }
        let mut value_len = 0;
        let mut end = None;
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(e) if ",+\"\\<>;=# ".contains(e) => value_len += 1,
                    Some(h) if h.is_ascii_hexdigit() => {
                        if !chars.next().is_some_and(|l| l.is_ascii_hexdigit()) {
                            return bad("a \\ escape must be a special character or two hex digits");
                        }
                        value_len += 1;
                    }
                    _ => return bad("a \\ escape must be a special character or two hex digits"),
                },
                ',' | '+' => {
                    end = Some(c);
                    break;
                }
                '"' | ';' | '<' | '>' | '\0' => return bad(&format!("unescaped {c:?}")),
                _ => value_len += 1,
            }
        }
        if value_len == 0 {
            return bad(&format!("{attr} has no value"));
        }
        if end.is_none() {
            return Ok(());
        }
    }
}

impl LdapGroupProviderConfig {
    /// Checks the settings at `[table]`.
    pub(super) fn validate(&self, table: &str, at: &At) -> Result<(), String> {
        let key = |k: &str| format!("{}{table}.{k}", at(table, Some(k)));
        let ldaps = self.url.scheme() == "ldaps";
        match (ldaps, self.starttls) {
            (true, Some(true)) => {
                return Err(format!("{} = true is for ldap:// URLs; ldaps:// is TLS from the start", key("starttls")));
            }
            (false, Some(false)) if !self.allow_plaintext => {
                return Err(format!(
                    "{} = false would send the bind password and every change in clear text; use ldaps:// or \
                     StartTLS, or set {table}.allow_plaintext = true (a directory on the same host, tests)",
                    key("starttls")
                ));
            }
            _ => {}
        }
        check_dn(&self.bind_dn).map_err(|e| format!("{} {e}", key("bind_dn")))?;
        check_dn(&self.user_base).map_err(|e| format!("{} {e}", key("user_base")))?;
        if self.bind_password.expose().is_empty() {
            return Err(format!("{} is empty (an empty password is an anonymous bind)", key("bind_password")));
        }
        if let Some(bad) = self.email_domains.iter().find(|d| {
            d.is_empty() || !d.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-'))
        }) {
            return Err(format!("{}: {bad:?} is not a lower-case domain like \"example.com\"", key("email_domains")));
        }
        if self.user_value == LdapUserValue::EmailLocal && self.email_domains.is_empty() {
            return Err(format!(
                "{}: {{email_local}} gives alice@one.example and alice@other.example the same directory entry; set \
                 {table}.email_domains = [\"example.com\"] (only people from those domains may request)",
                key("user_value")
            ));
        }
        if self.timeout.is_zero() {
            return Err(format!("{} must be more than zero", key("timeout")));
        }
        if let Some(path) = &self.ca_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("{} cannot be read ({}): {e}", key("ca_file"), path.display()))?;
            if !text.contains("-----BEGIN CERTIFICATE-----") {
                return Err(format!("{} ({}) holds no PEM certificate", key("ca_file"), path.display()));
            }
        }
        Ok(())
    }

    /// Whether connections upgrade with StartTLS.
    pub fn uses_starttls(&self) -> bool {
        self.url.scheme() == "ldap" && self.starttls.unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderConfig;
    use crate::config::tests::{GOOD, parse};

    const LDAP: &str = r#"
[providers.dir]
kind = "ldap_group"
url = "ldaps://ldap.example.com"
bind_dn = "cn=jitbot,ou=services,dc=example,dc=com"
bind_password = "hunter2hunter2"
user_base = "ou=people,dc=example,dc=com"
user_filter_attribute = "mail"

[roles.prod-readers]
description = "Dashboards"
provider = "dir"
grant = { group = "cn=prod-readers,ou=groups,dc=example,dc=com" }
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "30m"
max_duration = "4h"
"#;

    fn with(from: &str, to: &str) -> String {
        format!("{GOOD}{}", LDAP.replacen(from, to, 1))
    }

    #[test]
    fn an_ldap_group_provider_parses_with_defaults_and_hides_its_password() {
        let c = parse(&with("", "")).unwrap();
        let Some(ProviderConfig::LdapGroup(p)) = c.providers.get("dir") else { panic!("not ldap_group") };
        assert_eq!(p.user_filter_attribute, LdapUserAttribute::Mail);
        assert_eq!((p.user_value, p.member_attribute), (LdapUserValue::Email, LdapMemberAttribute::Member));
        assert_eq!(p.timeout, Duration::from_secs(10));
        assert!(!p.uses_starttls(), "ldaps:// is TLS from the start");
        assert!(!format!("{c:?}").contains("hunter2"), "the bind password is a secret");
        let c = parse(&with("ldaps://ldap.example.com", "ldap://ldap.example.com:389")).unwrap();
        let Some(ProviderConfig::LdapGroup(p)) = c.providers.get("dir") else { panic!("not ldap_group") };
        assert!(p.uses_starttls(), "ldap:// upgrades with StartTLS by default");
    }

    #[test]
    fn clear_text_needs_both_starttls_false_and_allow_plaintext() {
        let plain = with("ldaps://ldap.example.com\"", "ldap://ldap.example.com\"\nstarttls = false");
        let e = parse(&plain).unwrap_err().to_string();
        assert!(e.contains("providers.dir.starttls = false would send the bind password"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let allowed = plain.replace("starttls = false", "starttls = false\nallow_plaintext = true");
        parse(&allowed).unwrap();
        let e = parse(&with("ldaps://ldap.example.com\"", "ldaps://ldap.example.com\"\nstarttls = true"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("providers.dir.starttls = true is for ldap:// URLs"), "{e}");
    }

    #[test]
    fn bad_settings_and_group_dns_are_named() {
        let cases = [
            ("ldaps://ldap.example.com", "https://ldap.example.com", "ldaps:// or ldap:// URL"),
            ("ldaps://ldap.example.com", "ldaps://ldap.example.com/dc=x??sub", "just ldap(s)://host[:port]"),
            ("\"mail\"", "\"cn\"", "unknown variant `cn`, expected one of `mail`, `uid`"),
            ("cn=jitbot,ou=services", "jitbot", "providers.dir.bind_dn \"jitbot,dc=example,dc=com\" is not a valid DN"),
            ("user_base = \"ou=people,", "user_base = \"ou=people,,", "providers.dir.user_base"),
            ("\"cn=prod-readers,ou=groups", "\"prod-readers;ou=groups", "roles.prod-readers.grant.group"),
            ("grant = { group", "grant = { groupe", "roles.prod-readers.grant: unknown field `groupe`"),
            (
                "user_filter_attribute = \"mail\"",
                "user_filter_attribute = \"mail\"\nuser_value = \"{email_local}\"",
                "providers.dir.user_value",
            ),
            (
                "user_filter_attribute = \"mail\"",
                "user_filter_attribute = \"mail\"\nca_file = \"/nonexistent/ca.pem\"",
                "providers.dir.ca_file cannot be read",
            ),
        ];
        for (from, to, want) in cases {
            let e = parse(&with(from, to)).unwrap_err().to_string();
            assert!(e.contains(want), "{to}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
        let e = parse(&format!(
            "{GOOD}{}",
            LDAP.replace("grant = { group = \"cn=prod-readers,ou=groups,dc=example,dc=com\" }\n", "")
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("roles.prod-readers.grant is required"), "{e}");
        let local =
            "user_filter_attribute = \"uid\"\nuser_value = \"{email_local}\"\nemail_domains = [\"example.com\"]";
        parse(&with("user_filter_attribute = \"mail\"", local)).unwrap();
    }

    #[test]
    fn dns_are_checked_for_syntax() {
        for good in [
            "cn=prod-readers,ou=groups,dc=example,dc=com",
            "CN=Prod Readers,OU=Groups,DC=corp,DC=example",
            "cn=a\\,b,dc=x",
            "cn=\\2a\\29,dc=x",
            "cn=x+sn=y,dc=z",
            "2.5.4.3=x",
        ] {
            check_dn(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in ["", "prod-readers", "cn=,dc=x", "cn=x,,dc=y", "cn=a\"b", "c n=x", "cn=x\\zz", "cn=x,"] {
            assert!(check_dn(bad).is_err(), "{bad:?} passed");
        }
    }

    #[test]
    fn only_plain_ldap_urls_are_accepted() {
        assert_eq!(parse_ldap_url("ldaps://dir.example.com:636").unwrap().port(), Some(636));
        parse_ldap_url("ldap://127.0.0.1:389/").unwrap();
        for bad in ["https://dir", "ldap://u:p@dir", "ldap://dir/dc=x", "ldap://dir?x", "ldap://"] {
            assert!(parse_ldap_url(bad).is_err(), "{bad}");
        }
    }
}
