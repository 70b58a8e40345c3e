//! SCRAM-SHA-256 verifiers as PostgreSQL stores them (RFC 5802 / RFC 7677),
//! computed by jitbot so `ALTER ROLE ... PASSWORD` only ever carries the
//! verifier: the plain password never reaches the server, its statement
//! log or `pg_stat_statements`.
//!
//! Format: `SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>`
//! where `SaltedPassword = PBKDF2-HMAC-SHA256(password, salt, iterations)`,
//! `StoredKey = SHA-256(HMAC(SaltedPassword, "Client Key"))` and
//! `ServerKey = HMAC(SaltedPassword, "Server Key")`. PostgreSQL applies
//! SASLprep to passwords; jitbot's passwords are ASCII letters and digits,
//! which SASLprep leaves unchanged.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};

/// PostgreSQL's default iteration count (`scram_iterations`).
pub const ITERATIONS: u32 = 4096;

/// Length of generated passwords: 32 alphanumerics, about 190 bits.
pub const PASSWORD_LENGTH: usize = 32;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// PBKDF2-HMAC-SHA256 with one output block (32 bytes), RFC 5802's `Hi()`.
fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut first = salt.to_vec();
    first.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(password, &first);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac(password, &u);
        out.iter_mut().zip(u.iter()).for_each(|(o, x)| *o ^= x);
    }
    out
}

/// The keys a verifier is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramKeys {
    /// `HMAC(SaltedPassword, "Client Key")`: what a client proves it knows.
    pub client_key: [u8; 32],
    /// `SHA-256(ClientKey)`: what the server stores to check the proof.
    pub stored_key: [u8; 32],
    /// `HMAC(SaltedPassword, "Server Key")`: what the server proves itself with.
    pub server_key: [u8; 32],
}

/// Derives the keys for `password`.
pub fn keys(password: &str, salt: &[u8], iterations: u32) -> ScramKeys {
    let salted = salted_password(password.as_bytes(), salt, iterations);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key: [u8; 32] = Sha256::digest(client_key).into();
    let server_key = hmac(&salted, b"Server Key");
    ScramKeys { client_key, stored_key, server_key }
}

/// The verifier PostgreSQL stores for `password` with this salt.
pub fn verifier(password: &str, salt: &[u8], iterations: u32) -> String {
    let k = keys(password, salt, iterations);
    format!("SCRAM-SHA-256${iterations}:{}${}:{}", B64.encode(salt), B64.encode(k.stored_key), B64.encode(k.server_key))
}

/// A fresh password and its verifier (random 16-byte salt, 4096 iterations).
pub fn new_password() -> (String, String) {
    let mut rng = rand::rng();
    let password: String = (&mut rng).sample_iter(Alphanumeric).take(PASSWORD_LENGTH).map(char::from).collect();
    let salt: [u8; 16] = rng.random();
    let v = verifier(&password, &salt, ITERATIONS);
    (password, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3: user "user", password "pencil". Checking the
    /// client proof and server signature of that exchange checks every key.
    #[test]
    fn keys_reproduce_the_rfc_7677_exchange() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let k = keys("pencil", &salt, 4096);
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
            r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
            c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let client_signature = hmac(&k.stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = k.client_key.iter().zip(client_signature.iter()).map(|(a, b)| a ^ b).collect();
        assert_eq!(B64.encode(proof), "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
        let server_signature = hmac(&k.server_key, auth_message.as_bytes());
        assert_eq!(B64.encode(server_signature), "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn verifiers_have_postgresql_s_format() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = verifier("pencil", &salt, 4096);
        let parts: Vec<&str> = v.split('$').collect();
        assert_eq!(parts.len(), 3, "{v}");
        assert_eq!(parts[0], "SCRAM-SHA-256");
        assert_eq!(parts[1], "4096:W22ZaJ0SNY7soEsUEjb6gQ==");
        let (stored, server) = parts[2].split_once(':').unwrap();
        assert_eq!(B64.decode(stored).unwrap().len(), 32);
        assert_eq!(B64.decode(server).unwrap().len(), 32);
        let (p1, v1) = new_password();
        let (p2, v2) = new_password();
        assert_eq!(p1.len(), PASSWORD_LENGTH);
        assert!(p1.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(p1, p2);
        assert_ne!(v1, v2);
        assert!(!v1.contains(&p1));
    }
}
