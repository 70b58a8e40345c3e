//! Property tests of config loading: any file, valid TOML or not, with
//! known keys holding values of any shape, is accepted or refused with a
//! message naming the file, never a panic.

use std::path::Path;

use proptest::prelude::*;

use super::Config;

fn load(text: &str) -> Result<Config, super::ConfigError> {
    // No environment overrides: the result depends on the text alone.
    Config::parse_with_overrides(Path::new("jitbot.toml"), text, &|_| None)
}

fn table() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "server",
        "database",
        "slack",
        "idp",
        "policy",
        "scim",
        "providers.hook",
        "providers.db",
        "providers.cmd",
        "roles.prod",
        "roles.dev",
    ])
}

fn key() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "listen",
        "public_url",
        "request_timeout",
        "max_concurrent_requests",
        "url",
        "max_connections",
        "mode",
        "bot_token",
        "app_token",
        "signing_secret",
        "team_id",
        "approvals_channel",
        "issuer",
        "client_id",
        "client_secret",
        "scopes",
        "groups_claim",
        "groups_delimiter",
        "email_verified",
        "token_encryption_key",
        "admin_groups",
        "token",
        "kind",
        "secret",
        "timeout",
        "login",
        "grant_command",
        "revoke_command",
        "description",
        "provider",
        "requesters",
        "approvers",
        "approvals_required",
        "default_duration",
        "max_duration",
        "grant",
        "auto_approve",
        "approval_timeout",
        "ticket_pattern",
        "step_up",
        "warn_before",
        "max_total_duration",
        "break_glass",
    ])
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -!#-\\[\\]-~]{0,16}".prop_map(|s| format!("\"{s}\"")),
        prop::sample::select(vec![
            "\"30m\"",
            "\"4h\"",
            "\"0s\"",
            "\"socket\"",
            "\"http\"",
            "\"webhook\"",
            "\"postgres\"",
            "\"command\"",
            "\"https://example.com\"",
            "\"postgres://u@h/db\"",
            "\"sqlite://x.db\"",
            "\"xoxb-1\"",
            "\"${NOPE}\"",
            "\"[a-z\"",
            "\"if_present\"",
            "\"T0AB\"",
            "\"C0AB\"",
            "[\"openid\"]",
            "[\"eng\", \"ops\"]",
            "[]",
            "{ pg_role = \"ro\" }",
            "{ groups = [\"oncall\"], max_duration = \"1h\" }",
            "[\"/bin/true\"]",
        ])
        .prop_map(str::to_owned),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
    ]
}

/// TOML-shaped files: tables of known keys with values of any shape.
fn config_text() -> impl Strategy<Value = String> {
    prop::collection::vec((table(), prop::collection::vec((key(), value()), 0..8)), 0..8).prop_map(|tables| {
        tables
            .into_iter()
            .map(|(t, kvs)| {
                let body: String = kvs.into_iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
                format!("[{t}]\n{body}\n")
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_text_loads_or_is_refused_naming_the_file(text in any::<String>()) {
        if let Err(e) = load(&text) {
            prop_assert!(e.to_string().starts_with("jitbot.toml"), "{}", e);
        }
    }

    #[test]
    fn any_toml_of_known_keys_loads_or_is_refused_naming_the_file(text in config_text()) {
        match load(&text) {
            Ok(config) => {
                let _ = config.warnings();
                let _ = config.login_claims();
            }
            Err(e) => prop_assert!(e.to_string().starts_with("jitbot.toml"), "{}", e),
        }
    }
}
