//! The `ldap_group` provider: hands out membership in existing directory
//! groups (OpenLDAP `groupOfNames`/`groupOfUniqueNames`, Active Directory
//! groups) by adding the requester's entry to the group and removing it at
//! the end.
//!
//! - The requester's entry is found by a subtree search of `user_base` for
//!   `(attribute=value)`, the value from the linked identity escaped per
//!   RFC 4515: a value like `*)(uid=*` matches itself literally, so nobody.
//!   Exactly one entry, or the call is refused.
//! - grant: modify-add the entry's DN to the group's member attribute
//!   (already there is fine); revoke: modify-delete it (already gone is fine).
//! - verify: after each change an LDAP compare asks the server whether the
//!   DN is (or is no longer) a member, using the server's own DN matching.
//! - A `groupOfNames` must keep at least one `member`: removing the last one
//!   is refused by the server (objectClassViolation). jitbot reports that as
//!   a permanent failure asking for a placeholder member; it never removes
//!   the group or other members to get around it.
//!
//! Every call opens its own connection (TLS from the start or StartTLS,
//! unless plain text was explicitly allowed), binds, and unbinds. The bind
//! password is only ever handed to the bind request: errors carry the
//! server's result code and diagnostic text, never the password.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, LdapResult, Mod, ResultEntry, Scope, ldap_escape};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};

use super::spec::{GrantSpec, LdapGroupGrantSpec};
use super::{ApprovedGrant, GrantTarget, GrantUser, Presence, Provider, ProviderError, ProviderReport};
use crate::config::{LdapGroupProviderConfig, LdapUserAttribute, LdapUserValue, Secret, Url, ldap::check_dn};
use crate::domain::Timestamp;

/// LDAP result codes jitbot acts on (RFC 4511 appendix A).
mod rc {
    pub const SUCCESS: u32 = 0;
    pub const COMPARE_FALSE: u32 = 5;
    pub const COMPARE_TRUE: u32 = 6;
    pub const NO_SUCH_ATTRIBUTE: u32 = 16;
    pub const ATTRIBUTE_OR_VALUE_EXISTS: u32 = 20;
    pub const NO_SUCH_OBJECT: u32 = 32;
    pub const INVALID_CREDENTIALS: u32 = 49;
    pub const INSUFFICIENT_ACCESS: u32 = 50;
    pub const OBJECT_CLASS_VIOLATION: u32 = 65;
}

/// A distinguished name checked for RFC 4514 syntax; stored in grant specs,
/// so a tampered row is re-checked when read.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Dn(String);

impl Dn {
    /// Checks `dn`'s syntax.
    pub fn parse(dn: &str) -> Result<Self, String> {
        check_dn(dn).map_err(|e| format!("the group {e}"))?;
        Ok(Self(dn.to_owned()))
    }

    /// The DN as written in the config.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Dn {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<Dn> for String {
    fn from(d: Dn) -> String {
        d.0
    }
}

impl fmt::Display for Dn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Dn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dn({:?})", self.0)
    }
}

/// Grants and revokes directory group memberships.
pub struct LdapGroupProvider {
    name: String,
    url: Url,
    starttls: bool,
    tls: Arc<rustls::ClientConfig>,
    bind_dn: String,
    bind_password: Secret,
    user_base: String,
    user_attribute: LdapUserAttribute,
    user_value: LdapUserValue,
    email_domains: Vec<String>,
    timeout: Duration,
}

impl fmt::Debug for LdapGroupProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapGroupProvider")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("starttls", &self.starttls)
            .field("bind_dn", &self.bind_dn)
            .field("bind_password", &self.bind_password)
            .field("user_base", &self.user_base)
            .finish_non_exhaustive()
    }
}

/// An open, bound connection.
struct Session {
    ldap: Ldap,
}

