//! Slack over HTTP, end to end: signed requests to the real server, the
//! scheduler loop running, a fake Slack Web API and a webhook target.

use std::time::Duration;

use jitbot::domain::RequestId;
use serde_json::Value;

use crate::support::fake_slack::Failure;
use crate::support::slack::SlackEnvOptions;
use crate::support::slack::{APPROVALS, AUDIT, SlackEnv, eventually, fixture, slack_sign};
use crate::support::slack::{Transport, both_transports};

both_transports!(
    deny_updates_the_card_and_tells_the_requester,
    self_approval_and_outsiders_are_refused_with_an_explanation,
    double_clicks_and_retried_deliveries_count_once,
    slack_answering_429_then_200_still_gets_the_card_posted,
    commands_answer_helpfully,
    an_admin_retries_a_failing_revocation_from_slack,
    a_held_database_gets_a_busy_answer_and_no_request,
    acknowledgements_are_timed_per_transport,
    deliveries_beyond_the_slots_in_flight_are_answered_busy_at_once,
);

pub(crate) fn texts(v: &Value) -> String {
    // All visible text of a message, for assertions.
    let mut out = v["text"].as_str().unwrap_or("").to_owned();
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(t)) = m.get("text") {
                    out.push('\n');
                    out.push_str(t);
                }
                m.values().for_each(|x| walk(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(&v["blocks"], &mut out);
    out
}

pub(crate) fn buttons(card: &Value) -> Vec<(String, String)> {
    card["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().unwrap().clone())
        .map(|e| (e["action_id"].as_str().unwrap().to_owned(), e["value"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_approve_grant_expire_over_slack() {
    request_approve_grant_expire(SlackEnv::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_approve_grant_expire_over_slack_on_postgres() {
    if crate::support::postgres_server().is_none() {
        return;
    }
    let options =
        crate::support::slack::SlackEnvOptions { backend: crate::support::Backend::Postgres, ..Default::default() };
    request_approve_grant_expire(SlackEnv::start_with(options).await).await;
}

/// The whole lifecycle as people see it in Slack; the same body runs over
/// HTTP and over Socket Mode, on SQLite and on PostgreSQL.
pub async fn request_approve_grant_expire(env: SlackEnv) {
    let reply = env.command("U0ALICE", "request prod-db-readonly 30m debugging INC-4821").await;
    assert_eq!(
        reply,
        "Request #1 for `prod-db-readonly` (30m) sent to <#C0APPROVALS> for approval. You will get a DM when it is decided."
    );
    let id = RequestId::new(1);

    let card = eventually("the approval card", async || env.card(id)).await;
    let text = texts(&card);
    for needle in ["<@U0ALICE>", "prod-db-readonly", "30m", "debugging INC-4821", "Waiting for approval (0 of 1)"] {
        assert!(text.contains(needle), "card lacks {needle:?}: {text}");
    }
    assert_eq!(buttons(&card), vec![("approve".into(), "1".into()), ("deny".into(), "1".into())]);
    assert!(card["text"].as_str().unwrap().contains("asks for prod-db-readonly"), "plain-text fallback");

    assert_eq!(env.click("U0BOB", "approve", id).await, 200);
    eventually("the grant", async || (env.hook.count("grant", id) == 1).then_some(())).await;
    let card = eventually("the card to show the grant", async || {
        env.card(id).filter(|c| texts(c).contains("active until <!date^"))
    })
    .await;
    assert!(texts(&card).contains("Approved by <@U0BOB>"), "{}", texts(&card));
    assert!(buttons(&card).is_empty(), "decided cards have no buttons");
    let dm = eventually("the requester's DM", async || env.slack.posts_to("U0ALICE").first().cloned()).await;
    assert!(texts(&dm).contains("is active until <!date^"), "{}", texts(&dm));
    let answer = eventually("the ephemeral answer to the click", async || env.slack.responses().first().cloned()).await;
    assert_eq!(answer["response_type"], "ephemeral");
    assert!(answer["text"].as_str().unwrap().starts_with("You approved request #1"), "{answer}");

    // Just past the expiry (a jump past expiry + 60 s would rightly also
    // raise the "revocation overdue" alert).
    env.clock.advance(Duration::from_secs(30 * 60 + 1));
    eventually("the revocation", async || (env.hook.count("revoke", id) == 1).then_some(())).await;
    eventually("the card to show the end", async || env.card(id).filter(|c| texts(c).contains("Access expired"))).await;
    // (The expiry warning may or may not have gone out first: the clock jumped past both.)
    eventually("the end DM", async || {
        env.slack.posts_to("U0ALICE").into_iter().find(|m| texts(m).contains("has ended"))
    })
    .await;
    // The audit channel got a line per decision.
    eventually("audit lines", async || (env.slack.posts_to(AUDIT).len() == 3).then_some(())).await;
    assert_eq!(env.slack.calls("chat.postMessage").iter().filter(|c| c.body["channel"] == APPROVALS).count(), 1);
    env.stop().await;
}

async fn deny_updates_the_card_and_tells_the_requester(transport: Transport) {
    let env = SlackEnv::start_with(SlackEnvOptions { transport, ..Default::default() }).await;
    env.command("U0ALICE", "request prod-db-readonly debugging").await;
    let id = RequestId::new(1);
    eventually("card", async || env.card(id)).await;
    crate::forms::deny(&env, "U0CAROL", id, None).await;
    eventually("denied card", async || env.card(id).filter(|c| texts(c).contains("Denied by <@U0CAROL>"))).await;
    let dm = eventually("DM", async || env.slack.posts_to("U0ALICE").first().cloned()).await;
    assert!(texts(&dm).contains("was denied by <@U0CAROL>"));
    assert!(env.hook.calls().is_empty());
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_missing_or_stale_signatures_get_401_and_change_nothing() {
    let env = SlackEnv::start().await;
    let body = env.command_body("T0WORK", "U0ALICE", "request prod-db-readonly debugging", None);

    let mut s = env.signed(body.clone(), "application/x-www-form-urlencoded");
    s.signature = Some(slack_sign(s.timestamp, "something else"));
    assert_eq!(env.send("/slack/commands", s).await.status(), 401);

    let mut s = env.signed(body.clone(), "application/x-www-form-urlencoded");
    s.signature = None;
    assert_eq!(env.send("/slack/commands", s).await.status(), 401);

    // Correctly signed, but six minutes old: a replay.
    let old = env.now_secs() - 360;
    let s = crate::support::slack::Signed {
        signature: Some(slack_sign(old, &body)),
        body: body.clone(),
        content_type: "application/x-www-form-urlencoded",
        timestamp: old,
        retry: false,
    };
    assert_eq!(env.send("/slack/commands", s).await.status(), 401);

    let click = env.click_body("T0WORK", "U0BOB", "approve", RequestId::new(1));
    let mut s = env.signed(click, "application/x-www-form-urlencoded");
    s.signature = Some("v0=00".into());
    assert_eq!(env.send("/slack/interactions", s).await.status(), 401);

    assert_eq!(env.request_count().await, 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(env.slack.calls("chat.postMessage").is_empty());
    // The same body, properly signed, works: the refusals were about the signature.
    let s = env.signed(body, "application/x-www-form-urlencoded");
    assert_eq!(env.send("/slack/commands", s).await.status(), 200);
    assert_eq!(env.request_count().await, 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_workspaces_are_refused() {
    let env = SlackEnv::start().await;
    let body = env.command_body("T0OTHER", "U0ALICE", "request prod-db-readonly debugging", None);
    let resp = env.send("/slack/commands", env.signed(body, "application/x-www-form-urlencoded")).await;
    assert_eq!(resp.status(), 200);
    let json: Value = resp.json().await.unwrap();
    assert!(json["text"].as_str().unwrap().contains("another Slack workspace"));
    assert_eq!(env.request_count().await, 0);

    env.command("U0ALICE", "request prod-db-readonly debugging").await;
    let click = env.click_body("T0OTHER", "U0BOB", "approve", RequestId::new(1));
    let resp = env.send("/slack/interactions", env.signed(click, "application/x-www-form-urlencoded")).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(env.state(RequestId::new(1)).await, "pending");
    env.stop().await;
}

async fn self_approval_and_outsiders_are_refused_with_an_explanation(transport: Transport) {
    let env = SlackEnv::start_with(SlackEnvOptions { transport, ..Default::default() }).await;
    env.link("U0ALICE", "alice", &["engineering", "sre-leads"]).await;
    env.command("U0ALICE", "request prod-db-readonly debugging").await;
    let id = RequestId::new(1);
    assert_eq!(env.click("U0ALICE", "approve", id).await, 200);
    assert_eq!(env.click("U0MALLORY", "approve", id).await, 200);
    let answers = eventually("both answers", async || {
        let r = env.slack.responses();
        (r.len() == 2).then_some(r)
    })
    .await;
    let answers: Vec<String> = answers.iter().map(|a| a["text"].as_str().unwrap().to_owned()).collect();
    assert!(answers.contains(&":no_entry: You cannot approve your own request.".to_owned()), "{answers:?}");
    assert!(answers.iter().any(|a| a.contains("You may not approve prod-db-readonly")), "{answers:?}");
    assert_eq!(env.state(id).await, "pending");
    assert!(env.db.approvals(id).await.unwrap().is_empty());
    env.stop().await;
}

async fn double_clicks_and_retried_deliveries_count_once(transport: Transport) {
    let env = SlackEnv::start_with(SlackEnvOptions { transport, ..Default::default() }).await;
    env.command("U0ALICE", "request prod-admin needs two approvers").await;
    let id = RequestId::new(1);
    assert_eq!(env.click("U0BOB", "approve", id).await, 200);
    assert_eq!(env.click("U0BOB", "approve", id).await, 200);
    // Slack retrying the same click: acknowledged, counted once, and no second answer.
    let retried = env.click_payload("T0WORK", "U0BOB", "approve", id);
    assert_eq!(env.interact_attempt(&retried, 1).await.0, 200);
    // A click that is always answered, sent once the retried delivery was
    // acknowledged (by then any answer of that delivery was already on its
    // way): when its answer has arrived, whatever the retry answered has too.
    assert_eq!(env.click("U0BOB", "cancel", id).await, 200);
    let answers = eventually("the answer to the click after the retried one", async || {
        let r = env.slack.responses();
        r.iter().any(|a| a["text"].as_str().unwrap_or("").contains("the requester can cancel")).then_some(r)
    })
    .await;
    let texts: Vec<&str> = answers.iter().map(|a| a["text"].as_str().unwrap_or("")).collect();
    assert_eq!(texts.len(), 3, "two clicks answered, the retried delivery silently, then the marker: {texts:?}");
    assert!(texts.iter().any(|t| t.contains("already decided on request #1")), "{texts:?}");
    assert_eq!(env.db.approvals(id).await.unwrap().len(), 1);
    assert_eq!(env.state(id).await, "pending");

    // A retried slash command delivery (same trigger_id) makes no second request.
    let first = env.command_retry("U0ALICE", "request prod-db-readonly debugging", "trigger-same", 0).await;
    let second = env.command_retry("U0ALICE", "request prod-db-readonly debugging", "trigger-same", 1).await;
    assert_eq!(first["text"], second["text"]);
    assert!(first["text"].as_str().unwrap().starts_with("Request #2"));
    assert_eq!(env.request_count().await, 2);
    env.stop().await;
}

async fn slack_answering_429_then_200_still_gets_the_card_posted(transport: Transport) {
    let env = SlackEnv::start_with(SlackEnvOptions { transport, ..Default::default() }).await;
    env.slack.fail_next("chat.postMessage", Failure::RateLimited { retry_after_secs: 30 });
    env.command("U0ALICE", "request prod-db-readonly debugging").await;
    let id = RequestId::new(1);
    eventually("the rate-limited attempt", async || (env.slack.calls("chat.postMessage").len() == 1).then_some(()))
        .await;
    // Waits for the job to record the 429 and its Retry-After, not for time to pass.
    let retry_at = until_retry_recorded(&env).await;
    assert!(env.card(id).is_none(), "nothing posted before Retry-After");
    assert!(retry_at >= env.clock_now_millis() + 30_000, "Retry-After is honoured");
    env.clock.advance(Duration::from_secs(31));
    eventually("the card after Retry-After", async || env.card(id)).await;
    assert_eq!(env.slack.calls("chat.postMessage").len(), 2);

    // A 5xx is retried with backoff too, and the transition it reports stands.
    env.slack.fail_next("chat.update", Failure::ServerError);
    assert_eq!(env.click("U0BOB", "approve", id).await, 200);
    eventually("the grant", async || (env.hook.count("grant", id) == 1).then_some(())).await;
    eventually("the failed update", async || env.slack.calls("chat.update").first().map(|_| ())).await;
    until_retry_recorded(&env).await;
    env.clock.advance(Duration::from_secs(6));
    eventually("the card update after the 5xx", async || env.card(id).filter(|c| texts(c).contains("Approved by")))
        .await;
    env.stop().await;
}

/// Waits until a notice job has recorded a failed attempt and is queued
/// for its retry; returns when the retry is due (epoch milliseconds).
async fn until_retry_recorded(env: &SlackEnv) -> i64 {
    let count = "SELECT COUNT(*) FROM jobs WHERE state = 'queued' AND last_error IS NOT NULL";
    for _ in 0..1000 {
        if crate::support::number(&env.db, count).await > 0 {
            let due = "SELECT MAX(due_at) FROM jobs WHERE state = 'queued' AND last_error IS NOT NULL";
            return crate::support::number(&env.db, due).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no retry was recorded");
}

async fn commands_answer_helpfully(transport: Transport) {
    let env = SlackEnv::start_with(SlackEnvOptions { transport, ..Default::default() }).await;
    let help = env.command("U0ALICE", "help").await;
    assert!(help.contains("/jit request <role> [duration] <reason>"), "{help}");
    assert!(help.contains("`prod-db-readonly`: Read-only SQL on production"), "{help}");
    assert!(env.command("U0ALICE", "").await.contains("/jit list"));

    let unknown = env.command("U0ALICE", "frobnicate now").await;
    assert!(unknown.starts_with("I don't know `frobnicate`"), "{unknown}");
    let malformed = env.command("U0ALICE", "request prod-db-readonly 30m").await;
    assert!(malformed.contains("say why"), "{malformed}");
    let too_long = env.command("U0ALICE", "request prod-db-readonly 9h because").await;
    assert!(too_long.contains("longer than the 4h maximum"), "{too_long}");
    let no_role = env.command("U0ALICE", "request prod-everything because").await;
    assert!(no_role.contains("no role called \"prod-everything\""), "{no_role}");

    // Identity comes first: strangers learn no role names, and people only
    // the names of roles they may request.
    let probing = env.command("U0STRANGER", "request prod-everything because").await;
    assert!(probing.contains("not linked") && !probing.contains("prod-db-readonly"), "{probing}");
    let sales = env.command("U0MALLORY", "request prod-everything because").await;
    assert!(sales.contains("none that you may request") && !sales.contains("prod-db-readonly"), "{sales}");
    let unlinked = env.command("U0STRANGER", "request prod-db-readonly debugging").await;
    assert!(
        unlinked.contains("not linked") && unlinked.contains("jitbot link add --team T0WORK --user U0STRANGER"),
        "{unlinked}"
    );

    env.command("U0ALICE", "request prod-db-readonly debugging").await;
    let mine = env.command("U0ALICE", "list").await;
    assert!(mine.contains("#1 `prod-db-readonly` (30m): waiting for approval"), "{mine}");
    let theirs = env.command("U0BOB", "list").await;
    assert!(theirs.contains("Waiting for your approval") && theirs.contains("#1 <@U0ALICE>"), "{theirs}");

    let whoami = env.command("U0ALICE", "whoami").await;
    assert!(whoami.contains("alice@example.com") && whoami.contains("engineering"), "{whoami}");

    assert_eq!(env.command("U0MALLORY", "cancel 1").await, ":no_entry: Only the requester can cancel request #1.");
    assert_eq!(env.command("U0ALICE", "cancel 1").await, "Request #1 for `prod-db-readonly` cancelled.");
    env.command("U0ALICE", "request prod-db-readonly debugging again").await;
    env.click("U0BOB", "approve", RequestId::new(2)).await;
    eventually("grant", async || (env.hook.count("grant", RequestId::new(2)) == 1).then_some(())).await;
    let revoke = env.command("U0ALICE", "revoke 2").await;
    assert!(revoke.starts_with("Ending your `prod-db-readonly` access (request #2) now"), "{revoke}");
    eventually("early revocation", async || (env.hook.count("revoke", RequestId::new(2)) == 1).then_some(())).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_url_verification_is_answered() {
    let env = SlackEnv::start().await;
    let body = fixture("url_verification.json");
    let resp = env.send("/slack/events", env.signed(body, "application/json")).await;
    assert_eq!(resp.status(), 200);
    let json: Value = resp.json().await.unwrap();
    assert_eq!(json["challenge"], "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P");
    env.stop().await;
}

async fn an_admin_retries_a_failing_revocation_from_slack(transport: Transport) {
    let env = SlackEnv::start_with(SlackEnvOptions { transport, ..Default::default() }).await;
    env.link("U0ADMIN", "admin", &["jit-admins"]).await;
    env.command("U0ALICE", "request prod-db-readonly debugging").await;
    let id = RequestId::new(1);
    env.click("U0BOB", "approve", id).await;
    eventually("the grant", async || (env.hook.count("grant", id) == 1).then_some(())).await;
    crate::workflow::until_state(&env, id, "active").await;
    env.hook.fail_always(true);
    env.clock.advance(Duration::from_secs(31 * 60));
    // Each failed attempt is recorded before time moves on to the next one.
    // Queued again with an error: the attempt is recorded, not merely claimed.
    let failed = "SELECT COALESCE(MAX(attempt), 0) FROM jobs WHERE kind = 'revoke' AND state = 'queued' AND last_error IS NOT NULL";
    // The clock stops after the third failure: moving it on again would make
    // a fourth attempt due, and that one could succeed on its own before the
    // administrator's retry below.
    for attempt in 1..=3 {
        eventually("a failed revocation attempt", async || {
            (crate::support::number(&env.db, failed).await >= attempt).then_some(())
        })
        .await;
        if attempt < 3 {
            env.clock.advance(Duration::from_secs(301));
        }
    }
    eventually("revoke_failed on the card", async || {
        env.card(id).filter(|c| texts(c).contains("Revocation is failing"))
    })
    .await;
    let refused = env.command("U0MALLORY", "retry 1").await;
    assert!(refused.contains("Only jitbot administrators can retry"), "{refused}");
    env.hook.fail_always(false);
    let ok = env.command("U0ADMIN", "retry 1").await;
    assert!(ok.starts_with("Retrying the revocation of request #1"), "{ok}");
    eventually("the revocation", async || (env.hook.count("revoke", id) == 1).then_some(())).await;
    eventually("the card to show the end", async || env.card(id).filter(|c| texts(c).contains("Access ended"))).await;
    env.stop().await;
}

/// Something else holding the database where a new request must write: on
/// SQLite the write lock, on PostgreSQL a table lock that stops inserts
/// into `access_requests` (reads go on). Dropping it lets go.
enum DatabaseHold {
    Sqlite(#[allow(dead_code)] jitbot::store::Tx),
    Postgres(#[allow(dead_code)] sqlx::Transaction<'static, sqlx::Postgres>),
}

async fn hold_requests(db: &jitbot::store::Db) -> DatabaseHold {
    match db.pool() {
        jitbot::store::Pool::Sqlite(_) => DatabaseHold::Sqlite(db.begin().await.unwrap()),
        jitbot::store::Pool::Postgres(pool) => {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("LOCK TABLE access_requests IN SHARE ROW EXCLUSIVE MODE").execute(&mut *tx).await.unwrap();
            DatabaseHold::Postgres(tx)
        }
    }
}

/// While the database is held, `/jit request` is answered within Slack's
/// 3 seconds that jitbot is busy and nothing was changed, and nothing was:
/// no request, no audit event. Once the database is free the same command
/// works.
async fn busy_answer_and_no_request(env: SlackEnv) {
    let hold = hold_requests(&env.db).await;
    let asked = std::time::Instant::now();
    let reply = env.command("U0ALICE", "request prod-db-readonly 30m debugging").await;
    let took = asked.elapsed();
    assert!(reply.contains("jitbot is busy right now; nothing was changed"), "{reply}");
    assert!(took < Duration::from_millis(2900), "answered within Slack's 3 seconds: {took:?}");
    drop(hold);
    assert_eq!(env.request_count().await, 0, "nothing was written");
    assert_eq!(
        crate::support::number(&env.db, "SELECT COUNT(*) FROM audit_events WHERE action LIKE 'request%'").await,
        0
    );
    let reply = env.command("U0ALICE", "request prod-db-readonly 30m debugging").await;
    assert!(reply.contains("sent to <#C0APPROVALS> for approval"), "{reply}");
    assert_eq!(env.request_count().await, 1);
    env.stop().await;
}

async fn a_held_database_gets_a_busy_answer_and_no_request(transport: Transport) {
    busy_answer_and_no_request(SlackEnv::start_with(SlackEnvOptions { transport, ..Default::default() }).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_database_gets_a_busy_answer_and_no_request_on_postgres() {
    if crate::support::postgres_server().is_none() {
        return;
    }
    let options = SlackEnvOptions { backend: crate::support::Backend::Postgres, ..Default::default() };
    busy_answer_and_no_request(SlackEnv::start_with(options).await).await;
}

/// Every acknowledgement's latency lands in `jitbot_slack_ack_seconds`,
/// labelled with the transport it went out on.
async fn acknowledgements_are_timed_per_transport(transport: Transport) {
    let env = SlackEnv::start_with(SlackEnvOptions { transport, ..Default::default() }).await;
    env.command("U0ALICE", "help").await;
    let label = match transport {
        Transport::Http => "http",
        Transport::Socket => "socket_mode",
    };
    let metrics = reqwest::get(format!("{}/metrics", env.base)).await.unwrap().text().await.unwrap();
    let prefix = format!("jitbot_slack_ack_seconds_count{{transport=\"{label}\"}} ");
    let count: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in\n{metrics}"))
        .parse()
        .unwrap();
    assert!(count >= 1, "{metrics}");
    env.stop().await;
}

/// With every slot taken (one here: `database.max_connections = 1`, held by
/// the test), a second command waits only for a slot, not for the
/// database, and is answered busy at once; nothing is written.
async fn deliveries_beyond_the_slots_in_flight_are_answered_busy_at_once(transport: Transport) {
    let options = SlackEnvOptions {
        transport,
        edit: |s| s.replace("max_connections = 10", "max_connections = 1"),
        ..Default::default()
    };
    let env = SlackEnv::start_with(options).await;
    let hold = hold_requests(&env.db).await;
    let timed = async |text: &str| {
        let asked = std::time::Instant::now();
        let reply = env.command("U0ALICE", text).await;
        (reply, asked.elapsed())
    };
    let (a, b) =
        tokio::join!(timed("request prod-db-readonly 30m debugging"), timed("request prod-admin 15m debugging"));
    drop(hold);
    for (reply, took) in [&a, &b] {
        assert!(reply.contains("jitbot is busy right now; nothing was changed"), "{reply}");
        assert!(*took < Duration::from_millis(2900), "answered within Slack's 3 seconds: {took:?}");
    }
    let quicker = a.1.min(b.1);
    assert!(
        quicker < jitbot::store::DB_WAIT - Duration::from_millis(300),
        "the command without a slot did not wait for the database: {:?} and {:?}",
        a.1,
        b.1
    );
    assert_eq!(env.request_count().await, 0, "nothing was written");
    env.stop().await;
}

/// Where the test's log subscriber writes.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Each delivery runs in a `slack_delivery` span with its transport and
/// kind, and the id of the request a use case made or acted on. (On a
/// current-thread runtime, so the test's subscriber sees every task.)
async fn the_delivery_span_names_the_request(transport: Transport, label: &str) {
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let env = SlackEnv::start_with(SlackEnvOptions { transport, ..Default::default() }).await;
    let reply = env.command("U0ALICE", "request prod-db-readonly 30m debugging").await;
    assert!(reply.starts_with("Request #1"), "{reply}");
    env.stop().await;
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let acked = text
        .lines()
        .find(|l| l.contains("Slack delivery acknowledged") && l.contains("request_id=1"))
        .unwrap_or_else(|| panic!("no acknowledged delivery naming request 1 in:\n{text}"));
    assert!(acked.contains("slack_delivery{") && acked.contains(label) && acked.contains("command"), "{acked}");
}

/// Runs one probe below in a process of its own: a thread-local subscriber
/// shares tracing's global callsite cache with the hundreds of tests that
/// run beside it here, which can leave the events under test filtered out.
fn in_own_process(probe: &str) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", probe, "--ignored", "--nocapture", "--test-threads=1"])
        .env("CI", std::env::var("CI").unwrap_or_default())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
}

#[test]
fn the_delivery_span_names_the_request_over_http() {
    in_own_process("slack_http::delivery_span_probe_http");
}

#[test]
fn the_delivery_span_names_the_request_over_socket_mode() {
    in_own_process("slack_http::delivery_span_probe_socket_mode");
}

#[tokio::test]
#[ignore = "run in a process of its own by the_delivery_span_names_the_request_over_http"]
async fn delivery_span_probe_http() {
    the_delivery_span_names_the_request(Transport::Http, "http").await;
}

#[tokio::test]
#[ignore = "run in a process of its own by the_delivery_span_names_the_request_over_socket_mode"]
async fn delivery_span_probe_socket_mode() {
    the_delivery_span_names_the_request(Transport::Socket, "socket_mode").await;
}
