//! `jitbot.toml`: the typed configuration, `${VAR}` secret expansion,
//! environment overrides and validation.
//!
//! Every error names the file and the offending key (and the line where the
//! TOML parser or a table header can tell it), because the person reading it
//! is an operator whose bot just refused to start. The config is plain data,
//! validated once at load: templates, durations, URLs and each role's
//! policy are parsed then and kept, and nothing here knows an adapter (it uses
//! [`crate::domain`] only). One file per section, each with its own checks:
//! [`server`], [`database`], [`policy`], [`slack`], [`idp`], [`scim`], [`urls`],
//! [`audit`], [`jobs`], [`providers`], [`roles`]. What lives elsewhere: the rules a
//! role's settings feed ([`crate::domain::policy`]).

pub mod audit;
pub mod database;
pub mod idp;
pub mod jobs;
pub mod ldap;
pub mod policy;
pub mod providers;
pub mod report;
pub mod roles;
pub mod scim;
pub mod server;
pub mod slack;
pub mod urls;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

pub use audit::{AuditConfig, MIN_CHECKPOINT_INTERVAL};
pub use database::DatabaseConfig;
pub use idp::{EmailVerifiedRule, IdpConfig, decode_token_key};
pub use jobs::JobsConfig;
pub use ldap::{LdapGroupGrantConfig, LdapGroupProviderConfig, LdapMemberAttribute, LdapUserAttribute, LdapUserValue};
pub use policy::PolicyConfig;
pub use providers::{
    AwsIdentityCenterGrantConfig, AwsIdentityCenterProviderConfig, CommandGrantConfig, CommandProviderConfig,
    PostgresGrantConfig, PostgresProviderConfig, ProviderConfig, WebhookProviderConfig,
};
pub use report::ReportConfig;
pub use roles::{AutoApproveConfig, RoleConfig};
pub use scim::ScimConfig;
pub use server::ServerConfig;
pub use slack::{SlackConfig, SlackMode};
pub use urls::{IssuerUrl, Url};

use crate::domain::{AccessDuration, RoleName, RolePolicy, TicketPattern};

/// Names the line of a key for messages: `at("roles.x", Some("provider"))`
/// is `"line 9: "`, or empty when the key cannot be found in the text.
type At<'a> = dyn Fn(&str, Option<&str>) -> String + 'a;

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct ConfigError {
    /// The file that was read.
    pub path: PathBuf,
    /// What is wrong, naming the key (and line where known).
    pub message: String,
}

/// A secret value from the config: `"${ENV_VAR}"` references are expanded when
/// the file is read, and `Debug` never shows the value.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// The plain value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(SecretString::from(s.to_owned()))
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        expand_env(&raw).map(|s| Secret(SecretString::from(s))).map_err(serde::de::Error::custom)
    }
}

/// Replaces each `${NAME}` with the environment variable `NAME`. A missing
/// variable is an error rather than an empty string: an empty signing secret
/// would silently accept forged requests.
pub fn expand_env(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| format!("unclosed ${{ in {raw:?}"))?;
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("${{{name}}} is not a valid environment variable reference"));
        }
        let value = std::env::var(name)
            .map_err(|_| format!("environment variable {name} is not set (referenced as ${{{name}}})"))?;
        if value.is_empty() {
            return Err(format!("environment variable {name} is empty"));
        }
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn access_duration<'de, D: Deserializer<'de>>(d: D) -> Result<AccessDuration, D::Error> {
    let raw = String::deserialize(d)?;
    AccessDuration::parse(&raw).map_err(serde::de::Error::custom)
}

fn opt_access_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<AccessDuration>, D::Error> {
    access_duration(d).map(Some)
}

fn std_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let raw = String::deserialize(d)?;
    humantime::parse_duration(&raw)
        .map_err(|_| serde::de::Error::custom(format!("{raw:?} is not a duration (like 10s, 5m)")))
}

