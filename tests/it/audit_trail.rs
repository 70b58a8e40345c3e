//! The audit chain detects changed and deleted rows and names them, on both
//! backends.

use jitbot::audit::{self, VerifyError};

use crate::support::{Backend, TestApp, both_backends, user};

/// Drops the trigger that refuses `change` (`UPDATE` or `DELETE`) on
/// `audit_events`, as someone tampering with the log would first.
async fn allow(t: &TestApp, change: &str) {
    let sql = match (t.backend, change) {
        (Backend::Sqlite, "UPDATE") => "DROP TRIGGER audit_events_no_update",
        (Backend::Sqlite, "DELETE") => "DROP TRIGGER audit_events_no_delete",
        (Backend::Postgres, _) => "DROP TRIGGER audit_events_no_change ON audit_events",
        _ => unreachable!("{change}"),
    };
    t.exec(sql).await;
}

async fn with_history(backend: Backend) -> TestApp {
    let t = TestApp::spawn_on(backend).await; // 5 link.added rows
    let req = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap(); // row 6
    t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap(); // row 7
    t.drain().await; // rows 8, 9: grant.attempted, grant.applied
    assert_eq!(audit::verify(t.app.db()).await.unwrap(), 9);
    t
}

/// Whether a raw statement fails.
async fn refused(t: &TestApp, sql: &'static str) -> bool {
    match t.db().pool() {
        jitbot::store::Pool::Sqlite(p) => sqlx::query(sql).execute(p).await.is_err(),
        jitbot::store::Pool::Postgres(p) => sqlx::query(sql).execute(p).await.is_err(),
    }
}

async fn the_audit_log_refuses_updates_and_deletes_in_the_ordinary_course(backend: Backend) {
    let t = with_history(backend).await;
    assert!(refused(&t, "UPDATE audit_events SET actor = 'x' WHERE seq = 3").await);
    assert!(refused(&t, "DELETE FROM audit_events WHERE seq = 3").await);
    assert_eq!(audit::verify(t.app.db()).await.unwrap(), 9);
}

async fn an_altered_row_is_named(backend: Backend) {
    let t = with_history(backend).await;
    allow(&t, "UPDATE").await;
    t.exec("UPDATE audit_events SET detail = '{\"reason\":\"nothing to see\"}' WHERE seq = 6").await;
    let e = audit::verify(t.app.db()).await.unwrap_err();
    assert!(matches!(e, VerifyError::Altered { seq: 6 }), "{e}");
    assert_eq!(e.to_string(), "audit row 6 was altered: its contents do not match its hash");
}

async fn a_deleted_row_is_named(backend: Backend) {
    let t = with_history(backend).await;
    allow(&t, "DELETE").await;
    t.exec("DELETE FROM audit_events WHERE seq = 4").await;
    let e = audit::verify(t.app.db()).await.unwrap_err();
    assert!(matches!(e, VerifyError::Missing { missing: 4, .. }), "{e}");
}

async fn deleting_the_newest_rows_is_detected(backend: Backend) {
    let t = with_history(backend).await;
    allow(&t, "DELETE").await;
    t.exec("DELETE FROM audit_events WHERE seq >= 7").await;
    let e = audit::verify(t.app.db()).await.unwrap_err();
    assert!(matches!(e, VerifyError::MissingTail { first: 7, last: 9, .. }), "{e}");
}

async fn a_rewritten_chain_is_detected_at_the_first_rewritten_row(backend: Backend) {
    let t = with_history(backend).await;
    allow(&t, "UPDATE").await;
    // Re-hashing one row is not enough: the next row still links to the old hash.
    t.exec("UPDATE audit_events SET hash = 'ff' WHERE seq = 5").await;
    let e = audit::verify(t.app.db()).await.unwrap_err();
    assert!(matches!(e, VerifyError::Altered { seq: 5 }), "{e}");
}

