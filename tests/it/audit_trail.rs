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
    match t.db() {
        jitbot::store::Db::Sqlite(p) => sqlx::query(sql).execute(p).await.is_err(),
        jitbot::store::Db::Postgres(p) => sqlx::query(sql).execute(p).await.is_err(),
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
