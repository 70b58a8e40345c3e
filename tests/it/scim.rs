//! SCIM 2.0: conformance (scim2-tester), bearer tokens, and the effects of
//! deprovisioning on live grants.

use std::time::{Duration, Instant};

use jitbot::clock::Clock;
use jitbot::domain::RequestId;
use serde_json::{Value, json};

use crate::support::slack::{AUDIT, SlackEnv, SlackEnvOptions, eventually};
use crate::support::{Backend, both_backends, user};

pub(crate) const TOKEN: &str = "scim-token-0123456789abcdef0123456789abcdef";
const OLD_TOKEN: &str = "scim-old-token-0123456789abcdef0123456789ab";

async fn scim_env() -> SlackEnv {
    scim_env_on(Backend::Sqlite).await
}

async fn scim_env_on(backend: Backend) -> SlackEnv {
    SlackEnv::start_with(SlackEnvOptions {
        extra_toml: format!("\n[scim]\ntoken = \"{TOKEN}\"\nprevious_token = \"{OLD_TOKEN}\"\n"),
        backend,
        ..Default::default()
    })
    .await
}

pub(crate) async fn scim(env: &SlackEnv, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, format!("{}/scim/v2{path}", env.base)).bearer_auth(TOKEN);
    if let Some(b) = body {
        req = req.header("content-type", "application/scim+json").body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub(crate) fn patch(ops: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
}

/// Alice holds an active prod-db-readonly grant.
async fn alice_with_access(env: &SlackEnv) -> RequestId {
    env.command("U0ALICE", "request prod-db-readonly debugging").await;
    let id = RequestId::new(1);
    env.click("U0BOB", "approve", id).await;
    eventually("the grant", async || (env.hook.count("grant", id) == 1).then_some(())).await;
    eventually("active", async || {
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
    eventually("the revocation", async || (env.hook.count("revoke", id) == 1).then_some(())).await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(2), "access must end within 2 s, took {elapsed:?}");
    eprintln!("SCIM deactivation to revocation: {elapsed:?}");

    eventually("the card to say why", async || {
        env.card(id).filter(|c| c.to_string().contains("deactivated at the identity provider"))
    })
    .await;
    assert_eq!(env.state(RequestId::new(2)).await, "cancelled");
    assert!(env.db.link(&user("U0ALICE")).await.unwrap().is_none(), "the link is removed");
    let dm = eventually("the DM", async || {
        env.slack
            .posts_to("U0ALICE")
            .into_iter()
            .find(|m| m["text"].as_str().unwrap_or("").contains("access was ended"))
    })
    .await;
    assert!(dm["text"].as_str().unwrap().contains("deactivated at the identity provider"));
    eventually("the audit channel line", async || {
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
    eventually("the revocation", async || (env.hook.count("revoke", id) == 1).then_some(())).await;
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
    eventually("the revocation", async || (env.hook.count("revoke", id) == 1).then_some(())).await;
    let groups = env.db.link(&user("U0ALICE")).await.unwrap().unwrap().groups().unwrap();
    assert!(groups.is_empty(), "the removed group is gone from the link: {groups:?}");
    eventually("the card to say why", async || {
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
    let Some(pg) = crate::support::pg::PgTarget::create().await else { return };
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

/// Runs one statement on the test's database, on either backend.
async fn execute(env: &SlackEnv, sql: &'static str) {
    crate::support::exec(&env.db, sql).await;
}

/// Audit events of one action, as JSON details.
async fn audited(env: &SlackEnv, action: &str) -> Vec<Value> {
    env.db
        .audit_rows_after(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.action == action)
        .map(|r| serde_json::from_str(&r.detail).unwrap())
        .collect()
}

async fn unlinking_says_what_ends_and_confirming_revokes_it(backend: Backend) {
    let env = scim_env_on(backend).await;
    let id = alice_with_access(&env).await;
    env.command("U0ALICE", "request prod-admin needs two approvers").await;

    let asked = env.command("U0ALICE", "unlink").await;
    assert!(asked.contains("#1 `prod-db-readonly`") && asked.contains("#2 `prod-admin`"), "{asked}");
    assert!(asked.contains("/jit unlink confirm"), "{asked}");
    assert!(env.db.link(&user("U0ALICE")).await.unwrap().is_some(), "nothing changes before the confirmation");
    assert_eq!(env.state(id).await, "active");

    let done = env.command("U0ALICE", "unlink confirm").await;
    assert!(done.contains("link was removed") && done.contains("#1 `prod-db-readonly`"), "{done}");
    eventually("the revocation", async || (env.hook.count("revoke", id) == 1).then_some(())).await;
    assert_eq!(env.state(RequestId::new(2)).await, "cancelled");
    assert!(env.db.link(&user("U0ALICE")).await.unwrap().is_none());
    let removed = audited(&env, "link.removed").await;
    assert_eq!(removed.last().unwrap()["ended"], json!([1, 2]), "{removed:?}");

    // Without live access there is nothing to confirm.
    env.link("U0ALICE", "alice", &["engineering"]).await;
    let plain = env.command("U0ALICE", "unlink").await;
    assert!(plain.starts_with("Your link was removed."), "{plain}");
    env.stop().await;
}

async fn jitbot_link_remove_ends_the_access_and_prints_it(backend: Backend) {
    // The command line reads the wall clock: the app's manual clock starts there.
    let env = SlackEnv::start_with(SlackEnvOptions {
        backend,
        start: jitbot::clock::SystemClock.now(),
        ..Default::default()
    })
    .await;
    let id = alice_with_access(&env).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("jitbot.toml");
    std::fs::write(&cfg, &env.config_text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jitbot"))
        .args(["link", "remove", "--config", cfg.to_str().unwrap(), "--team", "T0WORK", "--user", "U0ALICE"])
        .env_remove("JITBOT_DATABASE_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("removed the link of T0WORK/U0ALICE"), "{stdout}");
    assert!(stdout.contains("ended request #1 (prod-db-readonly)"), "{stdout}");
    assert_eq!(env.state(id).await, "revoking");
    // The serving jitbot runs the revocation (woken at once on PostgreSQL,
    // by its next look at the queue on SQLite: move its clock along).
    for _ in 0..200 {
        if env.hook.count("revoke", id) == 1 {
            break;
        }
        env.clock.advance(Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(env.hook.count("revoke", id), 1, "the grant was revoked");
    let dm = eventually("the DM", async || {
        env.slack.posts_to("U0ALICE").into_iter().find(|m| m["text"].as_str().unwrap_or("").contains("link ended"))
    })
    .await;
    assert!(dm["text"].as_str().unwrap().contains("your access with it"), "{dm}");
    env.stop().await;
}

async fn scim_deactivation_finds_access_by_stored_identity_and_blocks_relinking(backend: Backend) {
    let env = scim_env_on(backend).await;
    let id = alice_with_access(&env).await;
    env.command("U0ALICE", "request prod-admin needs two approvers").await;
    // Her link is gone but her access is not (as a link removal left it
    // before removals ended access).
    execute(&env, "DELETE FROM identity_links WHERE user_id = 'U0ALICE'").await;

    // The IdP knows her by email only, in another case.
    let (_, created) =
        scim(&env, reqwest::Method::POST, "/Users", Some(json!({"userName": "Alice@Example.COM", "active": true})))
            .await;
    let scim_id = created["id"].as_str().unwrap().to_owned();
    let (status, _) = scim(
        &env,
        reqwest::Method::PATCH,
        &format!("/Users/{scim_id}"),
        Some(patch(json!([{"op": "replace", "path": "active", "value": false}]))),
    )
    .await;
    assert_eq!(status, 200);
    eventually("the revocation", async || (env.hook.count("revoke", id) == 1).then_some(())).await;
    assert_eq!(env.state(RequestId::new(2)).await, "cancelled");

    // Linking again is refused until SCIM reactivates her.
    let alice = jitbot::domain::Identity {
        slack: user("U0ALICE"),
        issuer: "https://idp.example".into(),
        subject: "alice".into(),
        email: "alice@example.com".into(),
        groups: ["engineering".to_owned()].into(),
        claims: Default::default(),
    };
    let actor = jitbot::audit::Actor::Cli("test".into());
    let refused = env.service.add_link(&alice, &actor, env.clock.now()).await.unwrap_err();
    assert!(refused.to_string().contains("cannot be linked until the identity provider reactivates it"), "{refused}");
    assert!(env.db.link(&user("U0ALICE")).await.unwrap().is_none());

    let (status, _) = scim(
        &env,
        reqwest::Method::PATCH,
        &format!("/Users/{scim_id}"),
        Some(patch(json!([{"op": "replace", "path": "active", "value": true}]))),
    )
    .await;
    assert_eq!(status, 200);
    env.service.add_link(&alice, &actor, env.clock.now()).await.unwrap();
    assert_eq!(audited(&env, "link.reactivated").await.len(), 1);
    env.stop().await;
}

async fn a_deleted_user_is_found_by_subject_and_cannot_link_until_recreated(backend: Backend) {
    let env = scim_env_on(backend).await;
    let id = alice_with_access(&env).await;
    execute(&env, "DELETE FROM identity_links WHERE user_id = 'U0ALICE'").await;
    let (_, created) =
        scim(&env, reqwest::Method::POST, "/Users", Some(json!({"userName": "someone", "externalId": "alice"}))).await;
    let (status, _) =
        scim(&env, reqwest::Method::DELETE, &format!("/Users/{}", created["id"].as_str().unwrap()), None).await;
    assert_eq!(status, 204);
    eventually("the revocation", async || (env.hook.count("revoke", id) == 1).then_some(())).await;
    let alice = jitbot::domain::Identity {
        slack: user("U0ALICE2"),
        issuer: "https://idp.example".into(),
        subject: "alice".into(),
        email: "a@example.com".into(),
        groups: Default::default(),
        claims: Default::default(),
    };
    let actor = jitbot::audit::Actor::Cli("test".into());
    let refused = env.service.add_link(&alice, &actor, env.clock.now()).await.unwrap_err();
    assert!(refused.to_string().contains("deleted at the identity provider"), "{refused}");
    let (status, _) =
        scim(&env, reqwest::Method::POST, "/Users", Some(json!({"userName": "someone", "externalId": "alice"}))).await;
    assert_eq!(status, 201);
    env.service.add_link(&alice, &actor, env.clock.now()).await.unwrap();
    env.stop().await;
}

async fn group_removal_matches_the_object_ids_in_the_groups_claim(backend: Backend) {
    // Entra ID: the groups claim (and so the link and the roles) holds the
    // group's object id, which the SCIM group carries as its externalId;
    // its displayName is a human name.
    let env = scim_env_on(backend).await;
    let id = alice_with_access(&env).await;
    let (_, alice) = scim(
        &env,
        reqwest::Method::POST,
        "/Users",
        Some(json!({"userName": "alice@example.com", "externalId": "alice"})),
    )
    .await;
    let (_, group) = scim(
        &env,
        reqwest::Method::POST,
        "/Groups",
        Some(json!({"displayName": "Engineering (all)", "externalId": "engineering", "members": [{"value": alice["id"]}]})),
    )
    .await;
    let (status, _) = scim(
        &env,
        reqwest::Method::PATCH,
        &format!("/Groups/{}", group["id"].as_str().unwrap()),
        Some(patch(json!([{"op": "remove", "path": "members"}]))),
    )
    .await;
    assert_eq!(status, 200);
    eventually("the revocation", async || (env.hook.count("revoke", id) == 1).then_some(())).await;
    let groups = env.db.link(&user("U0ALICE")).await.unwrap().unwrap().groups().unwrap();
    assert!(groups.is_empty(), "{groups:?}");
    env.stop().await;
}

async fn eq_filters_find_their_resources_and_large_bodies_get_a_scim_413(backend: Backend) {
    let env = scim_env_on(backend).await;
    for (name, ext) in [("alice@example.com", "alice"), ("bob@example.com", "bob")] {
        let (status, _) =
            scim(&env, reqwest::Method::POST, "/Users", Some(json!({"userName": name, "externalId": ext}))).await;
        assert_eq!(status, 201);
    }
    let (_, found) =
        scim(&env, reqwest::Method::GET, "/Users?filter=userName%20eq%20%22BOB@example.com%22", None).await;
    assert_eq!((found["totalResults"].as_i64(), found["Resources"][0]["externalId"].as_str()), (Some(1), Some("bob")));
    let (_, found) = scim(
        &env,
        reqwest::Method::GET,
        "/Users?filter=externalId%20eq%20%22alice%22%20and%20userName%20sw%20%22ali%22",
        None,
    )
    .await;
    assert_eq!(found["totalResults"], 1);
    let (_, none) = scim(&env, reqwest::Method::GET, "/Users?filter=externalId%20eq%20%22ALICE%22", None).await;
    assert_eq!(none["totalResults"], 0, "externalId is case-exact");

    // 1.5 MiB: more than the SCIM routes read.
    let big = json!({"userName": "carol@example.com", "displayName": "x".repeat(1536 * 1024)});
    let (status, body) = scim(&env, reqwest::Method::POST, "/Users", Some(big)).await;
    assert_eq!(status, 413, "{}", body["detail"]);
    assert_eq!(body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error");
    assert_eq!(body["status"], "413");
    let (_, carol) =
        scim(&env, reqwest::Method::GET, "/Users?filter=userName%20eq%20%22carol@example.com%22", None).await;
    assert_eq!(carol["totalResults"], 0, "nothing was stored");
    env.stop().await;
}

both_backends!(
    unlinking_says_what_ends_and_confirming_revokes_it,
    jitbot_link_remove_ends_the_access_and_prints_it,
    scim_deactivation_finds_access_by_stored_identity_and_blocks_relinking,
    a_deleted_user_is_found_by_subject_and_cannot_link_until_recreated,
    group_removal_matches_the_object_ids_in_the_groups_claim,
    eq_filters_find_their_resources_and_large_bodies_get_a_scim_413,
);