/// The whole `jitbot.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`: where jitbot listens.
    #[serde(default)]
    pub server: ServerConfig,
    /// `[database]`: where state lives.
    #[serde(default)]
    pub database: DatabaseConfig,
    /// `[policy]`: rules that are not per role.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// `[slack]`: the Slack app. Without it jitbot runs headless (notices go to the log).
    pub slack: Option<SlackConfig>,
    /// `[idp]`: the OpenID Connect identity provider. Without it links are
    /// made by hand (`jitbot link add`) and never go stale.
    pub idp: Option<IdpConfig>,
    /// `[scim]`: the identity provider pushes users and groups (SCIM 2.0).
    pub scim: Option<ScimConfig>,
    /// `[audit]`: the key that makes the audit trail tamper-evident, and how
    /// often its head is anchored in the Slack audit channel.
    #[serde(default)]
    pub audit: AuditConfig,
    /// `[jobs]`: how many jobs a replica runs at once, per lane.
    #[serde(default)]
    pub jobs: JobsConfig,
    /// `[report]`: access insights over HTTP.
    #[serde(default)]
    pub report: ReportConfig,
    /// `[providers.NAME]`: the systems access is granted in.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// `[roles.NAME]`: what can be requested, by name (every name checked
    /// with [`RoleName::parse`] at load).
    #[serde(default, deserialize_with = "role_map")]
    pub roles: BTreeMap<RoleName, RoleConfig>,
    /// Each role's policy, built once at load (see [`Config::role_policy`]).
    #[serde(skip)]
    policies: BTreeMap<RoleName, RolePolicy>,
}

/// The `[roles]` table, keyed by role name; `validate` checks each name.
fn role_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<RoleName, RoleConfig>, D::Error> {
    let raw = BTreeMap::<String, RoleConfig>::deserialize(d)?;
    Ok(raw.into_iter().map(|(name, role)| (RoleName::from_config_key(name), role)).collect())
}

fn opt_std_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    std_duration(d).map(Some)
}

fn ticket_pattern<'de, D: Deserializer<'de>>(d: D) -> Result<Option<TicketPattern>, D::Error> {
    let raw = String::deserialize(d)?;
    TicketPattern::parse(&raw).map(Some).map_err(serde::de::Error::custom)
}

fn default_true() -> bool {
    true
}

/// Environment variables that override single keys, for container
/// deployments where the file is baked into an image.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("JITBOT_SERVER_LISTEN", "server.listen"),
    ("JITBOT_SERVER_PUBLIC_URL", "server.public_url"),
    ("JITBOT_DATABASE_URL", "database.url"),
];

