//! Property tests of the Slack signature check: every header value an
//! attacker can send is refused or accepted, never a panic, and what Slack
//! signs within the window verifies.

use proptest::prelude::*;

use super::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_headers_and_clock_are_judged_without_panicking(
        secret in prop::collection::vec(any::<u8>(), 0..64),
        timestamp in prop::option::of(any::<String>()),
        numeric in any::<i64>(),
        signature in prop::option::of(any::<String>()),
        body in prop::collection::vec(any::<u8>(), 0..256),
        now in any::<i64>(),
    ) {
        let now = Timestamp::from_millis(now);
        let _ = verify(&secret, timestamp.as_deref(), signature.as_deref(), &body, now);
        let numeric = numeric.to_string();
        let _ = verify(&secret, Some(&numeric), signature.as_deref(), &body, now);
        let signed = sign(&secret, &numeric, &body);
        let _ = verify(&secret, Some(&numeric), Some(&signed), &body, now);
    }

    #[test]
    fn a_request_signed_within_the_window_verifies_and_an_altered_one_does_not(
        secret in prop::collection::vec(any::<u8>(), 1..64),
        body in prop::collection::vec(any::<u8>(), 0..256),
        ts in 0i64..4_000_000_000,
        skew in -MAX_SKEW_SECONDS..=MAX_SKEW_SECONDS,
        flip in any::<prop::sample::Index>(),
    ) {
        let timestamp = ts.to_string();
        let signature = sign(&secret, &timestamp, &body);
        let now = Timestamp::from_millis((ts + skew) * 1000);
        prop_assert_eq!(verify(&secret, Some(&timestamp), Some(&signature), &body, now), Ok(()));
        if !body.is_empty() {
            let mut altered = body.clone();
            let i = flip.index(altered.len());
            altered[i] ^= 1;
            prop_assert_eq!(
                verify(&secret, Some(&timestamp), Some(&signature), &altered, now),
                Err(SignatureError::Mismatch)
            );
        }
        let late = Timestamp::from_millis((ts + MAX_SKEW_SECONDS + 1) * 1000);
        prop_assert_eq!(verify(&secret, Some(&timestamp), Some(&signature), &body, late), Err(SignatureError::Stale));
    }
}
