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

/// The refreshes of one person, claimed from the notice lane by `worker`.
async fn claim_notices(t: &TestApp, worker: &'static str) -> Vec<jitbot::store::JobRow> {
    let claim = Claim {
        worker,
        lane: Some(JobLane::Notice.as_str()),
        lease: Duration::from_secs(60),
        limit: 10,
        dead_after: None,
    };
    t.db().claim(&claim, t.now()).await.unwrap()
}

async fn a_job_behind_its_series_runs_after_the_one_before_fails_or_retries(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let now = t.now();
    let alice = r#"{"team_id":"T0WORK","user_id":"U0ALICE"}"#;
    let mut tx = t.db().begin().await.unwrap();
    let first = insert_job(&mut tx, JobKind::RefreshLink, None, alice, now, now).await;
    let second = insert_job(&mut tx, JobKind::RefreshLink, None, alice, now, now).await;
    let third = insert_job(&mut tx, JobKind::RefreshLink, None, alice, now, now).await;
    tx.commit().await.unwrap();

    let head = claim_notices(&t, "replica-a").await;
    assert_eq!(head.iter().map(|j| j.id).collect::<Vec<_>>(), vec![first]);
    // Put back for later: the ones behind it keep waiting, even though due.
    let mut tx = t.db().begin().await.unwrap();
    assert!(tx.retry_job(first, head[0].attempt, now.plus(Duration::from_secs(30)), "later").await.unwrap());
    tx.commit().await.unwrap();
    assert!(claim_notices(&t, "replica-a").await.is_empty(), "the second waits for the first's retry");

    t.advance(Duration::from_secs(31));
    let head = claim_notices(&t, "replica-a").await;
    assert_eq!(head.iter().map(|j| j.id).collect::<Vec<_>>(), vec![first]);
    let mut tx = t.db().begin().await.unwrap();
    assert!(tx.fail_job(first, head[0].attempt, "gave up", t.now()).await.unwrap());
    tx.commit().await.unwrap();
    let next = claim_notices(&t, "replica-b").await;
    assert_eq!(next.iter().map(|j| j.id).collect::<Vec<_>>(), vec![second], "a failed job lets the next run");
    let mut tx = t.db().begin().await.unwrap();
    assert!(tx.complete_job(second, next[0].attempt, t.now()).await.unwrap());
    tx.commit().await.unwrap();
    let last = claim_notices(&t, "replica-a").await;
    assert_eq!(last.iter().map(|j| j.id).collect::<Vec<_>>(), vec![third]);
}

both_backends!(a_job_behind_its_series_runs_after_the_one_before_fails_or_retries);

/// A job written into a series at the moment the job before it ends is
/// never stranded behind a job that is gone: on PostgreSQL the two
/// transactions meet on the earlier job's row lock.
async fn a_job_written_while_the_one_before_ends_is_never_stranded(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let now = t.now();
    for round in 0..40 {
        let person = format!(r#"{{"team_id":"T0WORK","user_id":"U0RACE{round}"}}"#);
        let mut tx = t.db().begin().await.unwrap();
        let head = insert_job(&mut tx, JobKind::RefreshLink, None, &person, now, now).await;
        tx.commit().await.unwrap();
        let claimed = claim_notices(&t, "replica-a").await;
        assert_eq!(claimed.iter().map(|j| j.id).collect::<Vec<_>>(), vec![head]);
        let attempt = claimed[0].attempt;
        let (db1, db2) = (t.db().clone(), t.db().clone());
        let end = tokio::spawn(async move {
            let mut tx = db1.begin().await.unwrap();
            assert!(tx.complete_job(head, attempt, now).await.unwrap());
            tx.commit().await.unwrap();
        });
        let person2 = person.clone();
        let write = tokio::spawn(async move {
            let mut tx = db2.begin().await.unwrap();
            let id = insert_job(&mut tx, JobKind::RefreshLink, None, &person2, now, now).await;
            tx.commit().await.unwrap();
            id
        });
        end.await.unwrap();
        let follower = write.await.unwrap();
        let next = claim_notices(&t, "replica-b").await;
        assert_eq!(next.iter().map(|j| j.id).collect::<Vec<_>>(), vec![follower], "round {round}");
        let mut tx = t.db().begin().await.unwrap();
        assert!(tx.complete_job(follower, next[0].attempt, now).await.unwrap());
        tx.commit().await.unwrap();
    }
}

both_backends!(a_job_written_while_the_one_before_ends_is_never_stranded);
