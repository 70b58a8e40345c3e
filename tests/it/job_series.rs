//! Jobs of one series run one at a time and in order: a request's notices,
//! and one person's group refreshes (a rotating refresh token must never be
//! spent twice, even by two replicas).

use std::time::Duration;

use crate::support::{Backend, TestApp, both_backends};

async fn refreshes_of_one_person_never_run_at_once(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let now = t.now();
    let alice = r#"{"team_id":"T0WORK","user_id":"U0ALICE"}"#;
    let bob = r#"{"team_id":"T0WORK","user_id":"U0BOB"}"#;
    let mut tx = t.db().begin().await.unwrap();
    let first = tx.insert_job("refresh_link", None, alice, now, now).await.unwrap();
    let second = tx.insert_job("refresh_link", None, alice, now, now).await.unwrap();
    let other = tx.insert_job("refresh_link", None, bob, now, now).await.unwrap();
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
