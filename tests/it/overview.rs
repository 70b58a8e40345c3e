//! Seeing many requests at once: `/jit list` (mine: pending, active,
//! recent), `/jit pending` (waiting for my decision, with buttons) and the
//! App Home tab.

use std::time::Duration;

use jitbot::domain::RequestId;
use serde_json::{Value, json};

use crate::slack_http::{buttons, texts};
use crate::support::slack::{SlackEnv, eventually, fixture};
use crate::support::slack::{Transport, both_transports};
use crate::workflow::start_on;

both_transports!(
    list_shows_my_pending_active_and_recent_requests,
    pending_lists_what_waits_for_my_decision_with_buttons,
    the_home_tab_shows_my_access_my_requests_and_my_approvals,
    an_open_home_tab_follows_my_request_without_reopening,
);

async fn list_shows_my_pending_active_and_recent_requests(transport: Transport) {
    let env = start_on(transport, "").await;
    assert_eq!(env.command("U0ALICE", "list").await, "You have no open requests.");
    env.command("U0ALICE", "request slow-db 30m slow query").await;
    env.command("U0ALICE", "request prod-db-readonly 30m debugging").await;
    env.click("U0BOB", "approve", RequestId::new(2)).await;
    crate::workflow::until_state(&env, RequestId::new(2), "active").await;
    env.command("U0ALICE", "request ticketed 30m deploying INC-1").await;
    env.command("U0ALICE", "cancel 3").await;
    env.clock.advance(Duration::from_secs(5 * 60));

    let list = env.command("U0ALICE", "list").await;
    assert!(list.contains("*Pending*\n• #1 `slow-db` (30m): waiting for approval · times out <!date^"), "{list}");
    assert!(list.contains("*Active*\n• #2 `prod-db-readonly` (30m): active until <!date^"), "{list}");
    assert!(list.contains("(25m left)"), "{list}");
    assert!(list.contains("*Recent*\n• #3 `ticketed` (30m): cancelled <!date^"), "{list}");
    assert!(!list.contains("Waiting for your approval"), "{list}");

    // An approver's list points at what waits for them.
    let bobs = env.command("U0BOB", "list").await;
    assert!(bobs.contains("You have no open requests."), "{bobs}");
    assert!(
        bobs.contains("*Waiting for your approval*") && bobs.contains("• #1 <@U0ALICE> `slow-db` for 30m"),
        "{bobs}"
    );
    env.stop().await;
}

async fn pending_lists_what_waits_for_my_decision_with_buttons(transport: Transport) {
    let env = start_on(transport, "").await;
    env.command("U0ALICE", "request prod-admin 15m rotating credentials").await;
    env.command("U0ALICE", "request prod-db-readonly 30m debugging").await;
    env.command("U0DAVE", "request ticketed 30m deploying INC-9").await;

    let reply = env.command_json("U0BOB", "pending").await;
    assert_eq!(reply["text"], "3 requests wait for your approval.");
    let ids: Vec<String> = buttons(&reply).into_iter().filter(|(a, _)| a == "approve").map(|(_, id)| id).collect();
    assert_eq!(ids, ["1", "2", "3"]);
    let text = texts(&reply);
    assert!(text.contains("*#1* <@U0ALICE> asks for `prod-admin` for 15m (0 of 2 approvals)"), "{text}");
    assert!(text.contains(">rotating credentials"), "{text}");

    // Deciding from the list works like the card; what I decided leaves my list.
    assert_eq!(env.click("U0BOB", "approve", RequestId::new(1)).await, 200);
    // (The click is handled before Slack gets its answer.)
    assert_eq!(env.db.approvals(RequestId::new(1)).await.unwrap().len(), 1);
    let reply = env.command_json("U0BOB", "pending").await;
    let ids: Vec<String> = buttons(&reply).into_iter().filter(|(a, _)| a == "approve").map(|(_, id)| id).collect();
    assert_eq!(ids, ["2", "3"]);
    let carols = env.command_json("U0CAROL", "pending").await;
    assert!(texts(&carols).contains("(1 of 2 approvals)"), "{}", texts(&carols));

    assert_eq!(env.command("U0MALLORY", "pending").await, "Nothing waits for your approval.");
    let nobody = env.command("U0STRANGER", "pending").await;
    assert!(nobody.contains("not linked"), "{nobody}");
    env.stop().await;
}

/// Sends Slack's `app_home_opened` event for `user_id` (tab `home` or `messages`).
async fn open_home(env: &SlackEnv, team: &str, user_id: &str, tab: &str) -> u16 {
    let mut event: Value = serde_json::from_str(&fixture("app_home_opened.json")).unwrap();
    event["team_id"] = team.into();
    event["event"]["user"] = user_id.into();
    event["event"]["tab"] = tab.into();
    env.deliver_event(&event).await
}

/// Clicks `action_id` (with `value`) in `user_id`'s home tab: no response URL there.
async fn click_in_home(env: &SlackEnv, user_id: &str, action_id: &str, value: &str) -> u16 {
    let home = env.slack.home(user_id).unwrap();
    let mut payload = env.click_payload("T0WORK", user_id, action_id, RequestId::new(1));
    for key in ["channel", "message", "response_url"] {
        payload.as_object_mut().unwrap().remove(key);
    }
    payload["container"] = json!({"type": "view", "view_id": home["id"]});
    payload["view"] = home;
    payload["actions"][0]["value"] = value.into();
    env.interact(&payload).await.0
}

fn home_buttons(home: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for b in home["blocks"].as_array().unwrap() {
        let elements = b["elements"].as_array().cloned().unwrap_or_default();
        for e in elements.iter().chain(b.get("accessory")) {
            if let Some(a) = e["action_id"].as_str() {
                out.push((a.to_owned(), e["value"].as_str().unwrap_or("").to_owned()));
            }
        }
    }
    out
}

