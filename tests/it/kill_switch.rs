//! The kill switch: `/jit revoke-all` for administrators behind a
//! confirmation, and `jitbot revoke-all` on the command line, which applies
//! the revocations itself even when no jitbot is serving.

use std::process::Command;
use std::sync::Arc;

use jitbot::domain::RequestId;
use jitbot::service::ServiceError;
use tokio::sync::Barrier;

use crate::slack_http::{buttons, texts};
use crate::support::fake_slack::BOT_TOKEN;
use crate::support::slack::{AUDIT, SlackEnv, eventually, slack_config_text};
use crate::support::slack::{Transport, both_transports};
use crate::support::{Backend, TestApp, both_backends, user};
use crate::workflow::{WORKFLOW_ROLES, start, start_on, until_state};

both_transports!(an_administrator_revokes_everything_after_confirming,);

/// Clicks the button `action_id` whose value is `value`.
async fn click_value(env: &SlackEnv, user_id: &str, action_id: &str, value: &str) -> u16 {
    let mut payload = env.click_payload("T0WORK", user_id, action_id, RequestId::new(1));
    payload["actions"][0]["value"] = value.into();
    env.interact(&payload).await.0
}

/// Two live grants and one pending request.
async fn incident(env: &SlackEnv) {
    env.command("U0ALICE", "request prod-db-readonly 30m debugging").await;
    env.click("U0BOB", "approve", RequestId::new(1)).await;
    env.command("U0DAVE", "request oncall-db 30m paging alert").await;
    until_state(env, RequestId::new(1), "active").await;
    until_state(env, RequestId::new(2), "active").await;
    env.command("U0ALICE", "request slow-db 30m slow query").await;
    eventually("the cards", async || env.card(RequestId::new(3))).await;
}