both_backends!(
    the_audit_log_refuses_updates_and_deletes_in_the_ordinary_course,
    an_altered_row_is_named,
    a_deleted_row_is_named,
    deleting_the_newest_rows_is_detected,
    a_rewritten_chain_is_detected_at_the_first_rewritten_row,
);

// ---- The keyed trail: someone who owns the database but not `audit.key`. ----

pub const AUDIT_KEY: &str = "test-audit-key-0123456789abcdef-0123456789";

/// The config of `t` with `[audit] key`.
fn keyed_config(t: &TestApp, key: &str) -> jitbot::config::Config {
    let text = format!(
        "{}\n[audit]\nkey = \"{key}\"\n",
        crate::support::config_text_with_pool(&t.db_url, &t.hook.url, t.max_connections)
    );
    jitbot::config::Config::parse(std::path::Path::new("test.toml"), &text).unwrap()
}

/// `t` restarted with `key` as its audit key (or none), on the same
/// database, clock and notifier.
async fn restart_with_key(t: &mut TestApp, key: Option<&str>) {
    let config = match key {
        Some(k) => keyed_config(t, k),
        None => t.config(),
    };
    let deps = jitbot::app::Deps {
        clock: std::sync::Arc::new(t.clock.clone()),
        notifier: Some(std::sync::Arc::new(t.notifier.clone())),
        providers: None,
        scheduler: jitbot::jobs::SchedulerOptions { worker_id: "test".into(), ..Default::default() },
    };
    t.app = jitbot::app::App::build(config, deps).await.unwrap();
}

/// Rows 1-5: links written before a key existed (plain SHA-256); row 6:
/// `audit.keyed`, written when jitbot first starts with the key; rows 7-10:
/// a request, its approval, the grant call and its outcome, keyed.
async fn keyed_history(backend: Backend) -> TestApp {
    let mut t = TestApp::spawn_on(backend).await;
    restart_with_key(&mut t, Some(AUDIT_KEY)).await;
    let req = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap(); // row 7
    t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap(); // row 8
    t.drain().await; // rows 9, 10: grant.attempted, grant.applied
    let report = audit::verify_against(t.db(), &[]).await.unwrap();
    assert_eq!((report.rows, report.keyed, report.keyed_from), (10, 5, Some(6)), "{report}");
    assert!(report.head_checked);
    t
}

/// The attacker's tools: no trigger stands in the way.
async fn drop_guards(t: &TestApp) {
    let statements: &[&str] = match t.backend {
        Backend::Sqlite => &[
            "DROP TRIGGER audit_events_no_update",
            "DROP TRIGGER audit_events_no_delete",
            "DROP TRIGGER audit_head_forward_only",
        ],
        Backend::Postgres => &[
            "DROP TRIGGER audit_events_no_change ON audit_events",
            "DROP TRIGGER audit_events_no_truncate ON audit_events",
            "DROP TRIGGER audit_head_forward_only ON audit_head",
        ],
    };
    for sql in statements {
        t.exec(sql).await;
    }
}

fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Rewrites row `from` with `edit`, then re-hashes it and every later row
/// with plain SHA-256 (all an attacker without the key can compute),
/// marking them `scheme` and moving the head's hash to the new end; the
/// head's MAC is set to `head_mac` (`None`: removed).
async fn rehash_from(
    t: &TestApp,
    from: i64,
    edit: impl Fn(&mut jitbot::store::AuditRow),
    scheme: &str,
    head_mac: Option<&str>,
) {
    use sha2::{Digest, Sha256};
    let rows = t.db().audit_rows_after(0, 1000).await.unwrap();
    let mut prev =
        rows.iter().find(|r| r.seq == from - 1).map(|r| r.hash.clone()).unwrap_or(audit::GENESIS_HASH.into());
    for mut r in rows.into_iter().filter(|r| r.seq >= from) {
        if r.seq == from {
            edit(&mut r);
        }
        let canonical = serde_json::json!([r.seq, r.at, r.actor, r.action, r.request_id, r.detail, prev]).to_string();
        let hash = hex::encode(Sha256::digest(canonical.as_bytes()));
        t.exec(&format!(
            "UPDATE audit_events SET actor = {}, detail = {}, prev_hash = {}, hash = {}, scheme = {} WHERE seq = {}",
            quoted(&r.actor),
            quoted(&r.detail),
            quoted(&prev),
            quoted(&hash),
            quoted(scheme),
            r.seq
        ))
        .await;
        prev = hash;
    }
    let mac = head_mac.map(quoted).unwrap_or("NULL".into());
    t.exec(&format!("UPDATE audit_head SET hash = {}, mac = {mac}", quoted(&prev))).await;
}

