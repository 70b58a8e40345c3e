//! A failing revocation as people see it in Slack: the card and `/jit list`
//! say `revoke_failed`, the audit channel gets an alert naming the request,
//! role, user and the target's error, then an overdue alert; `/metrics`
//! counts it; an administrator's retry finishes the revocation.

use std::time::Duration;

use jitbot::clock::Clock;
use jitbot::domain::RequestId;
use serde_json::Value;

use crate::support::slack::SlackEnvOptions;
use crate::support::slack::{AUDIT, SlackEnv, eventually};
use crate::support::slack::{Transport, both_transports};
use crate::support::user;

both_transports!(a_failing_revocation_shows_on_the_card_in_list_and_alerts_the_audit_channel,);

fn text_of(v: &Value) -> String {
    let mut out = v["text"].as_str().unwrap_or("").to_owned();
    for b in v["blocks"].as_array().into_iter().flatten() {
        out.push('\n');
        out.push_str(&b.to_string());
    }
    out
}

async fn wait_for_state(env: &SlackEnv, id: RequestId, state: &str, step: Duration) {
    for _ in 0..100 {
        if env.state(id).await == state {
            return;
        }
        env.clock.advance(step);
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    panic!("request {id} never reached {state} (it is {})", env.state(id).await);
}

async fn a_failing_revocation_shows_on_the_card_in_list_and_alerts_the_audit_channel(transport: Transport) {
    let env = SlackEnv::start_with(SlackEnvOptions { transport, ..Default::default() }).await;
    env.link("U0ADMIN", "admin", &["jit-admins"]).await;
    env.command("U0ALICE", "request prod-db-readonly 30m debugging INC-4821").await;
    let id = RequestId::new(1);
    eventually("card", async || env.card(id)).await;
    assert_eq!(env.click("U0BOB", "approve", id).await, 200);
    eventually("the grant", async || (env.hook.count("grant", id) == 1).then_some(())).await;
    wait_for_state(&env, id, "active", Duration::ZERO).await;

    env.hook.fail_always(true);
    env.clock.advance(Duration::from_secs(30 * 60));
    wait_for_state(&env, id, "revoke_failed", Duration::from_secs(7)).await;

    let card = eventually("the card to show the failing revocation", async || {
        env.card(id).filter(|c| text_of(c).contains("Revocation is failing and is being retried"))
    })
    .await;
    assert!(text_of(&card).contains("answered HTTP 500"), "{}", text_of(&card));
    let list = env.command("U0ALICE", "list").await;
    assert!(list.contains("#1 `prod-db-readonly` (30m): revocation failing (retrying)"), "{list}");
    let alert = eventually("the alert", async || {
        env.slack.posts_to(AUDIT).into_iter().map(|m| text_of(&m)).find(|t| t.contains("keeps failing"))
    })
    .await;
    for needle in ["request #1", "`prod-db-readonly`", "<@U0ALICE>", "alice@example.com", "answered HTTP 500"] {
        assert!(alert.contains(needle), "the alert lacks {needle:?}: {alert}");
    }

    // A minute after expiry: overdue, in the audit channel and on /metrics.
    let mut overdue = None;
    for _ in 0..100 {
        overdue = env.slack.posts_to(AUDIT).into_iter().map(|m| text_of(&m)).find(|t| t.contains("OVERDUE"));
        if overdue.is_some() {
            break;
        }
        env.clock.advance(Duration::from_secs(7));
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let overdue = overdue.expect("an overdue alert in the audit channel");
    assert!(overdue.contains("request #1") && overdue.contains("<@U0ALICE>"), "{overdue}");
    let metrics = reqwest::get(format!("{}/metrics", env.base)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("jitbot_revocations_overdue_total 1\n"), "{metrics}");
    assert!(!metrics.contains("jitbot_revoke_attempts_failed_total 0\n"), "{metrics}");

    env.hook.fail_always(false);
    env.service.retry_revoke_as(id, &user("U0ADMIN"), env.clock.now()).await.unwrap();
    eventually("the revocation", async || (env.hook.count("revoke", id) == 1).then_some(())).await;
    wait_for_state(&env, id, "revoked", Duration::ZERO).await;
    eventually("the card to show the end", async || {
        env.card(id).filter(|c| text_of(c).contains("expired; the revocation succeeded after retries"))
    })
    .await;
    env.stop().await;
}
