//! Checks against Slack's own artefacts: the app manifest against Slack's
//! published JSON Schema, and every message template against the official
//! `slack_sdk` Block Kit models. Both run in Python; `.ci/run` installs the
//! packages into a virtual environment and points `JITBOT_PYTHON` at it.

use std::path::{Path, PathBuf};
use std::process::Command;

use jitbot::domain::{AccessDuration, AccessRequest, RequestId, RequestState, RoleName, SlackUser, Timestamp};
use jitbot::notify::NoticeKind;
use jitbot::slack::views;
use jitbot::store::ApprovalRow;
use serde_json::{Value, json};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Python with jsonschema, PyYAML and slack_sdk; `None` (with a notice)
/// on a laptop without them; a failure in CI.
fn python() -> Option<PathBuf> {
    python_with(&["jsonschema", "yaml", "slack_sdk"])
}

/// The test Python (`JITBOT_PYTHON`, see `scripts/test`) if it can import
/// `modules`; `None` with a notice on a laptop without them; a failure in CI.
pub fn python_with(modules: &[&str]) -> Option<PathBuf> {
    let candidate = std::env::var_os("JITBOT_PYTHON").map(PathBuf::from).unwrap_or_else(|| "python3".into());
    let ok = Command::new(&candidate)
        .args(["-c", &format!("import {}", modules.join(", "))])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(candidate);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "CI=true but {} lacks jsonschema/PyYAML/slack_sdk: set JITBOT_PYTHON (see .ci/run)",
            candidate.display()
        );
    }
    eprintln!(
        "NOTICE: skipping a check that needs Python {modules:?}: run scripts/test (it installs tests/tools/requirements.txt)"
    );
    None
}

