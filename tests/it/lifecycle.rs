//! The request lifecycle at the service level, with a manual clock and a
//! real webhook target: no real sleeping for durations.

use std::time::Duration;

use jitbot::notify::NoticeKind;
use jitbot::service::{ApprovalOutcome, RequestCommand, ServiceError};

use crate::support::{Backend, TestApp, both_backends, start_time, user};

async fn request_approve_grant_expire_revoke(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let req = t.request("U0ALICE", "prod-db-readonly", Some("30m")).await.unwrap();
    assert_eq!(req.state.as_str(), "pending");
    t.drain().await;
    assert_eq!(t.notifier.kinds_for(req.id), vec![NoticeKind::RequestCreated]);
    assert!(t.hook.calls().is_empty(), "nothing is granted before approval");

    let outcome = t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap();
    assert!(matches!(outcome, ApprovalOutcome::Approved(_)));
    assert_eq!(t.state(req.id).await, "granting");
    t.drain().await;
    assert_eq!(t.state(req.id).await, "active");

    let calls = t.hook.calls();
    assert_eq!(calls.len(), 1);
    let grant = &calls[0];
    assert_eq!(grant.action, "grant");
    assert!(grant.signature_ok, "grant must carry a valid v1 signature");
    assert_eq!(grant.key_id, "k2026");
    assert_eq!(grant.timestamp, start_time().seconds());
    assert_eq!(grant.idempotency_key, format!("jitbot-{}-grant", req.id.get()));
    assert_eq!(grant.body["sequence"], 1);
    assert_eq!(grant.body["role"], "prod-db-readonly");
    assert_eq!(grant.body["user"]["email"], "alice@example.com");
    assert_eq!(grant.body["user"]["subject"], "alice");
    assert_eq!(grant.body["user"]["slack_id"], "U0ALICE");
    assert_eq!(grant.body["expires_at"], "2026-01-01T00:30:00Z");

    // Just before expiry nothing happens; just after, the revocation runs.
    t.advance(Duration::from_secs(29 * 60));
    t.drain().await;
    assert_eq!(t.hook.count("revoke", req.id), 0);
    t.advance(Duration::from_secs(61));
    t.drain().await;
    assert_eq!(t.hook.count("revoke", req.id), 1);
    let revoke = t.hook.calls().into_iter().find(|c| c.action == "revoke").unwrap();
    assert!(revoke.signature_ok);
    assert_eq!(revoke.body["sequence"], 2);
    assert_eq!(t.state(req.id).await, "revoked");

    assert_eq!(
        t.notifier.kinds_for(req.id),
        vec![
            NoticeKind::RequestCreated,
            NoticeKind::Approved,
            NoticeKind::Granted,
            NoticeKind::ExpiryWarning,
            NoticeKind::Revoked
        ]
    );
    assert_eq!(
        t.audit_actions(req.id).await,
        vec!["request.created", "request.approved", "grant.attempted", "grant.applied", "revoke.applied"]
    );
    // The person may ask again once access ended.
    t.request("U0ALICE", "prod-db-readonly", None).await.unwrap();
}

async fn deny_ends_the_request_without_granting(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let req = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap();
    let denied = t.service().deny(req.id, &user("U0CAROL"), Some("use the replica"), t.now()).await.unwrap();
    assert_eq!(denied.state.as_str(), "denied");
    assert_eq!(denied.state_detail.as_deref(), Some("use the replica"));
    t.drain().await;
    assert!(t.hook.calls().is_empty());
    assert_eq!(t.notifier.kinds_for(req.id), vec![NoticeKind::RequestCreated, NoticeKind::Denied]);
    // A late approval is refused and changes nothing.
    let late = t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap_err();
    assert!(late.to_string().contains("already denied"), "{late}");
    t.drain().await;
    assert!(t.hook.calls().is_empty());
}

async fn the_requester_cancels_a_pending_request_and_nobody_else_can(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let req = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap();
    let e = t.service().cancel(req.id, &user("U0BOB"), t.now()).await.unwrap_err();
    assert!(matches!(e, ServiceError::NotAllowed(_)), "{e}");
    let cancelled = t.service().cancel(req.id, &user("U0ALICE"), t.now()).await.unwrap();
    assert_eq!(cancelled.state.as_str(), "cancelled");
    t.drain().await;
    assert!(t.hook.calls().is_empty());
    assert!(t.service().approve(req.id, &user("U0BOB"), t.now()).await.is_err());
}

async fn early_revoke_by_the_requester_ends_access_now_and_only_once(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let req = t.request("U0ALICE", "prod-db-readonly", Some("2h")).await.unwrap();
    t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap();
    t.drain().await;
    assert_eq!(t.state(req.id).await, "active");
    t.advance(Duration::from_secs(600));
    let r = t.service().revoke(req.id, &user("U0ALICE"), t.now()).await.unwrap();
    assert_eq!(r.state.as_str(), "revoking");
    t.drain().await;
    assert_eq!(t.hook.count("revoke", req.id), 1);
    assert_eq!(t.state(req.id).await, "revoked");
    // At the original expiry nothing runs a second time.
    t.advance(Duration::from_secs(3 * 3600));
    t.drain().await;
    assert_eq!(t.hook.count("revoke", req.id), 1);
    assert_eq!(t.audit_actions(req.id).await.last().map(String::as_str), Some("revoke.applied"));
}

