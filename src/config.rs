//! `jitbot.toml`: the typed configuration, `${VAR}` secret expansion,
//! environment overrides and validation.
//!
//! Every error names the file and the offending key (and the line where the
//! TOML parser or a table header can tell it), because the person reading it
//! is an operator whose bot just refused to start. What lives elsewhere: the
//! rules a role's settings feed ([`crate::domain::policy`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

use crate::domain::{AccessDuration, AutoApproveRule, RoleName, RolePolicy, TicketPattern};

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
    /// `[providers.NAME]`: the systems access is granted in.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// `[roles.NAME]`: what can be requested.
    #[serde(default)]
    pub roles: BTreeMap<String, RoleConfig>,
}

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The socket the HTTP server binds (`/healthz`, `/readyz`, and later `/slack/*`, `/oidc/*`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The address browsers use to reach jitbot; used in links jitbot sends.
    #[serde(default = "default_public_url")]
    pub public_url: String,
    /// The longest one HTTP request may take, reading its body included;
    /// then it gets 503 and its work is dropped (a slow or stuck client
    /// cannot hold a connection and a task forever).
    #[serde(default = "default_request_timeout", deserialize_with = "std_duration")]
    pub request_timeout: Duration,
    /// Requests served at once; one more gets 503 at once instead of
    /// queueing without bound (`/healthz` is always answered).
    #[serde(default = "default_max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    /// How long a connection may wait for a request's head (request line
    /// and headers, counted from the connection's start or the previous
    /// response); then it is closed. Bounds clients that trickle headers;
    /// keep it longer than a load balancer's idle timeout (AWS ALB: 60 s),
    /// or the balancer reuses connections jitbot is closing.
    #[serde(default = "default_idle_timeout", deserialize_with = "std_duration")]
    pub idle_timeout: Duration,
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(75)
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_max_concurrent_requests() -> usize {
    256
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_public_url() -> String {
    "http://localhost:8080".to_owned()
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            public_url: default_public_url(),
            request_timeout: default_request_timeout(),
            max_concurrent_requests: default_max_concurrent_requests(),
            idle_timeout: default_idle_timeout(),
        }
    }
}

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
    10
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { url: default_database_url(), max_connections: default_max_connections() }
    }
}

/// `[policy]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// IdP groups whose members may revoke anyone's grant.
    #[serde(default)]
    pub admin_groups: BTreeSet<String>,
}

/// `[idp]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdpConfig {
    /// The issuer URL, exactly as the IdP's discovery document states it.
    pub issuer: String,
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

fn default_true() -> bool {
    true
}

/// `[scim]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScimConfig {
    /// The bearer token the IdP sends (at least 32 characters).
    pub token: Secret,
    /// A second accepted token while rotating.
    pub previous_token: Option<Secret>,
}

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

/// How Slack reaches jitbot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlackMode {
    /// jitbot opens websockets to Slack (no public URL needed for Slack).
    Socket,
    /// Slack POSTs to `/slack/commands`, `/slack/interactions`, `/slack/events`.
    Http,
}

/// `[slack]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// Transport: `socket` (websockets opened by jitbot) or `http`.
    pub mode: SlackMode,
    /// The bot token (`xoxb-...`) for Web API calls.
    pub bot_token: Secret,
    /// The app-level token (`xapp-...`, scope `connections:write`); Socket Mode only.
    pub app_token: Option<Secret>,
    /// The app's signing secret; every HTTP request from Slack is checked
    /// against it. Required in HTTP mode.
    pub signing_secret: Option<Secret>,
    /// Websocket connections each replica holds in Socket Mode (Slack
    /// delivers each event to one of them).
    #[serde(default = "default_socket_connections")]
    pub socket_connections: u32,
    /// Base URL of the Web API; tests point it at a local fake.
    #[serde(default = "default_slack_api_url")]
    pub api_url: String,
    /// The one workspace served; requests from any other are refused.
    pub team_id: String,
    /// Default channel for approval cards.
    pub approvals_channel: String,
    /// Optional channel that receives a line for every decision and alerts.
    pub audit_channel: Option<String>,
}

fn default_socket_connections() -> u32 {
    2
}

fn default_slack_api_url() -> String {
    "https://slack.com/api".to_owned()
}

impl SlackConfig {
    /// The only host a `response_url` may point at: Slack's hooks host, or
    /// the host of a custom `api_url` (a local fake Slack in tests).
    pub fn response_url_host(&self) -> String {
        match reqwest::Url::parse(&self.api_url) {
            Ok(u) if u.host_str() != Some("slack.com") => {
                format!("{}{}", u.host_str().unwrap_or(""), u.port().map(|p| format!(":{p}")).unwrap_or_default())
            }
            _ => "hooks.slack.com".to_owned(),
        }
    }
}

/// `[providers.NAME]`: one target system, chosen by `kind`.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ProviderConfig {
    /// Calls an HTTPS endpoint with a signed JSON body to grant and revoke.
    Webhook(WebhookProviderConfig),
    /// Grants and revokes PostgreSQL role memberships (or short-lived logins).
    Postgres(PostgresProviderConfig),
    /// Runs a configured program for each grant and revocation.
    Command(CommandProviderConfig),
}

