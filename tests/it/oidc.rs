//! Linking through a real OpenID provider: the full browser flow, every
//! refusal, groups from userinfo, refresh, and step-up.

use std::time::Duration;

use crate::support::idp::{Browser, OidcEnv, OidcOptions, idp_available};
use crate::support::slack::eventually;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linking_signs_in_at_the_idp_and_stores_verified_groups() {
    if !idp_available() {
        return;
    }
    let o = OidcEnv::start(OidcOptions::default()).await;
    let answer = o.env.command_json("U0ALICE", "link").await;
    let url = OidcEnv::link_url(&answer);
    assert!(url.starts_with(&format!("{}/oidc/link/", o.public_url)), "{url}");
    assert!(answer["text"].as_str().unwrap().contains("Link your Slack account to Test IdP"));

    // A link scanner's GET uses up nothing.
    let scanner = Browser::new().get(&url).await;
    assert_eq!(scanner.status, 200);
    assert!(scanner.body.contains("Link Slack user <strong>@alice</strong> to Test IdP?"), "{}", scanner.body);

    let page = o.complete(&url, "alice").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("Linked as alice@example.com — groups: engineering. You can close this tab."),
        "{}",
        page.body
    );

    let link = o.env.db.link(&crate::support::user("U0ALICE")).await.unwrap().unwrap();
    assert_eq!(link.source, "oidc");
    assert_eq!(link.issuer, o.idp.issuer);
    assert_eq!(link.subject, "alice");
    assert!(link.auth_time.is_some());
    let dm = eventually("the link DM", async || o.env.slack.posts_to("U0ALICE").first().cloned()).await;
    assert_eq!(dm["text"], "Linked as alice@example.com — groups: engineering.");

    let whoami = o.env.command("U0ALICE", "whoami").await;
    assert!(whoami.contains("alice@example.com") && whoami.contains("Groups: engineering"), "{whoami}");

    // The token was single-use.
    let again = Browser::new().get(&url).await;
    assert_eq!(again.status, 410);
    assert!(again.body.contains("already used"));

    assert_eq!(o.env.command("U0ALICE", "unlink").await, "Your link was removed. Run `/jit link` to link again.");
    assert!(o.env.db.link(&crate::support::user("U0ALICE")).await.unwrap().is_none());
    o.env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_only_in_userinfo_are_read_from_userinfo() {
    if !idp_available() {
        return;
    }
    let o = OidcEnv::start(OidcOptions { groups_in_id_token: false, ..Default::default() }).await;
    let page = o.link("U0BOB", "bob").await;
    assert!(page.body.contains("Linked as bob@example.com — groups: engineering, sre-leads."), "{}", page.body);
    o.env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_that_does_not_match_the_slack_profile_is_refused() {
    if !idp_available() {
        return;
    }
    let o = OidcEnv::start(OidcOptions::default()).await;
    // Alice passes her link on to Mallory, who signs in with her own account.
    let answer = o.env.command_json("U0ALICE", "link").await;
    let page = o.complete(&OidcEnv::link_url(&answer), "mallory").await;
    assert_eq!(page.status, 403);
    assert!(
        page.body.contains("You signed in as mallory@example.com, but your Slack profile email is alice@example.com"),
        "{}",
        page.body
    );
    assert!(o.env.db.link(&crate::support::user("U0ALICE")).await.unwrap().is_none(), "nothing was linked");

    // An IdP that has not verified the email is refused too.
    o.idp.set_email_verified("alice", false);
    let page = o.complete(&OidcEnv::link_url(&answer), "alice").await;
    assert_eq!(page.status, 400);
    assert!(page.body.contains("has not verified the email alice@example.com"), "{}", page.body);
    assert!(o.env.db.link(&crate::support::user("U0ALICE")).await.unwrap().is_none());
    o.env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_stolen_or_stale_sign_ins_get_error_pages_and_change_nothing() {
    if !idp_available() {
        return;
    }
    let o = OidcEnv::start(OidcOptions::default()).await;
    let callback = format!("{}/oidc/callback", o.public_url);
    let stop_at_callback = |next: &str| next.contains("/oidc/callback");

    // state missing, unknown.
    let page = Browser::new().get(&format!("{callback}?code=abc")).await;
    assert_eq!(page.status, 400);
    assert!(page.body.contains("has no state"));
    let page = Browser::new().get(&format!("{callback}?code=abc&state=forged")).await;
    assert!(page.body.contains("unknown or was already completed (state)"), "{}", page.body);

    // Started in one browser, finished in another (no binding cookie).
    let answer = o.env.command_json("U0ALICE", "link").await;
    let url = OidcEnv::link_url(&answer);
    let victim = Browser::new();
    let at_idp = victim.open_link(&url).await;
    let back = victim.sign_in(&at_idp.url, "alice", &stop_at_callback).await;
    assert!(back.url.starts_with(&callback), "{back:?}");
    let page = Browser::new().get(&back.url).await;
    assert!(page.body.contains("started in another browser"), "{}", page.body);
    // The state is spent even so: the rightful browser cannot replay it either.
    let page = victim.get(&back.url).await;
    assert!(page.body.contains("already completed (state)"), "{}", page.body);
    // ... but the link token itself is still good for a fresh attempt.
    let page = o.complete(&url, "alice").await;
    assert!(page.body.contains("Linked as alice@example.com"), "{}", page.body);
    // A replayed callback of a finished sign-in is refused.
    o.env.command("U0ALICE", "unlink").await;

    // A sign-in form posted from another site (login CSRF) is refused.
    let answer = o.env.command_json("U0CAROL", "link").await;
    let page = Browser::new().get(&OidcEnv::link_url(&answer)).await;
    let token =
        regex::Regex::new(r#"name="token" value="([^"]+)""#).unwrap().captures(&page.body).unwrap()[1].to_owned();
    let resp = reqwest::Client::new()
        .post(format!("{}/oidc/start", o.public_url))
        .header("origin", "https://evil.example")
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    // Nonce and PKCE verifier tampered with between start and callback.
    for (column, expected) in [("nonce", "nonce mismatch"), ("pkce_verifier", "refused the sign-in (invalid_grant)")] {
        let answer = o.env.command_json("U0BOB", "link").await;
        let browser = Browser::new();
        let at_idp = browser.open_link(&OidcEnv::link_url(&answer)).await;
        let jitbot::store::Pool::Sqlite(pool) = o.env.db.pool() else { panic!() };
        let sql = format!(
            "UPDATE oidc_logins SET {column} = 'tampered-value-0123456789012345678901234567890123' WHERE used_at IS NULL"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pool).await.unwrap();
        let page = browser.sign_in(&at_idp.url, "bob", &|_| false).await;
        assert_eq!(page.status, 400, "{column}: {}", page.body);
        assert!(page.body.contains(expected), "{column}: {}", page.body);
        assert!(o.env.db.link(&crate::support::user("U0BOB")).await.unwrap().is_none());
    }

    // A link older than 10 minutes.
    let answer = o.env.command_json("U0CAROL", "link").await;
    o.advance(Duration::from_secs(601)).await;
    let page = Browser::new().get(&OidcEnv::link_url(&answer)).await;
    assert_eq!(page.status, 410);
    assert!(page.body.contains("has expired"));
    o.env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_tokens_for_another_audience_or_expired_are_refused() {
    if !idp_available() {
        return;
    }
    let o = OidcEnv::start(OidcOptions { id_token_ttl_secs: 60, ..Default::default() }).await;
    let config = jitbot::config::Config::parse(
        std::path::Path::new("t.toml"),
        &format!(
            "{}\n[idp]\nissuer = \"{}\"\nclient_id = \"jitbot\"\nclient_secret = \"x\"\n",
            crate::support::slack::slack_config_text(
                "sqlite://unused.db",
                "http://127.0.0.1:9/h",
                "http://127.0.0.1:9/api"
            ),
            o.idp.issuer
        ),
    )
    .unwrap();
    let clock = std::sync::Arc::new(o.env.clock.clone());
    let oidc = jitbot::idp::Oidc::new(config.idp.as_ref().unwrap(), &o.public_url, &Default::default(), clock).unwrap();
    let (other_token, nonce) = crate::support::idp::other_apps_id_token(&o.idp, "alice").await;
    let e = oidc.verify_id_token(&other_token, &nonce).await.unwrap_err();
    assert!(e.to_string().contains("issued for another application (audience)"), "{e}");

    // Through the real callback: the ID token (60 s lifetime) arrives late.
    let answer = o.env.command_json("U0ALICE", "link").await;
    let browser = Browser::new();
    let at_idp = browser.open_link(&OidcEnv::link_url(&answer)).await;
    let back = browser.sign_in(&at_idp.url, "alice", &|next| next.contains("/oidc/callback")).await;
    o.env.clock.advance(Duration::from_secs(300));
    let page = browser.get(&back.url).await;
    assert_eq!(page.status, 400);
    assert!(page.body.contains("the ID token has expired"), "{}", page.body);
    assert!(o.env.db.link(&crate::support::user("U0ALICE")).await.unwrap().is_none());
    o.env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_signing_key_is_fetched_once_and_accepted() {
    if !idp_available() {
        return;
    }
    let o = OidcEnv::start(OidcOptions::default()).await;
    // jitbot discovered the old key at start-up; the IdP now signs with a new one.
    o.idp.rotate().await;
    let page = o.link("U0ALICE", "alice").await;
    assert!(page.body.contains("Linked as alice@example.com"), "{}", page.body);
    o.env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_idp_is_reported_and_the_rest_keeps_working() {
    if !idp_available() {
        return;
    }
    let dead = format!("http://127.0.0.1:{}", crate::support::slack::free_port());
    let o = OidcEnv::start(OidcOptions { issuer_override: Some(dead), ..Default::default() }).await;
    let answer = o.env.command_json("U0ALICE", "link").await;
    let browser = Browser::new();
    let page = browser.get(&OidcEnv::link_url(&answer)).await;
    assert_eq!(page.status, 200);
    let token =
        regex::Regex::new(r#"name="token" value="([^"]+)""#).unwrap().captures(&page.body).unwrap()[1].to_owned();
    let page = browser.post(&format!("{}/oidc/start", o.public_url), &[("token", &token)], &|_| false).await;
    assert_eq!(page.status, 503);
    assert!(page.body.contains("identity provider cannot be reached right now"), "{}", page.body);
    assert!(o.env.command("U0ALICE", "help").await.contains("/jit request"));
    o.env.stop().await;
}

fn response_texts(o: &OidcEnv) -> Vec<String> {
    o.env.slack.responses().iter().map(|r| r["text"].as_str().unwrap_or("").to_owned()).collect()
}

async fn wait_for_answer(o: &OidcEnv, n: usize) -> serde_json::Value {
    eventually("an answer to the click", async || {
        let r = o.env.slack.responses();
        (r.len() >= n).then(|| r[n - 1].clone())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_change_at_the_idp_takes_effect_at_the_next_decision() {
    if !idp_available() {
        return;
    }
    let o = OidcEnv::start(OidcOptions { offline_access: true, ..Default::default() }).await;
    o.linked("U0ALICE", "alice").await;
    o.linked("U0BOB", "bob").await;
    o.linked("U0CAROL", "carol").await;
    let sealed = o.env.db.link(&crate::support::user("U0BOB")).await.unwrap().unwrap().refresh_token.unwrap();
    assert!(!sealed.is_empty(), "the refresh token is stored");
    assert!(!sealed.contains("eyJ") && sealed.len() > 40, "and encrypted");

    o.env.command("U0ALICE", "request prod-db-readonly debugging INC-1").await;
    let id = jitbot::domain::RequestId::new(1);
    // Bob leaves the approvers at the IdP; 16 minutes pass (groups_max_age is 15m).
    o.idp.set_groups("bob", &["engineering"]);
    o.advance(Duration::from_secs(16 * 60)).await;

    assert_eq!(o.env.click("U0BOB", "approve", id).await, 200);
    let first = wait_for_answer(&o, 1).await;
    assert!(first["text"].as_str().unwrap().contains("re-checking your groups"), "{first}");
    eventually("bob's groups to be refreshed", async || {
        let db = o.env.db.clone();
        let groups = futures_lite_block(async move {
            db.link(&crate::support::user("U0BOB")).await.unwrap().unwrap().groups().unwrap()
        });
        (groups.into_iter().collect::<Vec<_>>() == vec!["engineering".to_owned()]).then_some(())
    })
    .await;
    o.env.click("U0BOB", "approve", id).await;
    let second = wait_for_answer(&o, 2).await;
    assert!(second["text"].as_str().unwrap().contains("You may not approve prod-db-readonly"), "{second}");
    assert_eq!(o.env.state(id).await, "pending");

    // Carol is still an approver: after her refresh, her click approves.
    o.env.click("U0CAROL", "approve", id).await;
    wait_for_answer(&o, 3).await;
    eventually("carol's refresh", async || {
        let db = o.env.db.clone();
        let at = futures_lite_block(async move {
            db.link(&crate::support::user("U0CAROL")).await.unwrap().unwrap().confirmed_at
        });
        (at == o.env.clock_now_millis()).then_some(())
    })
    .await;
    o.env.click("U0CAROL", "approve", id).await;
    let fourth = wait_for_answer(&o, 4).await;
    assert!(fourth["text"].as_str().unwrap().starts_with("You approved request #1"), "{fourth}");
    eventually("the grant", async || (o.env.hook.count("grant", id) == 1).then_some(())).await;
    let actions: Vec<String> =
        o.env.db.audit_rows_after(0, 1000).await.unwrap().into_iter().map(|r| r.action).collect();
    assert_eq!(actions.iter().filter(|a| *a == "link.refreshed").count(), 2, "{actions:?}");
    o.env.stop().await;
}

/// Runs a future to completion from sync code inside the multi-thread runtime.
fn futures_lite_block<T: Send + 'static>(f: impl std::future::Future<Output = T> + Send + 'static) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_the_idp_refuses_ends_the_link_and_an_outage_does_not() {
    if !idp_available() {
        return;
    }
    let mut o = OidcEnv::start(OidcOptions { offline_access: true, ..Default::default() }).await;
    o.linked("U0ALICE", "alice").await;
    o.linked("U0BOB", "bob").await;
    o.env.command("U0ALICE", "request prod-db-readonly debugging INC-1").await;
    let id = jitbot::domain::RequestId::new(1);

    // The IdP restarts and forgets every refresh token.
    o.idp.rotate().await;
    o.advance(Duration::from_secs(16 * 60)).await;
    o.env.click("U0BOB", "approve", id).await;
    wait_for_answer(&o, 1).await;
    let dm = eventually("the 'link ended' DM", async || {
        o.env.slack.posts_to("U0BOB").into_iter().find(|m| m["text"].as_str().unwrap_or("").contains("link ended"))
    })
    .await;
    assert!(dm["text"].as_str().unwrap().contains("/jit link"), "{dm}");
    assert!(o.env.db.link(&crate::support::user("U0BOB")).await.unwrap().is_none());
    o.env.click("U0BOB", "approve", id).await;
    let answer = wait_for_answer(&o, 2).await;
    assert!(answer["text"].as_str().unwrap().contains("not linked"), "{answer}");
    assert!(answer["blocks"].to_string().contains("/oidc/link/"), "a sign-in button: {answer}");

    // An outage: the refresh fails, the link stays, the decision is refused.
    o.linked("U0BOB", "bob").await;
    o.idp.stop();
    o.advance_jitbot_only(Duration::from_secs(16 * 60));
    o.env.click("U0BOB", "approve", id).await;
    let answer = wait_for_answer(&o, 3).await;
    assert!(answer["text"].as_str().unwrap().contains("re-checking your groups"), "{answer}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(o.env.db.link(&crate::support::user("U0BOB")).await.unwrap().is_some(), "an outage never unlinks");
    o.env.click("U0BOB", "approve", id).await;
    wait_for_answer(&o, 4).await;
    assert_eq!(o.env.state(id).await, "pending");
    assert!(response_texts(&o).iter().all(|t| !t.starts_with("You approved")));
    o.env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_link_without_refresh_gets_a_sign_in_button() {
    if !idp_available() {
        return;
    }
    let o = OidcEnv::start(OidcOptions::default()).await;
    o.linked("U0ALICE", "alice").await;
    o.advance(Duration::from_secs(13 * 3600)).await;
    let answer = o.env.command_json("U0ALICE", "request prod-db-readonly debugging INC-1").await;
    let text = answer["text"].as_str().unwrap();
    assert!(text.contains("more than 12h old"), "{text}");
    let page = o.complete(&OidcEnv::link_url(&answer), "alice").await;
    assert!(page.body.contains("Linked as alice@example.com"), "{}", page.body);
    let ok = o.env.command("U0ALICE", "request prod-db-readonly debugging INC-1").await;
    assert!(ok.starts_with("Request #1"), "{ok}");
    o.env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_up_roles_need_a_recent_idp_authentication_from_requester_and_approver() {
    if !idp_available() {
        return;
    }
    let o = OidcEnv::start(OidcOptions {
        edit: |t| {
            t.replace("approvals_required = 2", "approvals_required = 1\nstep_up = \"15m\"\napprover_step_up = true")
        },
        ..Default::default()
    })
    .await;
    o.linked("U0ALICE", "alice").await;
    o.linked("U0BOB", "bob").await;
    o.advance(Duration::from_secs(10 * 60)).await;
    // Still within 15 minutes of signing in: no step-up needed, and Slack alone suffices.
    assert!(o.env.command("U0ALICE", "request prod-admin rotate keys").await.starts_with("Request #1"));
    o.env.command("U0ALICE", "cancel 1").await;

    o.advance(Duration::from_secs(6 * 60)).await;
    let answer = o.env.command_json("U0ALICE", "request prod-admin rotate keys").await;
    assert!(answer["text"].as_str().unwrap().contains("signed in with Test IdP within the last 15m"), "{answer}");
    // The sign-in asks the IdP for a fresh authentication (max_age), so the
    // login form appears again even though the IdP session is still alive.
    let browser = Browser::new();
    let at_idp = browser.open_link(&OidcEnv::link_url(&answer)).await;
    assert!(at_idp.url.contains("max_age=900"), "{}", at_idp.url);
    let page = browser.sign_in(&at_idp.url, "alice", &|_| false).await;
    assert!(page.body.contains("Linked as alice@example.com"), "{}", page.body);
    assert!(o.env.command("U0ALICE", "request prod-admin rotate keys").await.starts_with("Request #2"));

    // Bob's Slack click alone cannot approve: he signed in 16 minutes ago.
    let id = jitbot::domain::RequestId::new(2);
    o.env.click("U0BOB", "approve", id).await;
    let answer = wait_for_answer(&o, 1).await;
    assert!(answer["text"].as_str().unwrap().contains("sign in again"), "{answer}");
    assert_eq!(o.env.state(id).await, "pending");
    let url = answer["blocks"][1]["elements"][0]["url"].as_str().unwrap().to_owned();
    let browser = Browser::new();
    let at_idp = browser.open_link(&url).await;
    assert!(at_idp.url.contains("max_age=900"), "the approver's sign-in is a step-up too: {}", at_idp.url);
    let page = browser.sign_in(&at_idp.url, "bob", &|_| false).await;
    assert!(page.body.contains("Linked as bob@example.com"), "{}", page.body);
    o.env.click("U0BOB", "approve", id).await;
    let answer = wait_for_answer(&o, 2).await;
    assert!(answer["text"].as_str().unwrap().starts_with("You approved request #2"), "{answer}");
    o.env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_email_comparison_ignores_case() {
    if !idp_available() {
        return;
    }
    let o = OidcEnv::start(OidcOptions::default()).await;
    o.env.slack.set_email("U0CAROL", "Carol@Example.COM");
    o.linked("U0CAROL", "carol").await;
    o.env.slack.set_email("U0CAROL", "someone-else@example.com");
    let page = o.link("U0CAROL", "carol").await;
    assert_eq!(page.status, 403, "{}", page.body);
    o.env.stop().await;
}

/// Whether headless Chromium is installed (in CI it must be).
fn chromium_available() -> bool {
    let path = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if std::path::Path::new(&path).exists() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but Chromium is not installed at {path} (see .ci/run)");
    }
    eprintln!("NOTICE: skipping the browser test: install Debian's chromium");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_links_in_a_real_browser() {
    if !idp_available() || !chromium_available() {
        return;
    }
    let o = OidcEnv::start(OidcOptions::default()).await;
    let answer = o.env.command_json("U0BOB", "link").await;
    let url = OidcEnv::link_url(&answer);
    let shot = std::env::temp_dir().join(format!("jitbot-linked-{}.png", std::process::id()));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/idp/browser_link.mjs");
    let out = tokio::process::Command::new("node").arg(&script).arg(&url).arg("bob").arg(&shot).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(result["url"].as_str().unwrap().starts_with(&format!("{}/oidc/callback", o.public_url)), "{result}");
    assert!(
        result["text"]
            .as_str()
            .unwrap()
            .contains("Linked as bob@example.com — groups: engineering, sre-leads. You can close this tab."),
        "{result}"
    );
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000, "a screenshot of the result page");
    assert!(o.env.db.link(&crate::support::user("U0BOB")).await.unwrap().is_some());
    let _ = std::fs::remove_file(&shot);
    o.env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_tokens_and_codes_never_reach_the_log() {
    use std::io::Read;

    use crate::support::idp::{CLIENT_SECRET, TOKEN_KEY, TestIdp};
    use crate::support::slack::{SIGNING_SECRET, free_port, slack_config_text, slack_sign};

    if !idp_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let public_url = format!("http://127.0.0.1:{port}");
    let idp = TestIdp::start(&format!("{public_url}/oidc/callback"), true, 3600);
    let slack = crate::support::fake_slack::FakeSlack::start().await;
    let db_url = format!("sqlite://{}", dir.path().join("jitbot.db").display());
    let config = format!(
        "{}\n[idp]\nissuer = \"{}\"\nclient_id = \"jitbot\"\nclient_secret = \"{CLIENT_SECRET}\"\n\
         scopes = [\"openid\", \"email\", \"profile\", \"groups\", \"offline_access\"]\ntoken_encryption_key = \"{TOKEN_KEY}\"\n",
        slack_config_text(&db_url, "http://127.0.0.1:9/hook", &slack.api_url()).replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\"\npublic_url = \"{public_url}\"")
        ),
        idp.issuer
    );
    let path = dir.path().join("jitbot.toml");
    std::fs::write(&path, config).unwrap();
    let log_path = dir.path().join("jitbot.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_jitbot"))
        .args(["serve", "--config", path.to_str().unwrap()])
        .env("JITBOT_LOG", "trace")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..200 {
        if http.get(format!("{public_url}/readyz")).send().await.is_ok_and(|r| r.status() == 200) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "jitbot serve did not start");

    // /jit link through a signed slash command, then the browser flow.
    let body = serde_urlencoded::to_string([
        ("team_id", "T0WORK"),
        ("user_id", "U0ALICE"),
        ("command", "/jit"),
        ("text", "link"),
        ("trigger_id", "t-1"),
        ("response_url", "https://hooks.slack.com/commands/x"),
    ])
    .unwrap();
    let ts = jitbot::clock::Clock::now(&jitbot::clock::SystemClock).seconds();
    let answer: serde_json::Value = http
        .post(format!("{public_url}/slack/commands"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", ts.to_string())
        .header("x-slack-signature", slack_sign(ts, &body))
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let link_url = OidcEnv::link_url(&answer);
    let browser = Browser::new();
    let at_idp = browser.open_link(&link_url).await;
    let back = browser.sign_in(&at_idp.url, "alice", &|next| next.contains("/oidc/callback")).await;
    let callback = reqwest::Url::parse(&back.url).unwrap();
    let query: std::collections::HashMap<String, String> = callback.query_pairs().into_owned().collect();
    let page = browser.get(&back.url).await;
    assert!(page.body.contains("Linked as alice@example.com"), "{}", page.body);

    let db = jitbot::store::Db::connect(&db_url, 1).await.unwrap();
    let jitbot::store::Pool::Sqlite(pool) = db.pool().clone() else { panic!() };
    let sealed: String = sqlx::query_scalar("SELECT refresh_token FROM identity_links").fetch_one(&pool).await.unwrap();
    let refresh = jitbot::idp::TokenCipher::from_base64(TOKEN_KEY).unwrap().open(&sealed).unwrap();

    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    let mut log = String::new();
    std::fs::File::open(&log_path).unwrap().read_to_string(&mut log).unwrap();
    assert!(log.contains("jitbot listening"), "the log was captured");
    let token = link_url.rsplit('/').next().unwrap().to_owned();
    for (what, secret) in [
        ("client secret", CLIENT_SECRET.to_owned()),
        ("bot token", crate::support::fake_slack::BOT_TOKEN.to_owned()),
        ("signing secret", SIGNING_SECRET.to_owned()),
        ("token encryption key", TOKEN_KEY.to_owned()),
        ("link token", token),
        ("authorization code", query["code"].clone()),
        ("state", query["state"].clone()),
        ("refresh token", refresh),
    ] {
        assert!(!log.contains(&secret), "the {what} appears in the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credentials_page_shows_a_password_only_after_the_requester_signs_in() {
    if !idp_available() {
        return;
    }
    let Some(pg) = crate::support::pg::PgTarget::create().await else { return };
    let o = OidcEnv::start(OidcOptions {
        extra_toml: crate::providers_pg::extra(&pg, &pg.admin_url()),
        ..Default::default()
    })
    .await;
    o.linked("U0ALICE", "alice").await;
    o.linked("U0BOB", "bob").await;
    assert!(
        o.env.command("U0ALICE", "request db-eph 30m testing the credentials page").await.starts_with("Request #1")
    );
    let id = jitbot::domain::RequestId::new(1);
    o.env.click("U0BOB", "approve", id).await;
    let dm = eventually("the DM with the credentials link", async || {
        o.env.slack.posts_to("U0ALICE").into_iter().find(|m| m.to_string().contains("/credentials/"))
    })
    .await;
    let link = regex::Regex::new(r"(http://[^\s>|\x22]+/credentials/[A-Za-z0-9_-]+)")
        .unwrap()
        .captures(&dm.to_string())
        .unwrap()[1]
        .to_owned();
    assert!(!dm.to_string().to_lowercase().contains("password:"), "no credentials in Slack: {dm}");
    let sign_in_href = |body: &str| -> String {
        regex::Regex::new(r#"id="sign-in" href="([^"]+)""#).unwrap().captures(body).unwrap()[1].replace("&amp;", "&")
    };

    // Someone else, signed in at the IdP, is refused and uses nothing up.
    let mallory = Browser::new();
    let page = mallory.get(&link).await;
    assert_eq!(page.status, 401);
    let page = mallory.sign_in(&sign_in_href(&page.body), "mallory", &|_| false).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("another person"), "{}", page.body);

    // The requester signs in afresh and comes back to the page.
    let alice = Browser::new();
    let page = alice.get(&link).await;
    assert_eq!(page.status, 401);
    assert!(page.body.contains("Sign in with your company account first"), "{}", page.body);
    let href = sign_in_href(&page.body);
    assert!(href.contains("/oidc/signin?return_to=%2Fcredentials%2F"), "{href}");
    let page = alice.sign_in(&href, "alice", &|_| false).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.url.starts_with(&link) && page.body.contains("Set and show the password"), "{page:?}");
    let page = alice.post(&link, &[("confirm", "yes")], &|_| false).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("id=\"password\""), "{}", page.body);

    // The sign-in only returns to jitbot's own pages.
    let page = Browser::new().get(&format!("{}/oidc/signin?return_to=https://evil.example/", o.public_url)).await;
    assert_eq!(page.status, 400);
    o.env.stop().await;
}

/// A role whose database login is an IdP claim (`{claims.preferred_username}`)
/// grants to that login; a claim the IdP never sends is named in the refusal;
/// and the link keeps only the claims templates name.
async fn a_login_template_reads_a_claim_from_the_sign_in(groups_in_id_token: bool) {
    if !idp_available() {
        return;
    }
    let Some(pg) = crate::support::pg::PgTarget::create().await else { return };
    let p = &pg.prefix;
    let roles = format!(
        r#"
[roles.db-by-username]
description = "Read-only SQL as your IdP username"
provider = "db"
grant = {{ pg_role = "{p}readonly", login = "{p}{{claims.preferred_username}}" }}
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "30m"
max_duration = "4h"

[roles.db-by-employee-id]
description = "Read-only SQL as your employee id"
provider = "db"
grant = {{ pg_role = "{p}readonly", login = "e{{claims.employee_id}}" }}
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "30m"
max_duration = "4h"
"#
    );
    let o = OidcEnv::start(OidcOptions {
        groups_in_id_token,
        extra_toml: format!("{}{roles}", crate::providers_pg::extra(&pg, &pg.admin_url())),
        ..Default::default()
    })
    .await;
    o.linked("U0ALICE", "alice").await;
    o.linked("U0BOB", "bob").await;
    let link = o.env.db.link(&crate::support::user("U0ALICE")).await.unwrap().unwrap();
    assert_eq!(
        link.claims().unwrap(),
        [("preferred_username".to_owned(), "alice".to_owned())].into(),
        "only the claims a template names are kept (the IdP also sent name and email)"
    );
    let whoami = o.env.command("U0ALICE", "whoami").await;
    assert!(whoami.contains("Claim `preferred_username`: `alice`"), "{whoami}");

    let login = format!("{p}alice");
    assert!(!pg.can_read(&login).await, "no access before the grant");
    let reply = o.env.command("U0ALICE", "request db-by-username 30m checking a slow query").await;
    assert!(reply.starts_with("Request #1"), "{reply}");
    o.env.click("U0BOB", "approve", jitbot::domain::RequestId::new(1)).await;
    assert!(pg.becomes_readable_by(&login).await, "the grant reached the database as the claim's login");
    assert!(pg.is_member(&format!("{p}readonly"), &login).await);

    let reply = o.env.command("U0ALICE", "request db-by-employee-id 30m checking a slow query").await;
    assert!(reply.contains("did not send the claim `employee_id`"), "{reply}");
    assert!(reply.contains("/jit link"), "{reply}");
    o.env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_template_reads_a_claim_from_the_id_token() {
    a_login_template_reads_a_claim_from_the_sign_in(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_template_reads_a_claim_from_userinfo() {
    a_login_template_reads_a_claim_from_the_sign_in(false).await;
}

fn scim_toml() -> String {
    format!("\n[scim]\ntoken = \"{}\"\n", crate::scim::TOKEN)
}

async fn a_refresh_racing_a_scim_group_removal_keeps_the_removal(backend: crate::support::Backend) {
    if !idp_available() {
        return;
    }
    let o =
        OidcEnv::start(OidcOptions { offline_access: true, extra_toml: scim_toml(), backend, ..Default::default() })
            .await;
    o.linked("U0ALICE", "alice").await;
    let alice = crate::support::user("U0ALICE");
    let before = o.env.db.link(&alice).await.unwrap().unwrap();
    let (_, scim_user) = crate::scim::scim(
        &o.env,
        reqwest::Method::POST,
        "/Users",
        Some(serde_json::json!({"userName": "alice@example.com", "externalId": "alice"})),
    )
    .await;
    let (_, group) = crate::scim::scim(
        &o.env,
        reqwest::Method::POST,
        "/Groups",
        Some(serde_json::json!({"displayName": "engineering", "members": [{"value": scim_user["id"]}]})),
    )
    .await;

    // Her link is stale, so asking refreshes it; the IdP (whose own view
    // still has her in engineering) answers late.
    o.idp.hold_tokens(Duration::from_secs(4)).await;
    o.advance(Duration::from_secs(13 * 3600)).await;
    let answer = o.env.command("U0ALICE", "request prod-db-readonly debugging INC-1").await;
    assert!(answer.contains("re-checking your groups"), "{answer}");
    for _ in 0..250 {
        if o.idp.tokens_held().await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(o.idp.tokens_held().await, 1, "the refresh is at the IdP");

    // Meanwhile SCIM removes her from engineering.
    let (status, _) = crate::scim::scim(
        &o.env,
        reqwest::Method::PATCH,
        &format!("/Groups/{}", group["id"].as_str().unwrap()),
        Some(crate::scim::patch(serde_json::json!([{"op": "remove", "path": "members"}]))),
    )
    .await;
    assert_eq!(status, 200);

    // The refresh comes back: the IdP's rotated token is kept, the groups it
    // read before the removal are not.
    let sealed = before.refresh_token.clone();
    let after = eventually("the refresh to finish", async || {
        let db = o.env.db.clone();
        let link = futures_lite_block(async move { db.link(&crate::support::user("U0ALICE")).await.unwrap() })?;
        (link.refresh_token != sealed).then_some(link)
    })
    .await;
    assert!(after.groups().unwrap().is_empty(), "the SCIM removal stands: {:?}", after.groups());
    assert_eq!(after.confirmed_at, before.confirmed_at, "a dropped refresh confirms nothing");
    let actions: Vec<String> =
        o.env.db.audit_rows_after(0, 1000).await.unwrap().into_iter().map(|r| r.action).collect();
    assert!(!actions.iter().any(|a| a == "link.refreshed"), "{actions:?}");
    o.env.stop().await;
}

async fn a_refused_refresh_ends_access_and_a_deactivated_identity_cannot_sign_in_again(
    backend: crate::support::Backend,
) {
    if !idp_available() {
        return;
    }
    let o =
        OidcEnv::start(OidcOptions { offline_access: true, extra_toml: scim_toml(), backend, ..Default::default() })
            .await;
    o.linked("U0ALICE", "alice").await;
    o.linked("U0BOB", "bob").await;
    o.env.command("U0ALICE", "request prod-db-readonly debugging INC-1").await;
    let id = jitbot::domain::RequestId::new(1);
    o.env.click("U0BOB", "approve", id).await;
    eventually("the grant", async || (o.env.hook.count("grant", id) == 1).then_some(())).await;

    // The IdP forgets her refresh token; her next decision refreshes, the
    // IdP refuses, and her link ends with the access it vouched for.
    o.idp.rotate().await;
    o.advance(Duration::from_secs(16 * 60)).await;
    let answer = o.env.command("U0ALICE", "retry 1").await;
    assert!(answer.contains("re-checking your groups"), "{answer}");
    eventually("the revocation", async || (o.env.hook.count("revoke", id) == 1).then_some(())).await;
    let dm = eventually("the DM", async || {
        o.env.slack.posts_to("U0ALICE").into_iter().find(|m| m["text"].as_str().unwrap_or("").contains("link ended"))
    })
    .await;
    assert!(dm["text"].as_str().unwrap().contains("your access with it"), "{dm}");

    // SCIM deactivates her: signing in again is refused until SCIM reactivates her.
    let (status, created) = crate::scim::scim(
        &o.env,
        reqwest::Method::POST,
        "/Users",
        Some(serde_json::json!({"userName": "alice@example.com", "externalId": "alice", "active": false})),
    )
    .await;
    assert_eq!(status, 201);
    let page = o.link("U0ALICE", "alice").await;
    assert!(page.body.contains("cannot be linked until the identity provider reactivates it"), "{}", page.body);
    assert!(o.env.db.link(&crate::support::user("U0ALICE")).await.unwrap().is_none());
    let (status, _) = crate::scim::scim(
        &o.env,
        reqwest::Method::PATCH,
        &format!("/Users/{}", created["id"].as_str().unwrap()),
        Some(crate::scim::patch(serde_json::json!([{"op": "replace", "path": "active", "value": true}]))),
    )
    .await;
    assert_eq!(status, 200);
    o.linked("U0ALICE", "alice").await;
    o.env.stop().await;
}

async fn a_refresh_racing_a_new_sign_in_does_not_undo_it(backend: crate::support::Backend) {
    if !idp_available() {
        return;
    }
    let o = OidcEnv::start(OidcOptions { offline_access: true, backend, ..Default::default() }).await;
    o.linked("U0ALICE", "alice").await;
    let alice = crate::support::user("U0ALICE");

    // A refresh that the IdP answers late...
    o.idp.hold_next_token(Duration::from_secs(4)).await;
    o.advance(Duration::from_secs(13 * 3600)).await;
    let answer = o.env.command("U0ALICE", "request prod-db-readonly debugging INC-1").await;
    assert!(answer.contains("re-checking your groups"), "{answer}");
    for _ in 0..250 {
        if o.idp.tokens_held().await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(o.idp.tokens_held().await, 1, "the refresh is at the IdP");
    // ...and meanwhile, a minute later, she signs in again.
    o.advance(Duration::from_secs(60)).await;
    o.linked("U0ALICE", "alice").await;
    let relinked = o.env.db.link(&alice).await.unwrap().unwrap();

    let done = eventually("the refresh job to finish", async || {
        let db = o.env.db.clone();
        let counts = futures_lite_block(async move { db.job_counts().await.unwrap() });
        counts.iter().any(|(kind, state, _)| kind == "refresh_link" && state == "done").then_some(())
    });
    done.await;
    let after = o.env.db.link(&alice).await.unwrap().unwrap();
    assert_eq!(after.confirmed_at, relinked.confirmed_at, "the new sign-in's confirmation stands");
    assert_eq!(after.refresh_token, relinked.refresh_token, "and so does its refresh token");
    o.env.stop().await;
}

crate::support::both_backends!(
    a_refresh_racing_a_new_sign_in_does_not_undo_it,
    a_refresh_racing_a_scim_group_removal_keeps_the_removal,
    a_refused_refresh_ends_access_and_a_deactivated_identity_cannot_sign_in_again,
);

/// `GET /oidc/signin` is open to anyone: it writes nothing (the sign-in's
/// state travels in a sealed cookie), refuses oversized input, and the
/// sign-in still works end to end, bound to the browser that started it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_sign_ins_write_nothing_and_still_work() {
    if !idp_available() {
        return;
    }
    let o = OidcEnv::start(OidcOptions::default()).await;
    let jitbot::store::Pool::Sqlite(pool) = o.env.db.pool() else { panic!() };
    let count = |table: &'static str| async move {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(pool)
            .await
            .unwrap()
    };
    let signin = format!("{}/oidc/signin?return_to=%2Fcredentials%2Fsome-token", o.public_url);
    let raw = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for _ in 0..100 {
        let resp = raw.get(&signin).send().await.unwrap();
        assert_eq!(resp.status(), 303);
        assert!(resp.headers()["location"].to_str().unwrap().starts_with(&o.idp.issuer));
        let cookie = resp.headers()["set-cookie"].to_str().unwrap();
        assert!(cookie.starts_with("jitbot_signin=") && cookie.contains("HttpOnly"), "{cookie}");
        assert!(!cookie.contains("some-token"), "the state is sealed: {cookie}");
    }
    let long = format!("{}/oidc/signin?return_to=%2Fcredentials%2F{}", o.public_url, "a".repeat(5000));
    assert_eq!(raw.get(&long).send().await.unwrap().status(), 400);
    // A forged state cookie is not a sign-in.
    let forged = raw
        .get(format!("{}/oidc/callback?code=abc&state=xyz", o.public_url))
        .header("cookie", "jitbot_signin=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 400);
    assert_eq!(count("oidc_logins").await, 0, "unauthenticated requests wrote no login rows");
    assert_eq!(count("browser_sessions").await, 0);
    assert_eq!(count("link_tokens").await, 0);

    // Finished in another browser (without the cookie): refused.
    let callback = format!("{}/oidc/callback", o.public_url);
    let starter = Browser::new();
    let back = starter.sign_in(&signin, "alice", &|next| next.starts_with(&callback)).await;
    assert!(back.url.starts_with(&callback), "{back:?}");
    let page = Browser::new().get(&back.url).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert_eq!(count("browser_sessions").await, 0);

    // The whole way, in one browser: a session, and back to the page.
    let alice = Browser::new();
    let page = alice.sign_in(&signin, "alice", &|_| false).await;
    assert!(page.url.starts_with(&format!("{}/credentials/some-token", o.public_url)), "{page:?}");
    assert_eq!(count("browser_sessions").await, 1);
    assert_eq!(count("oidc_logins").await, 0);

    // A link token (issued in Slack) stores a login per start, a few at most.
    let answer = o.env.command_json("U0ALICE", "link").await;
    let url = OidcEnv::link_url(&answer);
    for _ in 0..5 {
        let at_idp = Browser::new().open_link(&url).await;
        assert!(at_idp.url.contains("/auth?"), "{at_idp:?}");
    }
    let page = Browser::new().get(&url).await;
    let token =
        regex::Regex::new(r#"name="token" value="([^"]+)""#).unwrap().captures(&page.body).unwrap()[1].to_owned();
    let resp =
        raw.post(format!("{}/oidc/start", o.public_url)).form(&[("token", token.as_str())]).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.text().await.unwrap().contains("started too many times"));
    assert_eq!(count("oidc_logins").await, 5);
    o.env.stop().await;
}

/// What IdPs really send: groups as one string, no `email_verified` (Entra
/// ID), no groups claim at all (a missing scope).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_as_idps_send_them_with_the_safe_defaults() {
    if !idp_available() {
        return;
    }
    let o = OidcEnv::start(OidcOptions::default()).await;
    // A string is one group: "db admins" is not "db" and "admins".
    o.idp.set_claim("alice", "groups", serde_json::json!("db admins"));
    let page = o.link("U0ALICE", "alice").await;
    assert!(page.body.contains("Linked as alice@example.com — groups: db admins. You can close"), "{}", page.body);

    // No email_verified claim: refused by default, saying what to configure.
    o.idp.set_claim("bob", "email_verified", serde_json::Value::Null);
    let page = o.link("U0BOB", "bob").await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("did not say whether it verified the email bob@example.com"), "{}", page.body);
    assert!(page.body.contains("email_verified = &quot;if_present&quot;"), "{}", page.body);
    assert!(o.env.db.link(&crate::support::user("U0BOB")).await.unwrap().is_none());

    // No groups claim at all: linked, and told why there are no groups.
    o.idp.set_claim("carol", "groups", serde_json::Value::Null);
    let page = o.link("U0CAROL", "carol").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("groups: none: your identity provider sent no `groups` claim"), "{}", page.body);
    let whoami = o.env.command("U0CAROL", "whoami").await;
    assert!(whoami.contains("Groups: none: your identity provider sent no `groups` claim"), "{whoami}");
    assert!(whoami.contains("scopes"), "{whoami}");
    // Alice's groups arrived: her whoami lists them.
    let whoami = o.env.command("U0ALICE", "whoami").await;
    assert!(whoami.contains("Groups: db admins"), "{whoami}");
    o.env.stop().await;
}

/// The per-IdP settings: a delimited groups string, `email_verified =
/// "if_present"`, and without the email match a confirmation page that
/// names the Slack account and warns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_claim_rules_and_the_unmatched_confirmation_page() {
    if !idp_available() {
        return;
    }
    let o = OidcEnv::start(OidcOptions {
        extra_toml: "groups_delimiter = \",\"\nemail_verified = \"if_present\"\nrequire_email_match = false\n".into(),
        ..Default::default()
    })
    .await;
    o.idp.set_claim("alice", "groups", serde_json::json!("db admins, ops"));
    let page = o.link("U0ALICE", "alice").await;
    assert!(page.body.contains("groups: db admins, ops. You can close"), "{}", page.body);

    o.idp.set_claim("bob", "email_verified", serde_json::Value::Null);
    let page = o.link("U0BOB", "bob").await;
    assert!(page.body.contains("Linked as bob@example.com"), "{}", page.body);
    // A false claim is still refused.
    o.idp.set_claim("carol", "email_verified", serde_json::json!(false));
    let page = o.link("U0CAROL", "carol").await;
    assert!(page.body.contains("has not verified the email carol@example.com"), "{}", page.body);

    let answer = o.env.command_json("U0CAROL", "link").await;
    let page = Browser::new().get(&OidcEnv::link_url(&answer)).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("user <code>U0CAROL</code>"), "{}", page.body);
    assert!(page.body.contains("Slack workspace <code>T"), "{}", page.body);
    assert!(page.body.contains("signing in gives this Slack account your groups"), "{}", page.body);
    o.env.stop().await;
}

/// Every HTML page jitbot serves (the OIDC link, confirmation, success and
/// error pages, the sign-in refusal, the credentials pages) is uncacheable,
/// unframeable, sends no referrer and runs nothing: the pages hold tokens
/// in their URLs and may hold a password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_html_page_carries_the_security_headers() {
    if !idp_available() {
        return;
    }
    let o = OidcEnv::start(OidcOptions::default()).await;
    let assert_headers = |what: &str, page: &crate::support::idp::Page| {
        let h = |name: &str| page.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        assert!(h("content-type").starts_with("text/html"), "{what}: {:?}", page.headers);
        assert!(h("content-security-policy").contains("default-src 'none'"), "{what}: {:?}", page.headers);
        assert!(h("content-security-policy").contains("frame-ancestors 'none'"), "{what}: {:?}", page.headers);
        assert_eq!(h("x-content-type-options"), "nosniff", "{what}");
        assert_eq!(h("referrer-policy"), "no-referrer", "{what}");
        assert_eq!(h("cache-control"), "no-store", "{what}");
    };

    let answer = o.env.command_json("U0ALICE", "link").await;
    let url = OidcEnv::link_url(&answer);
    let confirm = Browser::new().get(&url).await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    assert_headers("link confirmation", &confirm);
    let success = o.complete(&url, "alice").await;
    assert!(success.body.contains("Linked as"), "{}", success.body);
    assert_headers("success", &success);
    let used = Browser::new().get(&url).await;
    assert_eq!(used.status, 410);
    assert_headers("used link", &used);
    let unknown = Browser::new().get(&format!("{}/oidc/link/not-a-token", o.public_url)).await;
    assert_eq!(unknown.status, 404);
    assert_headers("unknown link", &unknown);
    let callback = Browser::new().get(&format!("{}/oidc/callback?code=abc&state=forged", o.public_url)).await;
    assert_eq!(callback.status, 400);
    assert_headers("callback error", &callback);
    let sign_in = Browser::new().get(&format!("{}/oidc/signin?return_to=https://evil.example/", o.public_url)).await;
    assert_eq!(sign_in.status, 400);
    assert_headers("sign-in refusal", &sign_in);

    let credentials = Browser::new().get(&format!("{}/credentials/{}", o.public_url, "A".repeat(43))).await;
    assert_eq!(credentials.status, 404);
    assert_headers("unknown credentials link", &credentials);
    let resp = reqwest::Client::new()
        .post(format!("{}/credentials/{}", o.public_url, "A".repeat(43)))
        .header("origin", "https://evil.example")
        .form(&[("confirm", "yes")])
        .send()
        .await
        .unwrap();
    let refused = crate::support::idp::Page {
        status: resp.status().as_u16(),
        url: String::new(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap(),
    };
    assert_eq!(refused.status, 403);
    assert_headers("cross-site credentials post", &refused);
    o.env.stop().await;
}