async fn only_the_requester_or_an_admin_may_revoke(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let req = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap();
    t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap();
    t.drain().await;
    let e = t.service().revoke(req.id, &user("U0MALLORY"), t.now()).await.unwrap_err();
    assert!(e.to_string().contains("only the requester or a jitbot administrator"), "{e}");
    t.service().revoke(req.id, &user("U0ADMIN"), t.now()).await.unwrap();
    t.drain().await;
    assert_eq!(t.state(req.id).await, "revoked");
    let detail = t.app.db().request(req.id).await.unwrap().unwrap().state_detail.unwrap();
    assert!(detail.contains("U0ADMIN"), "{detail}");
}

async fn a_second_request_for_the_same_role_is_refused_while_one_is_open(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let req = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap();
    let e = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap_err();
    assert!(e.to_string().contains(&format!("already have request {}", req.id)), "{e}");
    t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap();
    t.drain().await;
    let e = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap_err();
    assert!(e.to_string().contains("already have prod-db-readonly access until 2026-01-01T00:30:00Z"), "{e}");
    // Another role is a separate slot.
    t.request("U0ALICE", "prod-admin", None).await.unwrap();
}

async fn policy_refusals_are_explained(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let e = t.request("U0MALLORY", "prod-db-readonly", None).await.unwrap_err();
    assert!(e.to_string().contains("you may not request prod-db-readonly"), "{e}");
    let e = t.request("U0ALICE", "prod-db-readonly", Some("5h")).await.unwrap_err();
    assert!(e.to_string().contains("longer than the 4h maximum"), "{e}");
    let e = t.request("U0ALICE", "no-such-role", None).await.unwrap_err();
    assert!(e.to_string().contains("no role called \"no-such-role\""), "{e}");
    let e = t.request("U0NOBODY", "prod-db-readonly", None).await.unwrap_err();
    assert!(matches!(e, ServiceError::NotLinked), "{e}");
    let e = t
        .service()
        .request(
            RequestCommand {
                requester: user("U0ALICE"),
                role: "prod-db-readonly".into(),
                duration: None,
                reason: " ".into(),
                ticket: None,
                client_key: None,
            },
            t.now(),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("reason"), "{e}");
}

async fn approvers_must_be_in_the_approver_groups_and_never_the_requester(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    // Alice is also an approver now, but still cannot approve herself.
    t.link("U0ALICE", "alice", &["engineering", "sre-leads"]).await;
    let req = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap();
    let e = t.service().approve(req.id, &user("U0ALICE"), t.now()).await.unwrap_err();
    assert!(e.to_string().contains("cannot approve your own request"), "{e}");
    let e = t.service().approve(req.id, &user("U0MALLORY"), t.now()).await.unwrap_err();
    assert!(e.to_string().contains("you may not approve prod-db-readonly"), "{e}");
    assert_eq!(t.state(req.id).await, "pending");
}

async fn one_person_with_two_slack_accounts_counts_as_one_approver(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    // Bob's second Slack account, linked to the same IdP identity.
    t.link("U0BOB2", "bob", &["sre-leads"]).await;
    let req = t.request("U0ALICE", "prod-admin", None).await.unwrap();
    t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap();
    let second = t.service().approve(req.id, &user("U0BOB2"), t.now()).await.unwrap_err();
    assert!(matches!(second, ServiceError::AlreadyVoted(_)), "{second:?}");
    assert_eq!(t.state(req.id).await, "pending");
    t.service().approve(req.id, &user("U0CAROL"), t.now()).await.unwrap();
    assert_eq!(t.state(req.id).await, "granting");
}

async fn an_email_in_another_case_on_another_identity_is_still_one_approver(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    // Bob's second Slack account carries a hand-made link from before links
    // were tied to the IdP: another issuer and subject, his email typed in
    // another case.
    t.link("U0BOB2", "bob", &["sre-leads"]).await;
    let sql = "UPDATE identity_links SET issuer = 'manual', subject = 'Bob@Example.com', email = 'Bob@Example.com' \
               WHERE user_id = 'U0BOB2'";
    t.exec(sql).await;
    let req = t.request("U0ALICE", "prod-admin", None).await.unwrap();
    t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap();
    let second = t.service().approve(req.id, &user("U0BOB2"), t.now()).await.unwrap_err();
    assert!(matches!(second, ServiceError::AlreadyVoted(_)), "{second:?}");
    assert_eq!(t.state(req.id).await, "pending");
}

