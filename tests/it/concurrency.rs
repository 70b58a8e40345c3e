//! Races on a WAL SQLite file: many approvers at once grant exactly once, and
//! writers wait for the lock instead of failing with SQLITE_BUSY.

use std::sync::Arc;

use jitbot::service::{ApprovalOutcome, ServiceError};
use tokio::sync::Barrier;

use crate::support::{TestApp, user};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_approvals_grant_once() {
    let t = TestApp::spawn().await;
    let mut approvers = Vec::new();
    for i in 0..20 {
        let id = format!("U0APPROVER{i}");
        t.link(&id, &format!("approver{i}"), &["sre-leads"]).await;
        approvers.push(id);
    }
    let req = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap();
    let barrier = Arc::new(Barrier::new(approvers.len()));
    let mut handles = Vec::new();
    for a in approvers {
        let service = t.service().clone();
        let barrier = barrier.clone();
        let now = t.now();
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            service.approve(req.id, &user(&a), now).await
        }));
    }
    let mut approved = 0;
    let mut already = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(ApprovalOutcome::Approved(_)) => approved += 1,
            Err(ServiceError::AlreadyDecided { .. }) => already += 1,
            other => panic!("unexpected outcome (a busy error must not surface): {other:?}"),
        }
    }
    assert_eq!((approved, already), (1, 19));
    t.drain().await;
    assert_eq!(t.hook.count("grant", req.id), 1);
    let approvals = t.app.db().approvals(req.id).await.unwrap();
    assert_eq!(approvals.len(), 1, "losers' approvals are rolled back with their transaction");
    assert_eq!(t.audit_actions(req.id).await, vec!["request.created", "request.approved", "grant.applied"]);
    jitbot::audit::verify(t.app.db()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_asks_for_the_same_role_create_one_request() {
    let t = TestApp::spawn().await;
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
}