/// The checkpoint the job would post now, read back from its line as
/// someone pasting it from the channel would.
async fn checkpoint_now(t: &TestApp) -> audit::Checkpoint {
    let c = audit::checkpoint(t.db(), t.now()).await.unwrap().unwrap();
    let line = c.line();
    assert!(line.starts_with("jitbot audit checkpoint seq="), "{line}");
    audit::Checkpoint::parse(&format!("jitbot APP  10:00 `{line}`")).unwrap()
}

async fn truncating_the_trail_and_resetting_the_head_is_caught_by_a_checkpoint(backend: Backend) {
    let t = keyed_history(backend).await;
    let checkpoint = checkpoint_now(&t).await;
    assert_eq!(checkpoint.seq, 10);
    if backend == Backend::Postgres {
        assert!(refused(&t, "TRUNCATE audit_events").await, "the trigger refuses TRUNCATE");
        assert_eq!(audit::verify(t.db()).await.unwrap(), 10);
    }
    drop_guards(&t).await;
    t.exec(match backend {
        Backend::Sqlite => "DELETE FROM audit_events",
        Backend::Postgres => "TRUNCATE audit_events",
    })
    .await;
    t.exec(&format!("UPDATE audit_head SET seq = 0, hash = '{}', mac = NULL", audit::GENESIS_HASH)).await;
    let e = audit::verify_against(t.db(), &[checkpoint]).await.unwrap_err();
    assert!(matches!(e, VerifyError::CheckpointRowMissing { seq: 10, last: 0, .. }), "{e}");
    assert!(e.to_string().starts_with("audit row 10, anchored by the checkpoint of 2026-"), "{e}");
}

async fn deleting_the_tail_and_moving_the_head_back_is_caught(backend: Backend) {
    let t = keyed_history(backend).await;
    let checkpoint = checkpoint_now(&t).await;
    let row7 = t.db().audit_row(7).await.unwrap().unwrap();
    drop_guards(&t).await;
    t.exec("DELETE FROM audit_events WHERE seq >= 8").await;
    t.exec(&format!("UPDATE audit_head SET seq = 7, hash = {}", quoted(&row7.hash))).await;

    // The head's MAC was made for row 10: without a checkpoint too.
    let e = audit::verify(t.db()).await.unwrap_err();
    assert!(matches!(e, VerifyError::HeadForged { seq: 7 }), "{e}");
    // Removing the MAC does not help.
    t.exec("UPDATE audit_head SET mac = NULL").await;
    let e = audit::verify(t.db()).await.unwrap_err();
    assert!(matches!(e, VerifyError::HeadUnsealed { seq: 7 }), "{e}");
    // And the next append does not paper over it: it records what it found.
    t.link("U0DAVE", "dave", &["engineering"]).await;
    let e = audit::verify(t.db()).await.unwrap_err();
    assert!(matches!(e, VerifyError::HeadWasMoved { seq: 8, head_seq: 7 }), "{e}");
    let e = audit::verify_against(t.db(), &[checkpoint]).await.unwrap_err();
    assert!(matches!(e, VerifyError::HeadWasMoved { seq: 8, .. }), "{e}");
}

