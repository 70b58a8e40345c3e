//! `[providers.NAME]`: the systems access is granted in, one per `kind`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::ldap::LdapGroupProviderConfig;
use super::urls::{self, Url};
use super::{At, Secret, default_true, std_duration};
use crate::domain::LoginTemplate;
use crate::domain::aws::{self as aws_ids, UserLookup};

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
    /// Adds people to and removes them from directory groups over LDAP.
    #[serde(rename = "ldap_group")]
    LdapGroup(LdapGroupProviderConfig),
    /// Creates and deletes AWS IAM Identity Center account assignments.
    #[serde(rename = "aws_identity_center")]
    AwsIdentityCenter(AwsIdentityCenterProviderConfig),
}

impl ProviderConfig {
    /// The `kind` as written in the file, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Webhook(_) => "webhook",
            Self::Postgres(_) => "postgres",
            Self::Command(_) => "command",
            Self::LdapGroup(_) => "ldap_group",
            Self::AwsIdentityCenter(_) => "aws_identity_center",
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
    /// `login`, parsed at load.
    #[serde(skip, default = "LoginTemplate::email_local")]
    pub login_template: LoginTemplate,
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

/// `kind = "aws_identity_center"`. Credentials come from the standard AWS
/// chain only (environment, profile, web identity, container or instance
/// role): never from this file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsIdentityCenterProviderConfig {
    /// `arn:aws:sso:::instance/ssoins-...`.
    pub instance_arn: String,
    /// The instance's identity store (`d-...`), where requesters are looked up.
    pub identity_store_id: String,
    /// The region the instance lives in.
    pub region: String,
    /// Which Identity Store attribute the linked identity's email is matched
    /// against: `"user_name"` (default) or `"email"`.
    #[serde(default)]
    pub user_lookup: UserLookup,
    /// Another endpoint for both APIs (an emulator in tests, a VPC endpoint).
    pub endpoint_url: Option<String>,
    /// How long one API call may take.
    #[serde(default = "default_webhook_timeout", deserialize_with = "std_duration")]
    pub timeout: Duration,
    /// How long a grant or revocation waits for AWS to finish creating or
    /// deleting the assignment before it counts as failed (and is retried).
    #[serde(default = "default_assignment_wait", deserialize_with = "std_duration")]
    pub assignment_wait: Duration,
}

fn default_assignment_wait() -> Duration {
    Duration::from_secs(60)
}

/// An aws_identity_center role's `grant = { account = "...", permission_set = "..." }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsIdentityCenterGrantConfig {
    /// The 12-digit AWS account the assignment is in.
    pub account: String,
    /// The permission set: its ARN, or its name (resolved once).
    pub permission_set: String,
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
    /// Where grant and revoke calls are POSTed (http(s), checked at load).
    #[serde(deserialize_with = "urls::webhook_url")]
    pub url: Url,
    /// The HMAC key the receiver verifies signatures with.
    pub secret: Secret,
    /// Sent as `Jitbot-Key-Id` so a receiver can hold two keys while rotating.
    #[serde(default = "default_key_id")]
    pub key_id: String,
    /// How long one call may take before it counts as failed (and is retried).
    #[serde(default = "default_webhook_timeout", deserialize_with = "std_duration")]
    pub timeout: Duration,
}

fn default_key_id() -> String {
    "k1".to_owned()
}

fn default_webhook_timeout() -> Duration {
    Duration::from_secs(10)
}