impl ProviderConfig {
    /// The `kind` as written in the file, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Webhook(_) => "webhook",
            Self::Postgres(_) => "postgres",
            Self::Command(_) => "command",
        }
    }
}

/// `kind = "postgres"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresProviderConfig {
    /// Admin connection URL (a secret: it may carry a password). The role it
    /// names needs `CREATEROLE` and `pg_signal_backend`, never superuser.
    pub url: Secret,
    /// Template of the database login a requester's access is granted to,
    /// e.g. `"{email_local}"`; a role's `grant.login` overrides it.
    #[serde(default = "default_login_template")]
    pub login: String,
    /// The email domains whose people this provider's logins are for
    /// (lower case). Required when a login template uses `{email_local}`,
    /// which would otherwise give `alice@corp.example` and
    /// `alice@vendor.example` one login; requesters from other domains are
    /// refused.
    #[serde(default)]
    pub email_domains: Vec<String>,
    /// End the login's open sessions on revocation, so access does not
    /// outlive it (a session that ran `SET ROLE` keeps the role otherwise).
    #[serde(default = "default_true")]
    pub terminate_sessions: bool,
    /// Start of the names of logins created per request (`jit_12_alice`).
    /// Role names are cluster-wide: two jitbot deployments sharing a
    /// cluster must use different prefixes.
    #[serde(default = "default_ephemeral_prefix")]
    pub ephemeral_login_prefix: String,
    /// How long one statement (and one connection attempt) may take.
    #[serde(default = "default_webhook_timeout", deserialize_with = "std_duration")]
    pub timeout: Duration,
}

fn default_login_template() -> String {
    "{email_local}".to_owned()
}

fn default_ephemeral_prefix() -> String {
    "jit_".to_owned()
}

/// `kind = "command"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandProviderConfig {
    /// The program and its arguments run for a grant (no shell is involved).
    pub grant_command: Vec<String>,
    /// The program and its arguments run for a revocation; required unless
    /// every role on this provider is `one_shot`.
    pub revoke_command: Option<Vec<String>>,
    /// How long one run may take; the program (and its process group) is
    /// killed after that and the run counts as failed.
    #[serde(default = "default_command_timeout", deserialize_with = "std_duration")]
    pub timeout: Duration,
    /// Extra environment for the program. The program does not inherit
    /// jitbot's environment (which holds jitbot's own secrets): only `PATH`,
    /// `HOME`, `LANG`, these variables and the `JITBOT_*` facts are set.
    #[serde(default)]
    pub env: BTreeMap<String, Secret>,
}

fn default_command_timeout() -> Duration {
    Duration::from_secs(60)
}

/// A postgres role's `grant = { pg_role = "...", ... }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresGrantConfig {
    /// The existing database role whose membership is handed out.
    pub pg_role: String,
    /// Create a login only for this grant (`jit_<request>_<name>`), valid
    /// until the expiry, instead of granting to the requester's own login.
    #[serde(default)]
    pub ephemeral_login: bool,
    /// Overrides the provider's `login` template for this role.
    pub login: Option<String>,
}

/// A command role's optional `grant = { args = [...] }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandGrantConfig {
    /// Appended to the provider's command line for this role.
    #[serde(default)]
    pub args: Vec<String>,
}

/// `kind = "webhook"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookProviderConfig {
    /// Where grant and revoke calls are POSTed.
    pub url: String,
    /// The HMAC key the receiver verifies signatures with.
    pub secret: Secret,
    /// Sent as `Jitbot-Key-Id` so a receiver can hold two keys while rotating.
    #[serde(default = "default_key_id")]
    pub key_id: String,
    /// How long one call may take before it counts as failed (and is retried).
    #[serde(default = "default_webhook_timeout", deserialize_with = "std_duration")]
    pub timeout: Duration,
}

fn opt_std_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    std_duration(d).map(Some)
}

fn ticket_pattern<'de, D: Deserializer<'de>>(d: D) -> Result<Option<TicketPattern>, D::Error> {
    let raw = String::deserialize(d)?;
    TicketPattern::parse(&raw).map(Some).map_err(serde::de::Error::custom)
}

fn default_key_id() -> String {
    "k1".to_owned()
}

fn default_webhook_timeout() -> Duration {
    Duration::from_secs(10)
}

