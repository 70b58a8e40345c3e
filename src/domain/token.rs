//! How secret tokens are kept: only their SHA-256 is stored or compared, so
//! a leaked table or a timing side channel gives nobody a usable token.
//! Every single-use token (link tokens, sign-in states, browser bindings and
//! sessions, credentials links) and the SCIM bearer token is hashed here.

use sha2::{Digest, Sha256};

/// The raw SHA-256 of a token (the SCIM bearer check compares these in
/// constant time).
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A fresh random token, URL-safe (256 bits): link tokens, states, browser
/// bindings. The one reader of randomness in the domain: tokens are made
/// where they are stored.
pub fn random_token() -> String {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// How tokens are stored: hex SHA-256. A leaked table gives nobody a usable token.
pub fn hash_token(token: &str) -> String {
    hex::encode(token_digest(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_hash_is_hex_sha256() {
        assert_eq!(hash_token("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(hex::encode(token_digest("abc")), hash_token("abc"));
    }
}
