//! Seeing many requests at once: `/jit list` (mine: pending, active,
//! recent) and `/jit pending` (waiting for my decision, with buttons).

use std::time::Duration;

use jitbot::domain::RequestId;

use crate::slack_http::{buttons, texts};
use crate::workflow::start;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_my_pending_active_and_recent_requests() {
    let env = start("").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_lists_what_waits_for_my_decision_with_buttons() {
    let env = start("").await;
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
