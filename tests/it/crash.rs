//! Crash windows: the app is dropped with work outstanding and a new one is
//! built on the same database. Nothing is lost and nothing happens twice.

use std::time::Duration;

use crate::support::{TestApp, user};

#[tokio::test]
async fn a_crash_after_approval_before_the_grant_still_grants_once_and_revokes() {
    let mut t = TestApp::spawn().await;
    let req = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap();
    t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap();
    // Crash: no job has run.
    t.restart().await;
    t.drain().await;
    assert_eq!(t.hook.count("grant", req.id), 1);
    assert_eq!(t.state(req.id).await, "active");
    t.restart().await;
    t.drain().await;
    assert_eq!(t.hook.count("grant", req.id), 1, "a restart does not grant again");
    t.advance(Duration::from_secs(31 * 60));
    t.drain().await;
    assert_eq!(t.hook.count("revoke", req.id), 1);
    assert_eq!(t.state(req.id).await, "revoked");
}

#[tokio::test]
async fn a_crash_after_the_grant_still_revokes_at_expiry() {
    let mut t = TestApp::spawn().await;
    let req = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap();
    t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap();
    t.drain().await;
    assert_eq!(t.state(req.id).await, "active");
    t.restart().await;
    // The bot was down past the expiry: the overdue revocation runs on start.
    t.advance(Duration::from_secs(3600));
    t.drain().await;
    assert_eq!(t.hook.count("revoke", req.id), 1);
    assert_eq!(t.state(req.id).await, "revoked");
}

#[tokio::test]
async fn a_grant_job_that_becomes_due_after_expiry_does_nothing() {
    let mut t = TestApp::spawn().await;
    let req = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap();
    t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap();
    t.restart().await;
    // Down for longer than the whole grant.
    t.advance(Duration::from_secs(2 * 3600));
    t.drain().await;
    // The revocation may have waited a few seconds for the (skipped) grant job.
    t.advance(jitbot::jobs::WAIT_FOR_GRANT);
    t.drain().await;
    assert_eq!(t.hook.count("grant", req.id), 0, "a late grant must never happen");
    assert_eq!(t.state(req.id).await, "revoked");
    assert!(t.audit_actions(req.id).await.contains(&"grant.skipped".to_owned()));
}

#[tokio::test]
async fn a_job_whose_worker_died_is_taken_over_after_its_lease() {
    let t = TestApp::spawn().await;
    let req = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap();
    t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap();
    // Another worker claims everything due and dies without finishing.
    let now = t.now();
    let stolen = t.app.db().claim_jobs("dead-replica", now, now.plus(Duration::from_secs(60)), 100).await.unwrap();
    assert!(!stolen.is_empty());
    assert_eq!(t.drain().await, 0, "claimed jobs are not run twice while their lease holds");
    t.advance(Duration::from_secs(61));
    t.drain().await;
    assert_eq!(t.hook.count("grant", req.id), 1);
    // The dead worker's attempt can no longer complete the job it lost.
    let mut tx = t.app.db().begin().await.unwrap();
    let grant = stolen.iter().find(|j| j.kind == "grant").unwrap();
    assert!(!tx.complete_job(grant.id, grant.attempt, t.now()).await.unwrap());
    tx.rollback().await.unwrap();
}
