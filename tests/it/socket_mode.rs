//! Socket Mode: the same behaviour as HTTP, over websockets jitbot opens
//! itself; acks within 3 s; reconnection after a drop or a `disconnect`.

use std::time::{Duration, Instant};

use jitbot::domain::RequestId;

use crate::support::slack::{SlackEnv, SlackEnvOptions, Transport, eventually};

async fn socket_env() -> SlackEnv {
    SlackEnv::start_with(SlackEnvOptions { transport: Transport::Socket, ..Default::default() }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_lifecycle_works_over_socket_mode() {
    crate::slack_http::request_approve_grant_expire(socket_env().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicks_are_acknowledged_at_once_even_when_the_target_is_slow() {
    let env = socket_env().await;
    env.hook.set_delay(Duration::from_secs(5));
    env.command("U0ALICE", "request prod-db-readonly debugging").await;
    let id = RequestId::new(1);
    let body = env.click_body("T0WORK", "U0BOB", "approve", id);
    let form: std::collections::BTreeMap<String, String> = serde_urlencoded::from_str(&body).unwrap();
    let payload: serde_json::Value = serde_json::from_str(&form["payload"]).unwrap();
    let started = Instant::now();
    let envelope = env.slack.send_envelope("interactive", payload, false);
    env.wait_ack(&envelope).await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3), "ack took {elapsed:?}");
    assert_eq!(env.state(id).await, "granting", "the decision is recorded before the ack");
    assert_eq!(env.hook.count("grant", id), 0, "the slow grant runs after the ack");
    eventually("the slow grant", async || (env.hook.count("grant", id) == 1).then_some(())).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_socket_or_a_disconnect_request_is_followed_by_a_reconnect() {
    let env = socket_env().await;
    assert_eq!(env.slack.connections_opened(), 1);
    env.slack.drop_sockets();
    eventually("a reconnect after the drop", async || {
        (env.slack.connections_opened() >= 2 && env.slack.open_sockets() >= 1).then_some(())
    })
    .await;
    assert!(env.command("U0ALICE", "help").await.contains("/jit request"));

    env.slack.send_disconnect();
    eventually("a reconnect after the disconnect", async || {
        (env.slack.connections_opened() >= 3 && env.slack.open_sockets() >= 1).then_some(())
    })
    .await;
    assert!(env.command("U0ALICE", "request prod-db-readonly debugging").await.starts_with("Request #1"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_workspaces_are_refused_over_socket_mode_too() {
    let env = socket_env().await;
    let body = env.command_body("T0OTHER", "U0ALICE", "request prod-db-readonly debugging", None);
    let fields: std::collections::BTreeMap<String, String> = serde_urlencoded::from_str(&body).unwrap();
    let envelope = env.slack.send_envelope("slash_commands", serde_json::to_value(fields).unwrap(), true);
    let ack = env.wait_ack(&envelope).await;
    assert!(ack["payload"]["text"].as_str().unwrap().contains("another Slack workspace"), "{ack}");
    assert_eq!(env.request_count().await, 0);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_home_tab_is_drawn_over_socket_mode() {
    let env = socket_env().await;
    env.command("U0ALICE", "request prod-db-readonly debugging").await;
    let mut event: serde_json::Value =
        serde_json::from_str(&crate::support::slack::fixture("app_home_opened.json")).unwrap();
    event["team_id"] = "T0WORK".into();
    event["event"]["user"] = "U0ALICE".into();
    let envelope = env.slack.send_envelope("events_api", event, false);
    env.wait_ack(&envelope).await;
    let home = eventually("the home tab", async || env.slack.home("U0ALICE")).await;
    assert!(home.to_string().contains("prod-db-readonly"), "{home}");
    env.stop().await;
}