/// `[roles.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    /// One line that tells requesters what the role gives.
    pub description: String,
    /// The `[providers.NAME]` that grants it.
    pub provider: String,
    /// IdP groups allowed to ask.
    pub requesters: BTreeSet<String>,
    /// IdP groups allowed to approve.
    pub approvers: BTreeSet<String>,
    /// Distinct approvals needed.
    #[serde(default = "default_approvals_required")]
    pub approvals_required: u32,
    /// Used when the requester names no duration.
    #[serde(deserialize_with = "access_duration")]
    pub default_duration: AccessDuration,
    /// The longest grant that may be asked for.
    #[serde(deserialize_with = "access_duration")]
    pub max_duration: AccessDuration,
    /// The shortest acceptable reason, in characters.
    #[serde(default = "default_reason_min_length")]
    pub reason_min_length: usize,
    /// Where this role's approval cards go, instead of `slack.approvals_channel`.
    pub approvals_channel: Option<String>,
    /// The requester must have authenticated at the IdP this recently.
    #[serde(default, deserialize_with = "opt_std_duration")]
    pub step_up: Option<Duration>,
    /// With `step_up`: approvers must have authenticated this recently too.
    #[serde(default)]
    pub approver_step_up: bool,
    /// When SCIM removes the holder from the group that let them request the
    /// role, their active grant is revoked at once.
    #[serde(default = "default_true")]
    pub revoke_on_group_removal: bool,
    /// What the provider grants, in the provider's own terms (`pg_role`,
    /// `args`, ...); checked against the provider's kind when loading.
    pub grant: Option<toml::Table>,
    /// A one-time action rather than access: approved once, run once,
    /// nothing to revoke. Only for `command` providers.
    #[serde(default)]
    pub one_shot: bool,
    /// A regular expression the whole ticket id must match; a ticket is
    /// then required (typed in the modal, or found in the reason).
    #[serde(default, deserialize_with = "ticket_pattern")]
    pub ticket_pattern: Option<TicketPattern>,
    /// A link for the ticket on the approval card; `{ticket}` is replaced
    /// by the ticket id.
    pub ticket_url: Option<String>,
    /// Members of these groups get up to `max_duration` without approvers.
    pub auto_approve: Option<AutoApproveConfig>,
    /// Pending requests time out after this long; the approvers are
    /// reminded halfway.
    #[serde(default, deserialize_with = "opt_std_duration")]
    pub approval_timeout: Option<Duration>,
    /// The requester may approve their own request alone, with a reason;
    /// announced loudly and flagged for review.
    #[serde(default)]
    pub break_glass: bool,
    /// How long before expiry the holder gets a DM with Extend and I'm done
    /// (`"0s"`: no warning).
    #[serde(default = "default_warn_before", deserialize_with = "std_duration")]
    pub warn_before: Duration,
    /// The longest one grant may last with all its extensions: without it,
    /// auto-approved extensions could add up to standing access.
    #[serde(default, deserialize_with = "opt_access_duration")]
    pub max_total_duration: Option<AccessDuration>,
}

impl RoleConfig {
    /// The role's `grant` table read as a postgres grant.
    pub fn postgres_grant(&self) -> Result<PostgresGrantConfig, String> {
        let table = self
            .grant
            .clone()
            .ok_or("grant is required: grant = { pg_role = \"...\" } names the database role to hand out")?;
        toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| format!("grant: {}", e.message()))
    }

    /// The role's `grant` table read as command arguments (none when absent).
    pub fn command_grant(&self) -> Result<CommandGrantConfig, String> {
        match self.grant.clone() {
            None => Ok(CommandGrantConfig::default()),
            Some(table) => {
                toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| format!("grant: {}", e.message()))
            }
        }
    }
}

/// `auto_approve = { groups = [...], max_duration = "1h" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoApproveConfig {
    /// IdP groups whose members are auto-approved.
    pub groups: BTreeSet<String>,
    /// The longest access granted without approvers.
    #[serde(deserialize_with = "access_duration")]
    pub max_duration: AccessDuration,
}

fn default_approvals_required() -> u32 {
    1
}

fn default_warn_before() -> Duration {
    Duration::from_secs(600)
}