impl LdapGroupProvider {
    /// Builds the provider (reading `ca_file`); nothing is connected until
    /// the first call.
    pub fn new(name: &str, config: &LdapGroupProviderConfig) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        match &config.ca_file {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| anyhow::anyhow!("providers.{name}.ca_file ({}): {e}", path.display()))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    anyhow::bail!("providers.{name}.ca_file ({}) holds no usable CA certificate", path.display());
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(native.certs);
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| anyhow::anyhow!("providers.{name}: TLS setup failed: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            name: name.to_owned(),
            url: config.url.clone(),
            starttls: config.uses_starttls(),
            tls: Arc::new(tls),
            bind_dn: config.bind_dn.clone(),
            bind_password: config.bind_password.clone(),
            user_base: config.user_base.clone(),
            user_attribute: config.user_filter_attribute,
            user_value: config.user_value,
            email_domains: config.email_domains.clone(),
            timeout: config.timeout,
        })
    }

    /// Connects (TLS or StartTLS as configured) and binds.
    async fn connect(&self) -> Result<Session, ProviderError> {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(self.timeout)
            .set_starttls(self.starttls)
            .set_config(self.tls.clone());
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, self.url.as_str())
            .await
            .map_err(|e| transport_error("connecting to the directory", e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "LDAP connection ended with an error");
            }
        });
        let res = ldap
            .with_timeout(self.timeout)
            .simple_bind(&self.bind_dn, self.bind_password.expose())
            .await
            .map_err(|e| transport_error("binding", e))?;
        if res.rc != rc::SUCCESS {
            let _ = ldap.unbind().await;
            return Err(result_error(&format!("binding as {}", self.bind_dn), &res));
        }
        Ok(Session { ldap })
    }

    /// Runs `op` on a fresh bound connection within the provider's time
    /// limit (each operation has its own as well), then unbinds.
    async fn with_session<T>(
        &self,
        what: &str,
        op: impl AsyncFnOnce(&mut Session) -> Result<T, ProviderError>,
    ) -> Result<T, ProviderError> {
        let run = async {
            let mut s = self.connect().await?;
            let result = op(&mut s).await;
            let _ = s.ldap.unbind().await;
            result
        };
        match tokio::time::timeout(self.timeout.saturating_mul(4), run).await {
            Ok(r) => r,
            Err(_) => Err(ProviderError::retryable(format!("{what} timed out talking to the directory"))),
        }
    }

    /// The filter that finds the entry whose `attribute` is `value`.
    fn filter(attribute: LdapUserAttribute, value: &str) -> String {
        format!("({}={})", attribute.as_str(), ldap_escape(value))
    }

    /// The DN of the one entry under `user_base` matching the spec's
    /// lookup; `None` when there is none, an error when there are several.
    async fn find_user(
        &self,
        s: &mut Session,
        attribute: LdapUserAttribute,
        value: &str,
    ) -> Result<Option<String>, ProviderError> {
        let filter = Self::filter(attribute, value);
        let result = s
            .ldap
            .with_timeout(self.timeout)
            .search(&self.user_base, Scope::Subtree, &filter, vec!["1.1"])
            .await
            .map_err(|e| transport_error("searching for the requester", e))?;
        let (entries, res) = (result.0, result.1);
        if res.rc == rc::NO_SUCH_OBJECT {
            return Err(ProviderError::permanent(format!(
                "searching for the requester: the user base {} does not exist in the directory",
                self.user_base
            )));
        }
        if res.rc != rc::SUCCESS {
            return Err(result_error("searching for the requester", &res));
        }
        let mut dns = entries.into_iter().map(entry_dn).collect::<Option<Vec<String>>>().ok_or_else(|| {
            ProviderError::retryable("searching for the requester: the directory sent a malformed entry")
        })?;
        match dns.len() {
            0 => Ok(None),
            1 => Ok(dns.pop()),
            n => Err(ProviderError::permanent(format!(
                "{n} directory entries under {} match {}={value}: jitbot grants only to exactly one",
                self.user_base,
                attribute.as_str()
            ))),
        }
    }

    async fn require_user(&self, s: &mut Session, spec: &LdapGroupGrantSpec) -> Result<String, ProviderError> {
        self.find_user(s, spec.user_attribute, &spec.user_value).await?.ok_or_else(|| {
            ProviderError::permanent(format!(
                "no directory entry under {} has {}={}",
                self.user_base,
                spec.user_attribute.as_str(),
                spec.user_value
            ))
        })
    }

    /// Asks the server whether `member` is in the group (its own DN matching,
    /// so case and spacing differences do not matter).
    async fn is_member(&self, s: &mut Session, spec: &LdapGroupGrantSpec, member: &str) -> Result<bool, ProviderError> {
        let res = s
            .ldap
            .with_timeout(self.timeout)
            .compare(spec.group.as_str(), spec.member_attribute.as_str(), member)
            .await
            .map_err(|e| transport_error("reading the group", e))?
            .0;
        match res.rc {
            rc::COMPARE_TRUE => Ok(true),
            // Also what a group without the attribute answers.
            rc::COMPARE_FALSE | rc::NO_SUCH_ATTRIBUTE => Ok(false),
            rc::NO_SUCH_OBJECT => Err(no_such_group(spec)),
            _ => Err(result_error(&format!("reading group {}", spec.group), &res)),
        }
    }

    async fn add_member(&self, s: &mut Session, spec: &LdapGroupGrantSpec) -> Result<ProviderReport, ProviderError> {
        let user = self.require_user(s, spec).await?;
        let attr = spec.member_attribute.as_str();
        let res = s
            .ldap
            .with_timeout(self.timeout)
            .modify(spec.group.as_str(), vec![Mod::Add(attr, [user.as_str()].into())])
            .await
            .map_err(|e| transport_error("adding the member", e))?;
        let note = match res.rc {
            rc::SUCCESS => format!("added {user} to {}", spec.group),
            rc::ATTRIBUTE_OR_VALUE_EXISTS => format!("{user} was already a member of {}", spec.group),
            rc::NO_SUCH_OBJECT => return Err(no_such_group(spec)),
            _ => return Err(result_error(&format!("adding {user} to {}", spec.group), &res)),
        };
        if !self.is_member(s, spec, &user).await? {
            return Err(ProviderError::retryable(format!(
                "verification failed: after adding, {user} is not a member of {}",
                spec.group
            )));
        }
        Ok(ProviderReport::note(note))
    }

    async fn remove_member(&self, s: &mut Session, spec: &LdapGroupGrantSpec) -> Result<ProviderReport, ProviderError> {
        let Some(user) = self.find_user(s, spec.user_attribute, &spec.user_value).await? else {
            // No entry: nobody can use a membership through it.
            return Ok(ProviderReport::note(format!(
                "no directory entry has {}={} any more; nothing to remove from {}",
                spec.user_attribute.as_str(),
                spec.user_value,
                spec.group
            )));
        };
        let attr = spec.member_attribute.as_str();
        let res = s
            .ldap
            .with_timeout(self.timeout)
            .modify(spec.group.as_str(), vec![Mod::Delete(attr, [user.as_str()].into())])
            .await
            .map_err(|e| transport_error("removing the member", e))?;
        let note = match res.rc {
            rc::SUCCESS => format!("removed {user} from {}", spec.group),
            rc::NO_SUCH_ATTRIBUTE => format!("{user} was not a member of {}", spec.group),
            rc::NO_SUCH_OBJECT => return Err(no_such_group(spec)),
            rc::OBJECT_CLASS_VIOLATION => {
                return Err(ProviderError::permanent(format!(
                    "removing {user} from {}: the directory refused because it is the group's last {attr} \
                     ({}; a groupOfNames/groupOfUniqueNames needs at least one). Give the group a placeholder \
                     member that is never removed (e.g. the group's own DN), then retry the revocation",
                    spec.group,
                    describe(&res)
                )));
            }
            _ => return Err(result_error(&format!("removing {user} from {}", spec.group), &res)),
        };
        if self.is_member(s, spec, &user).await? {
            return Err(ProviderError::retryable(format!(
                "verification failed: after removing, {user} is still a member of {}",
                spec.group
            )));
        }
        Ok(ProviderReport::note(note))
    }

    /// The lookup value for `user` under this provider's `user_value`
    /// (requests made before a config change keep their snapshot).
    fn lookup_value(&self, user: &GrantUser) -> Result<String, ProviderError> {
        match self.user_value {
            LdapUserValue::Email => Ok(user.email.clone()),
            LdapUserValue::EmailLocal => match user.email.rsplit_once('@') {
                Some((local, domain)) if self.email_domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) => {
                    Ok(local.to_owned())
                }
                _ => Err(ProviderError::permanent(format!(
                    "{} finds directory entries by the email local part only for people from {}",
                    self.name,
                    self.email_domains.join(", ")
                ))),
            },
        }
    }
}

