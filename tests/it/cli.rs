//! The `jitbot` binary as an operator uses it, on both backends where a
//! command touches the database.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::{Backend, TestApp, TestDatabase, both_backends, config_text, user};

fn jitbot(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jitbot"))
        .args(args)
        .env("OPS_HOOK_SECRET", "example-secret-0123456789")
        .env("SLACK_BOT_TOKEN", "xoxb-example")
        .env("SLACK_APP_TOKEN", "xapp-example")
        .env("SLACK_SIGNING_SECRET", "example-signing-secret")
        .env("JITBOT_AUDIT_KEY", "example-audit-key-0123456789abcdef0123456789")
        .env_remove("JITBOT_DATABASE_URL")
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("jitbot.example.toml").display().to_string()
}

#[test]
fn check_config_accepts_the_example() {
    let out = jitbot(&["check-config", &example()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("ok (2 roles, 1 providers)"), "{stdout}");
}

#[test]
fn check_config_names_the_offending_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    let example = std::fs::read_to_string(example()).unwrap();
    std::fs::write(&path, example.replace("max_duration = \"4h\"", "max_duration = \"4 hours-ish\"")).unwrap();
    let out = jitbot(&["check-config", path.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    let line = example.lines().position(|l| l.starts_with("max_duration = \"4h\"")).unwrap() + 1;
    assert!(
        stderr.contains("broken.toml") && stderr.contains(&format!("line {line}")) && stderr.contains("max_duration"),
        "{stderr}"
    );

    std::fs::write(
        &path,
        example.replace("approvals_required = 1", "approvals_required = 1\napprover_groups = [\"x\"]"),
    )
    .unwrap();
    let out = jitbot(&["check-config", path.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("unknown field `approver_groups`"), "{stderr}");

    let out = jitbot(&["check-config", dir.path().join("missing.toml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("cannot read the config file"));
}

async fn check_config_refuses_removing_a_role_that_has_a_live_grant(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let req = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap();
    t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap();
    t.drain().await;
    let full = config_text(&t.db_url, &t.hook.url);
    let start = full.find("[roles.prod-db-readonly]").unwrap();
    let end = full.find("[roles.prod-admin]").unwrap();
    let without = format!("{}{}", &full[..start], &full[end..]);
    let path = t.dir.path().join("smaller.toml");
    std::fs::write(&path, &without).unwrap();
    let out = jitbot(&["check-config", path.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains(&format!("request {}", req.id)) && stderr.contains("prod-db-readonly"), "{stderr}");

    // Once revoked, the role may go.
    t.service().revoke(req.id, &user("U0ALICE"), t.now()).await.unwrap();
    t.drain().await;
    let out = jitbot(&["check-config", path.to_str().unwrap()]);
    assert!(out.status.success(), "{:?}", text(&out));
}

async fn migrate_prepares_a_fresh_database_and_can_run_again(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (_database, db) = TestDatabase::create(backend, dir.path()).await;
    let cfg = dir.path().join("jitbot.toml");
    std::fs::write(&cfg, config_text(&db, "http://127.0.0.1:9/hook")).unwrap();
    let cfg = cfg.to_str().unwrap();
    for _ in 0..2 {
        let out = jitbot(&["migrate", "--config", cfg]);
        assert!(out.status.success(), "{:?}", text(&out));
        assert!(text(&out).0.contains("database is up to date"));
    }
    let out = jitbot(&["link", "list", "--config", cfg]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(text(&out).0.contains("no identity links"));
    let out = jitbot(&["audit", "verify", "--config", cfg]);
    assert!(text(&out).0.contains("0 events verified"), "{:?}", text(&out));
}

async fn links_are_added_listed_removed_and_audited(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (_database, db) = TestDatabase::create(backend, dir.path()).await;
    let cfg = dir.path().join("jitbot.toml");
    std::fs::write(&cfg, config_text(&db, "http://127.0.0.1:9/hook")).unwrap();
    let cfg = cfg.to_str().unwrap();

    let out = jitbot(&[
        "link",
        "add",
        "--config",
        cfg,
        "--team",
        "T0WORK",
        "--user",
        "U0ALICE",
        "--email",
        "alice@example.com",
        "--groups",
        "engineering,sre-leads",
        "--claim",
        "preferred_username=alice",
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let out = jitbot(&["link", "list", "--config", cfg]);
    let (stdout, _) = text(&out);
    assert!(stdout.contains("T0WORK/U0ALICE") && stdout.contains("groups=engineering,sre-leads"), "{stdout}");
    assert!(stdout.contains("claims.preferred_username=alice"), "{stdout}");

    let out = jitbot(&[
        "link", "add", "--config", cfg, "--team", "T0WORK", "--user", "U0BOB", "--email", "b@y", "--claim", "novalue",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("--claim: \"novalue\" is not NAME=VALUE"), "{:?}", text(&out));

    let out = jitbot(&["link", "add", "--config", cfg, "--team", "T0WORK", "--user", "bad id", "--email", "x@y"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("is not a Slack user id"));

    let out = jitbot(&["link", "remove", "--config", cfg, "--team", "T0WORK", "--user", "U0ALICE"]);
    assert!(out.status.success());
    let out = jitbot(&["link", "remove", "--config", cfg, "--team", "T0WORK", "--user", "U0ALICE"]);
    assert_eq!(out.status.code(), Some(1), "removing a missing link is reported");

    let out = jitbot(&["audit", "export", "--config", cfg]);
    let (stdout, _) = text(&out);
    let actions: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(actions.len(), 2);
    assert_eq!(actions[0]["action"], "link.added");
    assert!(actions[0]["actor"].as_str().unwrap().starts_with("cli:"));
    assert_eq!(actions[0]["detail"]["groups"], serde_json::json!(["engineering", "sre-leads"]));
    assert_eq!(actions[0]["detail"]["claims"], serde_json::json!({"preferred_username": "alice"}));
    assert_eq!(actions[1]["action"], "link.removed");

    let out = jitbot(&["audit", "verify", "--config", cfg]);
    assert!(out.status.success());
    assert!(text(&out).0.contains("2 events verified"));
}

async fn audit_verify_and_export_on_a_real_history(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let req = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap();
    t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap();
    t.drain().await;
    let cfg = t.config_path();
    let cfg = cfg.to_str().unwrap();
    let out = jitbot(&["audit", "verify", "--config", cfg]);
    assert!(out.status.success(), "{:?}", text(&out));

    // --since keeps only newer events (the links were made at the same instant, so use a later one).
    let out = jitbot(&["audit", "export", "--config", cfg, "--since", "2026-01-01T00:00:00Z"]);
    assert_eq!(text(&out).0.lines().count(), 9);
    let out = jitbot(&["audit", "export", "--config", cfg, "--since", "2026-01-02T00:00:00Z"]);
    assert_eq!(text(&out).0.lines().count(), 0);
    let out = jitbot(&["audit", "export", "--config", cfg, "--since", "yesterday"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("--since"));

    t.exec(match backend {
        Backend::Sqlite => "DROP TRIGGER audit_events_no_update",
        Backend::Postgres => "DROP TRIGGER audit_events_no_change ON audit_events",
    })
    .await;
    t.exec("UPDATE audit_events SET actor = 'slack:T0WORK/U0MALLORY' WHERE seq = 7").await;
    let out = jitbot(&["audit", "verify", "--config", cfg]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("audit row 7 was altered"), "{:?}", text(&out));
}

/// Kills the child if the test panics, so no server outlives its test.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Starts `jitbot serve --config cfg` (with `JITBOT_LOG_FORMAT=format`
/// when given) and hands back its stderr, line by line.
fn serve(cfg: &Path, format: Option<&str>) -> (Running, std::sync::mpsc::Receiver<String>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jitbot"));
    command
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .env("JITBOT_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(format) = format {
        command.env("JITBOT_LOG_FORMAT", format);
    }
    let mut child = Running(command.spawn().unwrap());
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

async fn serve_starts_answers_health_and_stops_on_sigterm(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (_database, db) = TestDatabase::create(backend, dir.path()).await;
    let cfg = dir.path().join("jitbot.toml");
    std::fs::write(&cfg, config_text(&db, "http://127.0.0.1:9/hook")).unwrap();
    let (mut child, rx) = serve(&cfg, None);
    let mut addr = None;
    let mut seen = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
        if let Some(i) = line.find("addr=") {
            addr = Some(line[i + 5..].split_whitespace().next().unwrap().to_owned());
            break;
        }
        seen.push(line);
    }
    let addr = addr.unwrap_or_else(|| panic!("serve logs the address it listens on; it printed {seen:?}"));
    let response = http_get(&addr, "/readyz");
    assert!(response.starts_with("HTTP/1.1 200") && response.ends_with("ready\n"), "{response}");
    if backend == Backend::Sqlite {
        assert!(dir.path().join("jitbot.db").exists(), "the SQLite file is created on first start");
    }
    let status = Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    assert!(status.success());
    let status = child.0.wait().unwrap();
    assert!(status.success(), "serve exits cleanly on SIGTERM: {status:?}");
}

async fn with_an_idp_hand_made_links_are_the_idp_identity_and_an_email_is_one_person(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (_database, db) = TestDatabase::create(backend, dir.path()).await;
    let cfg = dir.path().join("jitbot.toml");
    let idp = "\n[slack]\nmode = \"socket\"\nbot_token = \"${SLACK_BOT_TOKEN}\"\napp_token = \"${SLACK_APP_TOKEN}\"\n\
               team_id = \"T0WORK\"\napprovals_channel = \"C0APPROVALS\"\n\
               \n[idp]\nissuer = \"https://idp.example\"\nclient_id = \"jitbot\"\nclient_secret = \"secret-0123456789\"\n";
    std::fs::write(&cfg, format!("{}{idp}", config_text(&db, "http://127.0.0.1:9/hook"))).unwrap();
    let cfg = cfg.to_str().unwrap();
    let add = |user: &str, email: &str, extra: &[&str]| {
        let mut args = vec!["link", "add", "--config", cfg, "--team", "T0WORK", "--user", user, "--email", email];
        args.extend_from_slice(extra);
        jitbot(&args)
    };

    // The IdP subject is required: "manual" + the email would be a second person.
    let out = add("U0ALICE", "Alice@Example.com", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("--subject is required with an [idp] table"), "{:?}", text(&out));
    let out = add("U0ALICE", "Alice@Example.com", &["--subject", "00u-alice", "--issuer", "manual"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("is not the configured idp.issuer"), "{:?}", text(&out));

    let out = add("U0ALICE", "Alice@Example.com", &["--subject", "00u-alice", "--groups", "engineering"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let (stdout, _) = text(&jitbot(&["link", "list", "--config", cfg]));
    assert!(stdout.contains("https://idp.example") && stdout.contains("00u-alice"), "{stdout}");

    // Her email on another Slack user, for another identity: refused.
    let out = add("U0MALLORY", "alice@example.COM", &["--subject", "00u-mallory"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("alice@example.COM is already linked to Slack user T0WORK/U0ALICE"),
        "{:?}",
        text(&out)
    );
    // Her own second Slack account (the same IdP identity) is fine.
    let out = add("U0ALICE2", "alice@example.com", &["--subject", "00u-alice"]);
    assert!(out.status.success(), "{:?}", text(&out));
}

both_backends!(
    with_an_idp_hand_made_links_are_the_idp_identity_and_an_email_is_one_person,
    check_config_refuses_removing_a_role_that_has_a_live_grant,
    migrate_prepares_a_fresh_database_and_can_run_again,
    links_are_added_listed_removed_and_audited,
    audit_verify_and_export_on_a_real_history,
    serve_starts_answers_health_and_stops_on_sigterm,
);

#[test]
fn check_config_warns_when_the_groups_scope_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jitbot.toml");
    let example = std::fs::read_to_string(example()).unwrap();
    let idp = "\n[idp]\nissuer = \"https://idp.example\"\nclient_id = \"jitbot\"\nclient_secret = \"s3cret\"\n";
    std::fs::write(&path, format!("{example}{idp}scopes = [\"openid\", \"email\", \"profile\"]\n")).unwrap();
    let out = jitbot(&["check-config", path.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "a warning is not a failure: {stdout}{stderr}");
    assert!(stderr.contains("warning: idp.scopes has no \"groups\" scope"), "{stderr}");

    std::fs::write(&path, format!("{example}{idp}scopes = [\"openid\", \"email\", \"groups\"]\n")).unwrap();
    let out = jitbot(&["check-config", path.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(!stderr.contains("scope"), "{stderr}");
}

/// `JITBOT_LOG_FORMAT=json` makes every log line one JSON object a log
/// pipeline can parse, with the level, the message and its fields; an
/// unknown format is refused by name before anything starts.
#[tokio::test]
async fn serve_logs_one_json_object_per_line_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (_database, db) = TestDatabase::create(Backend::Sqlite, dir.path()).await;
    let cfg = dir.path().join("jitbot.toml");
    std::fs::write(&cfg, config_text(&db, "http://127.0.0.1:9/hook")).unwrap();
    let (mut child, rx) = serve(&cfg, Some("json"));
    let mut listening = None;
    let mut seen = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(value["level"].is_string() && value["fields"].is_object(), "{line}");
        if let Some(addr) = value["fields"]["addr"].as_str() {
            listening = Some(addr.to_owned());
            break;
        }
        seen.push(line);
    }
    let addr = listening.unwrap_or_else(|| panic!("serve logs the address it listens on; it printed {seen:?}"));
    assert!(http_get(&addr, "/readyz").starts_with("HTTP/1.1 200"));
    let status = Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    assert!(status.success());
    assert!(child.0.wait().unwrap().success());

    let out = Command::new(env!("CARGO_BIN_EXE_jitbot"))
        .args(["check-config", &example()])
        .env("JITBOT_LOG_FORMAT", "yaml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("JITBOT_LOG_FORMAT must be \"text\" or \"json\""), "{:?}", text(&out));
}
