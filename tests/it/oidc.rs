//! Linking through a real OpenID provider: the full browser flow, every
//! refusal, groups from userinfo, refresh, and step-up.

use std::time::Duration;

use crate::idp_support::{Browser, OidcEnv, OidcOptions, idp_available};
use crate::slack_support::eventually;

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
    let dm = eventually("the link DM", || o.env.slack.posts_to("U0ALICE").first().cloned()).await;
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

    // Nonce and PKCE verifier tampered with between start and callback.
    for (column, expected) in [("nonce", "nonce mismatch"), ("pkce_verifier", "refused the sign-in (invalid_grant)")] {
        let answer = o.env.command_json("U0BOB", "link").await;
        let browser = Browser::new();
        let at_idp = browser.open_link(&OidcEnv::link_url(&answer)).await;
        let jitbot::store::Db::Sqlite(pool) = &o.env.db else { panic!() };
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
            crate::slack_support::slack_config_text(
                "sqlite://unused.db",
                "http://127.0.0.1:9/h",
                "http://127.0.0.1:9/api"
            ),
            o.idp.issuer
        ),
    )
    .unwrap();
    let clock = std::sync::Arc::new(o.env.clock.clone());
    let oidc = jitbot::idp::Oidc::new(config.idp.as_ref().unwrap(), &o.public_url, clock).unwrap();
    let (other_token, nonce) = crate::idp_support::other_apps_id_token(&o.idp, "alice").await;
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
    let dead = format!("http://127.0.0.1:{}", crate::slack_support::free_port());
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
