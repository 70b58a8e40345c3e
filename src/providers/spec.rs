//! The grant spec: what a request's access means in its target, fixed when
//! the request is made and stored with it (`access_requests.grant_spec`).
//!
//! Approvers approve this snapshot, and the revocation removes exactly it:
//! editing a role's `grant` table or the login template later changes new
//! requests only. Parsing the stored JSON re-checks every name (the login
//! pattern included), so a tampered row cannot smuggle SQL either.

use serde::{Deserialize, Serialize};

use super::ldap_group::Dn;
use super::postgres::{LoginName, LoginTemplate, PgRoleName};
use crate::config::{Config, LdapMemberAttribute, LdapUserAttribute, LdapUserValue, ProviderConfig};
use crate::domain::aws::{AwsAccountId, LookupValue, PermissionSetRef, UserLookup};
use crate::domain::{Identity, RequestId, RoleName};

/// A request's access in its target's terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GrantSpec {
    /// A PostgreSQL role membership.
    Postgres(PostgresGrantSpec),
    /// A program run.
    Command(CommandGrantSpec),
    /// A directory group membership.
    LdapGroup(LdapGroupGrantSpec),
    /// An IAM Identity Center account assignment.
    AwsIdentityCenter(AwsIdentityCenterGrantSpec),
}

/// `grant = { account = ..., permission_set = ... }` resolved for one
/// requester: the assignment's account and permission set as written, and
/// how the requester's Identity Center user is found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsIdentityCenterGrantSpec {
    /// The AWS account.
    pub account: AwsAccountId,
    /// The permission set, by ARN or by name, as the role wrote it.
    pub permission_set: PermissionSetRef,
    /// The Identity Store attribute the user is found by.
    pub user_lookup: UserLookup,
    /// Its value: the requester's email when the request was made.
    pub user: LookupValue,
}

/// `grant = { pg_role = ..., ephemeral_login = ... }` resolved for one requester.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresGrantSpec {
    /// The role whose membership is granted.
    pub pg_role: PgRoleName,
    /// The login that receives it: the requester's own (from the template)
    /// or the one created for this request.
    pub login: LoginName,
    /// Whether jitbot creates `login` for this request and drops it after.
    pub ephemeral: bool,
    /// Whether the login's sessions are ended on revocation.
    pub terminate_sessions: bool,
}

/// `grant = { group = ... }` resolved for one requester: the group, and how
/// their entry is found (the entry's DN is looked up at each call, so a
/// renamed entry is still found).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapGroupGrantSpec {
    /// The group whose membership is granted.
    pub group: Dn,
    /// The group attribute the member DN is written to.
    pub member_attribute: LdapMemberAttribute,
    /// The attribute the requester's entry is found by.
    pub user_attribute: LdapUserAttribute,
    /// Its value (from the linked identity; escaped when put in a filter).
    pub user_value: String,
}

/// A command role resolved for one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandGrantSpec {
    /// Appended to the provider's command line.
    pub args: Vec<String>,
    /// Run once, nothing to revoke.
    pub one_shot: bool,
}

impl GrantSpec {
    /// Whether the request is a one-time action rather than access.
    pub fn is_one_shot(&self) -> bool {
        matches!(self, GrantSpec::Command(c) if c.one_shot)
    }

