//! `[roles.NAME]`: what can be requested, from which provider, by whom.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;

use super::ldap::LdapGroupGrantConfig;
use super::providers::{AwsIdentityCenterGrantConfig, CommandGrantConfig, PostgresGrantConfig, ProviderConfig};
use super::{At, access_duration, default_true, opt_access_duration, opt_std_duration, std_duration, ticket_pattern};
use crate::domain::aws::{AwsAccountId, PermissionSetRef};
use crate::domain::{
    AccessDuration, AutoApproveRule, LoginTemplate, RoleName, RolePolicy, TicketPattern, login::check_role_name,
};

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
    /// The database login template this role's grants render (its
    /// `grant.login`, else its provider's `login`), parsed at load; `None`
    /// unless the role is on a postgres provider without `ephemeral_login`.
    #[serde(skip)]
    pub login_template: Option<LoginTemplate>,
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

    /// The role's `grant` table read as an ldap_group grant.
    pub fn ldap_group_grant(&self) -> Result<LdapGroupGrantConfig, String> {
        let table = self.grant.clone().ok_or(
            "grant is required: grant = { group = \"cn=...,ou=groups,dc=example,dc=com\" } names the directory group",
        )?;
        toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| format!("grant: {}", e.message()))
    }

    /// The role's `grant` table read as an Identity Center account assignment.
    pub fn aws_identity_center_grant(&self) -> Result<AwsIdentityCenterGrantConfig, String> {
        let table = self.grant.clone().ok_or(
            "grant is required: grant = { account = \"123456789012\", permission_set = \"...\" } names the account assignment to hand out",
        )?;
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

impl RoleConfig {
    /// Checks the role at `[table]` against the configured `providers`
    /// (`has_idp`: whether an `[idp]` is configured), and keeps the parsed
    /// login template of a postgres role.
    pub(super) fn validate(
        &mut self,
        name: &str,
        table: &str,
        providers: &BTreeMap<String, ProviderConfig>,
        has_idp: bool,
        at: &At,
    ) -> Result<(), String> {
        if !providers.contains_key(&self.provider) {
            let known = providers.keys().cloned().collect::<Vec<_>>().join(", ");
            return Err(format!(
                "{}{table}.provider: there is no [providers.{}] (configured providers: {})",
                at(table, Some("provider")),
                self.provider,
                if known.is_empty() { "none".to_owned() } else { known }
            ));
        }
        self.login_template = self.validate_grant(name, providers).map_err(|e| {
            let key = if e.starts_with("one_shot") { "one_shot" } else { "grant" };
            format!("{}{table}.{e}", at(table, Some(key)))
        })?;
        if let Some(ch) = &self.approvals_channel
            && !(ch.len() >= 2 && ch.starts_with(['C', 'G']) && ch.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            return Err(format!(
                "{}{table}.approvals_channel must be a channel id like C0123ABCD",
                at(table, Some("approvals_channel"))
            ));
        }
        if self.step_up.is_some() && !has_idp {
            return Err(format!("{}{table}.step_up needs an [idp] to sign in with", at(table, Some("step_up"))));
        }
        if self.approver_step_up && self.step_up.is_none() {
            return Err(format!(
                "{}{table}.approver_step_up needs {table}.step_up (how recent the sign-in must be)",
                at(table, Some("approver_step_up"))
            ));
        }
        if self.requesters.is_empty() {
            return Err(format!(
                "{}{table}.requesters must name at least one IdP group",
                at(table, Some("requesters"))
            ));
        }
        if self.approvers.is_empty() {
            return Err(format!("{}{table}.approvers must name at least one IdP group", at(table, Some("approvers"))));
        }
        if self.approvals_required == 0 || self.approvals_required > 10 {
            return Err(format!(
                "{}{table}.approvals_required must be between 1 and 10",
                at(table, Some("approvals_required"))
            ));
        }
        if self.default_duration > self.max_duration {
            return Err(format!(
                "{}{table}.default_duration ({}) is longer than max_duration ({})",
                at(table, Some("default_duration")),
                self.default_duration,
                self.max_duration
            ));
        }
        if self.max_duration.get() > Duration::from_secs(30 * 86_400) {
            return Err(format!("{}{table}.max_duration may be at most 30 days", at(table, Some("max_duration"))));
        }
        if let Some(url) = &self.ticket_url {
            let parsed = super::urls::Url::parse(&url.replace("{ticket}", "T"));
            if !url.contains("{ticket}") || !parsed.is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
                return Err(format!(
                    "{}{table}.ticket_url must be an http(s) URL containing {{ticket}}, like \"https://jira.example.com/browse/{{ticket}}\"",
                    at(table, Some("ticket_url"))
                ));
            }
        }
        if let Some(auto) = &self.auto_approve {
            if auto.groups.is_empty() {
                return Err(format!(
                    "{}{table}.auto_approve.groups must name at least one IdP group",
                    at(table, Some("auto_approve"))
                ));
            }
            if auto.max_duration > self.max_duration {
                return Err(format!(
                    "{}{table}.auto_approve.max_duration ({}) is longer than max_duration ({})",
                    at(table, Some("auto_approve")),
                    auto.max_duration,
                    self.max_duration
                ));
            }
        }
        if let Some(t) = self.approval_timeout
            && (t < Duration::from_secs(60) || t > Duration::from_secs(30 * 86_400))
        {
            return Err(format!(
                "{}{table}.approval_timeout must be between 1m and 30 days",
                at(table, Some("approval_timeout"))
            ));
        }
        if self.warn_before > Duration::from_secs(86_400) {
            return Err(format!("{}{table}.warn_before may be at most 1 day", at(table, Some("warn_before"))));
        }
        if let Some(total) = self.max_total_duration
            && total < self.max_duration
        {
            return Err(format!(
                "{}{table}.max_total_duration ({total}) is shorter than max_duration ({}): one grant could not last as long as it may be asked for",
                at(table, Some("max_total_duration")),
                self.max_duration
            ));
        }
        Ok(())
    }

    /// Checks the role's `grant` and `one_shot` against its provider's kind,
    /// and returns the login template its grants render (postgres roles
    /// without `ephemeral_login`). Errors start with the key they are about
    /// (`grant...`, `one_shot...`).
    fn validate_grant(
        &self,
        name: &str,
        providers: &BTreeMap<String, ProviderConfig>,
    ) -> Result<Option<LoginTemplate>, String> {
        let Some(provider) = providers.get(&self.provider) else { return Ok(None) };
        if self.one_shot && !matches!(provider, ProviderConfig::Command(_)) {
            return Err(format!(
                "one_shot is only for roles on a command provider ({} is {})",
                self.provider,
                provider.kind()
            ));
        }
        match provider {
            ProviderConfig::Webhook(_) => {
                if self.grant.is_some() {
                    return Err("grant is not used by webhook providers: receivers get the role name".to_owned());
                }
            }
            ProviderConfig::Postgres(p) => {
                let grant = self.postgres_grant()?;
                check_role_name(&grant.pg_role).map_err(|e| format!("grant.pg_role: {e}"))?;
                let template = match &grant.login {
                    Some(login) => {
                        if grant.ephemeral_login {
                            return Err(
                                "grant.login is not used with ephemeral_login = true (jitbot names the login)".into()
                            );
                        }
                        LoginTemplate::parse(login).map_err(|e| format!("grant.login: {e}"))?
                    }
                    None => p.login_template.clone(),
                };
                if !grant.ephemeral_login && p.email_domains.is_empty() && template.uses_email_local() {
                    return Err(format!(
                        "grant: the database login {:?} uses {{email_local}}, which gives alice@one.example and \
                         alice@other.example the same login; set providers.{}.email_domains = [\"example.com\"] (only \
                         people from those domains may request), or make the login from {{subject}} or {{claims.NAME}}",
                        template.as_str(),
                        self.provider
                    ));
                }
                return Ok((!grant.ephemeral_login).then_some(template));
            }
            ProviderConfig::LdapGroup(_) => {
                let grant = self.ldap_group_grant()?;
                super::ldap::check_dn(&grant.group).map_err(|e| format!("grant.group {e}"))?;
            }
            ProviderConfig::AwsIdentityCenter(_) => {
                let grant = self.aws_identity_center_grant()?;
                AwsAccountId::parse(&grant.account).map_err(|e| format!("grant.account: {e}"))?;
                PermissionSetRef::parse(&grant.permission_set).map_err(|e| format!("grant.permission_set: {e}"))?;
            }
            ProviderConfig::Command(c) => {
                self.command_grant()?;
                if !self.one_shot && c.revoke_command.is_none() {
                    return Err(format!(
                        "grant: role {name} holds access until it expires, so providers.{}.revoke_command is required (or set one_shot = true)",
                        self.provider
                    ));
                }
            }
        }
        Ok(None)
    }

    /// The role's policy, built once at load.
    pub(super) fn policy(&self, name: RoleName) -> RolePolicy {
        RolePolicy {
            role: name,
            requesters: self.requesters.clone(),
            approvers: self.approvers.clone(),
            approvals_required: self.approvals_required,
            default_duration: self.default_duration,
            max_duration: self.max_duration,
            reason_min_length: self.reason_min_length,
            ticket_pattern: self.ticket_pattern.clone(),
            auto_approve: self
                .auto_approve
                .as_ref()
                .map(|a| AutoApproveRule { groups: a.groups.clone(), max_duration: a.max_duration }),
            approval_timeout: self.approval_timeout,
            break_glass: self.break_glass,
            warn_before: self.warn_before,
            max_total_duration: self.max_total_duration,
        }
    }
}