async fn a_head_restored_from_an_older_copy_is_caught_by_a_checkpoint(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let mut t = t;
    restart_with_key(&mut t, Some(AUDIT_KEY)).await;
    let req = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap(); // row 7
    // The attacker keeps a copy of the head row as it is now (a backup).
    let old = t.db().audit_head().await.unwrap();
    t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap(); // row 8
    t.drain().await; // rows 9, 10
    let checkpoint = checkpoint_now(&t).await;
    drop_guards(&t).await;
    t.exec("DELETE FROM audit_events WHERE seq >= 8").await;
    t.exec(&format!(
        "UPDATE audit_head SET seq = {}, hash = {}, mac = {}",
        old.seq,
        quoted(&old.hash),
        quoted(old.mac.as_deref().unwrap())
    ))
    .await;
    // This is the limit without a checkpoint: the trail looks whole.
    assert_eq!(audit::verify(t.db()).await.unwrap(), 7);
    let e = audit::verify_against(t.db(), &[checkpoint]).await.unwrap_err();
    assert!(matches!(e, VerifyError::CheckpointRowMissing { seq: 10, last: 7, .. }), "{e}");
}

async fn a_row_edited_and_rehashed_without_the_key_is_caught(backend: Backend) {
    let t = keyed_history(backend).await;
    let checkpoint = checkpoint_now(&t).await;
    let head = t.db().audit_head().await.unwrap();
    drop_guards(&t).await;
    let whitewash = |r: &mut jitbot::store::AuditRow| r.actor = "slack:T0WORK/U0CAROL".into();

    // Re-hashed with SHA-256 but still claiming to be keyed.
    rehash_from(&t, 8, whitewash, audit::SCHEME_HMAC, None).await;
    let e = audit::verify(t.db()).await.unwrap_err();
    assert!(matches!(e, VerifyError::Altered { seq: 8 }), "{e}");

    // Re-hashed and marked unkeyed: a downgrade after keyed row 6.
    rehash_from(&t, 8, whitewash, audit::SCHEME_SHA256, None).await;
    let e = audit::verify(t.db()).await.unwrap_err();
    assert!(matches!(e, VerifyError::Downgrade { seq: 8, keyed_from: 6 }), "{e}");

    // Every keyed row rewritten as unkeyed: the head's MAC gives it away,
    // and without a MAC the sealed head is missed.
    rehash_from(&t, 6, whitewash, audit::SCHEME_SHA256, head.mac.as_deref()).await;
    let e = audit::verify(t.db()).await.unwrap_err();
    assert!(matches!(e, VerifyError::HeadForged { seq: 10 }), "{e}");
    rehash_from(&t, 6, whitewash, audit::SCHEME_SHA256, None).await;
    let e = audit::verify(t.db()).await.unwrap_err();
    assert!(matches!(e, VerifyError::HeadUnsealed { seq: 10 }), "{e}");
    // A checkpoint names the rewritten row.
    t.exec(&format!("UPDATE audit_head SET mac = {}", quoted(head.mac.as_deref().unwrap()))).await;
    let e = audit::verify_against(t.db(), &[checkpoint]).await.unwrap_err();
    assert!(matches!(e, VerifyError::CheckpointMismatch { seq: 10, .. }), "{e}");
}

