//! Property tests of the `/jit` command parser: any text a person (or a
//! forged request) sends gets an answer, never a panic, and well-formed
//! commands mean what they say however they are spaced.

use proptest::prelude::*;

use super::*;

fn role() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,20}"
}

/// Reason words that are not mistaken for a duration.
fn reason() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[a-zA-Z][a-zA-Z0-9,.:-]{0,10}", 1..6)
}

fn spaces() -> impl Strategy<Value = String> {
    "[ \t]{1,3}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_text_parses_or_is_refused_without_panicking(text in any::<String>()) {
        let _ = parse(&text);
    }

    #[test]
    fn any_words_after_a_known_command_parse_or_are_refused(
        command in prop::sample::select(vec![
            "request", "req", "extend", "break-glass", "revoke", "cancel", "retry", "revoke-all", "list", "help",
        ]),
        words in prop::collection::vec("[ -~]{0,12}", 0..6),
    ) {
        let _ = parse(&format!("{command} {}", words.join(" ")));
    }

    #[test]
    fn a_request_means_its_role_duration_and_reason(
        role in role(),
        minutes in 1u64..100_000,
        reason in reason(),
        gap in spaces(),
    ) {
        let text = format!("{gap}request{gap}{role}{gap}{minutes}m{gap}{}{gap}", reason.join(&gap));
        let expected = JitCommand::Request {
            role: role.clone(),
            duration: Some(AccessDuration::try_from_std(std::time::Duration::from_secs(minutes * 60)).unwrap()),
            reason: reason.join(" "),
        };
        prop_assert_eq!(parse(&text).unwrap(), expected);
    }

    #[test]
    fn request_ids_round_trip(id in 1i64..=i64::MAX, hash in any::<bool>(), verb in prop::sample::select(vec!["revoke", "cancel", "retry"])) {
        let text = format!("{verb} {}{id}", if hash { "#" } else { "" });
        let id = RequestId::new(id);
        let expected = match verb {
            "revoke" => JitCommand::Revoke(id),
            "cancel" => JitCommand::Cancel(id),
            _ => JitCommand::Retry(id),
        };
        prop_assert_eq!(parse(&text).unwrap(), expected);
    }
}
