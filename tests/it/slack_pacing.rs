//! Few, paced Slack calls: App Home tabs redrawn only for people who opened
//! them and coalesced, cards updated only when they change, Retry-After
//! honoured, and a burst of revocations reaching the audit channel as one
//! digest line. Counted from the fake Slack's recorded calls.

use std::time::Duration;

use jitbot::domain::RequestId;
use jitbot::service::HOME_REDRAW_DELAY;
use serde_json::Value;

use crate::slack_http::texts;
use crate::support::fake_slack::Failure;
use crate::support::slack::{AUDIT, SlackEnv, SlackEnvOptions, Transport, both_transports, eventually, fixture};
use crate::support::{Backend, number};
use crate::workflow::{WORKFLOW_ROLES, until_state};

both_transports!(
    an_auto_approved_lifecycle_makes_at_most_five_slack_calls,
    many_quick_changes_redraw_an_open_home_tab_once,
    a_rate_limited_dm_waits_for_retry_after_and_arrives_once,
    a_burst_of_revocations_reaches_the_audit_channel_as_one_digest_line,
    a_notice_that_waits_for_a_rate_limited_channel_does_not_repeat_its_dm,
);

crate::support::both_backends!(lifecycle_calls_on_each_backend);

/// Every Web API method jitbot calls.
const METHODS: [&str; 6] =
    ["chat.postMessage", "chat.update", "views.publish", "views.open", "views.update", "users.info"];

/// All Web API calls the fake saw (failed ones too), by method.
fn all_calls(env: &SlackEnv) -> Vec<(String, Value)> {
    METHODS.iter().flat_map(|m| env.slack.calls(m).into_iter().map(|c| (c.method, c.body))).collect()
}

/// Sends Slack's `app_home_opened` event for `user_id`'s home tab.
pub async fn open_home(env: &SlackEnv, user_id: &str) {
    let mut event: Value = serde_json::from_str(&fixture("app_home_opened.json")).unwrap();
    event["team_id"] = "T0WORK".into();
    event["event"]["user"] = user_id.into();
    event["event"]["tab"] = "home".into();
    assert_eq!(env.deliver_event(&event).await, 200);
}

/// Waits until a redraw of someone's App Home tab is queued, then moves
/// the clock to when it is due.
pub async fn run_queued_redraw(env: &SlackEnv) {
    let queued = "SELECT COUNT(*) FROM jobs WHERE kind = 'redraw_home' AND state = 'queued'";
    eventually("a queued home redraw", async || (number(&env.db, queued).await > 0).then_some(())).await;
    env.clock.advance(HOME_REDRAW_DELAY);
}

/// Waits until no job that is due now is queued or running.
async fn until_idle(env: &SlackEnv) {
    let now = env.clock_now_millis();
    let busy = format!("SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running') AND due_at <= {now}");
    eventually("the due jobs to finish", async || (number(&env.db, &busy).await == 0).then_some(())).await;
}