async fn a_checkpoint_with_a_wrong_mac_is_refused(backend: Backend) {
    let t = keyed_history(backend).await;
    let good = checkpoint_now(&t).await;
    assert_eq!(audit::verify_against(t.db(), std::slice::from_ref(&good)).await.unwrap().checkpoints.len(), 1);

    // An edited line (a later row claimed), and one signed with another key.
    let edited = audit::Checkpoint::parse(&good.line().replace("seq=10 ", "seq=9 ")).unwrap();
    let e = audit::verify_against(t.db(), &[edited]).await.unwrap_err();
    assert!(matches!(e, VerifyError::CheckpointForged { seq: 9 }), "{e}");
    let other_key = jitbot::domain::AuditKey::new("another-key-0123456789abcdef-0123456789").unwrap();
    let forged = audit::Checkpoint::sign(&other_key, 10, &good.head, t.now());
    let e = audit::verify_against(t.db(), &[forged]).await.unwrap_err();
    assert!(matches!(e, VerifyError::CheckpointForged { seq: 10 }), "{e}");
    assert_eq!(
        e.to_string(),
        "the checkpoint for row 10 is not signed with this audit.key: it was edited, or made with another key"
    );
    // Garbage is not a checkpoint.
    assert!(audit::Checkpoint::parse("jitbot audit checkpoint seq=9 head=xyz").is_err());
}

async fn an_unkeyed_trail_still_verifies_and_a_key_continues_it(backend: Backend) {
    let mut t = with_history(backend).await; // 9 unkeyed rows, no key
    let report = audit::verify_against(t.db(), &[]).await.unwrap();
    assert_eq!((report.rows, report.keyed, report.key_configured), (9, 0, false));
    let rows = t.db().audit_rows_after(0, 100).await.unwrap();
    assert!(rows.iter().all(|r| r.scheme == audit::SCHEME_SHA256));

    // Configuring the key: the old rows keep verifying, new ones are keyed.
    restart_with_key(&mut t, Some(AUDIT_KEY)).await; // row 10: audit.keyed
    t.link("U0DAVE", "dave", &["engineering"]).await; // row 11
    let report = audit::verify_against(t.db(), &[]).await.unwrap();
    assert_eq!((report.rows, report.keyed, report.keyed_from), (11, 2, Some(10)), "{report}");
    assert!(report.to_string().contains("2 keyed (HMAC-SHA256, rows 10..=11), 9 unkeyed SHA-256"), "{report}");
    let row10 = t.db().audit_row(10).await.unwrap().unwrap();
    assert_eq!(row10.action, "audit.keyed");
    // The JSON stored for the old rows did not change.
    assert_eq!(
        t.db().audit_rows_after(0, 9).await.unwrap().iter().map(|r| &r.hash).collect::<Vec<_>>(),
        rows.iter().map(|r| &r.hash).collect::<Vec<_>>()
    );

    // A jitbot started without the key afterwards writes unkeyed rows: a downgrade.
    restart_with_key(&mut t, None).await;
    t.link("U0ERIN", "erin", &["engineering"]).await; // row 12, unkeyed
    restart_with_key(&mut t, Some(AUDIT_KEY)).await; // row 13: the head was found unsealed
    let e = audit::verify(t.db()).await.unwrap_err();
    assert!(matches!(e, VerifyError::Downgrade { seq: 12, keyed_from: 10 }), "{e}");
}

both_backends!(
    truncating_the_trail_and_resetting_the_head_is_caught_by_a_checkpoint,
    deleting_the_tail_and_moving_the_head_back_is_caught,
    a_head_restored_from_an_older_copy_is_caught_by_a_checkpoint,
    a_row_edited_and_rehashed_without_the_key_is_caught,
    a_checkpoint_with_a_wrong_mac_is_refused,
    an_unkeyed_trail_still_verifies_and_a_key_continues_it,
);

