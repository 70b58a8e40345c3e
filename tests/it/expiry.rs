//! Before access ends: the warning DM, extending (auto-approved, or through
//! a card of its own), "I'm done", and the revocation and warning jobs an
//! extension supersedes. All with the manual clock.

use std::time::Duration;

use jitbot::domain::RequestId;
use serde_json::Value;

use crate::slack_http::{buttons, texts};
use crate::support::slack::{APPROVALS, SlackEnv, eventually};
use crate::support::slack::{Transport, both_transports};
use crate::support::start_time;
use crate::workflow::{start_on, until_state};

both_transports!(
    the_holder_is_warned_before_expiry_and_im_done_ends_access_now,
    an_auto_approved_extension_moves_the_expiry_and_the_old_jobs_do_nothing,
    an_extension_needing_approval_gets_its_own_card,
    extensions_denied_timed_out_or_overtaken_leave_the_expiry_alone,
    extensions_cannot_add_up_past_the_roles_total,
);

/// Picks `value` in the select menu `action_id` of a message, as `user_id`.
pub async fn select(env: &SlackEnv, user_id: &str, action_id: &str, value: &str) -> u16 {
    let mut payload = env.click_payload("T0WORK", user_id, action_id, RequestId::new(1));
    let action = &mut payload["actions"][0];
    action.as_object_mut().unwrap().remove("value");
    action.as_object_mut().unwrap().remove("text");
    action["type"] = "static_select".into();
    action["selected_option"] = serde_json::json!({"text": {"type": "plain_text", "text": "+1h"}, "value": value});
    env.interact(&payload).await.0
}

/// The expiry warning DMs `user` got so far.
fn warnings(env: &SlackEnv, user: &str) -> Vec<Value> {
    env.slack.posts_to(user).into_iter().filter(|m| texts(m).contains("Need more time?")).collect()
}

