//! Property tests of the webhook signature header: any secret, timestamp
//! and body sign without panicking, the value has the documented shape, and
//! it is exactly the HMAC a receiver computes, so any change to the body
//! or timestamp changes it.

use hmac::{Hmac, Mac};
use proptest::prelude::*;
use sha2::Sha256;

use super::sign;

/// What a receiver does, written independently: HMAC-SHA256 over
/// `v1:{timestamp}:{raw body}`, compared in hex.
fn receiver_accepts(secret: &[u8], timestamp: &str, body: &[u8], signature: &str) -> bool {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap();
    mac.update(b"v1:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    hex::decode(signature).is_ok_and(|sig| mac.verify_slice(&sig).is_ok())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn signatures_have_the_documented_shape_and_verify(
        secret in prop::collection::vec(any::<u8>(), 0..80),
        timestamp in any::<i64>(),
        body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let signature = sign(&secret, timestamp, &body);
        prop_assert_eq!(signature.len(), 64);
        prop_assert!(signature.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        prop_assert!(receiver_accepts(&secret, &timestamp.to_string(), &body, &signature));
        prop_assert_eq!(sign(&secret, timestamp, &body), signature);
    }

    #[test]
    fn another_body_or_timestamp_is_refused(
        secret in prop::collection::vec(any::<u8>(), 1..80),
        timestamp in any::<i64>(),
        body in prop::collection::vec(any::<u8>(), 1..512),
        flip in any::<prop::sample::Index>(),
        other_ts in any::<i64>(),
    ) {
        let signature = sign(&secret, timestamp, &body);
        let mut altered = body.clone();
        let i = flip.index(altered.len());
        altered[i] ^= 0x20;
        prop_assert!(!receiver_accepts(&secret, &timestamp.to_string(), &altered, &signature));
        if other_ts != timestamp {
            prop_assert!(!receiver_accepts(&secret, &other_ts.to_string(), &body, &signature));
        }
    }
}