/// `jitbot audit verify` on the command line, with the keyed config.
fn verify_cli(config: &std::path::Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jitbot"))
        .args(["audit", "verify", "--config", config.to_str().unwrap()])
        .args(extra)
        .env_remove("JITBOT_DATABASE_URL")
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

async fn the_command_line_checks_checkpoints_and_names_the_missing_row(backend: Backend) {
    let t = keyed_history(backend).await;
    let path = t.dir.path().join("keyed.toml");
    let text = format!(
        "{}\n[audit]\nkey = \"{AUDIT_KEY}\"\n",
        crate::support::config_text_with_pool(&t.db_url, &t.hook.url, t.max_connections)
    );
    std::fs::write(&path, text).unwrap();
    let line = audit::checkpoint(t.db(), t.now()).await.unwrap().unwrap().line();
    let file = t.dir.path().join("channel.txt");
    std::fs::write(&file, format!("jitbot  APP  9:00 AM\n{line}\nsomeone: thanks\n")).unwrap();

    let (code, out, err) = verify_cli(&path, &["--checkpoint", &line]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("audit chain intact: 10 events verified; 5 keyed (HMAC-SHA256, rows 6..=10)"), "{out}");
    assert!(out.contains("head MAC valid; 1 checkpoint(s) match, the newest anchors row 10"), "{out}");

    drop_guards(&t).await;
    t.exec("DELETE FROM audit_events").await;
    t.exec(&format!("UPDATE audit_head SET seq = 0, hash = '{}', mac = NULL", audit::GENESIS_HASH)).await;
    let (code, _, err) = verify_cli(&path, &["--checkpoint-file", file.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("audit chain BROKEN: audit row 10, anchored by the checkpoint of"), "{err}");
    assert!(err.contains("is missing: the trail ends at row 0"), "{err}");

    // A tampered line is refused with a clear message.
    let (code, _, err) = verify_cli(&path, &["--checkpoint", &line.replace("seq=10 ", "seq=99 ")]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("the checkpoint for row 99 is not signed with this audit.key"), "{err}");
    let (code, _, err) = verify_cli(&path, &["--checkpoint", "seq=9"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--checkpoint: not a checkpoint line"), "{err}");
}

/// Finished runs of the checkpoint job.
async fn checkpoint_runs(db: &jitbot::store::Db) -> i64 {
    let sql = "SELECT COUNT(*) FROM jobs WHERE kind = 'audit_checkpoint' AND state = 'done'";
    match db.pool() {
        jitbot::store::Pool::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
        jitbot::store::Pool::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
    }
}

async fn wait_for_checkpoint_runs(db: &jitbot::store::Db, n: i64) {
    crate::support::eventually_within("the checkpoint job to run", std::time::Duration::from_secs(20), async || {
        checkpoint_runs(db).await >= n
    })
    .await;
}

fn checkpoint_posts(env: &crate::support::slack::SlackEnv) -> Vec<String> {
    env.slack
        .posts_to(crate::support::slack::AUDIT)
        .iter()
        .filter_map(|m| m["text"].as_str().filter(|t| t.contains("jitbot audit checkpoint")).map(str::to_owned))
        .collect()
}

async fn the_checkpoint_job_posts_to_the_audit_channel_when_the_head_moved(backend: Backend) {
    use crate::support::slack::{SlackEnv, SlackEnvOptions};
    let env = SlackEnv::start_with(SlackEnvOptions {
        backend,
        extra_toml: format!("\n[audit]\nkey = \"{AUDIT_KEY}\"\ncheckpoint_interval = \"30m\"\n"),
        ..Default::default()
    })
    .await;
    // The first look happens at start-up (before or after the links).
    wait_for_checkpoint_runs(&env.db, 1).await;
    let before = checkpoint_posts(&env).len();

    // The head moves; after an interval, its checkpoint is posted.
    let older_head = env.db.audit_head().await.unwrap();
    env.link("U0DAVE", "dave", &["engineering"]).await;
    let head = env.db.audit_head().await.unwrap();
    env.clock.advance(std::time::Duration::from_secs(30 * 60));
    wait_for_checkpoint_runs(&env.db, 2).await;
    let posts = checkpoint_posts(&env);
    assert_eq!(posts.len(), before + 1, "{posts:?}");
    let posted = audit::Checkpoint::parse(posts.last().unwrap()).unwrap();
    assert_eq!((posted.seq, posted.head.as_str()), (head.seq, head.hash.as_str()));
    assert!(posted.at.starts_with("2026-01-01T00:30:00"), "{}", posted.at);
    assert_eq!(audit::verify_against(&env.db, &[posted]).await.unwrap().rows, head.seq);

    // It did not move: the next look posts nothing.
    env.clock.advance(std::time::Duration::from_secs(30 * 60));
    wait_for_checkpoint_runs(&env.db, 3).await;
    assert_eq!(checkpoint_posts(&env).len(), before + 1);
    // One job at a time, across restarts and replicas.
    let queued = "SELECT COUNT(*) FROM jobs WHERE kind = 'audit_checkpoint' AND state IN ('queued', 'running')";
    let n: i64 = match env.db.pool() {
        jitbot::store::Pool::Sqlite(p) => sqlx::query_scalar(queued).fetch_one(p).await.unwrap(),
        jitbot::store::Pool::Postgres(p) => sqlx::query_scalar(queued).fetch_one(p).await.unwrap(),
    };
    assert_eq!(n, 1);

    // Someone deletes the newest row and puts back an older copy of the
    // head: the next checkpoint says the trail went back.
    let tamper: &[&str] = match backend {
        Backend::Sqlite => &["DROP TRIGGER audit_events_no_delete", "DROP TRIGGER audit_head_forward_only"],
        Backend::Postgres => &[
            "DROP TRIGGER audit_events_no_change ON audit_events",
            "DROP TRIGGER audit_head_forward_only ON audit_head",
        ],
    };
    for sql in tamper {
        crate::support::exec(&env.db, sql).await;
    }
    crate::support::exec(&env.db, &format!("DELETE FROM audit_events WHERE seq > {}", older_head.seq)).await;
    crate::support::exec(
        &env.db,
        &format!(
            "UPDATE audit_head SET seq = {}, hash = '{}', mac = '{}'",
            older_head.seq,
            older_head.hash,
            older_head.mac.as_deref().unwrap()
        ),
    )
    .await;
    env.clock.advance(std::time::Duration::from_secs(30 * 60));
    wait_for_checkpoint_runs(&env.db, 4).await;
    let posts = checkpoint_posts(&env);
    assert_eq!(posts.len(), before + 2, "{posts:?}");
    let alert = posts.last().unwrap();
    assert!(alert.contains(&format!("*The audit trail no longer reaches row {}*", head.seq)), "{alert}");
    assert_eq!(audit::Checkpoint::parse(alert).unwrap().seq, older_head.seq, "the alert carries the new checkpoint");
    env.stop().await;
}

async fn the_checkpoint_job_is_scheduled_once(backend: Backend) {
    let mut t = keyed_history(backend).await;
    let queued = "SELECT COUNT(*) FROM jobs WHERE kind = 'audit_checkpoint' AND state IN ('queued', 'running')";
    assert!(t.app.service().ensure_audit_checkpoints(jitbot::clock::Clock::now(&t.clock)).await.unwrap());
    // A second replica starting, or a restart, finds it there.
    restart_with_key(&mut t, Some(AUDIT_KEY)).await;
    assert!(!t.app.service().ensure_audit_checkpoints(jitbot::clock::Clock::now(&t.clock)).await.unwrap());
    assert_eq!(t.number(queued).await, 1);
    // Even a writer that skips the check cannot add a second one.
    let dup = "INSERT INTO jobs (kind, payload, state, due_at, attempt, created_at) \
               VALUES ('audit_checkpoint', '{}', 'queued', 0, 0, 0)";
    assert!(refused(&t, dup).await, "the unique index refuses a second queued checkpoint job");
}

both_backends!(
    the_checkpoint_job_is_scheduled_once,
    the_command_line_checks_checkpoints_and_names_the_missing_row,
    the_checkpoint_job_posts_to_the_audit_channel_when_the_head_moved,
);

#[test]
fn check_config_warns_while_the_audit_trail_is_unprotected() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("absent.db").display());
    let base = crate::support::config_text(&db_url, "http://127.0.0.1:9/hook");
    let check = |text: String| {
        let path = dir.path().join("jitbot.toml");
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_jitbot"))
            .args(["check-config", path.to_str().unwrap()])
            .env_remove("JITBOT_DATABASE_URL")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = check(base.clone());
    assert!(err.contains("warning: audit.key is not set: the audit trail is a plain SHA-256 chain"), "{err}");
    let err = check(format!("{base}\n[audit]\nkey = \"{AUDIT_KEY}\"\n"));
    assert!(err.contains("warning: slack.audit_channel is not set: audit checkpoints are not posted"), "{err}");
    assert!(!err.contains(AUDIT_KEY), "the key is never printed");
}

/// The statements the README gives for jitbot's own database role, for `role`.
fn readme_grants(role: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = readme
        .split("```sql")
        .map(|b| b.split("```").next().unwrap())
        .find(|b| b.contains("REVOKE UPDATE, DELETE, TRUNCATE ON audit_events"))
        .expect("the README documents the grants");
    let sql: String = block.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
    sql.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.strip_suffix(" jitbot").map(|head| format!("{head} {role}")).unwrap_or(s.to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_documented_grants_keep_jitbot_working_and_the_trail_out_of_its_reach() {
    if crate::support::postgres_server().is_none() {
        return;
    }
    let mut t = TestApp::spawn_on(Backend::Postgres).await; // migrated by the owner
    let role = format!("jitbot_app_{:08x}", rand::random::<u32>());
    t.database.admin(&format!("CREATE ROLE {role} LOGIN")).await;
    let grants = readme_grants(&role);
    assert!(grants.iter().any(|g| g.ends_with(&format!("ON audit_events FROM {role}"))), "{grants:?}");
    for statement in &grants {
        t.exec(statement).await;
    }
    let owner = jitbot::store::Db::connect(&t.db_url, 1).await.unwrap();

    // jitbot as that role: starts (migrations are a no-op), works, keys its trail.
    let app_url = t.db_url.replacen("postgres@", &format!("{role}@"), 1);
    let text = format!(
        "{}\n[audit]\nkey = \"{AUDIT_KEY}\"\n",
        crate::support::config_text_with_pool(&app_url, &t.hook.url, t.max_connections)
    );
    let config = jitbot::config::Config::parse(std::path::Path::new("test.toml"), &text).unwrap();
    let deps = jitbot::app::Deps {
        clock: std::sync::Arc::new(t.clock.clone()),
        notifier: Some(std::sync::Arc::new(t.notifier.clone())),
        providers: None,
        scheduler: jitbot::jobs::SchedulerOptions { worker_id: "test".into(), ..Default::default() },
    };
    t.app = jitbot::app::App::build(config, deps).await.unwrap();
    let req = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap();
    t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap();
    t.drain().await;
    assert_eq!(t.state(req.id).await, "active");
    assert_eq!(audit::verify_against(t.db(), &[]).await.unwrap().keyed, 5);

    // What a stolen app credential cannot do to the trail.
    for sql in [
        "TRUNCATE audit_events",
        "DELETE FROM audit_events WHERE seq = 9",
        "UPDATE audit_events SET actor = 'x' WHERE seq = 7",
        "DROP TRIGGER audit_events_no_change ON audit_events",
        "ALTER TABLE audit_events DISABLE TRIGGER ALL",
        "UPDATE audit_head SET seq = 3",
        "DELETE FROM audit_head",
        "DROP TABLE audit_events",
    ] {
        assert!(refused(&t, sql).await, "{sql} is refused to jitbot's role");
    }
    assert_eq!(audit::verify(t.db()).await.unwrap(), 10);

    t.app.db().close().await;
    crate::support::exec(&owner, &format!("DROP OWNED BY {role}")).await;
    owner.close().await;
    t.database.admin(&format!("DROP ROLE {role}")).await;
}
