//! Races, on both backends: many approvers at once grant exactly once, one
//! approver's repeated clicks count once, and writers wait for the lock
//! instead of failing (SQLITE_BUSY on a WAL file, row locks on PostgreSQL).

use std::sync::Arc;

use jitbot::domain::RequestId;
use jitbot::service::{ApprovalOutcome, ServiceError, ServiceResult};
use tokio::sync::Barrier;

use crate::support::{Backend, TestApp, both_backends, user};

/// Runs `approve` for every approver in `approvers` at the same moment and
/// returns the outcomes.
async fn approve_at_once(t: &TestApp, id: RequestId, approvers: &[String]) -> Vec<ServiceResult<ApprovalOutcome>> {
    let barrier = Arc::new(Barrier::new(approvers.len()));
    let mut handles = Vec::new();
    for a in approvers {
        let (service, barrier, now, a) = (t.service().clone(), barrier.clone(), t.now(), a.clone());
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            service.approve(id, &user(&a), now).await
        }));
    }
    let mut outcomes = Vec::new();
    for h in handles {
        outcomes.push(h.await.unwrap());
    }
    outcomes
}

async fn fifty_concurrent_approvals_grant_once(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let mut approvers = Vec::new();
    for i in 0..50 {
        let id = format!("U0APPROVER{i}");
        t.link(&id, &format!("approver{i}"), &["sre-leads"]).await;
        approvers.push(id);
    }
    let req = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap();
    let mut approved = 0;
    let mut already = 0;
    for outcome in approve_at_once(&t, req.id, &approvers).await {
        match outcome {
            Ok(ApprovalOutcome::Approved(_)) => approved += 1,
            Err(ServiceError::AlreadyDecided { .. }) => already += 1,
            other => panic!("unexpected outcome (a busy error must not surface): {other:?}"),
        }
    }
    assert_eq!((approved, already), (1, 49));
    t.drain().await;
    assert_eq!(t.hook.count("grant", req.id), 1);
    assert_eq!(t.hook.calls().len(), 1, "no other provider call of any kind");
    let approvals = t.app.db().approvals(req.id).await.unwrap();
    assert_eq!(approvals.len(), 1, "losers' approvals are rolled back with their transaction");
    assert_eq!(
        t.audit_actions(req.id).await,
        vec!["request.created", "request.approved", "grant.attempted", "grant.applied"]
    );
    let jobs = t
        .pairs(&format!(
            "SELECT kind, COUNT(*) FROM jobs WHERE request_id = {} GROUP BY kind ORDER BY kind",
            req.id.get()
        ))
        .await;
    assert_eq!(
        jobs,
        vec![
            ("grant".to_owned(), 1),
            ("notify".to_owned(), 3),
            ("overdue_check".to_owned(), 1),
            ("revoke".to_owned(), 1),
            ("warn_expiry".to_owned(), 1)
        ],
        "one grant, one revocation (with its overdue check and expiry warning), and the created/approved/granted notices"
    );
    jitbot::audit::verify(t.app.db()).await.unwrap();
}

async fn one_approvers_repeated_clicks_count_once(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    // Two approvals needed: Bob's ten simultaneous clicks must not be two.
    let req = t.request("U0ALICE", "prod-admin", None).await.unwrap();
    let clicks = vec!["U0BOB".to_owned(); 10];
    let mut recorded = 0;
    let mut already_voted = 0;
    for outcome in approve_at_once(&t, req.id, &clicks).await {
        match outcome {
            Ok(ApprovalOutcome::Recorded { approvals: 1, .. }) => recorded += 1,
            Err(ServiceError::AlreadyVoted(_)) => already_voted += 1,
            other => panic!("unexpected outcome: {other:?}"),
        }
    }
    assert_eq!((recorded, already_voted), (1, 9));
    assert_eq!(t.state(req.id).await, "pending");
    assert_eq!(t.app.db().approvals(req.id).await.unwrap().len(), 1);
    t.drain().await;
    assert!(t.hook.calls().is_empty(), "one approver's clicks never reach two approvals");

    // A double click on the final approval: one grant, the second click is told.
    let carol = vec!["U0CAROL".to_owned(); 2];
    let outcomes = approve_at_once(&t, req.id, &carol).await;
    assert_eq!(outcomes.iter().filter(|o| matches!(o, Ok(ApprovalOutcome::Approved(_)))).count(), 1, "{outcomes:?}");
    assert!(
        outcomes.iter().any(|o| matches!(o, Err(ServiceError::AlreadyDecided { .. } | ServiceError::AlreadyVoted(_)))),
        "{outcomes:?}"
    );
    t.drain().await;
    assert_eq!(t.hook.count("grant", req.id), 1);
    assert_eq!(t.app.db().approvals(req.id).await.unwrap().len(), 2);
    let actions = t.audit_actions(req.id).await;
    assert_eq!(
        actions,
        vec!["request.created", "request.approval_recorded", "request.approved", "grant.attempted", "grant.applied"],
        "one audit event per effective click"
    );
}

async fn concurrent_asks_for_the_same_role_create_one_request(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let barrier = Arc::new(Barrier::new(10));
    let mut handles = Vec::new();
    for _ in 0..10 {
        let barrier = barrier.clone();
        let service = t.service().clone();
        let now = t.now();
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            service
                .request(
                    jitbot::service::RequestCommand {
                        requester: user("U0ALICE"),
                        role: "prod-db-readonly".into(),
                        duration: None,
                        reason: "debugging".into(),
                        ticket: None,
                        client_key: None,
                    },
                    now,
                )
                .await
        }));
    }
    let mut created = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(_) => created += 1,
            Err(ServiceError::AlreadyOpen { .. }) => {}
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(t.number("SELECT COUNT(*) FROM access_requests").await, 1);
}

async fn a_writer_blocked_past_the_wait_limit_is_told_to_try_again(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let req = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap();
    // Something else holds the request's lock (on SQLite: the write lock).
    let mut blocker = t.db().begin().await.unwrap();
    assert!(blocker.lock_request(req.id, None, t.now()).await.unwrap());
    let asked = std::time::Instant::now();
    let bob = user("U0BOB");
    let approve = t.service().approve(req.id, &bob, t.now());
    let e = tokio::time::timeout(std::time::Duration::from_secs(5), approve)
        .await
        .expect("a blocked writer gives up instead of waiting for ever")
        .unwrap_err();
    let waited = asked.elapsed();
    assert!(matches!(e, ServiceError::Unavailable), "{e:?}");
    assert!(waited >= jitbot::store::DB_WAIT / 2, "it did wait for the lock: {waited:?}");
    assert!(waited < std::time::Duration::from_millis(2900), "answered within Slack's 3 seconds: {waited:?}");
    blocker.rollback().await.unwrap();
    // Nothing was written; once the lock is gone the same click works.
    assert!(t.app.db().approvals(req.id).await.unwrap().is_empty());
    let outcome = t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap();
    assert!(matches!(outcome, ApprovalOutcome::Approved(_)));
}

both_backends!(
    a_writer_blocked_past_the_wait_limit_is_told_to_try_again,
    fifty_concurrent_approvals_grant_once,
    one_approvers_repeated_clicks_count_once,
    concurrent_asks_for_the_same_role_create_one_request,
);
