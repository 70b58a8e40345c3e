//! The real scheduler loop (not a test drain): it wakes for new work when a
//! commit schedules it, sleeps on the clock until the next due job, and
//! serves health endpoints meanwhile.

use std::time::Duration;

use crate::support::{TestApp, user};

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..800 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_app_grants_on_approval_and_revokes_when_the_clock_reaches_expiry() {
    let TestApp { dir: _dir, clock, hook, notifier: _n, app, .. } = TestApp::spawn().await;
    let service = app.service().clone();
    let port = app.port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));

    let body = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.unwrap().text().await.unwrap();
    assert_eq!(body, "ok\n");
    let ready = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);

    let now = || jitbot::clock::Clock::now(&clock);
    let req = service
        .request(
            jitbot::service::RequestCommand {
                requester: user("U0ALICE"),
                role: "prod-db-readonly".into(),
                duration: None,
                reason: "debugging".into(),
                ticket: None,
                client_key: None,
            },
            now(),
        )
        .await
        .unwrap();
    service.approve(req.id, &user("U0BOB"), now()).await.unwrap();
    // The commit wakes the idle scheduler: no polling interval to wait for.
    eventually("the grant", || hook.count("grant", req.id) == 1).await;

    // Nothing more happens until the manual clock reaches the expiry.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(hook.count("revoke", req.id), 0);
    clock.advance(Duration::from_secs(31 * 60));
    eventually("the revocation", || hook.count("revoke", req.id) == 1).await;

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), running).await.unwrap().unwrap().unwrap();
}
