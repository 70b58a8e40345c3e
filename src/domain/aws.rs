//! The names the `aws_identity_center` provider deals in (instance and
//! permission set ARNs, account ids, the Identity Store attribute people
//! are found by): pure rules, parsed once from config and again when a
//! stored grant spec is read, so a hand-edited row cannot point a
//! revocation elsewhere.
//! The shapes are the ones the IAM Identity Center API documents for its
//! parameters; anything else would be refused by AWS anyway, only later
//! and with a less helpful message.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// The partitions AWS documents for Identity Center ARNs.
const PARTITION: &str = "aws|aws-cn|aws-us-gov|aws-iso|aws-iso-b|aws-iso-e|aws-iso-f|aws-eusc";

static INSTANCE_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r"^arn:({PARTITION}):sso:::instance/(sso)?ins-[a-zA-Z0-9.-]{{16}}$"))
        .unwrap_or_else(|_| unreachable!("a fixed pattern"))
});

static PERMISSION_SET_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"^arn:({PARTITION}):sso:::permissionSet/(sso)?ins-[a-zA-Z0-9.-]{{16}}/ps-[a-zA-Z0-9.-]{{16}}$"
    ))
    .unwrap_or_else(|_| unreachable!("a fixed pattern"))
});

/// Permission set names: 1-32 of `[\w+=,.@-]` (the API's own rule).
static PERMISSION_SET_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[\w+=,.@-]{1,32}$").unwrap_or_else(|_| unreachable!("a fixed pattern")));

/// Identity store ids are `d-` and ten characters (or, for stores created
/// through the API, a UUID).
static IDENTITY_STORE_ID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(d-[0-9a-z]{10}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
        .unwrap_or_else(|_| unreachable!("a fixed pattern"))
});

static REGION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z]{2,}(-[a-z]+)+-[0-9]+$").unwrap_or_else(|_| unreachable!("a fixed pattern")));

/// Checks an instance ARN (`arn:aws:sso:::instance/ssoins-...`).
pub fn check_instance_arn(s: &str) -> Result<(), String> {
    if INSTANCE_ARN.is_match(s) {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not an IAM Identity Center instance ARN like \"arn:aws:sso:::instance/ssoins-0123456789abcdef\""
        ))
    }
}

/// Checks an identity store id (`d-0123456789`).
pub fn check_identity_store_id(s: &str) -> Result<(), String> {
    if IDENTITY_STORE_ID.is_match(s) {
        Ok(())
    } else {
        Err(format!("{s:?} is not an identity store id like \"d-0123456789\""))
    }
}

/// Checks a region name (`eu-west-1`).
pub fn check_region(s: &str) -> Result<(), String> {
    if REGION.is_match(s) { Ok(()) } else { Err(format!("{s:?} is not an AWS region like \"eu-west-1\"")) }
}

/// A 12-digit AWS account id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AwsAccountId(String);

impl AwsAccountId {
    /// Parses an account id; it must be exactly 12 digits (leading zeros
    /// count, which is why config takes it as a string).
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!("{s:?} is not a 12-digit AWS account id (write it as a string: \"012345678901\")"))
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AwsAccountId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<AwsAccountId> for String {
    fn from(a: AwsAccountId) -> String {
        a.0
    }
}

impl fmt::Display for AwsAccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A permission set as a role names it: by ARN, or by its name (resolved in
/// the instance when first used).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum PermissionSetRef {
    /// `arn:aws:sso:::permissionSet/ssoins-.../ps-...`.
    Arn(String),
    /// The permission set's name, e.g. `AdministratorAccess`.
    Name(String),
}

impl PermissionSetRef {
    /// Parses an ARN (anything starting with `arn:` must be one) or a name.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.starts_with("arn:") {
            if PERMISSION_SET_ARN.is_match(s) {
                Ok(Self::Arn(s.to_owned()))
            } else {
                Err(format!(
                    "{s:?} is not a permission set ARN like \"arn:aws:sso:::permissionSet/ssoins-0123456789abcdef/ps-0123456789abcdef\""
                ))
            }
        } else if PERMISSION_SET_NAME.is_match(s) {
            Ok(Self::Name(s.to_owned()))
        } else {
            Err(format!(
                "{s:?} is neither a permission set ARN nor a permission set name (1-32 letters, digits or +=,.@_-)"
            ))
        }
    }

    /// As written in the config.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Arn(s) | Self::Name(s) => s,
        }
    }

    /// Whether it is written as an ARN.
    pub fn is_arn(&self) -> bool {
        matches!(self, Self::Arn(_))
    }
}

