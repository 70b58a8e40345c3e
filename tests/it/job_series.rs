//! Jobs of one series run one at a time and in order: a request's notices,
//! and one person's group refreshes (a rotating refresh token must never be
//! spent twice, even by two replicas). Each lane is claimed on its own.

use std::time::Duration;

use jitbot::domain::RequestId;
use jitbot::jobs::{JobKind, JobLane};
use jitbot::notify::NoticeKind;
use jitbot::store::Claim;

use crate::support::{Backend, TestApp, both_backends, insert_job};

async fn refreshes_of_one_person_never_run_at_once(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let now = t.now();
    let alice = r#"{"team_id":"T0WORK","user_id":"U0ALICE"}"#;
    let bob = r#"{"team_id":"T0WORK","user_id":"U0BOB"}"#;
    let mut tx = t.db().begin().await.unwrap();
    let first = insert_job(&mut tx, JobKind::RefreshLink, None, alice, now, now).await;
    let second = insert_job(&mut tx, JobKind::RefreshLink, None, alice, now, now).await;
    let other = insert_job(&mut tx, JobKind::RefreshLink, None, bob, now, now).await;
    tx.commit().await.unwrap();

    let claimed = t.db().claim_jobs("replica-a", now, Duration::from_secs(60), 10).await.unwrap();
    let mut ids: Vec<i64> = claimed.iter().map(|j| j.id).collect();
    ids.sort();
    assert_eq!(ids, vec![first, other], "alice's second refresh waits for her first");
    let more = t.db().claim_jobs("replica-b", now, Duration::from_secs(60), 10).await.unwrap();
    assert!(more.is_empty(), "another replica cannot take it either: {more:?}");

    let mut tx = t.db().begin().await.unwrap();
    let job = claimed.iter().find(|j| j.id == first).unwrap();
    assert!(tx.complete_job(job.id, job.attempt, now).await.unwrap());
    tx.commit().await.unwrap();
    let next = t.db().claim_jobs("replica-b", now, Duration::from_secs(60), 10).await.unwrap();
    assert_eq!(next.iter().map(|j| j.id).collect::<Vec<_>>(), vec![second]);
}

both_backends!(refreshes_of_one_person_never_run_at_once);

async fn notices_of_one_request_run_in_order_in_their_own_lane(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let now = t.now();
    let (a, b) = (Some(RequestId::new(1001)), Some(RequestId::new(1002)));
    let granted = JobKind::Notify(NoticeKind::Granted);
    let revoked = JobKind::Notify(NoticeKind::Revoked);
    let mut tx = t.db().begin().await.unwrap();
    let a_first = insert_job(&mut tx, granted, a, &granted.payload(), now, now).await;
    // Due earlier, written later: it still waits for the notice before it.
    let earlier = now.minus(Duration::from_secs(60));
    let a_second = insert_job(&mut tx, revoked, a, &revoked.payload(), earlier, now).await;
    let b_only = insert_job(&mut tx, granted, b, &granted.payload(), now, now).await;
    let revoke = insert_job(&mut tx, JobKind::Revoke, a, "{}", now, now).await;
    tx.commit().await.unwrap();

    let claim = |worker: &'static str, lane: JobLane| Claim {
        worker,
        lane: Some(lane.as_str()),
        lease: Duration::from_secs(60),
        limit: 10,
        dead_after: None,
    };
    let ids = |jobs: Vec<jitbot::store::JobRow>| jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
    let access = t.db().claim(&claim("replica-a", JobLane::Access), now).await.unwrap();
    assert_eq!(ids(access), vec![revoke], "the access lane holds the revocation only");
    let notices = t.db().claim(&claim("replica-a", JobLane::Notice), now).await.unwrap();
    let first = notices.iter().find(|j| j.id == a_first).cloned().unwrap();
    assert_eq!(ids(notices), vec![a_first, b_only], "a's second notice waits for its first");
    assert!(t.db().claim(&claim("replica-b", JobLane::Notice), now).await.unwrap().is_empty());

    let mut tx = t.db().begin().await.unwrap();
    assert!(tx.complete_job(first.id, first.attempt, now).await.unwrap());
    tx.commit().await.unwrap();
    let next = t.db().claim(&claim("replica-b", JobLane::Notice), now).await.unwrap();
    assert_eq!(ids(next), vec![a_second]);
}

both_backends!(notices_of_one_request_run_in_order_in_their_own_lane);
