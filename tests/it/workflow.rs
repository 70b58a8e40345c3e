//! The approval workflow's policies through the real server and the fake
//! Slack: tickets, auto-approval, approval timeouts with a reminder,
//! break-glass and N-of-M progress. The clock is manual: no test waits
//! through a duration.

use std::time::Duration;

use jitbot::domain::RequestId;

use crate::slack_http::{buttons, texts};
use crate::support::slack::{APPROVALS, AUDIT, SlackEnv, SlackEnvOptions, eventually};
use crate::support::slack::{Transport, both_transports};

both_transports!(
    tickets_are_required_found_in_the_reason_and_linked_on_the_card,
    auto_approval_grants_at_once_and_still_posts_a_card,
    auto_approval_needs_groups_as_fresh_as_an_approvers_with_an_idp,
    pending_requests_time_out_with_a_reminder_halfway,
    break_glass_grants_announces_and_flags_for_review,
    n_of_m_progress_shows_on_the_card_as_approvals_arrive,
    a_role_with_its_own_channel_gets_its_cards_and_replies_name_it,
);

/// Roles with one workflow policy each, added to the usual test config.
pub const WORKFLOW_ROLES: &str = r#"
[roles.ticketed]
description = "Deploy to production"
provider = "ops-hook"
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "30m"
max_duration = "2h"
ticket_pattern = "INC-[0-9]+"
ticket_url = "https://jira.example.com/browse/{ticket}"

[roles.oncall-db]
description = "Read-write SQL on production"
provider = "ops-hook"
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "30m"
max_duration = "4h"
auto_approve = { groups = ["oncall"], max_duration = "1h" }

[roles.slow-db]
description = "Rarely needed database access"
provider = "ops-hook"
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "30m"
max_duration = "4h"
approval_timeout = "1h"

[roles.emergency]
description = "Production admin, break-glass allowed"
provider = "ops-hook"
requesters = ["engineering"]
approvers = ["sre-leads"]
approvals_required = 2
default_duration = "1h"
max_duration = "2h"
break_glass = true
"#;

pub async fn start(extra: &str) -> SlackEnv {
    start_on(Transport::Http, extra).await
}

/// The workflow roles and Dave (on call), over `transport`.
pub async fn start_on(transport: Transport, extra: &str) -> SlackEnv {
    let env = SlackEnv::start_with(SlackEnvOptions {
        transport,
        extra_toml: format!("{WORKFLOW_ROLES}{extra}"),
        ..Default::default()
    })
    .await;
    env.link("U0DAVE", "dave", &["engineering", "oncall"]).await;
    env
}