async fn an_administrator_revokes_everything_after_confirming(transport: Transport) {
    let env = start_on(transport, "").await;
    env.link("U0ADMIN", "admin", &["jit-admins"]).await;
    incident(&env).await;

    let refused = env.command("U0BOB", "revoke-all credentials leaked").await;
    assert!(refused.contains("Only jitbot administrators"), "{refused}");
    let usage = env.command("U0ADMIN", "revoke-all").await;
    assert!(usage.contains("Say why"), "{usage}");

    let confirm = env.command_json("U0ADMIN", "revoke-all credentials leaked, INC-9").await;
    let text = texts(&confirm);
    assert!(text.contains("2 live grants would be revoked and 1 pending request cancelled"), "{text}");
    assert_eq!(buttons(&confirm), vec![("revoke_all".to_owned(), "credentials leaked, INC-9".to_owned())]);
    let button = &confirm["blocks"][1]["elements"][0];
    assert_eq!(button["confirm"]["confirm"]["text"], "Revoke everything", "behind a confirmation dialog");
    assert_eq!(env.hook.calls().iter().filter(|c| c.action == "revoke").count(), 0, "nothing happens before the click");

    // The click is checked again: a non-administrator's click does nothing.
    click_value(&env, "U0BOB", "revoke_all", "credentials leaked, INC-9").await;
    eventually("the refusal", async || {
        env.slack.responses().into_iter().find(|r| texts(r).contains("Only jitbot administrators"))
    })
    .await;
    assert_eq!(env.state(RequestId::new(1)).await, "active");

    assert_eq!(click_value(&env, "U0ADMIN", "revoke_all", "credentials leaked, INC-9").await, 200);
    let done =
        eventually("the answer", async || env.slack.responses().into_iter().find(|r| texts(r).contains("Done:"))).await;
    assert!(texts(&done).contains("2 grant(s) being revoked, 1 pending request(s) cancelled"), "{done}");
    until_state(&env, RequestId::new(1), "revoked").await;
    until_state(&env, RequestId::new(2), "revoked").await;
    assert_eq!(env.state(RequestId::new(3)).await, "cancelled");
    assert_eq!((env.hook.count("revoke", RequestId::new(1)), env.hook.count("revoke", RequestId::new(2))), (1, 1));
    eventually("the announcement", async || {
        env.slack.posts_to(AUDIT).into_iter().find(|m| {
            texts(m).contains(":rotating_light: *All access revoked* by <@U0ADMIN>: credentials leaked, INC-9. 2 grants being revoked, 1 pending request cancelled.")
        })
    })
    .await;
    eventually("the requester's DM", async || {
        env.slack
            .posts_to("U0ALICE")
            .into_iter()
            .find(|m| texts(m).contains("#3 for `slow-db` was cancelled: all access was revoked"))
    })
    .await;
    let card = eventually("the cancelled card", async || {
        env.card(RequestId::new(3)).filter(|c| texts(c).contains("Cancelled"))
    })
    .await;
    assert!(buttons(&card).is_empty());
    let actions: Vec<String> = env.db.audit_rows_for_request(1).await.unwrap().into_iter().map(|r| r.action).collect();
    assert!(actions.contains(&"revoke.requested".to_owned()), "{actions:?}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_kill_switch_works_without_a_running_jitbot() {
    let mut env = start("").await;
    incident(&env).await;
    let (hook, slack) = (env.hook.clone(), env.slack.clone());
    let dir = std::mem::replace(&mut env._dir, tempfile::tempdir().unwrap());
    env.stop().await;

    let db_url = format!("sqlite://{}", dir.path().join("jitbot.db").display());
    let path = dir.path().join("jitbot.toml");
    std::fs::write(&path, format!("{}{WORKFLOW_ROLES}", slack_config_text(&db_url, &hook.url, &slack.api_url())))
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_jitbot"))
        .args(["revoke-all", "--config", path.to_str().unwrap(), "--reason", "laptop stolen"])
        .env("USER", "oncall-sre")
        .env_remove("JITBOT_DATABASE_URL")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("revoking 2 grant(s), cancelled 1 pending request(s)"), "{stdout}");
    assert!(stdout.contains("all access revoked"), "{stdout}");
    assert_eq!((hook.count("revoke", RequestId::new(1)), hook.count("revoke", RequestId::new(2))), (1, 1));
    let announced = slack.posts_to(AUDIT).into_iter().any(|m| {
        texts(&m).contains("*All access revoked* by cli:oncall-sre: laptop stolen. 2 grants being revoked, 1 pending request cancelled.")
    });
    assert!(announced, "{:?}", slack.posts_to(AUDIT));
    assert_eq!(slack.violations(), Vec::<String>::new());
    assert!(!stderr.contains(BOT_TOKEN), "secrets never reach the output");

    // The switch stays engaged until an operator releases it.
    let out = Command::new(env!("CARGO_BIN_EXE_jitbot"))
        .args(["unfreeze", "--config", path.to_str().unwrap(), "--reason", "laptop wiped"])
        .env("USER", "oncall-sre")
        .env_remove("JITBOT_DATABASE_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("kill switch released (engaged by cli:oncall-sre: laptop stolen)"), "{stdout}");
    let announced = slack
        .posts_to(AUDIT)
        .into_iter()
        .any(|m| texts(&m).contains("*Kill switch released* by cli:oncall-sre: laptop wiped"));
    assert!(announced, "{:?}", slack.posts_to(AUDIT));

    // A reason is required.
    let out = Command::new(env!("CARGO_BIN_EXE_jitbot"))
        .args(["revoke-all", "--config", path.to_str().unwrap(), "--reason", " "])
        .env_remove("JITBOT_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("say why you are revoking all access"));
}

/// Approvals racing the kill switch: every request that was approved
/// before it ends up revoked, none after it is granted, and nothing is
/// left holding access; then an operator releases it and approvals grant
/// again.
async fn the_kill_switch_misses_no_approval_made_while_it_runs(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    t.link("U0BOB", "bob", &["sre-leads"]).await;
    let mut ids = Vec::new();
    for i in 0..24 {
        let who = format!("U0REQ{i}");
        t.link(&who, &format!("req{i}"), &["engineering"]).await;
        ids.push(t.request(&who, "prod-db-readonly", None).await.unwrap().id);
    }
    let barrier = Arc::new(Barrier::new(ids.len() + 1));
    let mut approvals = Vec::new();
    for &id in &ids {
        let (service, barrier, now) = (t.service().clone(), barrier.clone(), t.now());
        approvals.push(tokio::spawn(async move {
            barrier.wait().await;
            service.approve(id, &user("U0BOB"), now).await
        }));
    }
    let (service, now) = (t.service().clone(), t.now());
    let kill = tokio::spawn(async move {
        barrier.wait().await;
        service.revoke_all_as_operator("oncall", "credentials leaked", now).await
    });
    let mut refused = 0;
    for a in approvals {
        match a.await.unwrap() {
            Ok(_) => {}
            Err(ServiceError::KillSwitchEngaged { .. }) | Err(ServiceError::AlreadyDecided { .. }) => refused += 1,
            Err(e) => panic!("unexpected refusal: {e:?}"),
        }
    }
    let done = kill.await.unwrap().unwrap();
    t.drain().await;
    for &id in &ids {
        let state = t.state(id).await;
        assert!(
            ["revoked", "cancelled", "pending"].contains(&state.as_str()),
            "request {id} is {state} after revoke-all (refused approvals: {refused}, {done:?})"
        );
        // A grant the kill switch overtook never reaches the target, but its
        // revocation is still sent (harmless, and safe when a grant call's
        // fate is unknown): what must hold is that no grant outlives it.
        let (granted, revoked) = (t.hook.count("grant", id), t.hook.count("revoke", id));
        assert!(
            granted <= revoked && revoked <= 1,
            "request {id}: every grant that reached the target is revoked (grants {granted}, revocations {revoked})"
        );
    }

    // While engaged, nothing is granted: not by approvers, not by break-glass or auto-approval.
    let late = t.request("U0ALICE", "prod-db-readonly", None).await;
    let late = match late {
        Ok(r) => r,
        Err(e) => panic!("asking is still allowed: {e:?}"),
    };
    let refusal = t.service().approve(late.id, &user("U0BOB"), t.now()).await.unwrap_err();
    assert!(matches!(refusal, ServiceError::KillSwitchEngaged { .. }), "{refusal:?}");
    assert!(refusal.to_string().contains("unfreeze"), "{refusal}");
    assert_eq!(t.state(late.id).await, "pending", "a refused approval changes nothing");

    // An operator releases it (audited), and approvals grant again.
    let was = t.service().release_kill_switch_as_operator("oncall", "keys rotated", t.now()).await.unwrap();
    assert_eq!(was.map(|w| w.reason), Some("credentials leaked".to_owned()));
    assert!(t.service().release_kill_switch_as_operator("oncall", "again", t.now()).await.unwrap().is_none());
    t.service().approve(late.id, &user("U0BOB"), t.now()).await.unwrap();
    t.drain().await;
    assert_eq!(t.state(late.id).await, "active");
    let released = t.number("SELECT COUNT(*) FROM audit_events WHERE action = 'kill_switch.released'").await;
    assert_eq!(released, 1);
}

both_backends!(the_kill_switch_misses_no_approval_made_while_it_runs);