/// The DN of a search result entry. (`SearchEntry::construct` would panic
/// on a malformed response; a directory's reply must not crash a job.)
fn entry_dn(entry: ResultEntry) -> Option<String> {
    let first = entry.0.match_id(4)?.expect_constructed()?.into_iter().next()?;
    String::from_utf8(first.expect_primitive()?).ok()
}

fn spec_of(target: &GrantTarget) -> Result<&LdapGroupGrantSpec, ProviderError> {
    match &target.spec {
        Some(GrantSpec::LdapGroup(s)) => Ok(s),
        _ => Err(ProviderError::permanent(format!(
            "request {} has no ldap_group grant spec (its role was not on an ldap_group provider when it was made)",
            target.request_id.get()
        ))),
    }
}

fn no_such_group(spec: &LdapGroupGrantSpec) -> ProviderError {
    ProviderError::permanent(format!(
        "the group {} does not exist in the directory, or the bind DN may not see it",
        spec.group
    ))
}

/// The result code's name and the server's diagnostic text.
fn describe(res: &LdapResult) -> String {
    let name = match res.rc {
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        7 => "authMethodNotSupported",
        8 => "strongerAuthRequired",
        10 => "referral",
        11 => "adminLimitExceeded",
        13 => "confidentialityRequired",
        16 => "noSuchAttribute",
        19 => "constraintViolation",
        20 => "attributeOrValueExists",
        21 => "invalidAttributeSyntax",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        65 => "objectClassViolation",
        80 => "other",
        _ => "error",
    };
    let text = res.text.trim();
    if text.is_empty() {
        format!("{name} (LDAP result {})", res.rc)
    } else {
        format!("{name} (LDAP result {}): {text}", res.rc)
    }
}