impl TryFrom<String> for PermissionSetRef {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<PermissionSetRef> for String {
    fn from(p: PermissionSetRef) -> String {
        match p {
            PermissionSetRef::Arn(s) | PermissionSetRef::Name(s) => s,
        }
    }
}

impl fmt::Display for PermissionSetRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which Identity Store attribute the linked identity's email is matched
/// against (`user_lookup` in config). Both are unique in an identity store,
/// so a lookup finds one user or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserLookup {
    /// `userName` (the default: with a SAML/SCIM IdP it is usually the email).
    #[default]
    UserName,
    /// The user's email address (`emails.value`).
    Email,
}

impl UserLookup {
    /// The attribute path `GetUserId` takes.
    pub fn attribute_path(self) -> &'static str {
        match self {
            Self::UserName => "userName",
            Self::Email => "emails.value",
        }
    }

    /// How messages name it.
    pub fn label(self) -> &'static str {
        match self {
            Self::UserName => "userName",
            Self::Email => "email",
        }
    }
}

/// The value a user is looked up by: the linked identity's email as it was
/// when the request was made. Checked so that a stored spec cannot carry
/// something no IdP would have sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LookupValue(String);

impl LookupValue {
    /// Accepts 1-128 printable characters without spaces (an identity
    /// store's `userName` limit).
    pub fn parse(s: &str) -> Result<Self, String> {
        if !s.is_empty() && s.chars().count() <= 128 && !s.chars().any(|c| c.is_control() || c.is_whitespace()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!("{s:?} cannot name an IAM Identity Center user"))
        }
    }

    /// The value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for LookupValue {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<LookupValue> for String {
    fn from(v: LookupValue) -> String {
        v.0
    }
}

impl fmt::Display for LookupValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_checked_as_the_api_documents_them() {
        check_instance_arn("arn:aws:sso:::instance/ssoins-0123456789abcdef").unwrap();
        check_instance_arn("arn:aws-us-gov:sso:::instance/ssoins-0123456789abcdef").unwrap();
        for bad in [
            "arn:aws:sso:::instance/ssoins-0123",
            "arn:aws:iam::123456789012:role/x",
            "ssoins-0123456789abcdef",
            "arn:aws:sso:::instance/ssoins-0123456789abcdef/x",
        ] {
            assert!(check_instance_arn(bad).is_err(), "{bad}");
        }
        assert_eq!(AwsAccountId::parse("012345678901").unwrap().as_str(), "012345678901");
        for bad in ["12345678901", "1234567890123", "12345678901a", ""] {
            assert!(AwsAccountId::parse(bad).unwrap_err().contains("12-digit"), "{bad}");
        }
        let arn = "arn:aws:sso:::permissionSet/ssoins-0123456789abcdef/ps-0123456789abcdef";
        assert_eq!(PermissionSetRef::parse(arn).unwrap(), PermissionSetRef::Arn(arn.into()));
        assert_eq!(PermissionSetRef::parse("ReadOnly").unwrap(), PermissionSetRef::Name("ReadOnly".into()));
        assert!(PermissionSetRef::parse("arn:aws:sso:::permissionSet/ps-1").unwrap_err().contains("ARN like"));
        assert!(PermissionSetRef::parse("Read Only").is_err());
        assert!(PermissionSetRef::parse(&"x".repeat(33)).is_err());
        check_identity_store_id("d-0123456789").unwrap();
        assert!(check_identity_store_id("0123456789").is_err());
        check_region("eu-west-1").unwrap();
        check_region("us-gov-west-1").unwrap();
        assert!(check_region("europe").is_err());
    }

    #[test]
    fn stored_values_are_rechecked_when_read() {
        assert!(serde_json::from_str::<AwsAccountId>("\"1234\"").is_err());
        assert!(serde_json::from_str::<PermissionSetRef>("\"arn:aws:iam::1:role/x\"").is_err());
        assert!(serde_json::from_str::<LookupValue>("\"a b\"").is_err());
        assert!(serde_json::from_str::<UserLookup>("\"email\"").unwrap() == UserLookup::Email);
    }
}
