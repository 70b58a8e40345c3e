//! Property tests of durations and timestamps: what people type never
//! panics the parser, and what jitbot prints parses back to the same value.

use proptest::prelude::*;

use super::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_text_is_a_duration_or_an_error(text in any::<String>()) {
        let _ = AccessDuration::parse(&text);
    }

    #[test]
    fn duration_like_text_is_a_duration_or_an_error(text in "[0-9]{1,25}(ns|us|ms|s|m|min|h|d|w|M|y)( ?[0-9]{1,25}[a-z]{1,3}){0,3}") {
        if let Ok(d) = AccessDuration::parse(&text) {
            prop_assert!(d.get() >= AccessDuration::MIN);
        }
    }

    #[test]
    fn a_printed_duration_parses_back_to_itself(secs in 60u64..=400 * 86_400) {
        let d = AccessDuration::try_from_std(Duration::from_secs(secs)).unwrap();
        prop_assert_eq!(AccessDuration::parse(&d.to_string()).unwrap(), d);
        prop_assert_eq!(AccessDuration::from_millis(d.millis()), d);
    }

    #[test]
    fn any_text_is_a_timestamp_or_an_error(text in any::<String>()) {
        let _ = Timestamp::parse_rfc3339(&text);
    }

    #[test]
    fn a_printed_timestamp_parses_back_to_itself(secs in 0i64..253_402_300_799) {
        let t = Timestamp::from_millis(secs * 1000);
        prop_assert_eq!(Timestamp::parse_rfc3339(&t.to_string()).unwrap(), t);
    }

    #[test]
    fn timestamp_arithmetic_never_panics(ms in any::<i64>(), other in any::<i64>(), d in any::<u64>()) {
        let t = Timestamp::from_millis(ms);
        let _ = t.plus(Duration::from_millis(d)).minus(Duration::from_millis(d));
        let _ = t.until(Timestamp::from_millis(other));
        let _ = t.to_string();
        let _ = t.seconds();
    }
}