impl Config {
    /// Reads, parses, applies environment overrides and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError { path: path.to_owned(), message: format!("cannot read the config file: {e}") })?;
        Self::parse(path, &text)
    }

    /// Parses config text; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        Self::parse_with_overrides(path, text, &|var| std::env::var(var).ok())
    }

    /// Like [`Config::parse`], with the [`ENV_OVERRIDES`] variables read
    /// through `lookup` instead of the process environment.
    pub fn parse_with_overrides(
        path: &Path,
        text: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let err = |message: String| ConfigError { path: path.to_owned(), message };
        let mut config: Config = toml::from_str(text).map_err(|e| err(describe_toml_error(&e)))?;
        config.apply_env_overrides(lookup).map_err(&err)?;
        config.validate(text).map_err(err)?;
        config.policies = config.roles.iter().map(|(name, role)| (name.clone(), role.policy(name.clone()))).collect();
        Ok(config)
    }

    /// The audit chain's key, if `audit.key` is set (validated at load).
    pub fn audit_key(&self) -> Option<crate::domain::AuditKey> {
        self.audit.key.as_ref().and_then(|k| crate::domain::AuditKey::new(k.expose()).ok())
    }

    /// Things that are allowed but probably wrong, for `check-config` and
    /// the start-up log.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(idp) = &self.idp
            && idp.groups_claim == "groups"
            && !idp.scopes.iter().any(|s| s == "groups")
        {
            out.push(
                "idp.scopes has no \"groups\" scope: Okta and most other IdPs send the `groups` claim only when that \
                 scope is asked for, and without it everyone links with no groups (see the README's IdP table; \
                 Entra ID needs no scope, ignore this there)"
                    .to_owned(),
            );
        }
        out
    }

    /// The IdP claims that login templates name (`{claims.NAME}` in a
    /// postgres provider's `login` or a role's `grant.login`): sign-ins keep
    /// exactly these, so no other personal data is stored.
    pub fn login_claims(&self) -> BTreeSet<String> {
        let provider_templates = self.providers.values().filter_map(|p| match p {
            ProviderConfig::Postgres(p) => Some(&p.login_template),
            _ => None,
        });
        let role_templates = self.roles.values().filter_map(|r| r.login_template.as_ref());
        provider_templates.chain(role_templates).flat_map(|t| t.claim_names().map(str::to_owned)).collect()
    }

    fn apply_env_overrides(&mut self, lookup: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
        for (var, key) in ENV_OVERRIDES {
            let Some(value) = lookup(var) else { continue };
            match *key {
                "server.listen" => {
                    self.server.listen = value.parse().map_err(|_| {
                        format!("{var} (overriding {key}): {value:?} is not an address like 127.0.0.1:8080")
                    })?;
                }
                "server.public_url" => {
                    self.server.public_url =
                        urls::parse_http_url(key, &value).map_err(|e| format!("{var} (overriding {key}): {e}"))?;
                }
                "database.url" => self.database.url = Secret::from(value.as_str()),
                _ => {}
            }
        }
        Ok(())
    }

    fn validate(&mut self, text: &str) -> Result<(), String> {
        let at = |table: &str, key: Option<&str>| match locate(text, table, key) {
            Some(line) => format!("line {line}: "),
            None => String::new(),
        };
        self.server.validate(&at)?;
        self.database.validate(&at)?;
        if let Some(slack) = &self.slack {
            slack.validate(&at)?;
        }
        if let Some(scim) = &self.scim {
            scim.validate(&at)?;
        }
        self.audit.validate(&at)?;
        self.jobs.validate(&at)?;
        self.report.validate(&at)?;
        if let Some(idp) = &self.idp {
            idp.validate(self.slack.is_some(), &at)?;
        }
        for (name, provider) in &mut self.providers {
            let table = format!("providers.{name}");
            RoleName::parse(name).map_err(|e| format!("{}[{table}]: {e}", at(&table, None)))?;
            provider.validate(&table, &at)?;
        }
        let has_idp = self.idp.is_some();
        for (name, role) in &mut self.roles {
            let table = format!("roles.{name}");
            RoleName::parse(name.as_str()).map_err(|e| format!("{}[{table}]: {e}", at(&table, None)))?;
            role.validate(name.as_str(), &table, &self.providers, has_idp, &at)?;
        }
        roles::check_permission_set_spelling(&self.roles, &self.providers, &at)?;
        Ok(())
    }

    /// The policy of a configured role (built at load), or `None` for an
    /// unknown name.
    pub fn role_policy(&self, name: &RoleName) -> Option<RolePolicy> {
        self.policies.get(name).cloned()
    }
}

/// The toml crate already names the line, column and key; keep its text but
/// drop the trailing newline so the message reads as one block.
fn describe_toml_error(e: &toml::de::Error) -> String {
    e.to_string().trim_end().to_owned()
}

/// Finds the 1-based line of `key` inside `[table]` (or of the header itself),
/// so semantic errors point where the parser's errors do.
fn locate(text: &str, table: &str, key: Option<&str>) -> Option<usize> {
    let wanted_headers = header_spellings(table);
    let mut in_table = false;
    let mut header_line = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            let header = line.split('#').next().unwrap_or("").trim();
            in_table = wanted_headers.iter().any(|h| h == header);
            if in_table {
                header_line = Some(i + 1);
                if key.is_none() {
                    return header_line;
                }
            }
            continue;
        }
        if let (true, Some(k)) = (in_table, key) {
            let name = line.split('=').next().unwrap_or("").trim().trim_matches('"');
            if line.contains('=') && name == k {
                return Some(i + 1);
            }
        }
    }
    header_line
}