async fn two_of_two_needs_two_different_approvers(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let req = t.request("U0ALICE", "prod-admin", None).await.unwrap();
    let first = t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap();
    assert!(matches!(first, ApprovalOutcome::Recorded { approvals: 1, .. }));
    let again = t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap_err();
    assert!(matches!(again, ServiceError::AlreadyVoted(_)), "{again}");
    t.drain().await;
    assert!(t.hook.calls().is_empty(), "one of two approvals grants nothing");
    let second = t.service().approve(req.id, &user("U0CAROL"), t.now()).await.unwrap();
    assert!(matches!(second, ApprovalOutcome::Approved(_)));
    t.drain().await;
    assert_eq!(t.hook.count("grant", req.id), 1);
    assert_eq!(
        t.notifier.kinds_for(req.id),
        vec![NoticeKind::RequestCreated, NoticeKind::ApprovalRecorded, NoticeKind::Approved, NoticeKind::Granted]
    );
}

async fn a_retried_delivery_returns_the_first_request(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let cmd = RequestCommand {
        requester: user("U0ALICE"),
        role: "prod-db-readonly".into(),
        duration: None,
        reason: "debugging".into(),
        ticket: None,
        client_key: Some("slack-trigger-123".into()),
    };
    let a = t.service().request(cmd.clone(), t.now()).await.unwrap();
    let b = t.service().request(cmd, t.now()).await.unwrap();
    assert_eq!(a.id, b.id);
    assert_eq!(t.audit_actions(a.id).await, vec!["request.created"]);
}

async fn failed_grants_are_retried_with_backoff_then_succeed(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    t.hook.fail_next(2);
    let req = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap();
    t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap();
    t.drain().await;
    assert_eq!(t.state(req.id).await, "granting");
    t.advance(Duration::from_secs(4));
    assert_eq!(t.drain().await, 0, "the retry waits for its backoff");
    t.advance(Duration::from_secs(2));
    t.drain().await; // second failure; next retry after 10s
    assert_eq!(t.state(req.id).await, "granting");
    t.advance(Duration::from_secs(11));
    t.drain().await;
    assert_eq!(t.state(req.id).await, "active");
    assert_eq!(t.hook.count("grant", req.id), 1);
    let actions = t.audit_actions(req.id).await;
    assert_eq!(actions.iter().filter(|a| *a == "grant.attempt_failed").count(), 2, "{actions:?}");
}

async fn a_grant_that_keeps_failing_is_marked_failed_and_cleaned_up(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    t.hook.fail_always(true);
    let req = t.request("U0ALICE", "prod-db-readonly", Some("4h")).await.unwrap();
    t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap();
    for _ in 0..10 {
        t.drain().await;
        t.advance(Duration::from_secs(301));
    }
    let r = t.app.db().request(req.id).await.unwrap().unwrap();
    // The failed grant is revoked at once (to clean up anything half-applied);
    // the target is still failing, so the revocation is still being retried.
    assert!(matches!(r.state.as_str(), "revoking" | "revoke_failed"), "{}", r.state);
    assert!(t.notifier.kinds_for(req.id).contains(&NoticeKind::GrantFailed));
    t.hook.fail_always(false);
    t.advance(Duration::from_secs(301));
    t.drain().await;
    assert_eq!(t.state(req.id).await, "revoked");
    assert_eq!(t.hook.count("grant", req.id), 0);
    assert_eq!(t.hook.count("revoke", req.id), 1);
}

async fn a_failing_revocation_alerts_and_keeps_retrying_until_it_succeeds(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let req = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap();
    t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap();
    t.drain().await;
    t.hook.fail_always(true);
    t.advance(Duration::from_secs(31 * 60));
    for _ in 0..4 {
        t.drain().await;
        t.advance(Duration::from_secs(301));
    }
    assert_eq!(t.state(req.id).await, "revoke_failed");
    assert!(t.notifier.kinds_for(req.id).contains(&NoticeKind::RevokeFailing));
    // Still retried long after: revocation is never abandoned.
    for _ in 0..20 {
        t.drain().await;
        t.advance(Duration::from_secs(301));
    }
    t.hook.fail_always(false);
    t.drain().await;
    t.advance(Duration::from_secs(301));
    t.drain().await;
    assert_eq!(t.state(req.id).await, "revoked");
    assert_eq!(t.hook.count("revoke", req.id), 1);
    let actions = t.audit_actions(req.id).await;
    assert!(actions.iter().filter(|a| *a == "revoke.attempt_failed").count() >= 20, "{actions:?}");
    assert_eq!(actions.last().map(String::as_str), Some("revoke.applied"));
}

both_backends!(
    one_person_with_two_slack_accounts_counts_as_one_approver,
    an_email_in_another_case_on_another_identity_is_still_one_approver,
    request_approve_grant_expire_revoke,
    deny_ends_the_request_without_granting,
    the_requester_cancels_a_pending_request_and_nobody_else_can,
    early_revoke_by_the_requester_ends_access_now_and_only_once,
    only_the_requester_or_an_admin_may_revoke,
    a_second_request_for_the_same_role_is_refused_while_one_is_open,
    policy_refusals_are_explained,
    approvers_must_be_in_the_approver_groups_and_never_the_requester,
    two_of_two_needs_two_different_approvers,
    a_retried_delivery_returns_the_first_request,
    failed_grants_are_retried_with_backoff_then_succeed,
    a_grant_that_keeps_failing_is_marked_failed_and_cleaned_up,
    a_failing_revocation_alerts_and_keeps_retrying_until_it_succeeds,
);
