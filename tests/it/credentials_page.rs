//! Ephemeral logins on a cluster with password authentication: the
//! database itself refuses the login after `VALID UNTIL`, and the one-time
//! credentials page sets a password (sent as a SCRAM verifier, so the plain
//! password never shows up in the server's statement log) and shows it once.
//!
//! The page's sign-in check is a hook ([`BrowserIdentity`]); OIDC sign-in
//! is not wired to it yet, so these tests vouch for the browser's user
//! themselves, and check that the shipped hook refuses everyone.

use std::sync::Arc;
use std::time::Duration;

use jitbot::clock::{Clock, SystemClock};
use jitbot::config::Config;
use jitbot::credentials::{self, BrowserIdentity, BrowserUser, CredentialsPage, SignInNotWired, SignInRequired};
use jitbot::providers::Providers;
use sqlx::{ConnectOptions, Connection};

use crate::providers_pg::extra;
use crate::support::pg::{PgTarget, ScramCluster};
use crate::support::providers::ProviderApp;

/// Vouches for one user, as the OIDC session check will.
struct Vouch(&'static str);

#[async_trait::async_trait]
impl BrowserIdentity for Vouch {
    async fn signed_in(&self, _headers: &axum::http::HeaderMap) -> Result<BrowserUser, SignInRequired> {
        Ok(BrowserUser { issuer: "https://idp.example".into(), subject: self.0.into() })
    }
}

/// Serves the credentials page over the app's database with `identity`.
async fn serve(t: &ProviderApp, identity: Arc<dyn BrowserIdentity>) -> String {
    let config = Config::parse(std::path::Path::new("test.toml"), &t.config_text()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let page = CredentialsPage {
        service: t.app.service().clone(),
        clock: Arc::new(t.clock.clone()),
        providers: Providers::from_config(&config).unwrap(),
        identity,
        public_url: base.parse().unwrap(),
    };
    tokio::spawn(async move { axum::serve(listener, credentials::router(page)).await.unwrap() });
    base
}

async fn login_with_password(pg: &PgTarget, user: &str, password: &str) -> Result<sqlx::PgConnection, sqlx::Error> {
    let opts: sqlx::postgres::PgConnectOptions = pg.url_with(user, password).parse()?;
    opts.disable_statement_logging().connect().await
}

#[tokio::test]
async fn an_ephemeral_login_gets_its_password_once_and_expires_in_the_database() {
    let Some(cluster) = ScramCluster::start() else { return };
    let Some(pg) = PgTarget::create_on(&cluster.superuser_url()).await else { return };
    let admin_password = "admin-password-for-tests";
    pg.sql(&format!("ALTER ROLE \"{}\" PASSWORD '{admin_password}'", pg.role("admin"))).await;
    // VALID UNTIL is checked against the database's own clock: make the
    // one-minute grant end 10 s from now in real time.
    let start = SystemClock.now().minus(Duration::from_secs(50));
    let t = ProviderApp::spawn(&extra(&pg, &pg.admin_url_with(admin_password)), start).await;
    let id = t.grant("U0ALICE", "db-eph", "1m").await;
    assert_eq!(t.state(id).await, "active");
    let request = t.request_now(id).await;
    let expires_at = request.expires_at.unwrap();
    let login = format!("{}1_alice", pg.prefix);
    assert!(login_with_password(&pg, &login, "guess").await.is_err(), "no password until the requester sets one");

    let http = reqwest::Client::new();
    let first = t.app.service().issue_credentials_link(&request, "http://jitbot.test", t.now()).await.unwrap().unwrap();
    assert_eq!(first.login, login);
    let token_of = |url: &str| url.rsplit('/').next().unwrap().to_owned();

    // The shipped sign-in hook is not wired to OIDC yet: it refuses everyone.
    let unwired = serve(&t, Arc::new(SignInNotWired)).await;
    let r = http.get(format!("{unwired}/credentials/{}", token_of(&first.url))).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(r.text().await.unwrap().contains("not available on this jitbot yet"));

    // Someone else signed in: refused. A made-up token: unknown.
    let dave = serve(&t, Arc::new(Vouch("dave"))).await;
    let r = http.get(format!("{dave}/credentials/{}", token_of(&first.url))).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let alice = serve(&t, Arc::new(Vouch("alice"))).await;
    let r = http.get(format!("{alice}/credentials/{}", "A".repeat(43))).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // A newer link retires the older one.
    let second =
        t.app.service().issue_credentials_link(&request, "http://jitbot.test", t.now()).await.unwrap().unwrap();
    let r = http.get(format!("{alice}/credentials/{}", token_of(&first.url))).send().await.unwrap();
    assert_eq!(r.status(), 410);
    assert!(r.text().await.unwrap().contains("newer link"));
    let url = format!("{alice}/credentials/{}", token_of(&second.url));

    // GET only asks; a form posted from another site is refused.
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains(&login) && page.contains("Set and show the password") && !page.contains("id=\"password\""));
    let r = http.post(&url).header("origin", "https://evil.example").form(&[("confirm", "yes")]).send().await.unwrap();
    assert_eq!(r.status(), 403);

    let r = http.post(&url).header("origin", &alice).form(&[("confirm", "yes")]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let page = r.text().await.unwrap();
    let password =
        page.split("<code id=\"password\">").nth(1).and_then(|s| s.split("</code>").next()).unwrap().to_owned();
    assert_eq!(password.len(), 32);
    // Never again.
    for r in [http.post(&url).form(&[("confirm", "yes")]).send().await.unwrap(), http.get(&url).send().await.unwrap()] {
        assert_eq!(r.status(), 410);
        assert!(!r.text().await.unwrap().contains(&password));
    }

    // The password works, with password authentication, and only the
    // verifier reached the server (every statement is logged there).
    let mut session = login_with_password(&pg, &login, &password).await.unwrap();
    let v: String = sqlx::query_scalar("SELECT v FROM secrets").fetch_one(&mut session).await.unwrap();
    assert_eq!(v, "the secret");
    let _ = session.close().await;
    let log = cluster.log_text();
    assert!(log.contains("PASSWORD 'SCRAM-SHA-256$4096:"), "the ALTER ROLE is in the log, with the verifier");
    assert!(!log.contains(&password), "the plain password reached the server log");
    let actions: Vec<String> = t.audit(id).await.into_iter().map(|(a, _)| a).collect();
    assert!(actions.contains(&"credentials.password_set".to_owned()), "{actions:?}");

    // After VALID UNTIL the database itself refuses the login, jitbot or not.
    let wait = SystemClock.now().until(expires_at) + Duration::from_millis(1500);
    tokio::time::sleep(wait).await;
    let refused = login_with_password(&pg, &login, &password).await.unwrap_err().to_string();
    assert!(refused.contains("password authentication failed"), "{refused}");

    t.advance(Duration::from_secs(120));
    t.drain().await;
    assert_eq!(t.state(id).await, "revoked");
    assert!(!pg.role_exists(&login).await);
}