fn header_spellings(table: &str) -> Vec<String> {
    let mut out = vec![format!("[{table}]")];
    if let Some((head, name)) = table.split_once('.') {
        out.push(format!("[{head}.\"{name}\"]"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("jitbot.toml"), text)
    }

    pub(super) const GOOD: &str = r#"
[providers.ops-hook]
kind = "webhook"
url = "https://ops.example.com/jit"
secret = "0123456789abcdef0123"

[roles.prod-db-readonly]
description = "Read-only SQL on production"
provider = "ops-hook"
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "30m"
max_duration = "4h"
"#;

    #[test]
    fn a_minimal_config_parses_with_defaults() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database.url.expose(), "sqlite://jitbot.db");
        let role = c.roles.get("prod-db-readonly").unwrap();
        assert_eq!(role.approvals_required, 1);
        assert_eq!(role.max_duration.to_string(), "4h");
    }

    /// URLs are parsed at load and kept parsed; a bad one names its key
    /// (and the parser its line); the issuer stays exactly as written.
    #[test]
    fn urls_are_parsed_at_load_and_bad_ones_named() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.server.public_base(), "http://localhost:8080");
        let ProviderConfig::Webhook(w) = &c.providers["ops-hook"] else { panic!("a webhook") };
        assert_eq!(w.url.host_str(), Some("ops.example.com"));

        let e = parse(&GOOD.replace("https://ops.example.com/jit", "ops.example.com/jit")).unwrap_err().to_string();
        assert!(
            e.contains("webhook provider's url") && e.contains("is not a URL") && e.contains("[providers.ops-hook]"),
            "{e}"
        );
        let e = parse(&format!("[server]\npublic_url = \"ftp://jitbot.example\"\n{GOOD}")).unwrap_err().to_string();
        assert!(e.contains("server.public_url must be an http:// or https:// URL") && e.contains("line 2"), "{e}");
        let slack = "[slack]\nmode = \"socket\"\nbot_token = \"xoxb-1\"\napp_token = \"xapp-1\"\n\
                     team_id = \"T0WORKSPACE\"\napprovals_channel = \"C0APPROVALS\"\n";
        let e = parse(&format!("{slack}api_url = \"http://127.0.0.1:9/api/\"\n{GOOD}")).unwrap_err().to_string();
        assert!(e.contains("slack.api_url must be an http(s) URL without a trailing slash"), "{e}");
        let c = parse(&format!("{slack}api_url = \"http://127.0.0.1:9/api\"\n{GOOD}")).unwrap();
        assert_eq!(c.slack.as_ref().unwrap().api_base(), "http://127.0.0.1:9/api");

        let idp = "[idp]\nclient_id = \"jitbot\"\nclient_secret = \"secret\"\n";
        let c = parse(&format!("{slack}{idp}issuer = \"https://idp.example/realms/x/\"\n{GOOD}")).unwrap();
        assert_eq!(c.idp.as_ref().unwrap().issuer.as_str(), "https://idp.example/realms/x/");
        let e = parse(&format!("{slack}{idp}issuer = \"idp.example\"\n{GOOD}")).unwrap_err().to_string();
        assert!(e.contains("idp.issuer: \"idp.example\" is not a URL"), "{e}");

        let lookup = |var: &str| (var == "JITBOT_SERVER_PUBLIC_URL").then(|| "jitbot.example".to_owned());
        let e = Config::parse_with_overrides(Path::new("jitbot.toml"), GOOD, &lookup).unwrap_err().to_string();
        assert!(e.contains("JITBOT_SERVER_PUBLIC_URL (overriding server.public_url)"), "{e}");
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let text = GOOD.replace("max_duration = \"4h\"", "max_duration = \"4h\"\nmax_durration = \"5h\"");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("max_durration"), "{e}");
        assert!(e.contains("line 14"), "{e}");
        assert!(e.starts_with("jitbot.toml:"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = parse(&GOOD.replace("\"4h\"", "\"forever\"")).unwrap_err().to_string();
        assert!(e.contains("forever") && e.contains("line 13"), "{e}");
        let e = parse(&GOOD.replace("provider = \"ops-hook\"", "provider = \"nope\"")).unwrap_err().to_string();
        assert!(e.contains("line 9") && e.contains("roles.prod-db-readonly.provider"), "{e}");
        let e = parse(&GOOD.replace("\"30m\"", "\"8h\"")).unwrap_err().to_string();
        assert!(e.contains("default_duration") && e.contains("line 12"), "{e}");
    }

    #[test]
    fn environment_overrides_replace_single_keys() {
        let with = |value: &'static str| move |var: &str| (var == "JITBOT_SERVER_LISTEN").then(|| value.to_owned());
        let c = Config::parse_with_overrides(Path::new("jitbot.toml"), GOOD, &with("0.0.0.0:9999")).unwrap();
        assert_eq!(c.server.listen.to_string(), "0.0.0.0:9999");
        let e = Config::parse_with_overrides(Path::new("jitbot.toml"), GOOD, &with("nowhere")).unwrap_err().to_string();
        assert!(e.contains("JITBOT_SERVER_LISTEN") && e.contains("server.listen"), "{e}");
    }

    #[test]
    fn secrets_expand_from_the_environment_and_stay_redacted() {
        // SAFETY: tests in this module use distinct variable names.
        unsafe { std::env::set_var("JITBOT_TEST_HOOK_SECRET", "s3cr3t-s3cr3t-s3cr3t") };
        let c = parse(&GOOD.replace("\"0123456789abcdef0123\"", "\"${JITBOT_TEST_HOOK_SECRET}\"")).unwrap();
        let Some(ProviderConfig::Webhook(w)) = c.providers.get("ops-hook") else { panic!("not a webhook") };
        assert_eq!(w.secret.expose(), "s3cr3t-s3cr3t-s3cr3t");
        assert!(!format!("{c:?}").contains("s3cr3t"));
        let e =
            parse(&GOOD.replace("\"0123456789abcdef0123\"", "\"${JITBOT_TEST_UNSET_VAR}\"")).unwrap_err().to_string();
        assert!(e.contains("JITBOT_TEST_UNSET_VAR is not set"), "{e}");
    }

    /// The config is plain data: it names the domain and libraries, never
    /// an adapter, so it can be read and checked without any of them.
    #[test]
    fn the_config_imports_no_adapter() {
        let files = [
            ("mod.rs", include_str!("mod.rs")),
            ("server.rs", include_str!("server.rs")),
            ("database.rs", include_str!("database.rs")),
            ("policy.rs", include_str!("policy.rs")),
            ("slack.rs", include_str!("slack.rs")),
            ("idp.rs", include_str!("idp.rs")),
            ("scim.rs", include_str!("scim.rs")),
            ("audit.rs", include_str!("audit.rs")),
            ("jobs.rs", include_str!("jobs.rs")),
            ("providers.rs", include_str!("providers.rs")),
            ("roles.rs", include_str!("roles.rs")),
            ("report.rs", include_str!("report.rs")),
        ];
        for (file, text) in files {
            for adapter in [
                "idp",
                "providers",
                "slack",
                "service",
                "store",
                "jobs",
                "scim",
                "credentials",
                "app",
                "insights",
                "report",
            ] {
                let path = format!("crate::{adapter}");
                assert!(
                    !text.contains(&format!("{path}::")) && !text.contains(&format!("{path};")),
                    "{file} names {path}"
                );
            }
        }
    }
}

#[cfg(test)]
mod proptests;