/// Waits until request `id` is in `state`: a job records its outcome just
/// after the webhook call the receiver already counted.
pub async fn until_state(env: &SlackEnv, id: RequestId, state: &str) {
    for _ in 0..500 {
        if env.state(id).await == state {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("request {id} never became {state} (it is {})", env.state(id).await);
}

async fn tickets_are_required_found_in_the_reason_and_linked_on_the_card(transport: Transport) {
    let env = start_on(transport, "").await;
    let refused = env.command("U0ALICE", "request ticketed 30m deploying the fix").await;
    assert!(refused.contains("needs a ticket id like `INC-[0-9]+`"), "{refused}");
    assert_eq!(env.request_count().await, 0);

    let ok = env.command("U0ALICE", "request ticketed 30m deploying the fix for INC-4821, urgent").await;
    assert!(ok.starts_with("Request #1 for `ticketed`"), "{ok}");
    let id = RequestId::new(1);
    assert_eq!(env.db.request(id).await.unwrap().unwrap().ticket.as_deref(), Some("INC-4821"));
    let card = eventually("the card", async || env.card(id)).await;
    assert!(texts(&card).contains("*Ticket*\n<https://jira.example.com/browse/INC-4821|INC-4821>"), "{}", texts(&card));
    env.stop().await;
}

async fn auto_approval_grants_at_once_and_still_posts_a_card(transport: Transport) {
    let env = start_on(transport, "").await;
    let reply = env.command("U0DAVE", "request oncall-db 45m paging alert on replication").await;
    assert!(reply.contains("was auto-approved (member of oncall, up to 1h without approval)"), "{reply}");
    let id = RequestId::new(1);
    eventually("the grant", async || (env.hook.count("grant", id) == 1).then_some(())).await;
    let card = eventually("the card saying why nobody was asked", async || {
        env.card(id).filter(|c| texts(c).contains("active until"))
    })
    .await;
    assert!(texts(&card).contains("Auto-approved (member of oncall, up to 1h without approval)"), "{}", texts(&card));
    assert!(buttons(&card).is_empty(), "nothing to decide on an auto-approved card");
    let dm = eventually("the requester's DM", async || env.slack.posts_to("U0DAVE").first().cloned()).await;
    assert!(texts(&dm).contains("is active until") && texts(&dm).contains("Auto-approved"), "{}", texts(&dm));
    eventually("the audit line", async || {
        env.slack.posts_to(AUDIT).into_iter().find(|m| texts(m).contains("auto-approved (member of oncall"))
    })
    .await;
    assert_eq!(
        env.db.audit_rows_for_request(1).await.unwrap().iter().map(|r| r.action.as_str()).collect::<Vec<_>>()[..2],
        ["request.created", "request.auto_approved"]
    );

    // Longer than the auto-approval limit, or not on call: the approvers decide.
    let second = env.command("U0ALICE", "request oncall-db 30m checking a query").await;
    assert!(second.contains("sent to <#C0APPROVALS> for approval"), "{second}");
    env.clock.advance(Duration::from_secs(3600));
    until_state(&env, id, "revoked").await;
    let long = env.command("U0DAVE", "request oncall-db 2h long migration").await;
    assert!(long.contains("for approval"), "{long}");
    env.stop().await;
}

async fn auto_approval_needs_groups_as_fresh_as_an_approvers_with_an_idp(transport: Transport) {
    // An unreachable IdP is enough here: links are made by hand and only
    // their age matters.
    let idp = "\n[idp]\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"jitbot\"\nclient_secret = \"x\"\n";
    let env = start_on(transport, idp).await;
    let fresh = env.command("U0DAVE", "request oncall-db 30m paging alert").await;
    assert!(fresh.contains("auto-approved"), "{fresh}");
    let id = RequestId::new(1);
    eventually("the grant", async || (env.hook.count("grant", id) == 1).then_some(())).await;
    env.command("U0DAVE", "revoke 1").await;
    until_state(&env, id, "revoked").await;

    // Groups confirmed 16 minutes ago: still fine for asking (link_max_age),
    // too old to let a rule approve without anyone looking (groups_max_age).
    env.clock.advance(Duration::from_secs(16 * 60));
    let stale = env.command("U0DAVE", "request oncall-db 30m paging alert again").await;
    assert!(stale.contains("sent to <#C0APPROVALS> for approval"), "{stale}");
    assert_eq!(env.state(RequestId::new(2)).await, "pending");
    env.stop().await;
}

async fn pending_requests_time_out_with_a_reminder_halfway(transport: Transport) {
    let env = start_on(transport, "").await;
    let reply = env.command("U0ALICE", "request slow-db 30m looking at a slow query").await;
    assert!(reply.contains("It times out <!date^"), "{reply}");
    let id = RequestId::new(1);
    let card = eventually("the card", async || env.card(id)).await;
    assert!(texts(&card).contains("times out <!date^"), "{}", texts(&card));
    let card_ts = card["ts"].as_str().unwrap().to_owned();

    // The reminder is due halfway (30 of 60 minutes), not before.
    let due = "SELECT MIN(due_at) FROM jobs WHERE kind = 'remind' AND state = 'queued'";
    let remind_at = crate::support::number(&env.db, due).await;
    assert_eq!(remind_at, env.clock_now_millis() + 30 * 60 * 1000, "no reminder before halfway");
    env.clock.advance(Duration::from_secs(29 * 60));
    assert_eq!(env.slack.posts_to(APPROVALS).len(), 1, "no reminder before halfway");
    env.clock.advance(Duration::from_secs(60));
    let reminder = eventually("the reminder", async || env.slack.posts_to(APPROVALS).get(1).cloned()).await;
    assert!(texts(&reminder).contains("Request #1 from <@U0ALICE> for `slow-db` (30m) still needs approval (0 of 1)"));
    assert_eq!(reminder["thread_ts"], card_ts.as_str(), "the reminder is threaded under the card");
    assert_eq!(reminder["reply_broadcast"], true, "and shown in the channel");

    env.clock.advance(Duration::from_secs(30 * 60));
    let card = eventually("the timed-out card", async || env.card(id).filter(|c| texts(c).contains("Timed out"))).await;
    assert!(texts(&card).contains("nobody decided within 1h"), "{}", texts(&card));
    assert!(buttons(&card).is_empty());
    let dm = eventually("the requester's DM", async || env.slack.posts_to("U0ALICE").first().cloned()).await;
    assert!(texts(&dm).contains("Your request #1 for `slow-db` timed out"), "{}", texts(&dm));
    assert_eq!(env.state(id).await, "timed_out");

    // A late approval changes nothing; the person may ask again.
    env.click("U0BOB", "approve", id).await;
    let answer = eventually("the answer", async || env.slack.responses().first().cloned()).await;
    assert!(answer["text"].as_str().unwrap().contains("already timed out"), "{answer}");
    assert!(env.hook.calls().is_empty());
    assert!(env.command("U0ALICE", "request slow-db 30m still slow").await.starts_with("Request #2"));

    // A request decided before its deadline never times out.
    env.click("U0BOB", "approve", RequestId::new(2)).await;
    eventually("the grant", async || (env.hook.count("grant", RequestId::new(2)) == 1).then_some(())).await;
    // The grant's outcome is recorded before time moves on: a revocation
    // that finds the grant call still in flight waits for it.
    until_state(&env, RequestId::new(2), "active").await;
    // Just past the expiry first (a longer jump would also make the revoke
    // overdue and raise a real alert when the machine is slow), then past the
    // approval deadline.
    env.clock.advance(Duration::from_secs(30 * 60 + 1));
    // The job records the outcome just after the receiver counted the call.
    until_state(&env, RequestId::new(2), "revoked").await;
    assert_eq!(env.hook.count("revoke", RequestId::new(2)), 1);
    env.clock.advance(Duration::from_secs(31 * 60));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(env.state(RequestId::new(2)).await, "revoked");
    let posts: Vec<String> = env.slack.posts_to(APPROVALS).iter().map(texts).collect();
    assert_eq!(posts.len(), 3, "two cards and one reminder, no more: {posts:#?}");
    env.stop().await;
}

async fn break_glass_grants_announces_and_flags_for_review(transport: Transport) {
    let env = start_on(transport, "").await;
    let reply = env.command("U0ALICE", "request emergency 1h primary database down").await;
    assert!(reply.contains("`/jit break-glass 1 <reason>`"), "{reply}");
    let id = RequestId::new(1);
    let card = eventually("the card", async || env.card(id)).await;
    assert!(texts(&card).contains("Break-glass allowed"), "{}", texts(&card));

    // Approve is still refused for the requester, and says what to do instead.
    env.click("U0ALICE", "approve", id).await;
    let answer = eventually("the answer", async || env.slack.responses().first().cloned()).await;
    assert!(answer["text"].as_str().unwrap().contains("allows break-glass instead"), "{answer}");
    // Nobody else can break glass on it, and a reason is mandatory.
    let other = env.command("U0BOB", "break-glass 1 I want to help").await;
    assert!(other.contains("Only the requester can break glass"), "{other}");
    let short = env.command("U0ALICE", "break-glass 1 go").await;
    assert!(short.contains("reason of at least 4 characters"), "{short}");
    // A role without break-glass refuses it.
    env.command("U0ALICE", "request prod-db-readonly 30m reading").await;
    let no = env.command("U0ALICE", "break-glass 2 primary database down").await;
    assert!(no.contains("does not allow break-glass"), "{no}");
    assert_eq!(env.state(RequestId::new(2)).await, "pending");

    let done = env.command("U0ALICE", "break-glass 1 primary down, nobody answers the page").await;
    assert!(done.contains("Break-glass: you approved request #1"), "{done}");
    eventually("the grant", async || (env.hook.count("grant", id) == 1).then_some(())).await;
    let card = eventually("the marked card", async || env.card(id).filter(|c| texts(c).contains("active until"))).await;
    let text = texts(&card);
    assert!(text.contains("*BREAK-GLASS*") && text.contains("Flagged for review"), "{text}");
    assert!(text.contains("primary down, nobody answers the page"), "{text}");
    assert!(card["text"].as_str().unwrap().starts_with("BREAK-GLASS "), "the fallback says it too");
    eventually("the audit channel announcement", async || {
        env.slack.posts_to(AUDIT).into_iter().find(|m| texts(m).contains(":rotating_light: BREAK-GLASS #1"))
    })
    .await;
    let stored = env.db.request(id).await.unwrap().unwrap();
    assert!(stored.review_required);
    assert_eq!(stored.break_glass_reason.as_deref(), Some("primary down, nobody answers the page"));
    assert!(env.db.audit_rows_for_request(1).await.unwrap().iter().any(|r| r.action == "request.break_glass"));

    // Afterwards an operator reviews it from the command line, once.
    let cfg = env._dir.path().join("jitbot.toml");
    std::fs::write(&cfg, &env.config_text).unwrap();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_jitbot"))
            .args(args)
            .args(["--config", cfg.to_str().unwrap()])
            .env("USER", "carol")
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code(), text)
    };
    let (code, listed) = cli(&["review", "list"]);
    assert_eq!(code, Some(0), "{listed}");
    assert!(listed.starts_with("#1\temergency\tT0WORK/U0ALICE"), "{listed}");
    assert!(listed.contains("primary down, nobody answers the page"), "{listed}");
    let (code, refused) = cli(&["review", "done", "1", "--note", "ok"]);
    assert_eq!(code, Some(1));
    assert!(refused.contains("needs a note of at least 4 characters"), "{refused}");
    let note = "checked the session log with the DBA: failover only";
    let (code, done) = cli(&["review", "done", "#1", "--note", note]);
    assert_eq!(code, Some(0), "{done}");
    assert!(done.contains("request #1 marked reviewed"), "{done}");
    let (_, listed) = cli(&["review", "list"]);
    assert!(listed.contains("no break-glass requests waiting for review"), "{listed}");
    let (code, again) = cli(&["review", "done", "1", "--note", note]);
    assert_eq!(code, Some(1));
    assert!(again.contains("request #1 is not waiting for review"), "{again}");
    let rows = env.db.audit_rows_for_request(1).await.unwrap();
    let reviewed = rows.iter().find(|r| r.action == "request.reviewed").expect("the review is audited");
    assert_eq!(reviewed.actor, "cli:carol");
    assert!(reviewed.detail.contains(note), "{}", reviewed.detail);
    env.stop().await;
}

