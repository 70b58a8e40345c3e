//! The audit chain detects changed and deleted rows and names them.

use jitbot::audit::{self, VerifyError};
use jitbot::store::Db;

use crate::support::{TestApp, user};

async fn raw(db: &Db, sql: &'static str) {
    let Db::Sqlite(pool) = db else { panic!("sqlite expected") };
    sqlx::query(sql).execute(pool).await.unwrap();
}

async fn with_history() -> TestApp {
    let t = TestApp::spawn().await; // 5 link.added rows
    let req = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap(); // row 6
    t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap(); // row 7
    t.drain().await; // row 8: grant.applied
    assert_eq!(audit::verify(t.app.db()).await.unwrap(), 8);
    t
}

#[tokio::test]
async fn the_audit_log_refuses_updates_and_deletes_in_the_ordinary_course() {
    let t = with_history().await;
    let Db::Sqlite(pool) = t.app.db() else { panic!() };
    assert!(sqlx::query("UPDATE audit_events SET actor = 'x' WHERE seq = 3").execute(pool).await.is_err());
    assert!(sqlx::query("DELETE FROM audit_events WHERE seq = 3").execute(pool).await.is_err());
}

#[tokio::test]
async fn an_altered_row_is_named() {
    let t = with_history().await;
    raw(t.app.db(), "DROP TRIGGER audit_events_no_update").await;
    raw(t.app.db(), "UPDATE audit_events SET detail = '{\"reason\":\"nothing to see\"}' WHERE seq = 6").await;
    let e = audit::verify(t.app.db()).await.unwrap_err();
    assert!(matches!(e, VerifyError::Altered { seq: 6 }), "{e}");
    assert_eq!(e.to_string(), "audit row 6 was altered: its contents do not match its hash");
}

#[tokio::test]
async fn a_deleted_row_is_named() {
    let t = with_history().await;
    raw(t.app.db(), "DROP TRIGGER audit_events_no_delete").await;
    raw(t.app.db(), "DELETE FROM audit_events WHERE seq = 4").await;
    let e = audit::verify(t.app.db()).await.unwrap_err();
    assert!(matches!(e, VerifyError::Missing { missing: 4, .. }), "{e}");
}

#[tokio::test]
async fn deleting_the_newest_rows_is_detected() {
    let t = with_history().await;
    raw(t.app.db(), "DROP TRIGGER audit_events_no_delete").await;
    raw(t.app.db(), "DELETE FROM audit_events WHERE seq >= 7").await;
    let e = audit::verify(t.app.db()).await.unwrap_err();
    assert!(matches!(e, VerifyError::MissingTail { first: 7, last: 8, .. }), "{e}");
}

#[tokio::test]
async fn a_rewritten_chain_is_detected_at_the_first_rewritten_row() {
    let t = with_history().await;
    raw(t.app.db(), "DROP TRIGGER audit_events_no_update").await;
    // Re-hashing one row is not enough: the next row still links to the old hash.
    raw(t.app.db(), "UPDATE audit_events SET hash = 'ff' WHERE seq = 5").await;
    let e = audit::verify(t.app.db()).await.unwrap_err();
    assert!(matches!(e, VerifyError::Altered { seq: 5 }), "{e}");
}