impl ProviderConfig {
    /// Checks the settings of the provider at `[table]`, and keeps the
    /// parsed forms (a postgres provider's login template).
    pub(super) fn validate(&mut self, table: &str, at: &At) -> Result<(), String> {
        match self {
            ProviderConfig::Postgres(p) => {
                let url = p.url.expose();
                // Never echo the URL: it may carry a password.
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
                    || url.parse::<sqlx::postgres::PgConnectOptions>().is_err()
                {
                    return Err(format!(
                        "{}{table}.url must be a postgres:// URL (the value is not shown: it may hold a password)",
                        at(table, Some("url"))
                    ));
                }
                p.login_template = LoginTemplate::parse(&p.login)
                    .map_err(|e| format!("{}{table}.login: {e}", at(table, Some("login"))))?;
                if let Some(bad) = p.email_domains.iter().find(|d| {
                    d.is_empty()
                        || d.contains('@')
                        || !d.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-'))
                }) {
                    return Err(format!(
                        "{}{table}.email_domains: {bad:?} is not a lower-case domain like \"example.com\"",
                        at(table, Some("email_domains"))
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
                        at(table, Some("ephemeral_login_prefix"))
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
                            at(table, Some(key))
                        ));
                    }
                }
                if c.timeout.is_zero() {
                    return Err(format!("{}{table}.timeout must be more than zero", at(table, Some("timeout"))));
                }
                for name in c.env.keys() {
                    if name.is_empty()
                        || name.starts_with("JITBOT_")
                        || !name.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
                    {
                        return Err(format!(
                            "{}{table}.env: {name:?} must be letters, digits or '_' and not start with JITBOT_",
                            at(table, Some("env"))
                        ));
                    }
                }
            }
            ProviderConfig::LdapGroup(l) => l.validate(table, at)?,
            ProviderConfig::AwsIdentityCenter(a) => {
                let key_err = |key: &str, e: String| format!("{}{table}.{key}: {e}", at(table, Some(key)));
                aws_ids::check_instance_arn(&a.instance_arn).map_err(|e| key_err("instance_arn", e))?;
                aws_ids::check_identity_store_id(&a.identity_store_id).map_err(|e| key_err("identity_store_id", e))?;
                aws_ids::check_region(&a.region).map_err(|e| key_err("region", e))?;
                if let Some(url) = &a.endpoint_url
                    && !Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                {
                    return Err(key_err("endpoint_url", format!("{url:?} is not an http(s) URL")));
                }
                if a.timeout.is_zero() {
                    return Err(format!("{}{table}.timeout must be more than zero", at(table, Some("timeout"))));
                }
                if a.assignment_wait < Duration::from_secs(1) || a.assignment_wait > Duration::from_secs(900) {
                    return Err(format!(
                        "{}{table}.assignment_wait must be between 1s and 15m",
                        at(table, Some("assignment_wait"))
                    ));
                }
            }
            ProviderConfig::Webhook(w) => {
                if w.secret.expose().len() < 16 {
                    return Err(format!(
                        "{}{table}.secret must be at least 16 characters: receivers trust whoever knows it",
                        at(table, Some("secret"))
                    ));
                }
                if w.key_id.is_empty() || !w.key_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                    return Err(format!(
                        "{}{table}.key_id must be letters, digits, '-' or '_'",
                        at(table, Some("key_id"))
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::tests::{GOOD, parse};

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

    const AWS: &str = r#"
[providers.aws]
kind = "aws_identity_center"
instance_arn = "arn:aws:sso:::instance/ssoins-0123456789abcdef"
identity_store_id = "d-0123456789"
region = "eu-west-1"

[roles.aws-ro]
description = "Read-only in production"
provider = "aws"
grant = { account = "012345678901", permission_set = "ReadOnly" }
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "30m"
max_duration = "4h"

[roles.aws-admin]
description = "Admin in production"
provider = "aws"
grant = { account = "012345678901", permission_set = "AdministratorAccess" }
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "30m"
max_duration = "1h"
"#;

    #[test]
    fn aws_identity_center_providers_parse_with_checked_shapes() {
        let c = parse(AWS).unwrap();
        let Some(ProviderConfig::AwsIdentityCenter(p)) = c.providers.get("aws") else { panic!("not aws") };
        assert_eq!(p.user_lookup, UserLookup::UserName);
        assert_eq!((p.timeout, p.assignment_wait), (Duration::from_secs(10), Duration::from_secs(60)));
        assert!(p.endpoint_url.is_none());
        let g = c.roles.get("aws-ro").unwrap().aws_identity_center_grant().unwrap();
        assert_eq!((g.account.as_str(), g.permission_set.as_str()), ("012345678901", "ReadOnly"));
        let c =
            parse(&AWS.replace("region = \"eu-west-1\"", "region = \"eu-west-1\"\nuser_lookup = \"email\"")).unwrap();
        let Some(ProviderConfig::AwsIdentityCenter(p)) = c.providers.get("aws") else { panic!("not aws") };
        assert_eq!(p.user_lookup, UserLookup::Email);

        let cases = [
            (
                "\"012345678901\", permission_set = \"ReadOnly\"",
                "\"0123\", permission_set = \"ReadOnly\"",
                "roles.aws-ro.grant.account: \"0123\" is not a 12-digit AWS account id",
            ),
            (
                "permission_set = \"ReadOnly\"",
                "permission_set = \"arn:aws:sso:::permissionSet/x\"",
                "roles.aws-ro.grant.permission_set: \"arn:aws:sso:::permissionSet/x\" is not a permission set ARN",
            ),
            (
                "permission_set = \"ReadOnly\" }",
                "permission_set = \"ReadOnly\", ps = 1 }",
                "roles.aws-ro.grant: unknown field `ps`",
            ),
            (
                "ssoins-0123456789abcdef\"",
                "ssoins-01\"",
                "providers.aws.instance_arn: \"arn:aws:sso:::instance/ssoins-01\" is not an IAM Identity Center instance ARN",
            ),
            ("\"d-0123456789\"", "\"0123456789\"", "providers.aws.identity_store_id"),
            ("\"eu-west-1\"", "\"eu-west-1\"\nendpoint_url = \"localhost:4566\"", "providers.aws.endpoint_url"),
            (
                "\"eu-west-1\"",
                "\"eu-west-1\"\nassignment_wait = \"1h\"",
                "providers.aws.assignment_wait must be between 1s and 15m",
            ),
            (
                "\"eu-west-1\"",
                "\"eu-west-1\"\nuser_lookup = \"upn\"",
                "unknown variant `upn`, expected `user_name` or `email`",
            ),
            ("\"eu-west-1\"", "\"eu-west-1\"\naccess_key_id = \"AKIA\"", "unknown field `access_key_id`"),
        ];
        for (from, to, want) in cases {
            let e = parse(&AWS.replacen(from, to, 1)).unwrap_err().to_string();
            assert!(e.contains(want), "{to}: {e}");
        }
        let e = parse(&AWS.replace("grant = { account = \"012345678901\", permission_set = \"ReadOnly\" }\n", ""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("roles.aws-ro.grant is required"), "{e}");
    }

    #[test]
    fn roles_on_one_aws_provider_name_permission_sets_one_way() {
        let arn = "arn:aws:sso:::permissionSet/ssoins-0123456789abcdef/ps-0123456789abcdef";
        let e = parse(&AWS.replace("\"AdministratorAccess\"", &format!("\"{arn}\""))).unwrap_err().to_string();
        assert!(e.contains("roles.aws-ro.grant.permission_set: this role names its permission set by name but role aws-admin (also on providers.aws) names its by ARN"), "{e}");
        let both = AWS
            .replace("\"AdministratorAccess\"", &format!("\"{arn}\""))
            .replace("\"ReadOnly\"", &format!("\"{arn}\""));
        parse(&both).unwrap();
    }

    #[test]
    fn login_templates_are_parsed_once_at_load() {
        let text = PROVIDERS.replace("pg_role = \"readonly\" }", "pg_role = \"readonly\", login = \"ro_{subject}\" }");
        let c = parse(&text).unwrap();
        let Some(ProviderConfig::Postgres(p)) = c.providers.get("prod-db") else { panic!("not postgres") };
        assert_eq!(p.login_template.as_str(), "{email_local}");
        assert!(p.login_template.uses_email_local());
        let role = |name: &str| c.roles.get(name).unwrap().login_template.as_ref().map(|t| t.as_str().to_owned());
        assert_eq!(role("db-ro").as_deref(), Some("ro_{subject}"), "a role's grant.login overrides the provider's");
        assert_eq!(role("db-eph"), None, "jitbot names ephemeral logins");
        assert_eq!(role("k8s-edit"), None);
        let c = parse(PROVIDERS).unwrap();
        assert_eq!(c.roles.get("db-ro").unwrap().login_template.as_ref().map(|t| t.as_str()), Some("{email_local}"));
    }
}