async fn the_home_tab_shows_my_access_my_requests_and_my_approvals(transport: Transport) {
    let env = start_on(transport, "").await;
    env.command("U0ALICE", "request prod-db-readonly 30m debugging").await;
    env.click("U0BOB", "approve", RequestId::new(1)).await;
    crate::workflow::until_state(&env, RequestId::new(1), "active").await;
    env.command("U0ALICE", "request slow-db 30m slow query").await;
    env.clock.advance(Duration::from_secs(5 * 60));

    // Alice never opened the tab, so the notices drew nothing; opening it
    // draws it at the current time.
    assert!(env.slack.calls("views.publish").is_empty(), "no redraws for a tab never opened");
    assert_eq!(open_home(&env, "T0WORK", "U0ALICE", "home").await, 200);
    let home =
        eventually("alice's home tab", async || env.slack.home("U0ALICE").filter(|h| texts(h).contains("(25m left)")))
            .await;
    let text = texts(&home);
    assert!(text.contains("`prod-db-readonly` (request #1): active until <!date^"), "{text}");
    assert!(text.contains("(25m left)"), "{text}");
    assert!(text.contains("#2 `slow-db` (30m): waiting for approval · times out <!date^"), "{text}");
    assert!(text.contains("(0 of 1 approvals)"), "{text}");
    assert!(text.contains("Nothing waits for your approval."), "{text}");
    let actions = home_buttons(&home);
    for wanted in [("request_form", ""), ("extend", ""), ("done", "1"), ("cancel", "2")] {
        assert!(actions.contains(&(wanted.0.to_owned(), wanted.1.to_owned())), "{wanted:?} in {actions:?}");
    }

    // An approver's tab lists what waits for them, with buttons.
    open_home(&env, "T0WORK", "U0BOB", "home").await;
    let bobs = eventually("bob's home tab", async || env.slack.home("U0BOB")).await;
    assert!(home_buttons(&bobs).contains(&("approve".to_owned(), "2".to_owned())), "{}", texts(&bobs));
    assert!(texts(&bobs).contains("No access right now."));

    // Acting in the tab redraws it: Cancel.
    assert_eq!(click_in_home(&env, "U0ALICE", "cancel", "2").await, 200);
    assert_eq!(env.state(RequestId::new(2)).await, "cancelled");
    // Waits for the redraw that shows the cancellation: an older redraw (of
    // a notice that read the database before the click) may land first.
    let home =
        eventually("the redrawn tab", async || env.slack.home("U0ALICE").filter(|h| !texts(h).contains("slow-db")))
            .await;
    assert!(texts(&home).contains("Your pending requests") && !texts(&home).contains("slow-db"), "{}", texts(&home));
    // Request access from the tab opens the form (and redraws the tab).
    eventually("the cancellation delivered", async || {
        env.card(RequestId::new(2)).filter(|c| texts(c).contains("ancelled"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = env.slack.calls("views.publish").len();
    click_in_home(&env, "U0ALICE", "request_form", "").await;
    eventually("the form", async || env.slack.modal("request")).await;
    eventually("the tab redrawn again", async || (env.slack.calls("views.publish").len() == before + 1).then_some(()))
        .await;

    // The messages tab, other workspaces and strangers.
    let publishes = env.slack.calls("views.publish").len();
    assert_eq!(open_home(&env, "T0WORK", "U0ALICE", "messages").await, 200);
    // Another workspace: refused (HTTP 403; over Socket Mode the envelope is
    // acknowledged and dropped, since a websocket has no status code).
    let refused = if transport == Transport::Http { 403 } else { 200 };
    assert_eq!(open_home(&env, "T0OTHER", "U0ALICE", "home").await, refused);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(env.slack.calls("views.publish").len(), publishes, "nothing published");
    open_home(&env, "T0WORK", "U0STRANGER", "home").await;
    let strangers = eventually("a stranger's tab", async || env.slack.home("U0STRANGER")).await;
    assert!(texts(&strangers).contains("not linked your Slack account"), "{}", texts(&strangers));
    env.stop().await;
}

async fn an_open_home_tab_follows_my_request_without_reopening(transport: Transport) {
    let env = start_on(transport, "").await;
    env.command("U0ALICE", "request prod-db-readonly 30m debugging").await;
    assert_eq!(open_home(&env, "T0WORK", "U0ALICE", "home").await, 200);
    eventually("the pending request on the tab", async || {
        env.slack.home("U0ALICE").filter(|h| texts(h).contains("waiting for approval"))
    })
    .await;

    // Bob approves on the channel card; Alice never leaves her tab, which
    // is redrawn a few seconds after the change.
    env.click("U0BOB", "approve", RequestId::new(1)).await;
    crate::workflow::until_state(&env, RequestId::new(1), "active").await;
    crate::slack_pacing::run_queued_redraw(&env).await;
    let home = eventually("the tab redrawn with the access", async || {
        env.slack.home("U0ALICE").filter(|h| texts(h).contains("`prod-db-readonly` (request #1): active until"))
    })
    .await;
    assert!(!texts(&home).contains("waiting for approval"), "{}", texts(&home));

    // And when the access ends.
    env.clock.advance(Duration::from_secs(30 * 60 + 1));
    crate::workflow::until_state(&env, RequestId::new(1), "revoked").await;
    crate::slack_pacing::run_queued_redraw(&env).await;
    eventually("the tab redrawn without it", async || {
        env.slack.home("U0ALICE").filter(|h| texts(h).contains("No access right now."))
    })
    .await;
    env.stop().await;
}