    /// The stored form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| unreachable!("grant specs always serialize"))
    }

    /// Reads the stored form, re-checking every name.
    pub fn from_json(s: &str) -> Result<Self, String> {
        serde_json::from_str(s).map_err(|e| e.to_string())
    }

    /// Resolves the spec of a new request for `role` by `requester`. `Ok(None)`
    /// for providers that need nothing beyond the role name (webhook). An
    /// error is written for the requester: their identity does not make a
    /// safe login, say.
    pub fn for_request(
        config: &Config,
        role: &RoleName,
        requester: &Identity,
        id: RequestId,
    ) -> Result<Option<Self>, String> {
        let Some(role_config) = config.roles.get(role.as_str()) else { return Ok(None) };
        let Some(provider) = config.providers.get(&role_config.provider) else { return Ok(None) };
        match provider {
            ProviderConfig::Webhook(_) => Ok(None),
            ProviderConfig::Postgres(p) => {
                let grant = role_config.postgres_grant()?;
                let pg_role = PgRoleName::parse(&grant.pg_role)?;
                let login = if grant.ephemeral_login {
                    LoginName::ephemeral(&p.ephemeral_login_prefix, id, &requester.email)
                } else {
                    // Parsed and checked when the config was loaded.
                    let template = match &role_config.login_template {
                        Some(t) => t.clone(),
                        None => LoginTemplate::parse(grant.login.as_deref().unwrap_or(&p.login))?,
                    };
                    if template.uses_email_local() {
                        // The config requires the domains with {email_local}.
                        let domain = requester.email.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase());
                        if !domain.as_ref().is_some_and(|d| p.email_domains.iter().any(|allowed| allowed == d)) {
                            return Err(format!(
                                "its database logins are made from the email local part, and only for people from {} (your email is {})",
                                p.email_domains.join(", "),
                                requester.email
                            ));
                        }
                    }
                    template.render(requester)?
                };
                Ok(Some(GrantSpec::Postgres(PostgresGrantSpec {
                    pg_role,
                    login,
                    ephemeral: grant.ephemeral_login,
                    terminate_sessions: p.terminate_sessions,
                })))
            }
            ProviderConfig::LdapGroup(p) => {
                let grant = role_config.ldap_group_grant()?;
                let group = Dn::parse(&grant.group)?;
                let user_value = match p.user_value {
                    LdapUserValue::Email => requester.email.clone(),
                    LdapUserValue::EmailLocal => {
                        let (local, domain) = requester.email.rsplit_once('@').unwrap_or((&requester.email, ""));
                        let domain = domain.to_ascii_lowercase();
                        if !p.email_domains.contains(&domain) {
                            return Err(format!(
                                "its directory entries are found by the email local part, and only for people from {} (your email is {})",
                                p.email_domains.join(", "),
                                requester.email
                            ));
                        }
                        local.to_owned()
                    }
                };
                if user_value.is_empty() {
                    return Err("your linked identity has no email to find your directory entry by".to_owned());
                }
                Ok(Some(GrantSpec::LdapGroup(LdapGroupGrantSpec {
                    group,
                    member_attribute: p.member_attribute,
                    user_attribute: p.user_filter_attribute,
                    user_value,
                })))
            }
            ProviderConfig::AwsIdentityCenter(p) => {
                let grant = role_config.aws_identity_center_grant()?;
                Ok(Some(GrantSpec::AwsIdentityCenter(AwsIdentityCenterGrantSpec {
                    account: AwsAccountId::parse(&grant.account)?,
                    permission_set: PermissionSetRef::parse(&grant.permission_set)?,
                    user_lookup: p.user_lookup,
                    user: LookupValue::parse(&requester.email)?,
                })))
            }
            ProviderConfig::Command(_) => Ok(Some(GrantSpec::Command(CommandGrantSpec {
                args: role_config.command_grant()?.args,
                one_shot: role_config.one_shot,
            }))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_specs_are_rechecked_when_read() {
        let spec = GrantSpec::Postgres(PostgresGrantSpec {
            pg_role: PgRoleName::parse("readonly").unwrap(),
            login: LoginName::parse("alice").unwrap(),
            ephemeral: false,
            terminate_sessions: true,
        });
        let json = spec.to_json();
        assert_eq!(GrantSpec::from_json(&json).unwrap(), spec);
        let tampered = json.replace("\"alice\"", "\"x\\\"; DROP ROLE postgres; --\"");
        assert!(GrantSpec::from_json(&tampered).unwrap_err().contains("not a safe database login"));
    }

    #[test]
    fn stored_aws_specs_are_rechecked_when_read() {
        let spec = GrantSpec::AwsIdentityCenter(AwsIdentityCenterGrantSpec {
            account: AwsAccountId::parse("012345678901").unwrap(),
            permission_set: PermissionSetRef::parse("ReadOnly").unwrap(),
            user_lookup: UserLookup::Email,
            user: LookupValue::parse("alice@example.com").unwrap(),
        });
        let json = spec.to_json();
        assert!(json.contains("\"kind\":\"aws_identity_center\""), "{json}");
        assert!(json.contains("\"account\":\"012345678901\""), "{json}");
        assert_eq!(GrantSpec::from_json(&json).unwrap(), spec);
        assert!(GrantSpec::from_json(&json.replace("012345678901", "99")).unwrap_err().contains("12-digit"));
        assert!(GrantSpec::from_json(&json.replace("\"ReadOnly\"", "\"arn:aws:iam::1:role/x\"")).is_err());
    }
}
