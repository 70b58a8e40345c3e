//! The real scheduler loop (not a test drain): it wakes for new work when a
//! commit schedules it, sleeps on the clock until the next due job, and
//! serves health endpoints meanwhile.

use std::time::Duration;

use crate::support::{Backend, TestApp, both_backends, eventually_within, user};

async fn the_running_app_grants_on_approval_and_revokes_when_the_clock_reaches_expiry(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let app = t.replica("loop").await;
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
            t.now(),
        )
        .await
        .unwrap();
    service.approve(req.id, &user("U0BOB"), t.now()).await.unwrap();
    // The commit wakes the idle scheduler: no polling interval to wait for.
    eventually_within("the grant", Duration::from_secs(5), async || t.hook.count("grant", req.id) == 1).await;

    // Nothing more happens until the manual clock reaches the expiry.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(t.hook.count("revoke", req.id), 0);
    t.advance(Duration::from_secs(31 * 60));
    eventually_within("the revocation", Duration::from_secs(5), async || t.hook.count("revoke", req.id) == 1).await;
    assert_eq!(t.number("SELECT COUNT(*) FROM jobs WHERE worker <> 'loop'").await, 0);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), running).await.unwrap().unwrap().unwrap();
}

both_backends!(the_running_app_grants_on_approval_and_revokes_when_the_clock_reaches_expiry);
