//! SCIM 2.0: conformance (scim2-tester), bearer tokens, and the effects of
//! deprovisioning on live grants.

use std::time::{Duration, Instant};

use jitbot::domain::RequestId;
use serde_json::{Value, json};

use crate::slack_support::{AUDIT, SlackEnv, SlackEnvOptions, eventually};
use crate::support::user;

const TOKEN: &str = "scim-token-0123456789abcdef0123456789abcdef";
const OLD_TOKEN: &str = "scim-old-token-0123456789abcdef0123456789ab";

async fn scim_env() -> SlackEnv {
    SlackEnv::start_with(SlackEnvOptions {
        extra_toml: format!("\n[scim]\ntoken = \"{TOKEN}\"\nprevious_token = \"{OLD_TOKEN}\"\n"),
        ..Default::default()
    })
    .await
}

async fn scim(env: &SlackEnv, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, format!("{}/scim/v2{path}", env.base)).bearer_auth(TOKEN);
    if let Some(b) = body {
        req = req.header("content-type", "application/scim+json").body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn patch(ops: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
}

/// Alice holds an active prod-db-readonly grant.
async fn alice_with_access(env: &SlackEnv) -> RequestId {
    env.command("U0ALICE", "request prod-db-readonly debugging").await;
    let id = RequestId::new(1);
    env.click("U0BOB", "approve", id).await;
    eventually("the grant", || (env.hook.count("grant", id) == 1).then_some(())).await;
    eventually("active", || {
        let db = env.db.clone();
        let s = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async move { db.request(id).await.unwrap().unwrap().state })
        });
        (s.as_str() == "active").then_some(())
    })
    .await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scim_endpoint_passes_the_scim2_tester_conformance_suite() {
    let Some(python) = crate::slack_contract::python_with(&["scim2_tester", "scim2_cli"]) else { return };
    let env = scim_env().await;
    let cli = python.parent().unwrap().join("scim2");
    let out = tokio::process::Command::new(&cli)
        .args(["--url", &format!("{}/scim/v2", env.base), "test"])
        .env("SCIM_CLI_HEADERS", format!("Authorization: Bearer {TOKEN}"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let failures: Vec<&str> = stdout.lines().filter(|l| l.starts_with("ERROR") || l.starts_with("CRITICAL")).collect();
    assert!(
        out.status.success() && failures.is_empty(),
        "{failures:?}\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.lines().filter(|l| l.starts_with("SUCCESS")).count() > 50, "{stdout}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_configured_bearer_tokens_are_accepted() {
    let env = scim_env().await;
    let url = format!("{}/scim/v2/Users", env.base);
    let http = reqwest::Client::new();
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    let wrong = http.get(&url).bearer_auth("scim-token-0123456789abcdef0123456789abcdeX").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(wrong.headers()["content-type"], "application/scim+json");
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error");
    assert_eq!(http.get(&url).bearer_auth(TOKEN).send().await.unwrap().status(), 200);
    assert_eq!(http.get(&url).bearer_auth(OLD_TOKEN).send().await.unwrap().status(), 200, "rotation");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_filter_paginate_and_report_errors_the_scim_way() {
    let env = scim_env().await;
    for (name, ext) in [("alice@example.com", "alice"), ("bob@example.com", "bob"), ("carol@example.com", "carol")] {
        let (status, _) = scim(
            &env,
            reqwest::Method::POST,
            "/Users",
            Some(json!({"userName": name, "externalId": ext, "active": true})),
        )
        .await;
        assert_eq!(status, 201);
    }
    let (status, dup) =
        scim(&env, reqwest::Method::POST, "/Users", Some(json!({"userName": "ALICE@example.com"}))).await;
    assert_eq!((status, dup["scimType"].as_str()), (409, Some("uniqueness")));
    let (_, found) =
        scim(&env, reqwest::Method::GET, "/Users?filter=userName%20eq%20%22Bob@Example.com%22", None).await;
    assert_eq!(found["totalResults"], 1);
    assert_eq!(found["Resources"][0]["externalId"], "bob");
    let (_, found) = scim(&env, reqwest::Method::GET, "/Users?filter=externalId%20eq%20%22carol%22", None).await;
    assert_eq!(found["Resources"][0]["userName"], "carol@example.com");
    let (_, page) = scim(&env, reqwest::Method::GET, "/Users?startIndex=2&count=1", None).await;
    assert_eq!(
        (page["totalResults"].as_i64(), page["itemsPerPage"].as_i64(), page["startIndex"].as_i64()),
        (Some(3), Some(1), Some(2))
    );
    let (status, bad) = scim(&env, reqwest::Method::GET, "/Users?filter=userName%20resembles%20%22x%22", None).await;
    assert_eq!((status, bad["scimType"].as_str()), (400, Some("invalidFilter")));
    let (status, _) = scim(&env, reqwest::Method::GET, "/Users/no-such-id", None).await;
    assert_eq!(status, 404);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivating_a_user_ends_their_access_at_once() {
    let env = scim_env().await;
    let id = alice_with_access(&env).await;
    // A pending request of hers is cancelled too.
    env.command("U0ALICE", "request prod-admin needs two approvers").await;
    let (_, created) = scim(
        &env,
        reqwest::Method::POST,
        "/Users",
        Some(json!({"userName": "alice@example.com", "externalId": "alice", "active": true})),
    )
    .await;
    let scim_id = created["id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let (status, body) = scim(
        &env,
        reqwest::Method::PATCH,
        &format!("/Users/{scim_id}"),
        Some(patch(json!([{"op": "Replace", "path": "active", "value": "False"}]))),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["active"], false);
    eventually("the revocation", || (env.hook.count("revoke", id) == 1).then_some(())).await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(2), "access must end within 2 s, took {elapsed:?}");
    eprintln!("SCIM deactivation to revocation: {elapsed:?}");

    eventually("the card to say why", || {
        env.card(id).filter(|c| c.to_string().contains("deactivated at the identity provider"))
    })
    .await;
    assert_eq!(env.state(RequestId::new(2)).await, "cancelled");
    assert!(env.db.link(&user("U0ALICE")).await.unwrap().is_none(), "the link is removed");
    let dm = eventually("the DM", || {
        env.slack
            .posts_to("U0ALICE")
            .into_iter()
            .find(|m| m["text"].as_str().unwrap_or("").contains("access was ended"))
    })
    .await;
    assert!(dm["text"].as_str().unwrap().contains("deactivated at the identity provider"));
    eventually("the audit channel line", || {
        env.slack.posts_to(AUDIT).into_iter().find(|m| m["text"].as_str().unwrap_or("").contains("revoked"))
    })
    .await;
    let actions: Vec<String> = env.db.audit_rows_after(0, 1000).await.unwrap().into_iter().map(|r| r.actor).collect();
    assert!(actions.iter().any(|a| a == "scim"), "SCIM's changes are audited as such");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_user_ends_their_access_too() {
    let env = scim_env().await;
    let id = alice_with_access(&env).await;
    let (_, created) =
        scim(&env, reqwest::Method::POST, "/Users", Some(json!({"userName": "someone", "externalId": "alice"}))).await;
    let (status, _) =
        scim(&env, reqwest::Method::DELETE, &format!("/Users/{}", created["id"].as_str().unwrap()), None).await;
    assert_eq!(status, 204);
    eventually("the revocation", || (env.hook.count("revoke", id) == 1).then_some(())).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_removal_revokes_what_needed_the_group_and_additions_grant_nothing() {
    let env = scim_env().await;
    let id = alice_with_access(&env).await;
    let (_, alice) = scim(
        &env,
        reqwest::Method::POST,
        "/Users",
        Some(json!({"userName": "alice@example.com", "externalId": "alice"})),
    )
    .await;
    let (_, mallory) = scim(
        &env,
        reqwest::Method::POST,
        "/Users",
        Some(json!({"userName": "mallory@example.com", "externalId": "mallory"})),
    )
    .await;
    let (_, engineering) = scim(
        &env,
        reqwest::Method::POST,
        "/Groups",
        Some(json!({"displayName": "engineering", "members": [{"value": alice["id"]}]})),
    )
    .await;
    let (_, leads) =
        scim(&env, reqwest::Method::POST, "/Groups", Some(json!({"displayName": "sre-leads", "members": []}))).await;

    // Adding Mallory to the approvers' group at the IdP changes nothing in jitbot.
    let (status, _) = scim(
        &env,
        reqwest::Method::PATCH,
        &format!("/Groups/{}", leads["id"].as_str().unwrap()),
        Some(patch(json!([{"op": "add", "path": "members", "value": [{"value": mallory["id"]}]}]))),
    )
    .await;
    assert_eq!(status, 200);
    let groups = env.db.link(&user("U0MALLORY")).await.unwrap().unwrap().groups().unwrap();
    assert_eq!(groups.into_iter().collect::<Vec<_>>(), vec!["sales".to_owned()]);

    let (status, _) = scim(
        &env,
        reqwest::Method::PATCH,
        &format!("/Groups/{}", engineering["id"].as_str().unwrap()),
        Some(patch(
            json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", alice["id"].as_str().unwrap())}]),
        )),
    )
    .await;
    assert_eq!(status, 200);
    eventually("the revocation", || (env.hook.count("revoke", id) == 1).then_some(())).await;
    let groups = env.db.link(&user("U0ALICE")).await.unwrap().unwrap().groups().unwrap();
    assert!(groups.is_empty(), "the removed group is gone from the link: {groups:?}");
    eventually("the card to say why", || {
        env.card(id).filter(|c| c.to_string().contains("removed from engineering at the identity provider"))
    })
    .await;
    // And without the group, a new request is refused.
    let again = env.command("U0ALICE", "request prod-db-readonly debugging").await;
    assert!(again.contains("may not request prod-db-readonly"), "{again}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivation_removes_real_database_access_within_two_seconds() {
    let Some(pg) = crate::pg_support::PgTarget::create().await else { return };
    let env = SlackEnv::start_with(SlackEnvOptions {
        extra_toml: format!("\n[scim]\ntoken = \"{TOKEN}\"\n{}", crate::providers_pg::extra(&pg, &pg.admin_url())),
        ..Default::default()
    })
    .await;
    let login = format!("{}alice", pg.prefix);
    assert!(!pg.can_read(&login).await, "no access before the grant");
    env.command("U0ALICE", "request db-ro investigating").await;
    let id = RequestId::new(1);
    env.click("U0BOB", "approve", id).await;
    assert!(pg.becomes_readable_by(&login).await, "the grant reached the database");

    let (_, created) = scim(
        &env,
        reqwest::Method::POST,
        "/Users",
        Some(json!({"userName": "alice@example.com", "externalId": "alice"})),
    )
    .await;
    let started = Instant::now();
    let (status, _) = scim(
        &env,
        reqwest::Method::PATCH,
        &format!("/Users/{}", created["id"].as_str().unwrap()),
        Some(patch(json!([{"op": "replace", "value": {"active": false}}]))),
    )
    .await;
    assert_eq!(status, 200);
    while pg.can_read(&login).await {
        assert!(started.elapsed() < Duration::from_secs(2), "database access outlived deactivation by 2 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("SCIM deactivation to database access gone: {:?}", started.elapsed());
    // The card follows through notices; if the grant was still settling when
    // the deactivation came, the revocation waited a few seconds of domain
    // time for it: let that time pass.
    let mut card_says_why = false;
    for _ in 0..100 {
        if env.card(id).is_some_and(|c| c.to_string().contains("deactivated at the identity provider")) {
            card_says_why = true;
            break;
        }
        env.clock.advance(Duration::from_secs(6));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(card_says_why, "the card says why: {:?}", env.card(id));
    env.stop().await;
}