fn run(python: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(python).args(args).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_manifest_is_valid_against_slacks_schema() {
    let Some(py) = python() else { return };
    let tool = root().join("tests/tools/check_manifest.py");
    let schema = root().join("tests/fixtures/slack/manifest.schema.1.0.0.json");
    let (ok, out) =
        run(&py, &[tool.to_str().unwrap(), root().join("manifest.yaml").to_str().unwrap(), schema.to_str().unwrap()]);
    assert!(ok, "{out}");

    // And the checker does catch a broken manifest.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    let text = std::fs::read_to_string(root().join("manifest.yaml")).unwrap();
    std::fs::write(&bad, text.replace("is_enabled: true", "is_enabled: yes-please")).unwrap();
    let (ok, out) = run(&py, &[tool.to_str().unwrap(), bad.to_str().unwrap(), schema.to_str().unwrap()]);
    assert!(!ok && out.contains("interactivity"), "{out}");
}

fn manifest(py: &Path, name: &str) -> Value {
    let script = "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))";
    let (ok, out) = run(py, &["-c", script, root().join(name).to_str().unwrap()]);
    assert!(ok, "{out}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn the_manifests_declare_exactly_what_the_code_uses() {
    let Some(py) = python() else { return };
    let socket = manifest(&py, "manifest.yaml");
    let http = manifest(&py, "manifest.http.yaml");
    for m in [&socket, &http] {
        let commands = m["features"]["slash_commands"].as_array().unwrap();
        assert_eq!(commands.len(), 1);
        assert_eq!(commands[0]["command"], "/jit");
        assert_eq!(m["settings"]["interactivity"]["is_enabled"], true);
        // Only the scopes the Web API calls need: the command, chat.postMessage /
        // chat.update, and users.info with the profile email (OIDC linking).
        assert_eq!(
            m["oauth_config"]["scopes"]["bot"],
            json!(["commands", "chat:write", "users:read", "users:read.email"])
        );
    }
    // Socket Mode: no request URLs at all; Slack never calls jitbot.
    assert_eq!(socket["settings"]["socket_mode_enabled"], true);
    assert!(!socket.to_string().contains("request_url") && !socket.to_string().contains("\"url\""), "{socket}");
    // HTTP: the three endpoints jitbot serves.
    assert_eq!(http["settings"]["socket_mode_enabled"], false);
    assert!(http["features"]["slash_commands"][0]["url"].as_str().unwrap().ends_with("/slack/commands"));
    assert!(http["settings"]["interactivity"]["request_url"].as_str().unwrap().ends_with("/slack/interactions"));
    assert!(http["settings"]["event_subscriptions"]["request_url"].as_str().unwrap().ends_with("/slack/events"));
    for m in [&socket, &http] {
        // The App Home tab: drawn on app_home_opened.
        assert_eq!(m["features"]["app_home"]["home_tab_enabled"], true);
        assert_eq!(m["settings"]["event_subscriptions"]["bot_events"], json!(["app_home_opened"]));
    }
}

fn request(state: RequestState) -> AccessRequest {
    let t = Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
    AccessRequest {
        id: RequestId::new(123_456),
        requester: SlackUser::parse("T0WORK", "U0ALICE").unwrap(),
        requester_issuer: "https://idp.example".into(),
        requester_subject: "alice".into(),
        requester_email: "alice@example.com".into(),
        role: RoleName::parse(&"r".repeat(64)).unwrap(),
        provider: "ops-hook".into(),
        duration: AccessDuration::parse("1h30m").unwrap(),
        // Longer than any Slack text limit, with characters that need escaping.
        reason: "<script>&debugging</script>\n".repeat(500),
        ticket: Some("INC-4821 <urgent>".into()),
        approvals_required: 10,
        state,
        state_detail: Some("x".repeat(5000)),
        created_at: t,
        decided_at: Some(t),
        granted_at: Some(t),
        expires_at: Some(t),
        ended_at: Some(t),
        auto_approved: None,
        break_glass_reason: None,
        review_required: false,
        decide_by: Some(t),
        extends: None,
    }
}

/// The variants a card renders differently: plain, auto-approved, break-glass.
fn variants(state: RequestState) -> Vec<(&'static str, AccessRequest)> {
    let plain = request(state);
    let mut auto = request(state);
    auto.auto_approved = Some("member of <oncall>, up to 1h without approval ".repeat(100));
    let mut glass = request(state);
    glass.break_glass_reason = Some("<!channel> primary & replica down\n".repeat(200));
    glass.review_required = true;
    let mut extension = request(state);
    extension.extends = Some(RequestId::new(999_999_999));
    extension.break_glass_reason = glass.break_glass_reason.clone();
    vec![("plain", plain), ("auto", auto), ("break-glass", glass), ("extension", extension)]
}

fn views_list(many: &[AccessRequest], now: Timestamp) -> Vec<Value> {
    use jitbot::slack::summaries::{AwaitingMe, MyRequests};
    let mine = MyRequests { open: many, recent: many, waiting: many, now }.render();
    let with_approvals: Vec<(AccessRequest, Vec<ApprovalRow>)> = many.iter().map(|r| (r.clone(), Vec::new())).collect();
    let pending = AwaitingMe { requests: &with_approvals }.render();
    let none = AwaitingMe { requests: &[] }.render();
    let long = "<!channel> & leaked ".repeat(500);
    let confirm =
        jitbot::slack::summaries::RevokeAllConfirmation { reason: &long, live: 1_000_000, pending: 1 }.render();
    let announcement = jitbot::notify::Announcement::RevokeAll {
        slack_user: None,
        actor: "cli:<root>".into(),
        reason: long.clone(),
        revoking: 1,
        cancelled: 2,
    };
    let announced = views::AnnouncementLine { announcement: &announcement }.render();
    let digest = jitbot::notify::Announcement::ReportDigest {
        lines: vec![long.clone(); 3],
        recommendations: vec![long.clone(); 3],
        link: "https://jitbot.example.com/report".into(),
    };
    let digest = views::AnnouncementLine { announcement: &digest }.render();
    [
        ("list", mine),
        ("pending", pending),
        ("pending/none", none),
        ("revoke-all", confirm),
        ("announce", announced),
        ("digest", digest),
    ]
    .into_iter()
    .map(|(name, m)| json!({"name": name, "text": m.text, "blocks": m.blocks}))
    .collect()
}

/// Every modal, at its largest: many roles with long names and
/// descriptions, long typed text, a request far beyond any limit.
fn modal_views() -> Vec<Value> {
    use jitbot::domain::{AutoApproveRule, RolePolicy, TicketPattern};
    use jitbot::slack::modals;
    let roles: Vec<modals::RoleChoice> = (0..150)
        .map(|i| modals::RoleChoice {
            policy: RolePolicy {
                role: RoleName::parse(&format!("{i}{}", "r".repeat(60))).unwrap(),
                requesters: ["engineering".to_string()].into(),
                approvers: ["sre".to_string()].into(),
                approvals_required: 10,
                default_duration: AccessDuration::parse("30m").unwrap(),
                max_duration: AccessDuration::parse(&format!("{}h", 1 + i % 720)).unwrap(),
                reason_min_length: 5000,
                ticket_pattern: Some(TicketPattern::parse(&"[A-Z]+-[0-9]+".repeat(300)).unwrap()),
                auto_approve: Some(AutoApproveRule {
                    groups: (0..50).map(|g| format!("group-{g}")).collect(),
                    max_duration: AccessDuration::parse("1h").unwrap(),
                }),
                approval_timeout: None,
                break_glass: true,
                warn_before: std::time::Duration::from_secs(600),
                max_total_duration: None,
            },
            description: "d".repeat(5000),
        })
        .collect();
    let long = "<typed> & ".repeat(1000);
    let r = request(RequestState::Pending);
    let mut out = Vec::new();
    for selected in [None, Some(roles[149].policy.role.as_str()), Some("not-offered")] {
        let form = modals::RequestForm { roles: &roles, selected, reason: Some(&long), ticket: Some(&long) }.render();
        out.push(json!({"name": format!("modal/request/{selected:?}"), "view": form}));
    }
    let small = modals::RequestForm { roles: &roles[..1], selected: None, reason: None, ticket: None }.render();
    out.push(json!({"name": "modal/request/one-role", "view": small}));
    out.push(json!({"name": "modal/sent", "view": modals::RequestSent { request: &r, next: &long }.render()}));
    out.push(json!({"name": "modal/deny", "view": modals::DenyForm { request: &r }.render()}));
    // The home tab, full in every section.
    let many: Vec<AccessRequest> = RequestState::ALL.into_iter().flat_map(variants).map(|(_, r)| r).collect();
    let choices: Vec<AccessDuration> = (1..=150).map(|m| AccessDuration::parse(&format!("{m}h")).unwrap()).collect();
    let active: Vec<(AccessRequest, Vec<AccessDuration>)> = many.iter().map(|r| (r.clone(), choices.clone())).collect();
    let with: Vec<(AccessRequest, Vec<ApprovalRow>)> = many.iter().map(|r| (r.clone(), Vec::new())).collect();
    let now = Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
    for (name, linked, active, pending) in [("full", true, &active[..], &with[..]), ("empty", false, &[][..], &[][..])]
    {
        let home = jitbot::slack::summaries::HomeView { now, linked, active, pending, awaiting: pending }.render();
        out.push(json!({"name": format!("home/{name}"), "view": home}));
    }
    out.push(
        json!({"name": "modal/break-glass", "view": modals::BreakGlassForm { request: &r, min_reason: 5000 }.render()}),
    );
    out
}

#[test]
fn every_message_template_passes_slack_sdk_validation() {
    let Some(py) = python() else { return };
    let approvals: Vec<ApprovalRow> = (0..10)
        .map(|i| ApprovalRow {
            team_id: "T0WORK".into(),
            approver_id: format!("U0APPROVER{i}"),
            decision: if i == 9 { jitbot::domain::Decision::Deny } else { jitbot::domain::Decision::Approve },
            comment: Some("no".repeat(800)),
            created_at: 0,
        })
        .collect();
    let mut messages = Vec::new();
    let kinds = [
        NoticeKind::RequestCreated,
        NoticeKind::ApprovalRecorded,
        NoticeKind::Approved,
        NoticeKind::Denied,
        NoticeKind::Cancelled,
        NoticeKind::Granted,
        NoticeKind::GrantFailed,
        NoticeKind::Revoked,
        NoticeKind::RevokeFailing,
        NoticeKind::ActionFinished,
        NoticeKind::RevokeOverdue,
        NoticeKind::AutoApproved,
        NoticeKind::BreakGlass,
        NoticeKind::TimedOut,
        NoticeKind::Reminder,
        NoticeKind::ExpiryWarning,
        NoticeKind::Extended,
    ];
    for (variant, r) in RequestState::ALL.into_iter().flat_map(variants) {
        let state = r.state;
        let description = "d".repeat(1000);
        let ticket_url = format!("https://jira.example.com/browse/{{ticket}}?{}", "q".repeat(3000));
        let card = views::ApprovalCard {
            request: &r,
            approvals: &approvals,
            description: &description,
            ticket_url: Some(&ticket_url),
            break_glass: true,
        }
        .render();
        messages.push(json!({"name": format!("card/{variant}/{state}"), "text": card.text, "blocks": card.blocks}));
        let choices: Vec<AccessDuration> =
            (1..=150).map(|m| AccessDuration::parse(&format!("{m}h")).unwrap()).collect();
        let warning = views::ExpiryWarningDm { request: &r, choices: &choices }.render();
        messages.push(
            json!({"name": format!("warning/{variant}/{state}"), "text": warning.text, "blocks": warning.blocks}),
        );
        let reminder = views::ReminderLine { request: &r, approvals: &approvals }.render();
        messages.push(
            json!({"name": format!("reminder/{variant}/{state}"), "text": reminder.text, "blocks": reminder.blocks}),
        );
        for kind in kinds {
            for (what, msg) in [
                ("dm", views::RequesterDm { kind, request: &r, approvals: &approvals }.render()),
                ("audit", views::AuditLine { kind, request: &r, approvals: &approvals }.render()),
            ] {
                if let Some(m) = msg {
                    assert!(m.text.chars().count() <= 40_000);
                    messages.push(
                        json!({"name": format!("{what}/{kind:?}/{variant}/{state}"), "text": m.text, "blocks": m.blocks}),
                    );
                }
            }
        }
    }
    let r = request(RequestState::Active);
    let login = "jit_123456_".to_owned() + &"a".repeat(52);
    let url = format!("https://jitbot.example.com/credentials/{}", "t".repeat(43));
    let m = views::CredentialsDm { request: &r, login: &login, url: &url }.render();
    messages.push(json!({"name": "dm/credentials", "text": m.text, "blocks": m.blocks}));
    messages.extend(modal_views());
    // Many requests at once: the lists stay within limits.
    let many: Vec<AccessRequest> = RequestState::ALL.into_iter().flat_map(variants).map(|(_, r)| r).collect();
    let now = Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
    let list = views_list(&many, now);
    messages.extend(list);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("messages.json");
    std::fs::write(&file, serde_json::to_string(&messages).unwrap()).unwrap();
    let tool = root().join("tests/tools/check_blocks.py");
    let (ok, out) = run(&py, &[tool.to_str().unwrap(), file.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("{} messages checked, 0 problems", messages.len())), "{out}");
    // And the checker does catch a view beyond Slack's limits.
    let bad = json!([{"name": "too-long-title", "view": {"type": "modal", "title": {"type": "plain_text", "text": "x".repeat(25)}, "blocks": []}}]);
    std::fs::write(&file, bad.to_string()).unwrap();
    let (ok, out) = run(&py, &[tool.to_str().unwrap(), file.to_str().unwrap()]);
    assert!(!ok && out.contains("too-long-title"), "{out}");
}