async fn n_of_m_progress_shows_on_the_card_as_approvals_arrive(transport: Transport) {
    let env = start_on(transport, "").await;
    env.command("U0ALICE", "request prod-admin 15m rotating credentials").await;
    let id = RequestId::new(1);
    let card = eventually("the card", async || env.card(id)).await;
    assert!(texts(&card).contains("Waiting for approval (0 of 2)"), "{}", texts(&card));
    env.click("U0BOB", "approve", id).await;
    let card =
        eventually("1 of 2", async || env.card(id).filter(|c| texts(c).contains("1 of 2 approvals: <@U0BOB>"))).await;
    assert_eq!(buttons(&card).len(), 2, "still open for the second approver");
    // Bob's second Slack account (same IdP identity) does not count twice.
    env.link("U0BOB2", "bob", &["sre-leads"]).await;
    env.click("U0BOB2", "approve", id).await;
    let answer = eventually("the answer", async || env.slack.responses().get(1).cloned()).await;
    assert!(answer["text"].as_str().unwrap().contains("already decided on request #1"), "{answer}");
    assert_eq!(env.state(id).await, "pending");
    env.click("U0CAROL", "approve", id).await;
    eventually("the grant", async || (env.hook.count("grant", id) == 1).then_some(())).await;
    let card = eventually("approved", async || env.card(id).filter(|c| texts(c).contains("active until"))).await;
    assert!(texts(&card).contains("Approved by <@U0BOB>, <@U0CAROL>"), "{}", texts(&card));
    env.stop().await;
}