/// Moves the clock forward a little at a time until `f` is ready: notices
/// that gave their worker back to Slack's pacing are rescheduled in the
/// application's clock.
async fn advancing<T>(env: &SlackEnv, what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..600 {
        if let Some(v) = f().await {
            return v;
        }
        env.clock.advance(Duration::from_millis(250));
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("never saw {what}");
}

/// The workflow roles, Dave on call, and no audit channel.
async fn quiet_env(transport: Transport, backend: Backend) -> SlackEnv {
    let env = SlackEnv::start_with(SlackEnvOptions {
        transport,
        backend,
        extra_toml: WORKFLOW_ROLES.into(),
        edit: |s| s.replace(&format!("audit_channel = \"{AUDIT}\"\n"), ""),
        ..Default::default()
    })
    .await;
    env.link("U0DAVE", "dave", &["engineering", "oncall"]).await;
    env
}

/// Request → auto-approval → grant → expiry → revocation, as Dave (who
/// never opened his App Home tab) sees it; returns the calls made.
async fn auto_approved_lifecycle(env: &SlackEnv) -> Vec<(String, Value)> {
    let reply = env.command("U0DAVE", "request oncall-db 45m paging alert on replication").await;
    assert!(reply.contains("was auto-approved"), "{reply}");
    let id = RequestId::new(1);
    until_state(env, id, "active").await;
    eventually("the grant DM", async || {
        env.slack.posts_to("U0DAVE").into_iter().find(|m| texts(m).contains("is active until"))
    })
    .await;
    until_idle(env).await;
    env.clock.advance(Duration::from_secs(45 * 60 + 1));
    until_state(env, id, "revoked").await;
    eventually("the end DM", async || {
        env.slack.posts_to("U0DAVE").into_iter().find(|m| texts(m).contains("has ended"))
    })
    .await;
    eventually("the card to show the end", async || env.card(id).filter(|c| texts(c).contains("expired"))).await;
    until_idle(env).await;
    all_calls(env)
}

async fn an_auto_approved_lifecycle_makes_at_most_five_slack_calls(transport: Transport) {
    let env = quiet_env(transport, Backend::Sqlite).await;
    let calls = auto_approved_lifecycle(&env).await;
    let methods: Vec<&str> = calls.iter().map(|(m, _)| m.as_str()).collect();
    eprintln!("calls per lifecycle: {methods:?}");
    assert!(calls.len() <= 5, "{} calls: {methods:?}", calls.len());
    assert!(env.slack.calls("views.publish").is_empty(), "Dave never opened his home tab: {methods:?}");
    assert_eq!(env.slack.calls("chat.postMessage").iter().filter(|c| c.body["channel"] == "U0DAVE").count(), 2);
    env.stop().await;
}

async fn lifecycle_calls_on_each_backend(backend: Backend) {
    let env = quiet_env(Transport::Http, backend).await;
    let calls = auto_approved_lifecycle(&env).await;
    assert!(calls.len() <= 5, "{calls:?}");
    env.stop().await;
}

async fn many_quick_changes_redraw_an_open_home_tab_once(transport: Transport) {
    let env = crate::workflow::start_on(transport, "").await;
    open_home(&env, "U0ALICE").await;
    eventually("the tab drawn on opening", async || env.slack.home("U0ALICE")).await;
    assert_eq!(env.slack.calls("views.publish").len(), 1);

    // Five changes in a row: three requests, two of them cancelled.
    env.command("U0ALICE", "request slow-db 30m slow query").await;
    env.command("U0ALICE", "request prod-db-readonly 30m debugging").await;
    env.command("U0ALICE", "request ticketed 30m deploying INC-7").await;
    env.command("U0ALICE", "cancel 1").await;
    env.command("U0ALICE", "cancel 3").await;
    until_idle(&env).await;
    let queued = "SELECT COUNT(*) FROM jobs WHERE kind = 'redraw_home' AND state IN ('queued', 'running')";
    assert_eq!(number(&env.db, queued).await, 1, "one redraw waits, however many changes");
    assert_eq!(env.slack.calls("views.publish").len(), 1, "nothing redrawn before it is due");

    env.clock.advance(HOME_REDRAW_DELAY);
    let home = eventually("the redrawn tab", async || {
        env.slack.home("U0ALICE").filter(|h| texts(h).contains("prod-db-readonly"))
    })
    .await;
    let text = texts(&home);
    assert!(text.contains("#2 `prod-db-readonly` (30m): waiting for approval"), "{text}");
    assert!(!text.contains("slow-db") && !text.contains("ticketed"), "the final state: {text}");
    until_idle(&env).await;
    assert_eq!(env.slack.calls("views.publish").len(), 2, "one redraw for five changes");

    // Bob never opened his tab: approving redraws nothing of his.
    env.click("U0BOB", "approve", RequestId::new(2)).await;
    until_state(&env, RequestId::new(2), "active").await;
    run_queued_redraw(&env).await;
    eventually("alice's tab with the access", async || {
        env.slack.home("U0ALICE").filter(|h| texts(h).contains("`prod-db-readonly` (request #2): active until"))
    })
    .await;
    assert!(env.slack.calls("views.publish").iter().all(|c| c.body["user_id"] == "U0ALICE"));
    env.stop().await;
}

async fn a_rate_limited_dm_waits_for_retry_after_and_arrives_once(transport: Transport) {
    let env = quiet_env(transport, Backend::Sqlite).await;
    env.command("U0ALICE", "request prod-db-readonly 30m debugging").await;
    let id = RequestId::new(1);
    eventually("the card", async || env.card(id)).await;
    until_idle(&env).await;

    // The next message is the requester's grant DM (no audit channel here).
    env.slack.fail_next("chat.postMessage", Failure::RateLimited { retry_after_secs: 20 });
    env.click("U0BOB", "approve", id).await;
    until_state(&env, id, "active").await;
    let rate_limited =
        async || env.slack.calls("chat.postMessage").into_iter().find(|c| !c.ok && c.body["channel"] == "U0ALICE");
    eventually("the rate-limited DM", rate_limited).await;
    let retry = "SELECT COUNT(*) FROM jobs WHERE kind = 'notify' AND state = 'queued' AND last_error IS NOT NULL";
    eventually("the retry recorded", async || (number(&env.db, retry).await == 1).then_some(())).await;
    let due = number(&env.db, "SELECT MAX(due_at) FROM jobs WHERE state = 'queued' AND last_error IS NOT NULL").await;
    assert!(due >= env.clock_now_millis() + 20_000, "Retry-After is honoured");
    assert!(env.slack.posts_to("U0ALICE").is_empty(), "nothing sent before Retry-After");
    // Access was not held up by Slack.
    assert_eq!(env.hook.count("grant", id), 1);

    env.clock.advance(Duration::from_secs(21));
    eventually("the DM after Retry-After", async || {
        env.slack.posts_to("U0ALICE").into_iter().find(|m| texts(m).contains("is active until"))
    })
    .await;
    until_idle(&env).await;
    assert_eq!(env.slack.posts_to("U0ALICE").len(), 1, "the DM arrives once");
    let card = env.card(id).unwrap();
    assert!(texts(&card).contains("active until"), "{}", texts(&card));
    let scraped = reqwest::get(format!("{}/metrics", env.base)).await.unwrap().text().await.unwrap();
    assert!(
        scraped.contains(r#"jitbot_slack_api_rate_limited_total{method="chat.postMessage"} 1"#),
        "429s are counted per method:\n{scraped}"
    );
    assert!(scraped.contains(r#"jitbot_slack_api_calls_total{method="chat.update"}"#), "{scraped}");
    env.stop().await;
}

async fn a_burst_of_revocations_reaches_the_audit_channel_as_one_digest_line(transport: Transport) {
    let env = crate::workflow::start_on(transport, "").await;
    let people: Vec<String> = (1..=7).map(|i| format!("U0ONCALL{i}")).collect();
    for (i, user) in people.iter().enumerate() {
        env.link(user, &format!("oncall{i}"), &["engineering", "oncall"]).await;
        let reply = env.command(user, "request oncall-db 30m paging alert").await;
        assert!(reply.contains("was auto-approved"), "{reply}");
    }
    for i in 1..=7 {
        until_state(&env, RequestId::new(i), "active").await;
    }
    let granted = |m: &Value| texts(m).contains(": granted");
    advancing(&env, "every grant's audit line", async || {
        (env.slack.posts_to(AUDIT).iter().filter(|m| granted(m)).count() == 7).then_some(())
    })
    .await;

    // All seven expire within the same minute.
    env.clock.set(jitbot::domain::Timestamp::parse_rfc3339("2026-01-01T00:30:30Z").unwrap());
    for i in 1..=7 {
        until_state(&env, RequestId::new(i), "revoked").await;
    }
    let digest = advancing(&env, "the digest line", async || {
        env.slack.posts_to(AUDIT).into_iter().find(|m| texts(m).contains("revocations in the minute"))
    })
    .await;
    let text = texts(&digest);
    assert!(
        text.contains("7 revocations in the minute") && text.contains("(5 posted one by one); the other 2"),
        "{text}"
    );
    let revoked_lines = async || env.slack.posts_to(AUDIT).iter().filter(|m| texts(m).ends_with(": revoked")).count();
    advancing(&env, "the lines posted one by one", async || (revoked_lines().await == 5).then_some(())).await;
    until_idle(&env).await;
    assert_eq!(revoked_lines().await, 5, "a handful one by one, the rest in the digest");
    assert_eq!(env.slack.posts_to(AUDIT).iter().filter(|m| texts(m).contains("revocations in the minute")).count(), 1);
    env.stop().await;
}

crate::support::both_backends!(what_awaits_an_approver_is_filtered_in_the_database_as_before);

/// The ids `user_id`'s "waiting for your approval" lists.
async fn awaiting(env: &SlackEnv, user_id: &str) -> Vec<i64> {
    let identity = env.service.linked_identity(&crate::support::user(user_id)).await.unwrap().unwrap();
    env.service.awaiting_decision(&identity).await.unwrap().into_iter().map(|r| r.id.get()).collect()
}

async fn what_awaits_an_approver_is_filtered_in_the_database_as_before(backend: Backend) {
    let env =
        SlackEnv::start_with(SlackEnvOptions { backend, extra_toml: WORKFLOW_ROLES.into(), ..Default::default() })
            .await;
    env.link("U0DAVE", "dave", &["engineering", "oncall"]).await;
    // Sam approves and requests; a second Slack account of his is the same person.
    env.link("U0SAM", "sam", &["engineering", "sre-leads"]).await;
    env.link("U0SAMTOO", "sam", &["sre-leads"]).await;
    env.command("U0ALICE", "request prod-admin 15m rotating credentials").await;
    env.command("U0ALICE", "request prod-db-readonly 30m debugging").await;
    env.command("U0DAVE", "request ticketed 30m deploying INC-9").await;
    env.command("U0SAM", "request slow-db 30m slow query").await;
    env.command("U0ALICE", "request slow-db 30m slow query").await;
    env.command("U0ALICE", "cancel 5").await;
    env.click("U0BOB", "approve", RequestId::new(1)).await;
    eventually("bob's approval", async || {
        (env.db.approvals(RequestId::new(1)).await.unwrap().len() == 1).then_some(())
    })
    .await;

    assert_eq!(awaiting(&env, "U0BOB").await, [2, 3, 4], "not what he decided, oldest first");
    assert_eq!(awaiting(&env, "U0CAROL").await, [1, 2, 3, 4]);
    assert_eq!(awaiting(&env, "U0SAM").await, [1, 2, 3], "not his own");
    assert_eq!(awaiting(&env, "U0SAMTOO").await, [1, 2, 3], "not his own from another account either");
    assert!(awaiting(&env, "U0ALICE").await.is_empty(), "not an approver");
    assert!(awaiting(&env, "U0MALLORY").await.is_empty());
    env.stop().await;
}

async fn a_notice_that_waits_for_a_rate_limited_channel_does_not_repeat_its_dm(transport: Transport) {
    let env = crate::workflow::start_on(transport, "").await;
    env.command("U0ALICE", "request prod-db-readonly 30m debugging").await;
    env.click("U0BOB", "approve", RequestId::new(1)).await;
    until_state(&env, RequestId::new(1), "active").await;
    env.command("U0DAVE", "request prod-db-readonly 30m checking").await;
    eventually("the second card", async || env.card(RequestId::new(2))).await;
    until_idle(&env).await;

    // The next message is the audit line of #2's approval: Slack answers
    // 429, and the audit channel is blocked until its Retry-After.
    env.slack.fail_next("chat.postMessage", Failure::RateLimited { retry_after_secs: 20 });
    env.click("U0BOB", "approve", RequestId::new(2)).await;
    eventually("the rate-limited audit line", async || {
        env.slack.calls("chat.postMessage").into_iter().find(|c| !c.ok && c.body["channel"] == AUDIT)
    })
    .await;
    // Alice ends her access: her DM goes out, the audit line must wait.
    env.command("U0ALICE", "revoke 1").await;
    until_state(&env, RequestId::new(1), "revoked").await;
    let ended = async || env.slack.posts_to("U0ALICE").into_iter().filter(|m| texts(m).contains("has ended")).count();
    eventually("the end DM", async || (ended().await == 1).then_some(())).await;
    let remembered = "SELECT COUNT(*) FROM notice_steps";
    eventually("the sent DM remembered", async || (number(&env.db, remembered).await == 1).then_some(())).await;

    env.clock.advance(Duration::from_secs(21));
    let revoked_line = async || {
        env.slack
            .posts_to(AUDIT)
            .into_iter()
            .filter(|m| texts(m).contains("#1 <@U0ALICE> `prod-db-readonly`: revoked"))
            .count()
    };
    advancing(&env, "the audit line after Retry-After", async || (revoked_line().await == 1).then_some(())).await;
    until_idle(&env).await;
    assert_eq!(ended().await, 1, "the retried notice did not send the DM again");
    assert_eq!(revoked_line().await, 1);
    env.stop().await;
}

crate::support::both_backends!(redraws_of_one_person_never_run_at_once);

/// Two redraws of one person's tab never run together, even on two
/// replicas, and the later one runs after the earlier (so it draws later).
async fn redraws_of_one_person_never_run_at_once(backend: Backend) {
    let t = crate::support::TestApp::spawn_on(backend).await;
    let now = t.now();
    let alice = r#"{"team_id":"T0WORK","user_id":"U0ALICE"}"#;
    let bob = r#"{"team_id":"T0WORK","user_id":"U0BOB"}"#;
    let mut tx = t.db().begin().await.unwrap();
    let first = crate::support::insert_job(&mut tx, jitbot::jobs::JobKind::RedrawHome, None, alice, now, now).await;
    let second = crate::support::insert_job(&mut tx, jitbot::jobs::JobKind::RedrawHome, None, alice, now, now).await;
    let other = crate::support::insert_job(&mut tx, jitbot::jobs::JobKind::RedrawHome, None, bob, now, now).await;
    tx.commit().await.unwrap();

    let claimed = t.db().claim_jobs("replica-a", now, Duration::from_secs(60), 10).await.unwrap();
    let mut ids: Vec<i64> = claimed.iter().map(|j| j.id).collect();
    ids.sort();
    assert_eq!(ids, vec![first, other], "alice's second redraw waits for her first");
    let more = t.db().claim_jobs("replica-b", now, Duration::from_secs(60), 10).await.unwrap();
    assert!(more.is_empty(), "another replica cannot take it either: {more:?}");

    let mut tx = t.db().begin().await.unwrap();
    let job = claimed.iter().find(|j| j.id == first).unwrap();
    assert!(tx.complete_job(job.id, job.attempt, now).await.unwrap());
    tx.commit().await.unwrap();
    let next = t.db().claim_jobs("replica-b", now, Duration::from_secs(60), 10).await.unwrap();
    assert_eq!(next.iter().map(|j| j.id).collect::<Vec<_>>(), vec![second]);
}