/// A refusal by the server. Busy, unavailable, time limits and `other`
/// may pass; bad credentials, missing rights and schema refusals are a
/// setup problem that retrying will not fix.
fn result_error(what: &str, res: &LdapResult) -> ProviderError {
    let retryable = matches!(res.rc, 1 | 3 | 11 | 51 | 52 | 80);
    let hint = match res.rc {
        rc::INVALID_CREDENTIALS => ": check the provider's bind_dn and bind_password",
        rc::INSUFFICIENT_ACCESS => ": the bind DN lacks the rights (see the README's ACL)",
        _ => "",
    };
    ProviderError {
        message: format!("{what}: the directory refused: {}{hint}", describe(res)),
        retryable,
        output: None,
    }
}

/// A failure below the LDAP protocol (network, TLS, timeouts): may pass.
fn transport_error(what: &str, e: LdapError) -> ProviderError {
    let why = match &e {
        LdapError::Timeout { .. } => "timed out".to_owned(),
        LdapError::Io { source } => match source.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
            Some(tls) => format!("TLS failed: {tls} (is ca_file the CA that signed the server's certificate?)"),
            None => format!("cannot reach the directory: {source}"),
        },
        LdapError::Rustls { source } => format!("TLS failed: {source}"),
        LdapError::LdapResult { result } => return result_error(what, result),
        other => format!("{other}"),
    };
    ProviderError::retryable(format!("{what}: {why}"))
}

#[async_trait]
impl Provider for LdapGroupProvider {
    async fn grant(&self, grant: &ApprovedGrant, _now: Timestamp) -> Result<ProviderReport, ProviderError> {
        let spec = spec_of(grant.target())?;
        self.with_session("the grant", async |s| self.add_member(s, spec).await).await
    }

    async fn revoke(&self, target: &GrantTarget, _now: Timestamp) -> Result<ProviderReport, ProviderError> {
        let spec = spec_of(target)?;
        self.with_session("the revocation", async |s| self.remove_member(s, spec).await).await
    }

    fn access_key(&self, target: &GrantTarget) -> Option<String> {
        // The member is named by its lookup (`mail=alice@example.com`), which
        // finds exactly one entry: this is called without a connection, so
        // the entry's DN is not at hand. DNs and these attribute values
        // compare case-insensitively.
        match &target.spec {
            Some(GrantSpec::LdapGroup(s)) => Some(format!(
                "ldap_group/{}/{}/{}/{}={}",
                self.name,
                s.group.as_str().to_lowercase(),
                s.member_attribute.as_str(),
                s.user_attribute.as_str(),
                s.user_value.to_lowercase()
            )),
            _ => None,
        }
    }

    async fn inspect(&self, target: &GrantTarget) -> Result<Presence, ProviderError> {
        let spec = spec_of(target)?;
        self.with_session("reading the directory", async |s| {
            match self.find_user(s, spec.user_attribute, &spec.user_value).await? {
                None => Ok(Presence::Absent),
                Some(user) => {
                    Ok(if self.is_member(s, spec, &user).await? { Presence::Present } else { Presence::Absent })
                }
            }
        })
        .await
    }

    async fn check_requester(&self, user: &GrantUser) -> Result<(), ProviderError> {
        let value = self.lookup_value(user)?;
        let attribute = self.user_attribute;
        let found = self
            .with_session("looking you up in the directory", async |s| self.find_user(s, attribute, &value).await)
            .await?;
        match found {
            Some(_) => Ok(()),
            None => Err(ProviderError::permanent(format!(
                "you have no entry in the directory behind {} ({}={value} matches nobody under {}); ask its \
                 administrators to create one or fix the value",
                self.name,
                attribute.as_str(),
                self.user_base
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_values_are_escaped() {
        assert_eq!(LdapGroupProvider::filter(LdapUserAttribute::Uid, "*)(uid=*"), "(uid=\\2a\\29\\28uid=\\2a)");
        assert_eq!(LdapGroupProvider::filter(LdapUserAttribute::Mail, "a\\b\0"), "(mail=a\\5cb\\00)");
    }

    #[test]
    fn stored_group_dns_are_rechecked() {
        let json = r#"{"kind":"ldap_group","group":"cn=x,dc=y","member_attribute":"member","user_attribute":"mail","user_value":"a@b"}"#;
        let spec = GrantSpec::from_json(json).unwrap();
        assert!(matches!(&spec, GrantSpec::LdapGroup(s) if s.group.as_str() == "cn=x,dc=y"));
        assert_eq!(GrantSpec::from_json(&spec.to_json()).unwrap(), spec);
        assert!(GrantSpec::from_json(&json.replace("cn=x,dc=y", "cn=x,,")).is_err());
        assert!(GrantSpec::from_json(&json.replace("\"member\"", "\"owner\"")).is_err());
    }
}
