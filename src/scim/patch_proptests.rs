//! Property tests of the SCIM filter and PATCH path parsers: whatever an
//! IdP (or anyone holding the token) sends is parsed or refused with a
//! SCIM error, never a panic, and well-formed filters keep their meaning.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::{apply, parse_filter};

const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

fn attr() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["userName", "externalId", "active", "emails.value", "name.givenName", "title", "x"])
        .prop_map(str::to_owned)
}

fn op() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "pr", "EQ", "xx"])
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 @._-]{0,12}".prop_map(|s| format!("\"{s}\"")),
        Just("true".to_owned()),
        Just("null".to_owned()),
        any::<i32>().prop_map(|n| n.to_string()),
        "[ -~]{0,8}",
    ]
}

/// Filter-shaped text: comparisons joined by `and`/`or`, sometimes broken.
fn filter_text() -> impl Strategy<Value = String> {
    let comparison = (attr(), op(), value())
        .prop_map(|(a, o, v)| if o == "pr" { format!("{a} pr") } else { format!("{a} {o} {v}") });
    (
        prop::collection::vec(comparison, 1..5),
        prop::collection::vec(prop::sample::select(vec!["and", "or", "AND", "not"]), 4),
    )
        .prop_map(|(cs, joins)| {
            let mut out = String::new();
            for (i, c) in cs.iter().enumerate() {
                if i > 0 {
                    out.push_str(&format!(" {} ", joins[i % joins.len()]));
                }
                out.push_str(c);
            }
            out
        })
}

fn user() -> Value {
    json!({
        "schemas": [USER_URN],
        "userName": "alice",
        "externalId": "00u1",
        "active": true,
        "name": {"givenName": "Alice"},
        "emails": [{"value": "alice@example.com", "primary": true}],
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_filter_text_parses_or_is_refused(text in any::<String>()) {
        if let Ok(filter) = parse_filter(&text) {
            let _ = filter.matches(&user());
        }
    }

    #[test]
    fn filter_shaped_text_parses_or_is_refused_and_matching_never_panics(text in filter_text()) {
        if let Ok(filter) = parse_filter(&text) {
            prop_assert!(!filter.any_of.is_empty());
            let _ = filter.matches(&user());
            let _ = filter.matches(&json!({}));
            let _ = filter.matches(&json!({"userName": 3, "emails": "x", "name": []}));
        }
    }

    #[test]
    fn an_equality_filter_finds_exactly_its_value(name in "[a-z0-9._@-]{1,20}") {
        let filter = parse_filter(&format!("userName eq \"{name}\"")).unwrap();
        let same = json!({"userName": name});
        let other = json!({"userName": format!("{name}x")});
        prop_assert!(filter.matches(&same));
        prop_assert!(!filter.matches(&other));
    }

    #[test]
    fn any_patch_path_and_value_is_applied_or_refused(
        op in prop::sample::select(vec!["add", "replace", "remove", "Add", "bogus"]),
        path in prop::option::of(prop_oneof![
            any::<String>(),
            "[a-zA-Z.]{0,12}(\\[[ -~]{0,20}\\])?(\\.[a-z]{0,6})?",
            Just(format!("{USER_URN}:userName")),
            Just("emails[type eq \"work\"].value".to_owned()),
        ]),
        value in prop::option::of(prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            "[ -~]{0,10}".prop_map(Value::String),
            Just(json!([{"value": "a@example.com"}, "x", 3])),
            Just(json!({"userName": "bob", "active": false})),
        ]),
    ) {
        let mut resource: Map<String, Value> = user().as_object().cloned().unwrap();
        let _ = apply(&mut resource, op, path.as_deref(), value, USER_URN);
    }
}