fn minutes(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

async fn approved(env: &SlackEnv, user: &str, text: &str, id: RequestId) {
    env.command(user, text).await;
    env.click("U0BOB", "approve", id).await;
    until_state(env, id, "active").await;
}

async fn the_holder_is_warned_before_expiry_and_im_done_ends_access_now(transport: Transport) {
    let env = start_on(transport, "").await;
    let id = RequestId::new(1);
    approved(&env, "U0ALICE", "request prod-db-readonly 30m debugging", id).await;

    env.clock.advance(minutes(19));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(warnings(&env, "U0ALICE").is_empty(), "no warning before warn_before (10m)");
    env.clock.advance(minutes(1));
    let warning = eventually("the warning", async || warnings(&env, "U0ALICE").first().cloned()).await;
    let text = texts(&warning);
    assert!(text.contains("Your `prod-db-readonly` access (request #1) ends <!date^"), "{text}");
    let actions = &warning["blocks"][1]["elements"];
    assert_eq!(actions[0]["type"], "static_select");
    let options: Vec<&str> =
        actions[0]["options"].as_array().unwrap().iter().map(|o| o["value"].as_str().unwrap()).collect();
    assert_eq!(options, ["1:900", "1:1800", "1:3600", "1:7200", "1:14400"], "extensions bounded by the role");
    assert_eq!(actions[1]["action_id"], "done");
    assert_eq!(actions[1]["confirm"]["confirm"]["text"], "End it now", "I'm done asks first");

    // "I'm done": revoked now, not at expiry.
    assert_eq!(env.click("U0ALICE", "done", id).await, 200);
    eventually("the early revocation", async || (env.hook.count("revoke", id) == 1).then_some(())).await;
    let answer =
        eventually("the answer", async || env.slack.responses().into_iter().find(|r| texts(r).contains("Ending")))
            .await;
    assert!(texts(&answer).contains("Ending your `prod-db-readonly` access (request #1) now"));
    eventually("the end DM", async || {
        env.slack.posts_to("U0ALICE").into_iter().find(|m| texts(m).contains("has ended"))
    })
    .await;
    let card =
        eventually("the card", async || env.card(id).filter(|c| texts(c).contains("ended early by the requester")))
            .await;
    assert!(buttons(&card).is_empty());
    // Someone else's "I'm done" is refused.
    approved(&env, "U0ALICE", "request prod-db-readonly 30m again", RequestId::new(2)).await;
    env.click("U0MALLORY", "done", RequestId::new(2)).await;
    eventually("the refusal", async || {
        env.slack.responses().into_iter().find(|r| texts(r).contains("Only the requester or a jitbot administrator"))
    })
    .await;
    assert_eq!(env.state(RequestId::new(2)).await, "active");
    env.stop().await;
}

async fn an_auto_approved_extension_moves_the_expiry_and_the_old_jobs_do_nothing(transport: Transport) {
    let env = start_on(transport, "").await;
    let id = RequestId::new(1);
    env.command("U0DAVE", "request oncall-db 30m paging alert").await;
    until_state(&env, id, "active").await;
    env.clock.advance(minutes(20));
    eventually("the warning", async || warnings(&env, "U0DAVE").first().cloned()).await;

    assert_eq!(select(&env, "U0DAVE", "extend", "1:1800").await, 200);
    let answer =
        eventually("the answer", async || env.slack.responses().into_iter().find(|r| texts(r).contains("Extended")))
            .await;
    assert!(texts(&answer).contains("now ends <!date^") && texts(&answer).contains("auto-approved"), "{answer}");
    let request = env.db.request(id).await.unwrap().unwrap();
    assert_eq!(request.expires_at, Some(start_time().plus(minutes(60))));
    assert_eq!(request.duration.to_string(), "1h");
    assert_eq!(env.state(RequestId::new(2)).await, "extended");
    // The extension has a card saying it was auto-approved, and a DM says so.
    let ext_card = eventually("the extension's card", async || env.card(RequestId::new(2))).await;
    assert!(texts(&ext_card).contains("Extension of request #1"), "{}", texts(&ext_card));
    assert!(texts(&ext_card).contains("Auto-approved (member of oncall"), "{}", texts(&ext_card));
    eventually("the DM", async || {
        env.slack.posts_to("U0DAVE").into_iter().find(|m| texts(m).contains("is extended by 30m"))
    })
    .await;
    eventually("the request's card shows the new expiry", async || {
        env.card(id).filter(|c| texts(c).contains(&format!("<!date^{}^", start_time().plus(minutes(60)).seconds())))
    })
    .await;
    // The target is told too (a receiver that enforces expires_at keeps access).
    eventually("the extend call", async || (env.hook.count("extend", id) == 1).then_some(())).await;
    let extend = env.hook.calls().into_iter().find(|c| c.action == "extend").unwrap();
    assert!(extend.signature_ok);
    assert_eq!(
        (extend.body["sequence"].as_i64(), extend.body["expires_at"].as_str()),
        (Some(1), Some("2026-01-01T01:00:00Z"))
    );
    assert_eq!(extend.idempotency_key, format!("jitbot-1-extend-{}", start_time().plus(minutes(60)).seconds()));

    // The revocation and warning written for the old expiry do nothing.
    env.clock.advance(minutes(11));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(env.hook.count("revoke", id), 0, "the superseded revocation did nothing");
    assert_eq!(env.state(id).await, "active");
    assert_eq!(warnings(&env, "U0DAVE").len(), 1);
    // The new warning comes 10 minutes before the new expiry, the revocation at it.
    env.clock.advance(minutes(19));
    eventually("the second warning", async || warnings(&env, "U0DAVE").get(1).cloned()).await;
    env.clock.advance(minutes(10));
    eventually("the revocation", async || (env.hook.count("revoke", id) == 1).then_some(())).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(env.hook.count("revoke", id), 1, "revoked exactly once");
    let revoke = env.hook.calls().into_iter().find(|c| c.action == "revoke").unwrap();
    assert_eq!(revoke.body["expires_at"], "2026-01-01T01:00:00Z");
    let actions: Vec<String> = env.db.audit_rows_for_request(1).await.unwrap().into_iter().map(|r| r.action).collect();
    assert!(actions.contains(&"access.extended".to_owned()), "{actions:?}");
    assert!(actions.contains(&"grant.extended".to_owned()), "{actions:?}");
    env.stop().await;
}

async fn an_extension_needing_approval_gets_its_own_card(transport: Transport) {
    let env = start_on(transport, "").await;
    let id = RequestId::new(1);
    approved(&env, "U0ALICE", "request prod-db-readonly 30m debugging the migration", id).await;
    env.clock.advance(minutes(20));
    let reply = env.command("U0ALICE", "extend 1 1h migration still running").await;
    assert!(reply.starts_with("Extension request #2 (+1h for request #1) sent to <#C0APPROVALS>"), "{reply}");
    let ext = RequestId::new(2);
    let card = eventually("the extension's card", async || env.card(ext)).await;
    assert!(texts(&card).contains("Extension of request #1: <@U0ALICE> asks for 1h more"), "{}", texts(&card));
    assert!(texts(&card).contains("migration still running"));
    assert_eq!(buttons(&card), vec![("approve".into(), "2".into()), ("deny".into(), "2".into())]);
    // One pending extension at a time.
    let again = env.command("U0ALICE", "extend 1 30m more").await;
    assert!(again.contains("already have request #2"), "{again}");
    // Only the holder may extend.
    let other = env.command("U0BOB", "extend 1 1h helping").await;
    assert!(other.contains("Only the holder of request #1"), "{other}");

    env.click("U0CAROL", "approve", ext).await;
    eventually("the extension applied", async || {
        env.slack.posts_to("U0ALICE").into_iter().find(|m| texts(m).contains("is extended by 1h"))
    })
    .await;
    let card =
        eventually("the extension's card", async || env.card(ext).filter(|c| texts(c).contains("extended until")))
            .await;
    assert!(texts(&card).contains("Approved by <@U0CAROL>"), "{}", texts(&card));
    assert_eq!(env.db.request(id).await.unwrap().unwrap().expires_at, Some(start_time().plus(minutes(90))));
    assert_eq!(env.hook.count("grant", ext), 0, "an extension grants nothing itself");

    env.clock.advance(minutes(11));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(env.hook.count("revoke", id), 0);
    env.clock.advance(minutes(60));
    eventually("the revocation at the new expiry", async || (env.hook.count("revoke", id) == 1).then_some(())).await;
    env.stop().await;
}

async fn extensions_denied_timed_out_or_overtaken_leave_the_expiry_alone(transport: Transport) {
    let env = start_on(transport, "").await;
    let id = RequestId::new(1);
    approved(&env, "U0ALICE", "request prod-db-readonly 30m debugging", id).await;
    let original = env.db.request(id).await.unwrap().unwrap().expires_at;

    // Denied.
    env.command("U0ALICE", "extend 1 1h more please").await;
    eventually("card", async || env.card(RequestId::new(2))).await;
    crate::forms::deny(&env, "U0BOB", RequestId::new(2), None).await;
    eventually("the DM", async || {
        env.slack
            .posts_to("U0ALICE")
            .into_iter()
            .find(|m| texts(m).contains("Your extension #2") && texts(m).contains("denied"))
    })
    .await;
    assert_eq!(env.db.request(id).await.unwrap().unwrap().expires_at, original);

    // Cancelled by the requester.
    env.command("U0ALICE", "extend 1 1h more please").await;
    assert_eq!(env.command("U0ALICE", "cancel 3").await, "Request #3 for `prod-db-readonly` cancelled.");
    let card =
        eventually("card", async || env.card(RequestId::new(3)).filter(|c| texts(c).contains("Cancelled"))).await;
    assert!(buttons(&card).is_empty());

    // Ended early ("I'm done") while an extension waits: the extension is cancelled.
    env.command("U0ALICE", "extend 1 1h more please").await;
    env.command("U0ALICE", "revoke 1").await;
    until_state(&env, id, "revoked").await;
    assert_eq!(env.state(RequestId::new(4)).await, "cancelled");
    env.click("U0BOB", "approve", RequestId::new(4)).await;
    eventually("the refusal", async || {
        env.slack.responses().into_iter().find(|r| texts(r).contains("already cancelled"))
    })
    .await;

    // Nobody decides before the access ends: the extension times out with it.
    let id = RequestId::new(5);
    approved(&env, "U0ALICE", "request prod-db-readonly 30m debugging again", id).await;
    env.command("U0ALICE", "extend 5 1h more please").await;
    // (Let its card go out first: a jump of the clock past the lease of a
    // notice still being delivered would deliver it twice.)
    eventually("the extension's card", async || env.card(RequestId::new(6))).await;
    env.clock.advance(minutes(31));
    eventually("the revocation", async || (env.hook.count("revoke", id) == 1).then_some(())).await;
    eventually("the timeout", async || {
        env.slack
            .posts_to("U0ALICE")
            .into_iter()
            .find(|m| texts(m).contains("Your extension #6") && texts(m).contains("timed out"))
    })
    .await;
    assert_eq!(env.state(RequestId::new(6)).await, "timed_out");
    let posts: Vec<String> = env.slack.posts_to(APPROVALS).iter().map(|p| p["text"].to_string()).collect();
    assert_eq!(posts.len(), 6, "one card per request and extension: {posts:#?}");
    env.stop().await;
}

async fn extensions_cannot_add_up_past_the_roles_total(transport: Transport) {
    let env = start_on(
        transport,
        r#"
[roles.capped-db]
description = "Read-write SQL, two hours per grant at most"
provider = "ops-hook"
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "1h"
max_duration = "1h"
auto_approve = { groups = ["oncall"], max_duration = "1h" }
max_total_duration = "2h"
"#,
    )
    .await;
    let id = RequestId::new(1);
    env.command("U0DAVE", "request capped-db 1h paging alert").await;
    until_state(&env, id, "active").await;
    env.clock.advance(minutes(45));
    let answer = env.command("U0DAVE", "extend 1 1h still paging").await;
    assert!(answer.contains("Extended"), "{answer}");
    assert_eq!(env.db.request(id).await.unwrap().unwrap().expires_at, Some(start_time().plus(minutes(120))));

    // Two hours in all is the cap: another 30 minutes is refused, and says why.
    let refused = env.command("U0DAVE", "extend 1 30m still paging").await;
    assert!(
        refused.contains("`capped-db` allows at most 2h of access in one grant, extensions included")
            && refused.contains("would make it 2h 30m"),
        "{refused}"
    );
    assert_eq!(env.db.request(id).await.unwrap().unwrap().expires_at, Some(start_time().plus(minutes(120))));
    assert_eq!(env.request_count().await, 2, "no extension was recorded for the refused ask");
    env.stop().await;
}

/// The cap is checked again when an extension is decided: the config may
/// have changed since it was asked for.
#[tokio::test]
async fn an_extension_past_a_cap_set_meanwhile_is_cancelled_when_decided() {
    const ROLE: &str = r#"
[roles.capped]
description = "Read-only SQL"
provider = "ops-hook"
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "1h"
max_duration = "1h"
"#;
    let mut t = crate::support::providers::ProviderApp::spawn(ROLE, start_time()).await;
    let id = t.grant("U0ALICE", "capped", "1h").await;
    assert_eq!(t.state(id).await, "active");
    t.advance(minutes(10));
    let ask = jitbot::service::ExtendCommand {
        requester: crate::support::user("U0ALICE"),
        request: id,
        duration: Some(jitbot::domain::AccessDuration::parse("1h").unwrap()),
        reason: None,
        client_key: None,
    };
    let ext = match t.service().extend(ask, t.now()).await.unwrap() {
        jitbot::service::ExtendOutcome::Pending(r) => r.id,
        other => panic!("this extension needs approval: {other:?}"),
    };

    t.restart_with(&format!("{ROLE}max_total_duration = \"1h30m\"\n")).await;
    let refused = t.service().approve(ext, &crate::support::user("U0BOB"), t.now()).await.unwrap_err().to_string();
    assert!(
        refused.contains("extension #2 was cancelled: `capped` allows at most 1h 30m")
            && refused.contains("would make it 2h"),
        "{refused}"
    );
    assert_eq!(t.state(ext).await, "cancelled");
    assert_eq!(t.request_now(id).await.expires_at, Some(start_time().plus(minutes(60))), "the expiry did not move");
    let why = t.audit_detail(ext, "request.cancelled").await;
    assert!(why["why"].as_str().unwrap().contains("at most 1h 30m"), "{why}");
}