fn default_reason_min_length() -> usize {
    4
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
    /// exactly these, so no other personal data is stored. Templates were
    /// checked by validation; one that does not parse names nothing.
    pub fn login_claims(&self) -> BTreeSet<String> {
        use crate::providers::postgres::LoginTemplate;
        let provider_templates = self.providers.values().filter_map(|p| match p {
            ProviderConfig::Postgres(p) => Some(p.login.clone()),
            _ => None,
        });
        let role_templates = self
            .roles
            .values()
            .filter(|r| matches!(self.providers.get(&r.provider), Some(ProviderConfig::Postgres(_))))
            .filter_map(|r| r.postgres_grant().ok()?.login);
        provider_templates
            .chain(role_templates)
            .filter_map(|t| LoginTemplate::parse(&t).ok())
            .flat_map(|t| t.claim_names().map(str::to_owned).collect::<Vec<_>>())
            .collect()
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
                "server.public_url" => self.server.public_url = value,
                "database.url" => self.database.url = Secret::from(value.as_str()),
                _ => {}
            }
        }
        Ok(())
    }

    fn validate(&self, text: &str) -> Result<(), String> {
        let at = |table: &str, key: Option<&str>| match locate(text, table, key) {
            Some(line) => format!("line {line}: "),
            None => String::new(),
        };
        if self.server.request_timeout.is_zero() {
            return Err(format!(
                "{}server.request_timeout must be more than 0s",
                at("server", Some("request_timeout"))
            ));
        }
        if self.server.idle_timeout.is_zero() {
            return Err(format!("{}server.idle_timeout must be more than 0s", at("server", Some("idle_timeout"))));
        }
        if self.server.max_concurrent_requests == 0 {
            return Err(format!(
                "{}server.max_concurrent_requests must be at least 1",
                at("server", Some("max_concurrent_requests"))
            ));
        }
        let db = self.database.url.expose();
        if !(db.starts_with("sqlite:") || db.starts_with("postgres://") || db.starts_with("postgresql://")) {
            return Err(format!(
                "{}database.url must start with sqlite:// or postgres://",
                at("database", Some("url"))
            ));
        }
        if self.database.max_connections == 0 {
            return Err(format!(
                "{}database.max_connections must be at least 1",
                at("database", Some("max_connections"))
            ));
        }
        if !(self.server.public_url.starts_with("http://") || self.server.public_url.starts_with("https://")) {
            return Err(format!(
                "{}server.public_url must be an http:// or https:// URL",
                at("server", Some("public_url"))
            ));
        }
        if let Some(slack) = &self.slack {
            let is_id = |s: &str, first: &[char]| {
                s.len() >= 2 && s.starts_with(first) && s.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            };
            if !is_id(&slack.team_id, &['T', 'E']) {
                return Err(format!(
                    "{}slack.team_id must be a Slack workspace id like T0123ABCD",
                    at("slack", Some("team_id"))
                ));
            }
            if !is_id(&slack.approvals_channel, &['C', 'G']) {
                return Err(format!(
                    "{}slack.approvals_channel must be a channel id like C0123ABCD (not a #name)",
                    at("slack", Some("approvals_channel"))
                ));
            }
            if let Some(ch) = &slack.audit_channel
                && !is_id(ch, &['C', 'G'])
            {
                return Err(format!(
                    "{}slack.audit_channel must be a channel id like C0123ABCD",
                    at("slack", Some("audit_channel"))
                ));
            }
            let api = reqwest::Url::parse(&slack.api_url)
                .map_err(|e| format!("{}slack.api_url is not a URL: {e}", at("slack", Some("api_url"))))?;
            if !matches!(api.scheme(), "http" | "https") || slack.api_url.ends_with('/') {
                return Err(format!(
                    "{}slack.api_url must be an http(s) URL without a trailing slash",
                    at("slack", Some("api_url"))
                ));
            }
            match slack.mode {
                SlackMode::Socket => match &slack.app_token {
                    Some(t) if t.expose().starts_with("xapp-") => {}
                    Some(_) => {
                        return Err(format!(
                            "{}slack.app_token must be an app-level token (xapp-...)",
                            at("slack", Some("app_token"))
                        ));
                    }
                    None => {
                        return Err(format!(
                            "{}slack.app_token is required with mode = \"socket\" (an app-level token with connections:write)",
                            at("slack", Some("mode"))
                        ));
                    }
                },
                SlackMode::Http => match &slack.signing_secret {
                    None => {
                        return Err(format!(
                            "{}slack.signing_secret is required with mode = \"http\"",
                            at("slack", Some("mode"))
                        ));
                    }
                    // Anyone can compute an HMAC with an empty or tiny key.
                    Some(s) if s.expose().trim().len() < 16 => {
                        return Err(format!(
                            "{}slack.signing_secret is too short: use the app's Signing Secret from Slack",
                            at("slack", Some("signing_secret"))
                        ));
                    }
                    Some(_) => {}
                },
            }
            if !(1..=10).contains(&slack.socket_connections) {
                return Err(format!(
                    "{}slack.socket_connections must be between 1 and 10",
                    at("slack", Some("socket_connections"))
                ));
            }
            if !slack.bot_token.expose().starts_with("xoxb-") {
                return Err(format!(
                    "{}slack.bot_token must be a bot token (xoxb-...)",
                    at("slack", Some("bot_token"))
                ));
            }
        }
        if let Some(scim) = &self.scim {
            for (key, token) in [("token", Some(&scim.token)), ("previous_token", scim.previous_token.as_ref())] {
                if let Some(t) = token
                    && t.expose().len() < 32
                {
                    return Err(format!(
                        "{}scim.{key} must be at least 32 characters (e.g. `openssl rand -hex 32`)",
                        at("scim", Some(key))
                    ));
                }
            }
        }
        if let Some(key) = &self.audit.key {
            crate::domain::AuditKey::new(key.expose())
                .map_err(|e| format!("{}audit.key {e}", at("audit", Some("key"))))?;
        }
        if self.audit.checkpoint_interval < MIN_CHECKPOINT_INTERVAL {
            return Err(format!(
                "{}audit.checkpoint_interval must be at least 1m",
                at("audit", Some("checkpoint_interval"))
            ));
        }
        if let Some(idp) = &self.idp {
            let issuer = reqwest::Url::parse(&idp.issuer)
                .map_err(|e| format!("{}idp.issuer is not a URL: {e}", at("idp", Some("issuer"))))?;
            if !matches!(issuer.scheme(), "http" | "https") {
                return Err(format!("{}idp.issuer must be an https:// URL", at("idp", Some("issuer"))));
            }
            if idp.client_secret.expose().trim().is_empty() {
                return Err(format!("{}idp.client_secret must not be empty", at("idp", Some("client_secret"))));
            }
            if !idp.scopes.iter().any(|s| s == "openid") {
                return Err(format!("{}idp.scopes must include \"openid\"", at("idp", Some("scopes"))));
            }
            if idp.scopes.iter().any(|s| s == "offline_access") && idp.token_encryption_key.is_none() {
                return Err(format!(
                    "{}idp.token_encryption_key is required when idp.scopes has offline_access (refresh tokens are encrypted at rest)",
                    at("idp", None)
                ));
            }
            if idp.groups_delimiter.as_deref().is_some_and(str::is_empty) {
                return Err(format!(
                    "{}idp.groups_delimiter must not be empty (leave it out to read a groups string as one group)",
                    at("idp", Some("groups_delimiter"))
                ));
            }
            if let Some(key) = &idp.token_encryption_key {
                crate::idp::TokenCipher::from_base64(key.expose())
                    .map_err(|e| format!("{}idp.token_encryption_key: {e}", at("idp", Some("token_encryption_key"))))?;
            }
            if self.slack.is_none() {
                return Err(format!("{}[idp] needs [slack]: people start linking with /jit link", at("idp", None)));
            }
        }
        for (name, provider) in &self.providers {
            let table = format!("providers.{name}");
            RoleName::parse(name).map_err(|e| format!("{}[{table}]: {e}", at(&table, None)))?;
            match provider {
                ProviderConfig::Postgres(p) => {
                    let url = p.url.expose();
                    // Never echo the URL: it may carry a password.
                    if !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
                        || url.parse::<sqlx::postgres::PgConnectOptions>().is_err()
                    {
                        return Err(format!(
                            "{}{table}.url must be a postgres:// URL (the value is not shown: it may hold a password)",
                            at(&table, Some("url"))
                        ));
                    }
                    crate::providers::postgres::LoginTemplate::parse(&p.login)
                        .map_err(|e| format!("{}{table}.login: {e}", at(&table, Some("login"))))?;
                    if let Some(bad) = p.email_domains.iter().find(|d| {
                        d.is_empty()
                            || d.contains('@')
                            || !d
                                .chars()
                                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-'))
                    }) {
                        return Err(format!(
                            "{}{table}.email_domains: {bad:?} is not a lower-case domain like \"example.com\"",
                            at(&table, Some("email_domains"))
                        ));
                    }
                    let prefix = &p.ephemeral_login_prefix;
                    if prefix.is_empty()
                        || prefix.len() > 20
                        || prefix.starts_with(|c: char| c.is_ascii_digit())
                        || !prefix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    {
                        return Err(format!(
                            "{}{table}.ephemeral_login_prefix must be 1-20 characters of a-z, 0-9, '_', not starting with a digit",
                            at(&table, Some("ephemeral_login_prefix"))
                        ));
                    }
                }
                ProviderConfig::Command(c) => {
                    for (key, cmd) in
                        [("grant_command", Some(&c.grant_command)), ("revoke_command", c.revoke_command.as_ref())]
                    {
                        if let Some(cmd) = cmd
                            && cmd.first().is_none_or(|p| p.trim().is_empty())
                        {
                            return Err(format!(
                                "{}{table}.{key} must name a program, like [\"/usr/local/bin/grant-access\", \"--flag\"]",
                                at(&table, Some(key))
                            ));
                        }
                    }
                    if c.timeout.is_zero() {
                        return Err(format!("{}{table}.timeout must be more than zero", at(&table, Some("timeout"))));
                    }
                    for name in c.env.keys() {
                        if name.is_empty()
                            || name.starts_with("JITBOT_")
                            || !name.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
                        {
                            return Err(format!(
                                "{}{table}.env: {name:?} must be letters, digits or '_' and not start with JITBOT_",
                                at(&table, Some("env"))
                            ));
                        }
                    }
                }
                ProviderConfig::Webhook(w) => {
                    let url = reqwest::Url::parse(&w.url).map_err(|e| {
                        format!("{}{table}.url: {:?} is not a URL: {e}", at(&table, Some("url")), w.url)
                    })?;
                    if !matches!(url.scheme(), "http" | "https") {
                        return Err(format!("{}{table}.url must be http:// or https://", at(&table, Some("url"))));
                    }
                    if w.secret.expose().len() < 16 {
                        return Err(format!(
                            "{}{table}.secret must be at least 16 characters: receivers trust whoever knows it",
                            at(&table, Some("secret"))
                        ));
                    }
                    if w.key_id.is_empty()
                        || !w.key_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    {
                        return Err(format!(
                            "{}{table}.key_id must be letters, digits, '-' or '_'",
                            at(&table, Some("key_id"))
                        ));
                    }
                }
            }
        }
        for (name, role) in &self.roles {
            let table = format!("roles.{name}");
            RoleName::parse(name).map_err(|e| format!("{}[{table}]: {e}", at(&table, None)))?;
            if !self.providers.contains_key(&role.provider) {
                let known = self.providers.keys().cloned().collect::<Vec<_>>().join(", ");
                return Err(format!(
                    "{}{table}.provider: there is no [providers.{}] (configured providers: {})",
                    at(&table, Some("provider")),
                    role.provider,
                    if known.is_empty() { "none".to_owned() } else { known }
                ));
            }
            self.validate_role_grant(name, role).map_err(|e| {
                let key = if e.starts_with("one_shot") { "one_shot" } else { "grant" };
                format!("{}{table}.{e}", at(&table, Some(key)))
            })?;
            if let Some(ch) = &role.approvals_channel
                && !(ch.len() >= 2 && ch.starts_with(['C', 'G']) && ch.chars().all(|c| c.is_ascii_alphanumeric()))
            {
                return Err(format!(
                    "{}{table}.approvals_channel must be a channel id like C0123ABCD",
                    at(&table, Some("approvals_channel"))
                ));
            }
            if role.step_up.is_some() && self.idp.is_none() {
                return Err(format!("{}{table}.step_up needs an [idp] to sign in with", at(&table, Some("step_up"))));
            }
            if role.approver_step_up && role.step_up.is_none() {
                return Err(format!(
                    "{}{table}.approver_step_up needs {table}.step_up (how recent the sign-in must be)",
                    at(&table, Some("approver_step_up"))
                ));
            }
            if role.requesters.is_empty() {
                return Err(format!(
                    "{}{table}.requesters must name at least one IdP group",
                    at(&table, Some("requesters"))
                ));
            }
            if role.approvers.is_empty() {
                return Err(format!(
                    "{}{table}.approvers must name at least one IdP group",
                    at(&table, Some("approvers"))
                ));
            }
            if role.approvals_required == 0 || role.approvals_required > 10 {
                return Err(format!(
                    "{}{table}.approvals_required must be between 1 and 10",
                    at(&table, Some("approvals_required"))
                ));
            }
            if role.default_duration > role.max_duration {
                return Err(format!(
                    "{}{table}.default_duration ({}) is longer than max_duration ({})",
                    at(&table, Some("default_duration")),
                    role.default_duration,
                    role.max_duration
                ));
            }
            if role.max_duration.get() > Duration::from_secs(30 * 86_400) {
                return Err(format!("{}{table}.max_duration may be at most 30 days", at(&table, Some("max_duration"))));
            }
            if let Some(url) = &role.ticket_url {
                let parsed = reqwest::Url::parse(&url.replace("{ticket}", "T"));
                if !url.contains("{ticket}") || !parsed.is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
                    return Err(format!(
                        "{}{table}.ticket_url must be an http(s) URL containing {{ticket}}, like \"https://jira.example.com/browse/{{ticket}}\"",
                        at(&table, Some("ticket_url"))
                    ));
                }
            }
            if let Some(auto) = &role.auto_approve {
                if auto.groups.is_empty() {
                    return Err(format!(
                        "{}{table}.auto_approve.groups must name at least one IdP group",
                        at(&table, Some("auto_approve"))
                    ));
                }
                if auto.max_duration > role.max_duration {
                    return Err(format!(
                        "{}{table}.auto_approve.max_duration ({}) is longer than max_duration ({})",
                        at(&table, Some("auto_approve")),
                        auto.max_duration,
                        role.max_duration
                    ));
                }
            }
            if let Some(t) = role.approval_timeout
                && (t < Duration::from_secs(60) || t > Duration::from_secs(30 * 86_400))
            {
                return Err(format!(
                    "{}{table}.approval_timeout must be between 1m and 30 days",
                    at(&table, Some("approval_timeout"))
                ));
            }
            if role.warn_before > Duration::from_secs(86_400) {
                return Err(format!("{}{table}.warn_before may be at most 1 day", at(&table, Some("warn_before"))));
            }
            if let Some(total) = role.max_total_duration
                && total < role.max_duration
            {
                return Err(format!(
                    "{}{table}.max_total_duration ({total}) is shorter than max_duration ({}): one grant could not last as long as it may be asked for",
                    at(&table, Some("max_total_duration")),
                    role.max_duration
                ));
            }
        }
        Ok(())
    }

    /// Checks a role's `grant` and `one_shot` against its provider's kind.
    /// Errors start with the key they are about (`grant...`, `one_shot...`).
    fn validate_role_grant(&self, name: &str, role: &RoleConfig) -> Result<(), String> {
        let Some(provider) = self.providers.get(&role.provider) else { return Ok(()) };
        if role.one_shot && !matches!(provider, ProviderConfig::Command(_)) {
            return Err(format!(
                "one_shot is only for roles on a command provider ({} is {})",
                role.provider,
                provider.kind()
            ));
        }
        match provider {
            ProviderConfig::Webhook(_) => {
                if role.grant.is_some() {
                    return Err("grant is not used by webhook providers: receivers get the role name".to_owned());
                }
            }
            ProviderConfig::Postgres(p) => {
                let grant = role.postgres_grant()?;
                crate::providers::postgres::check_role_name(&grant.pg_role)
                    .map_err(|e| format!("grant.pg_role: {e}"))?;
                if let Some(login) = &grant.login {
                    if grant.ephemeral_login {
                        return Err(
                            "grant.login is not used with ephemeral_login = true (jitbot names the login)".into()
                        );
                    }
                    crate::providers::postgres::LoginTemplate::parse(login).map_err(|e| format!("grant.login: {e}"))?;
                }
                let template = grant.login.as_deref().unwrap_or(&p.login);
                if !grant.ephemeral_login
                    && p.email_domains.is_empty()
                    && crate::providers::postgres::LoginTemplate::parse(template).is_ok_and(|t| t.uses_email_local())
                {
                    return Err(format!(
                        "grant: the database login {template:?} uses {{email_local}}, which gives alice@one.example and \
                         alice@other.example the same login; set providers.{}.email_domains = [\"example.com\"] (only \
                         people from those domains may request), or make the login from {{subject}} or {{claims.NAME}}",
                        role.provider
                    ));
                }
            }
            ProviderConfig::Command(c) => {
                role.command_grant()?;
                if !role.one_shot && c.revoke_command.is_none() {
                    return Err(format!(
                        "grant: role {name} holds access until it expires, so providers.{}.revoke_command is required (or set one_shot = true)",
                        role.provider
                    ));
                }
            }
        }
        Ok(())
    }

    /// The policy of a configured role, or `None` for an unknown name.
    pub fn role_policy(&self, name: &RoleName) -> Option<RolePolicy> {
        let role = self.roles.get(name.as_str())?;
        Some(RolePolicy {
            role: name.clone(),
            requesters: role.requesters.clone(),
            approvers: role.approvers.clone(),
            approvals_required: role.approvals_required,
            default_duration: role.default_duration,
            max_duration: role.max_duration,
            reason_min_length: role.reason_min_length,
            ticket_pattern: role.ticket_pattern.clone(),
            auto_approve: role
                .auto_approve
                .as_ref()
                .map(|a| AutoApproveRule { groups: a.groups.clone(), max_duration: a.max_duration }),
            approval_timeout: role.approval_timeout,
            break_glass: role.break_glass,
            warn_before: role.warn_before,
            max_total_duration: role.max_total_duration,
        })
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

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("jitbot.toml"), text)
    }

    const GOOD: &str = r#"
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
    fn workflow_policies_parse_and_are_checked() {
        let extra = "max_duration = \"4h\"\nticket_pattern = \"INC-[0-9]+\"\nticket_url = \"https://jira.example.com/browse/{ticket}\"\nauto_approve = { groups = [\"oncall\"], max_duration = \"1h\" }\napproval_timeout = \"1h\"\nbreak_glass = true\nwarn_before = \"5m\"";
        let text = GOOD.replace("max_duration = \"4h\"", extra);
        let c = parse(&text).unwrap();
        let p = c.role_policy(&RoleName::parse("prod-db-readonly").unwrap()).unwrap();
        assert_eq!(p.ticket_pattern.as_ref().map(|t| t.as_str()), Some("INC-[0-9]+"));
        assert_eq!(p.auto_approve.as_ref().map(|a| a.max_duration.to_string()), Some("1h".into()));
        assert_eq!(p.approval_timeout, Some(Duration::from_secs(3600)));
        assert!(p.break_glass);
        assert_eq!(p.warn_before, Duration::from_secs(300));
        // Defaults: no ticket, no auto-approval, no timeout, a 10-minute warning.
        let p = parse(GOOD).unwrap().role_policy(&RoleName::parse("prod-db-readonly").unwrap()).unwrap();
        assert!(p.ticket_pattern.is_none() && p.auto_approve.is_none() && p.approval_timeout.is_none());
        assert!(!p.break_glass);
        assert_eq!(p.warn_before, Duration::from_secs(600));

        let cases = [
            ("ticket_pattern = \"INC-[0-9]+\"", "ticket_pattern = \"INC-[\"", "line 14"),
            ("{ticket}", "{id}", "ticket_url must be an http(s) URL containing {ticket}"),
            ("max_duration = \"1h\" }", "max_duration = \"5h\" }", "auto_approve.max_duration (5h) is longer"),
            ("groups = [\"oncall\"]", "groups = []", "auto_approve.groups must name"),
            ("approval_timeout = \"1h\"", "approval_timeout = \"10s\"", "approval_timeout must be between"),
            ("warn_before = \"5m\"", "warn_before = \"2d\"", "warn_before may be at most"),
            (
                "warn_before = \"5m\"",
                "max_total_duration = \"2h\"",
                "max_total_duration (2h) is shorter than max_duration (4h)",
            ),
            ("warn_before = \"5m\"", "max_total_duration = \"soon\"", "is not a duration"),
            ("break_glass = true", "break_glass = \"yes\"", "break_glass"),
        ];
        for (from, to, want) in cases {
            let e = parse(&text.replace(from, to)).unwrap_err().to_string();
            assert!(e.contains(want), "{to}: {e}");
        }
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

    const PROVIDERS: &str = r#"
[providers.prod-db]
kind = "postgres"
url = "postgres://jitbot:hunter2hunter2@db.internal/prod"
email_domains = ["example.com"]

[providers.k8s]
kind = "command"
grant_command = ["/usr/local/bin/k8s-access", "--cluster", "prod"]
revoke_command = ["/usr/local/bin/k8s-access", "--revoke"]
timeout = "30s"
env = { KUBECONFIG = "/etc/jitbot/kubeconfig" }

[providers.jobs]
kind = "command"
grant_command = ["/usr/local/bin/run-import"]

[roles.db-ro]
description = "Read-only SQL"
provider = "prod-db"
grant = { pg_role = "readonly" }
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "30m"
max_duration = "4h"

[roles.db-eph]
description = "A login of your own"
provider = "prod-db"
grant = { pg_role = "readonly", ephemeral_login = true }
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "30m"
max_duration = "4h"

[roles.k8s-edit]
description = "Edit in payments"
provider = "k8s"
grant = { args = ["--namespace", "payments"] }
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "30m"
max_duration = "4h"

[roles.import]
description = "Run the data import"
provider = "jobs"
one_shot = true
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "15m"
max_duration = "1h"
"#;

    #[test]
    fn postgres_and_command_providers_parse_with_role_grants() {
        let c = parse(PROVIDERS).unwrap();
        let Some(ProviderConfig::Postgres(p)) = c.providers.get("prod-db") else { panic!("not postgres") };
        assert_eq!(p.login, "{email_local}");
        assert!(p.terminate_sessions);
        assert!(!format!("{c:?}").contains("hunter2"), "the admin URL is a secret");
        let g = c.roles.get("db-eph").unwrap().postgres_grant().unwrap();
        assert_eq!((g.pg_role.as_str(), g.ephemeral_login), ("readonly", true));
        let Some(ProviderConfig::Command(k)) = c.providers.get("k8s") else { panic!("not command") };
        assert_eq!(k.timeout, Duration::from_secs(30));
        assert_eq!(c.roles.get("k8s-edit").unwrap().command_grant().unwrap().args, ["--namespace", "payments"]);
        assert!(c.roles.get("import").unwrap().one_shot);
    }

    #[test]
    fn email_local_logins_need_the_email_domains_they_are_unambiguous_in() {
        let without = PROVIDERS.replace("email_domains = [\"example.com\"]\n", "");
        let e = parse(&without).unwrap_err().to_string();
        assert!(e.contains("providers.prod-db.email_domains"), "{e}");
        assert!(e.contains("{email_local}"), "{e}");
        // A login made from the subject needs none.
        let subject = without.replace(
            "url = \"postgres://jitbot:hunter2hunter2@db.internal/prod\"",
            "url = \"postgres://jitbot:hunter2hunter2@db.internal/prod\"\nlogin = \"{subject}\"",
        );
        parse(&subject).unwrap();
        let bad = PROVIDERS.replace("[\"example.com\"]", "[\"@Example.com\"]");
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.contains("email_domains"), "{e}");
    }

    #[test]
    fn sign_ins_keep_only_the_claims_login_templates_name() {
        assert!(parse(PROVIDERS).unwrap().login_claims().is_empty());
        let text = PROVIDERS
            .replace("pg_role = \"readonly\" }", "pg_role = \"readonly\", login = \"{claims.preferred_username}\" }")
            .replace("db.internal/prod\"\n", "db.internal/prod\"\nlogin = \"x_{claims.employee_id}\"\n");
        let c = parse(&text).unwrap();
        assert_eq!(c.login_claims().into_iter().collect::<Vec<_>>(), ["employee_id", "preferred_username"]);
    }

    #[test]
    fn grants_that_do_not_fit_their_provider_are_named() {
        let e = parse(&PROVIDERS.replace("grant = { pg_role = \"readonly\" }\n", "")).unwrap_err().to_string();
        assert!(e.contains("roles.db-ro.grant") && e.contains("pg_role"), "{e}");
        let e =
            parse(&PROVIDERS.replace("pg_role = \"readonly\" }", "pg_role = \"readonly\", login = \"{nickname}\" }"))
                .unwrap_err()
                .to_string();
        assert!(e.contains("unknown placeholder {nickname}"), "{e}");
        let e = parse(&PROVIDERS.replace("pg_role", "pg_roele")).unwrap_err().to_string();
        assert!(e.contains("line 30: roles.db-eph.grant: unknown field `pg_roele`"), "{e}");
        // A role that holds access needs a way to take it away again.
        let e = parse(&PROVIDERS.replace("one_shot = true\n", "")).unwrap_err().to_string();
        assert!(e.contains("roles.import.grant") && e.contains("revoke_command is required"), "{e}");
        let e = parse(&format!("{GOOD}one_shot = true\n")).unwrap_err().to_string();
        assert!(e.contains("one_shot is only for roles on a command provider"), "{e}");
        let e = parse(&PROVIDERS.replace("grant_command = [\"/usr/local/bin/run-import\"]", "grant_command = []"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("providers.jobs.grant_command must name a program"), "{e}");
    }

    #[test]
    fn a_bad_admin_url_is_refused_without_echoing_it() {
        let e = parse(
            &PROVIDERS.replace("postgres://jitbot:hunter2hunter2@db.internal/prod", "mysql://root:hunter2hunter2@x"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("providers.prod-db.url must be a postgres:// URL"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }
}

#[cfg(test)]
mod idp_claim_tests {
    use super::*;

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
}

#[cfg(test)]
#[path = "config_proptests.rs"]
mod proptests;
