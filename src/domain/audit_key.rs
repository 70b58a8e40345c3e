//! The secret that makes the audit trail tamper-evident against someone who
//! owns the database: rows, the chain head and the checkpoints posted to
//! Slack carry HMAC-SHA256 tags made with it, and it is never stored in the
//! database. Pure computation, no I/O; what is tagged is decided in
//! [`crate::audit`].

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// What a tag is about. Each purpose prefixes the tagged bytes with its own
/// label, so a tag made for one purpose (a row) is never valid for another
/// (the head, a checkpoint) even over equal bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditTag {
    /// One audit row, chained to the previous row's tag.
    Row,
    /// The head row's `(seq, hash)`.
    Head,
    /// A checkpoint line posted outside the database.
    Checkpoint,
}

impl AuditTag {
    fn label(self) -> &'static [u8] {
        match self {
            Self::Row => b"jitbot audit row v1\n",
            Self::Head => b"jitbot audit head v1\n",
            Self::Checkpoint => b"jitbot audit checkpoint v1\n",
        }
    }
}

/// `audit.key`: cheap to clone (shared), and `Debug` never shows it.
#[derive(Clone)]
pub struct AuditKey(Arc<SecretString>);

impl AuditKey {
    /// The shortest key accepted: an HMAC key anyone can guess protects nothing.
    pub const MIN_LEN: usize = 32;

    /// Wraps a key; refuses one shorter than [`AuditKey::MIN_LEN`].
    pub fn new(key: &str) -> Result<Self, String> {
        if key.trim().len() < Self::MIN_LEN {
            return Err(format!("must be at least {} characters (e.g. `openssl rand -hex 32`)", Self::MIN_LEN));
        }
        Ok(Self(Arc::new(SecretString::from(key.to_owned()))))
    }

    /// Hex HMAC-SHA256 of `message` for `purpose`.
    pub fn tag(&self, purpose: AuditTag, message: &[u8]) -> String {
        hex::encode(self.mac(purpose, message).finalize().into_bytes())
    }

    /// Whether `tag` (hex) is the tag of `message` for `purpose`, compared
    /// in constant time.
    pub fn verify(&self, purpose: AuditTag, message: &[u8], tag: &str) -> bool {
        match hex::decode(tag) {
            Ok(bytes) => self.mac(purpose, message).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }

    fn mac(&self, purpose: AuditTag, message: &[u8]) -> Hmac<Sha256> {
        // HMAC accepts keys of any length: `new_from_slice` cannot fail.
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(self.0.expose_secret().as_bytes()).unwrap_or_else(|_| unreachable!());
        mac.update(purpose.label());
        mac.update(message);
        mac
    }
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditKey([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_key_is_refused() {
        assert!(AuditKey::new("short").is_err());
        assert!(AuditKey::new(&"k".repeat(32)).is_ok());
    }

    #[test]
    fn tags_are_separated_by_purpose_and_never_shown() {
        let key = AuditKey::new(&"k".repeat(32)).unwrap();
        let row = key.tag(AuditTag::Row, b"x");
        assert_ne!(row, key.tag(AuditTag::Head, b"x"));
        assert!(key.verify(AuditTag::Row, b"x", &row));
        assert!(!key.verify(AuditTag::Head, b"x", &row));
        assert!(!key.verify(AuditTag::Row, b"x", "not hex"));
        assert!(!format!("{key:?}").contains("kkkk"));
    }
}
