//! Crash windows: the app is dropped with work outstanding and a new one is
//! built on the same database. Nothing is lost and nothing happens twice.

use std::time::Duration;

use crate::support::{Backend, TestApp, both_backends, user};

async fn a_crash_after_approval_before_the_grant_still_grants_once_and_revokes(backend: Backend) {
    let mut t = TestApp::spawn_on(backend).await;
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

async fn a_crash_after_the_grant_still_revokes_at_expiry(backend: Backend) {
    let mut t = TestApp::spawn_on(backend).await;
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

async fn a_grant_job_that_becomes_due_after_expiry_does_nothing(backend: Backend) {
    let mut t = TestApp::spawn_on(backend).await;
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

async fn a_job_whose_worker_died_is_taken_over_after_its_lease(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let req = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap();
    t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap();
    // Another worker claims everything due and dies without finishing. Its
    // lease is short: on PostgreSQL leases run on the database's clock, which
    // a manual clock cannot move, so the test waits it out in real time.
    let lease = Duration::from_secs(2);
    let stolen = t.app.db().claim_jobs("dead-replica", t.now(), lease, 100).await.unwrap();
    assert!(!stolen.is_empty());
    assert_eq!(t.drain().await, 0, "claimed jobs are not run twice while their lease holds");
    assert_eq!(t.hook.count("grant", req.id), 0);
    // Past the lease on both clocks: the domain clock (SQLite's lease clock)
    // and real time (PostgreSQL's).
    t.advance(lease + Duration::from_secs(1));
    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    t.drain().await;
    assert_eq!(t.hook.count("grant", req.id), 1);
    assert_eq!(t.state(req.id).await, "active");
    // The dead worker's attempt can no longer complete the job it lost.
    let grant = stolen.iter().find(|j| j.kind == "grant").unwrap();
    let mut tx = t.app.db().begin().await.unwrap();
    assert!(!tx.complete_job(grant.id, grant.attempt, t.now()).await.unwrap());
    tx.rollback().await.unwrap();
    let taken_over = t.pairs(&format!("SELECT worker, attempt FROM jobs WHERE id = {}", grant.id)).await;
    assert_eq!(taken_over, vec![("test".to_owned(), grant.attempt + 1)]);
}

async fn after_an_outage_the_overdue_alert_waits_for_the_first_revocation_attempt(backend: Backend) {
    let mut t = TestApp::spawn_on(backend).await;
    let req = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap();
    t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap();
    t.drain().await;
    t.restart().await;
    // Down past the expiry and its overdue check. On a busy queue the check
    // can be reached a moment before the revocation is tried at all.
    t.advance(Duration::from_secs(3600));
    let soon = t.now().millis() + 1_000;
    t.exec(&format!("UPDATE jobs SET due_at = {soon} WHERE kind = 'revoke' AND request_id = {}", req.id.get())).await;
    t.drain().await;
    assert_eq!(t.hook.count("revoke", req.id), 0);
    t.advance(Duration::from_secs(1));
    t.drain().await;
    assert_eq!(t.hook.count("revoke", req.id), 1);
    t.advance(jitbot::jobs::WAIT_FOR_GRANT);
    t.drain().await;
    assert_eq!(t.state(req.id).await, "revoked");
    let actions = t.audit_actions(req.id).await;
    assert!(!actions.contains(&"revoke.overdue".to_owned()), "no false alarm: {actions:?}");
}

async fn a_grant_interrupted_by_a_crash_is_not_called_skipped_in_the_trail(backend: Backend) {
    let mut t = TestApp::spawn_on(backend).await;
    let req = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap();
    t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap();
    // The target applies the grant; jitbot dies before the answer arrives.
    t.hook.set_hang(true);
    let scheduler = t.app.scheduler().clone();
    let running = tokio::spawn(async move { scheduler.drain().await });
    for _ in 0..1000 {
        if t.hook.count("grant", req.id) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(t.hook.count("grant", req.id), 1, "the target received the grant");
    running.abort();
    let _ = running.await;
    t.hook.set_hang(false);
    // Down past the whole grant; the dead process's claim has run out.
    t.exec("UPDATE jobs SET lease_until = 0 WHERE lease_until IS NOT NULL").await;
    t.restart().await;
    t.advance(Duration::from_secs(2 * 3600));
    t.drain().await;
    t.advance(jitbot::jobs::WAIT_FOR_GRANT);
    t.drain().await;
    assert_eq!(t.state(req.id).await, "revoked");
    assert_eq!(t.hook.count("revoke", req.id), 1, "what may have been applied is revoked");
    let actions = t.audit_actions(req.id).await;
    assert!(actions.contains(&"grant.attempted".to_owned()), "{actions:?}");
    assert!(actions.contains(&"grant.interrupted".to_owned()), "{actions:?}");
    assert!(
        !actions.contains(&"grant.skipped".to_owned()),
        "the trail must not deny a grant that reached the target: {actions:?}"
    );
    let rows = t.app.db().audit_rows_for_request(req.id.get()).await.unwrap();
    let interrupted = rows.iter().find(|r| r.action == "grant.interrupted").unwrap();
    assert!(interrupted.detail.contains("access may have been applied"), "{}", interrupted.detail);
}

both_backends!(
    a_grant_interrupted_by_a_crash_is_not_called_skipped_in_the_trail,
    a_crash_after_approval_before_the_grant_still_grants_once_and_revokes,
    a_crash_after_the_grant_still_revokes_at_expiry,
    after_an_outage_the_overdue_alert_waits_for_the_first_revocation_attempt,
    a_grant_job_that_becomes_due_after_expiry_does_nothing,
    a_job_whose_worker_died_is_taken_over_after_its_lease,
);