/// Roles on one `aws_identity_center` provider must all name permission
/// sets the same way (all by ARN or all by name). Two roles handing out the
/// same assignment share it as a lease keyed by the permission set as
/// written; one spelled by name and one by ARN would not, and the first to
/// end would remove the other's access.
pub(super) fn check_permission_set_spelling(
    roles: &BTreeMap<RoleName, RoleConfig>,
    providers: &BTreeMap<String, ProviderConfig>,
    at: &At,
) -> Result<(), String> {
    let mut seen: BTreeMap<&str, (bool, &str)> = BTreeMap::new();
    for (name, role) in roles {
        if !matches!(providers.get(&role.provider), Some(ProviderConfig::AwsIdentityCenter(_))) {
            continue;
        }
        let Ok(grant) = role.aws_identity_center_grant() else { continue };
        let Ok(ps) = PermissionSetRef::parse(&grant.permission_set) else { continue };
        match seen.get(role.provider.as_str()) {
            Some((is_arn, other)) if *is_arn != ps.is_arn() => {
                let table = format!("roles.{name}");
                return Err(format!(
                    "{}{table}.grant.permission_set: this role names its permission set by {} but role {other} \
                     (also on providers.{}) names its by {}; name them one way on a provider, so that two roles \
                     handing out the same assignment share it",
                    at(&table, Some("grant")),
                    if ps.is_arn() { "ARN" } else { "name" },
                    role.provider,
                    if *is_arn { "ARN" } else { "name" },
                ));
            }
            Some(_) => {}
            None => {
                seen.insert(role.provider.as_str(), (ps.is_arn(), name.as_str()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{GOOD, parse};

    #[test]
    fn roles_are_keyed_by_checked_role_names() {
        let c = parse(GOOD).unwrap();
        let name = RoleName::parse("prod-db-readonly").unwrap();
        assert!(c.roles.contains_key(&name) && c.roles.contains_key("prod-db-readonly"));
        let e = parse(&GOOD.replace("[roles.prod-db-readonly]", "[roles.Prod]")).unwrap_err().to_string();
        assert!(e.contains("[roles.Prod]: invalid role name \"Prod\""), "{e}");
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
    fn each_role_policy_is_built_once_at_load() {
        let c = parse(GOOD).unwrap();
        let name = RoleName::parse("prod-db-readonly").unwrap();
        assert_eq!(c.policies.len(), 1);
        assert_eq!(c.role_policy(&name).as_ref(), c.policies.get("prod-db-readonly"));
        assert_eq!(c.role_policy(&name).map(|p| p.max_duration.to_string()), Some("4h".to_owned()));
        assert!(c.role_policy(&RoleName::parse("nope").unwrap()).is_none());
    }
}