/// A role whose cards go to a channel of its own (not `[slack].approvals_channel`).
const OWN_CHANNEL_ROLE: &str = r#"
[roles.team-db]
description = "The team's database, approved by its own channel"
provider = "ops-hook"
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "30m"
max_duration = "4h"
approvals_channel = "C0DBTEAM"
"#;

/// The current content of request `id`'s card in `channel`.
fn card_in(env: &SlackEnv, channel: &str, id: RequestId) -> Option<serde_json::Value> {
    env.slack
        .messages_in(channel)
        .into_iter()
        .find(|m| m["blocks"][0]["text"]["text"].as_str() == Some(&format!("Access request #{}", id.get())))
}

async fn a_role_with_its_own_channel_gets_its_cards_and_replies_name_it(transport: Transport) {
    let env = start_on(transport, OWN_CHANNEL_ROLE).await;
    let reply = env.command("U0ALICE", "request team-db 30m debugging the migration").await;
    assert!(reply.contains("sent to <#C0DBTEAM> for approval"), "{reply}");
    let id = RequestId::new(1);
    eventually("the card in the role's channel", async || card_in(&env, "C0DBTEAM", id)).await;
    assert!(env.card(id).is_none(), "nothing in the default approvals channel");

    env.click("U0BOB", "approve", id).await;
    until_state(&env, id, "active").await;
    eventually("the card updated in place", async || {
        card_in(&env, "C0DBTEAM", id).filter(|c| texts(c).contains("active until"))
    })
    .await;

    let reply = env.command("U0ALICE", "extend 1 1h migration still running").await;
    assert!(reply.starts_with("Extension request #2 (+1h for request #1) sent to <#C0DBTEAM>"), "{reply}");
    eventually("the extension's card in the role's channel", async || card_in(&env, "C0DBTEAM", RequestId::new(2)))
        .await;
    assert!(env.slack.messages_in(APPROVALS).is_empty(), "{:?}", env.slack.messages_in(APPROVALS));
    env.stop().await;
}
