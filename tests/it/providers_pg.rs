//! The `postgres` provider against a real PostgreSQL: a fresh database and
//! prefixed roles per test, jitbot connecting as an admin with CREATEROLE
//! and pg_signal_backend only, and the granted people connecting as
//! themselves to show what they can and cannot do.

use std::time::Duration;

use jitbot::clock::{Clock, SystemClock};
use jitbot::domain::RequestState;
use jitbot::notify::NoticeKind;
use sqlx::Connection;

use crate::support::pg::PgTarget;
use crate::support::providers::{ProviderApp, jitbot};
use crate::support::{start_time, user};

/// Providers and roles over `pg`: logins are `<prefix><email local part>`.
pub(crate) fn extra(pg: &PgTarget, url: &str) -> String {
    let p = &pg.prefix;
    format!(
        r#"
[providers.db]
kind = "postgres"
url = "{url}"
login = "{p}{{email_local}}"
email_domains = ["example.com"]
ephemeral_login_prefix = "{p}"
timeout = "5s"

[roles.db-ro]
description = "Read-only SQL"
provider = "db"
grant = {{ pg_role = "{p}readonly" }}
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "30m"
max_duration = "4h"

[roles.db-ro-long]
description = "Read-only SQL, for longer"
provider = "db"
grant = {{ pg_role = "{p}readonly" }}
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "2h"
max_duration = "4h"

[roles.db-write]
description = "Writes"
provider = "db"
grant = {{ pg_role = "{p}writer" }}
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "30m"
max_duration = "4h"

[roles.db-by-subject]
description = "Read-only SQL for the login named like your IdP subject"
provider = "db"
grant = {{ pg_role = "{p}readonly", login = "{{subject}}" }}
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "30m"
max_duration = "4h"

[roles.db-eph]
description = "A login of your own for a while"
provider = "db"
grant = {{ pg_role = "{p}readonly", ephemeral_login = true }}
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "30m"
max_duration = "4h"
"#
    )
}

async fn setup() -> Option<(PgTarget, ProviderApp)> {
    let pg = PgTarget::create().await?;
    let t = ProviderApp::spawn(&extra(&pg, &pg.admin_url()), start_time()).await;
    Some((pg, t))
}

fn notes(detail: &serde_json::Value) -> String {
    detail["notes"]
        .as_array()
        .map(|n| n.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join("; "))
        .unwrap_or_default()
}

#[tokio::test]
async fn a_grant_lets_the_user_in_and_its_revocation_ends_access_and_open_sessions() {
    let Some((pg, t)) = setup().await else { return };
    let (alice, readonly) = (pg.role("alice"), pg.role("readonly"));
    assert!(!pg.can_read(&alice).await, "no standing access");

    let id = t.grant("U0ALICE", "db-ro", "30m").await;
    assert_eq!(t.state(id).await, "active");
    assert!(pg.is_member(&readonly, &alice).await);
    assert!(pg.can_read(&alice).await);
    // A session that switched to the role: this is what must not outlive the revocation.
    let mut session = pg.connect_as(&alice).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET ROLE \"{readonly}\""))).execute(&mut session).await.unwrap();
    let v: String = sqlx::query_scalar("SELECT v FROM secrets").fetch_one(&mut session).await.unwrap();
    assert_eq!(v, "the secret");
    assert_eq!(notes(&t.audit_detail(id, "grant.applied").await), format!("granted {readonly} to {alice}"));

    t.advance(Duration::from_secs(30 * 60));
    t.drain().await;
    assert_eq!(t.state(id).await, "revoked");
    assert!(!pg.is_member(&readonly, &alice).await);
    assert!(sqlx::query("SELECT 1").execute(&mut session).await.is_err(), "the open session was ended");
    assert!(!pg.can_read(&alice).await);
    let mut fresh = pg.connect_as(&alice).await.unwrap();
    let set_role = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET ROLE \"{readonly}\""))).execute(&mut fresh).await;
    assert!(set_role.is_err(), "SET ROLE after revocation must fail");
    let n = notes(&t.audit_detail(id, "revoke.applied").await);
    assert_eq!(n, format!("revoked {readonly} from {alice}; ended 1 session(s) of {alice}"));
    assert_eq!(t.notices(id).last(), Some(&NoticeKind::Revoked));
}

#[tokio::test]
async fn overlapping_grants_keep_access_until_the_last_one_ends() {
    let Some((pg, t)) = setup().await else { return };
    let (alice, readonly) = (pg.role("alice"), pg.role("readonly"));
    let short = t.grant("U0ALICE", "db-ro", "30m").await;
    let long = t.grant("U0ALICE", "db-ro-long", "2h").await;
    assert_eq!((t.state(short).await, t.state(long).await), ("active".into(), "active".into()));
    let mut session = pg.connect_as(&alice).await.unwrap();

    t.advance(Duration::from_secs(31 * 60));
    t.drain().await;
    assert_eq!(t.state(short).await, "revoked");
    assert!(pg.is_member(&readonly, &alice).await, "the longer grant still holds the same access");
    assert!(pg.can_read(&alice).await);
    assert!(sqlx::query("SELECT 1").execute(&mut session).await.is_ok(), "sessions stay while access stays");
    let n = notes(&t.audit_detail(short, "revoke.applied").await);
    assert_eq!(n, format!("left in place: request(s) {long} still hold the same access"));

    t.advance(Duration::from_secs(90 * 60));
    t.drain().await;
    assert_eq!(t.state(long).await, "revoked");
    assert!(!pg.is_member(&readonly, &alice).await);
    assert!(!pg.can_read(&alice).await);
    assert!(sqlx::query("SELECT 1").execute(&mut session).await.is_err());
}

#[tokio::test]
async fn leases_and_grant_specs_work_with_jitbot_s_own_database_on_postgresql() {
    let Some(pg) = PgTarget::create().await else { return };
    let store = pg.store_url().await;
    let t = ProviderApp::spawn_on(&extra(&pg, &pg.admin_url()), start_time(), Some(store)).await;
    let (alice, readonly) = (pg.role("alice"), pg.role("readonly"));
    let short = t.grant("U0ALICE", "db-ro", "30m").await;
    let long = t.grant("U0ALICE", "db-ro-long", "2h").await;
    t.advance(Duration::from_secs(31 * 60));
    t.drain().await;
    assert_eq!(t.state(short).await, "revoked");
    assert!(pg.is_member(&readonly, &alice).await);
    t.advance(Duration::from_secs(90 * 60));
    t.drain().await;
    assert_eq!(t.state(long).await, "revoked");
    assert!(!pg.is_member(&readonly, &alice).await);
    assert_eq!(t.app.db().lease(long).await.unwrap().unwrap().outcome.as_deref(), Some("revoked"));
}

#[tokio::test]
async fn a_membership_held_before_jitbot_granted_it_is_never_revoked() {
    let Some((pg, t)) = setup().await else { return };
    let (dave, readonly) = (pg.role("dave"), pg.role("readonly"));
    pg.sql(&format!("GRANT \"{readonly}\" TO \"{dave}\"")).await;
    let mut session = pg.connect_as(&dave).await.unwrap();
    let id = t.grant("U0DAVE", "db-ro", "30m").await;
    assert_eq!(t.state(id).await, "active");
    assert!(notes(&t.audit_detail(id, "grant.applied").await).contains("already held this access before jitbot"));
    t.advance(Duration::from_secs(31 * 60));
    t.drain().await;
    assert_eq!(t.state(id).await, "revoked");
    assert!(pg.is_member(&readonly, &dave).await, "jitbot never removes what it did not give");
    assert!(sqlx::query("SELECT 1").execute(&mut session).await.is_ok(), "nor ends their sessions");
    assert!(notes(&t.audit_detail(id, "revoke.applied").await).contains("held this access before jitbot"));

    // Once the standing membership is gone, a new grant is jitbot's to remove.
    pg.sql(&format!("REVOKE \"{readonly}\" FROM \"{dave}\"")).await;
    let id = t.grant("U0DAVE", "db-ro", "30m").await;
    t.advance(Duration::from_secs(31 * 60));
    t.drain().await;
    assert_eq!(t.state(id).await, "revoked");
    assert!(!pg.is_member(&readonly, &dave).await);
}

#[tokio::test]
async fn an_injection_attempt_through_an_idp_claim_is_refused_and_changes_nothing() {
    let Some((pg, t)) = setup().await else { return };
    let evil = r#"x"; DROP ROLE postgres; --"#;
    t.link_as("U0EVE", evil, "eve@example.com", &["engineering"]).await;
    t.link_as("U0MAL", "mal", &format!("{evil}@example.com"), &["engineering"]).await;
    let roles_before = pg.roles().await;
    for (who, role) in [("U0EVE", "db-by-subject"), ("U0MAL", "db-ro")] {
        let e = t.request(who, role, "30m").await.unwrap_err().to_string();
        assert!(e.contains("not a safe database login name"), "{e}");
        assert!(e.to_lowercase().contains(r#"x\"; drop role postgres; --"#), "the refused value is shown, quoted: {e}");
    }
    // {email_local} is only unambiguous within the configured domains:
    // alice@vendor.example would otherwise get alice@example.com's login.
    t.link_as("U0VENDOR", "vendor-alice", "alice@vendor.example", &["engineering"]).await;
    let e = t.request("U0VENDOR", "db-ro", "30m").await.unwrap_err().to_string();
    assert!(e.contains("only for people from example.com (your email is alice@vendor.example)"), "{e}");
    assert!(t.app.db().requests_in_states(&RequestState::ALL).await.unwrap().is_empty(), "no request was made");
    assert!(pg.role_exists("postgres").await);
    assert_eq!(pg.roles().await, roles_before);
}

#[tokio::test]
async fn a_failing_revocation_is_retried_and_alerted_and_finishes_after_the_fix() {
    let Some((pg, t)) = setup().await else { return };
    let (alice, readonly, admin) = (pg.role("alice"), pg.role("readonly"), pg.role("admin"));
    let id = t.grant("U0ALICE", "db-ro", "30m").await;
    // The admin loses its privilege: REVOKE is refused.
    pg.sql(&format!("ALTER ROLE \"{admin}\" NOCREATEROLE")).await;
    t.advance(Duration::from_secs(30 * 60));
    for step in [0, 6, 11] {
        t.advance(Duration::from_secs(step));
        t.drain().await;
    }
    assert_eq!(t.state(id).await, "revoke_failed");
    let alert = t.audit_line(id, NoticeKind::RevokeFailing).await;
    for needle in [
        "request #1",
        "`db-ro`",
        "<@U0ALICE>",
        "alice@example.com",
        "REVOKE: the target database refused",
        "SQLSTATE 42501",
    ] {
        assert!(alert.contains(needle), "the alert lacks {needle:?}: {alert}");
    }
    assert!(pg.can_read(&alice).await, "(access really still exists: that is why people are alerted)");

    pg.sql(&format!("ALTER ROLE \"{admin}\" CREATEROLE")).await;
    t.service().retry_revoke_as(id, &user("U0ADMIN"), t.now()).await.unwrap();
    t.drain().await;
    assert_eq!(t.state(id).await, "revoked");
    assert!(!pg.is_member(&readonly, &alice).await);
}

#[tokio::test]
async fn an_unreachable_target_fails_the_grant_and_touches_nothing() {
    // Needs no server: nothing listens on port 1.
    let pg_like = "postgres://jitbot@127.0.0.1:1/target";
    let extra = format!(
        r#"
[providers.db]
kind = "postgres"
url = "{pg_like}"
email_domains = ["example.com"]
timeout = "2s"

[roles.db-ro]
description = "Read-only SQL"
provider = "db"
grant = {{ pg_role = "readonly" }}
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "30m"
max_duration = "4h"
"#
    );
    let t = ProviderApp::spawn(&extra, start_time()).await;
    let r = t.request("U0ALICE", "db-ro", "30m").await.unwrap();
    t.service().approve(r.id, &user("U0BOB"), t.now()).await.unwrap();
    t.run_for(Duration::from_secs(600), Duration::from_secs(30)).await;
    assert_eq!(t.state(r.id).await, "revoked");
    let failed = t.audit_detail(r.id, "grant.failed").await;
    assert!(failed["error"].as_str().unwrap().contains("cannot reach the target database"), "{failed}");
    assert_eq!(
        notes(&t.audit_detail(r.id, "revoke.applied").await),
        "nothing was granted in the target for this request"
    );
    assert!(t.notices(r.id).contains(&NoticeKind::GrantFailed));
}

#[tokio::test]
async fn the_revocation_removes_what_was_granted_even_after_the_config_changed() {
    let Some((pg, mut t)) = setup().await else { return };
    let (alice, readonly, writer) = (pg.role("alice"), pg.role("readonly"), pg.role("writer"));
    let id = t.grant("U0ALICE", "db-ro", "30m").await;
    // Someone edits the role and the login template while access is live.
    let changed = extra(&pg, &pg.admin_url())
        .replacen(
            &format!("grant = {{ pg_role = \"{readonly}\" }}"),
            &format!("grant = {{ pg_role = \"{writer}\" }}"),
            1,
        )
        .replacen(&format!("login = \"{}{{email_local}}\"", pg.prefix), "login = \"other_{email_local}\"", 1);
    assert_ne!(changed, t.extra);
    t.restart_with(&changed).await;
    t.advance(Duration::from_secs(31 * 60));
    t.drain().await;
    assert_eq!(t.state(id).await, "revoked");
    assert!(!pg.is_member(&readonly, &alice).await, "the snapshot's role was revoked");
    assert!(!pg.is_member(&writer, &alice).await);
}

#[tokio::test]
async fn an_ephemeral_login_is_created_for_the_grant_and_dropped_after() {
    let Some((pg, t)) = setup().await else { return };
    let readonly = pg.role("readonly");
    let id = t.grant("U0ALICE", "db-eph", "30m").await;
    let login = format!("{}1_alice", pg.prefix);
    assert_eq!(t.state(id).await, "active");
    let (can_login, valid_until): (bool, Option<String>) = sqlx::query_as(
        "SELECT rolcanlogin, to_char(rolvaliduntil AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM pg_roles WHERE rolname = $1",
    )
    .bind(&login)
    .fetch_one(&mut pg.superuser().await)
    .await
    .unwrap();
    assert!(can_login);
    assert_eq!(valid_until.as_deref(), Some("2026-01-01T00:30:00Z"));
    assert!(pg.is_member(&readonly, &login).await);
    let mut session = pg.connect_as(&login).await.unwrap();
    assert!(pg.can_read(&login).await);

    // An approved extension moves the login's VALID UNTIL with it, so the
    // database does not end the access before jitbot's revocation.
    let ext = match t
        .service()
        .extend(
            jitbot::service::ExtendCommand {
                requester: user("U0ALICE"),
                request: id,
                duration: Some(jitbot::domain::AccessDuration::parse("1h").unwrap()),
                reason: None,
                client_key: None,
            },
            t.now(),
        )
        .await
        .unwrap()
    {
        jitbot::service::ExtendOutcome::Pending(r) => r.id,
        other => panic!("db-eph extensions need approval: {other:?}"),
    };
    t.service().approve(ext, &user("U0BOB"), t.now()).await.unwrap();
    t.drain().await;
    let valid_until: Option<String> = sqlx::query_scalar(
        "SELECT to_char(rolvaliduntil AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM pg_roles WHERE rolname = $1",
    )
    .bind(&login)
    .fetch_one(&mut pg.superuser().await)
    .await
    .unwrap();
    assert_eq!(valid_until.as_deref(), Some("2026-01-01T01:30:00Z"), "VALID UNTIL follows the extension");
    assert!(pg.can_read(&login).await);

    t.advance(Duration::from_secs(91 * 60));
    t.drain().await;
    assert_eq!(t.state(id).await, "revoked");
    assert!(!pg.role_exists(&login).await, "the login was dropped");
    assert!(sqlx::query("SELECT 1").execute(&mut session).await.is_err());
    let _ = session.close().await;

    // A role with the next request's name (#3: the extension was #2) that
    // jitbot did not make is left alone.
    let squatter = format!("{}3_alice", pg.prefix);
    pg.sql(&format!("CREATE ROLE \"{squatter}\" LOGIN")).await;
    let r = t.request("U0ALICE", "db-eph", "30m").await.unwrap();
    t.service().approve(r.id, &user("U0BOB"), t.now()).await.unwrap();
    t.drain().await;
    let failed = t.audit_detail(r.id, "grant.failed").await;
    assert!(failed["error"].as_str().unwrap().contains("jitbot did not create it"), "{failed}");
    assert_eq!(t.state(r.id).await, "revoked");
    assert!(pg.role_exists(&squatter).await);
    assert!(!pg.is_member(&readonly, &squatter).await);
}

#[tokio::test]
async fn reconcile_reports_drift_and_revokes_access_that_came_back() {
    let Some(pg) = PgTarget::create().await else { return };
    // The command line reads the wall clock: start the app's clock there.
    let t = ProviderApp::spawn(&extra(&pg, &pg.admin_url()), SystemClock.now()).await;
    let (alice, dave, readonly, writer) = (pg.role("alice"), pg.role("dave"), pg.role("readonly"), pg.role("writer"));
    let gone = t.grant("U0ALICE", "db-ro", "30m").await;
    let live = t.grant("U0DAVE", "db-write", "30m").await;
    t.service().revoke(gone, &user("U0ALICE"), t.now()).await.unwrap();
    t.drain().await;
    assert_eq!(t.state(gone).await, "revoked");
    // Behind jitbot's back: alice's access comes back, dave's disappears.
    pg.sql(&format!("GRANT \"{readonly}\" TO \"{alice}\"; REVOKE \"{writer}\" FROM \"{dave}\"")).await;

    let config = t.config_path();
    let config = config.to_str().unwrap();
    let out = jitbot(&["reconcile", "--config", config]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains(&format!(
            "request {gone} `db-ro` of alice@example.com (provider db): revoked in jitbot but still PRESENT"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "request {live} `db-write` of dave@example.com (provider db): active in jitbot but ABSENT"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("2 difference(s), 2 unresolved"), "{stdout}");
    assert!(pg.is_member(&readonly, &alice).await, "without --fix nothing changes");

    let out = jitbot(&["reconcile", "--config", config, "--fix"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("still PRESENT in the target; revoked again"), "{stdout}");
    assert!(stdout.contains("2 difference(s), 1 unresolved"), "{stdout}");
    assert!(!pg.is_member(&readonly, &alice).await);
    let actions: Vec<String> = t.audit(gone).await.into_iter().map(|(a, _)| a).collect();
    assert!(actions.contains(&"reconcile.revoked".to_owned()), "{actions:?}");

    // dave's request is revoked; afterwards the target and jitbot agree.
    t.service().revoke(live, &user("U0DAVE"), t.now()).await.unwrap();
    t.drain().await;
    let out = jitbot(&["reconcile", "--config", config]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("0 difference(s)"), "{stdout}");
}

#[tokio::test]
async fn the_requester_gets_a_one_time_link_by_dm_never_the_password() {
    use crate::support::WebhookReceiver;
    use crate::support::fake_slack::FakeSlack;
    use crate::support::slack::slack_config_text;

    let Some(pg) = PgTarget::create().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("jitbot.db").display());
    let (hook, slack) = (WebhookReceiver::start().await, FakeSlack::start().await);
    let text = format!("{}\n{}", slack_config_text(&db_url, &hook.url, &slack.api_url()), extra(&pg, &pg.admin_url()));
    let config = jitbot::config::Config::parse(std::path::Path::new("test.toml"), &text).unwrap();
    let clock = jitbot::clock::ManualClock::new(start_time());
    let deps = jitbot::app::Deps {
        clock: std::sync::Arc::new(clock.clone()),
        notifier: None,
        providers: None,
        scheduler: jitbot::jobs::SchedulerOptions { worker_id: "dm-test".into(), ..Default::default() },
    };
    let app = jitbot::app::App::build(config, deps).await.unwrap();
    let identity = jitbot::domain::Identity {
        slack: user("U0ALICE"),
        issuer: "https://idp.example".into(),
        subject: "alice".into(),
        email: "alice@example.com".into(),
        groups: ["engineering".to_owned()].into(),
        claims: Default::default(),
    };
    let bob = jitbot::domain::Identity {
        slack: user("U0BOB"),
        subject: "bob".into(),
        email: "bob@example.com".into(),
        groups: ["sre-leads".to_owned()].into(),
        ..identity.clone()
    };
    for i in [&identity, &bob] {
        app.service().add_link(i, &jitbot::audit::Actor::Cli("test".into()), clock.now()).await.unwrap();
    }
    let r = app
        .service()
        .request(
            jitbot::service::RequestCommand {
                requester: user("U0ALICE"),
                role: "db-eph".into(),
                duration: None,
                reason: "debugging INC-4821".into(),
                ticket: None,
                client_key: None,
            },
            clock.now(),
        )
        .await
        .unwrap();
    app.service().approve(r.id, &user("U0BOB"), clock.now()).await.unwrap();
    app.scheduler().drain().await.unwrap();
    assert_eq!(app.db().request(r.id).await.unwrap().unwrap().state, RequestState::Active);
    let dms: Vec<String> =
        slack.posts_to("U0ALICE").into_iter().map(|m| m["text"].as_str().unwrap_or("").to_owned()).collect();
    let link_dm = dms.iter().find(|t| t.contains("/credentials/")).unwrap_or_else(|| panic!("{dms:?}"));
    let login = format!("{}1_alice", pg.prefix);
    assert!(link_dm.contains(&format!("`{login}`")), "{link_dm}");
    let token = link_dm.split("http://localhost:8080/credentials/").nth(1).unwrap().trim();
    assert_eq!(token.len(), 43, "{link_dm}");
    assert!(!dms.iter().any(|t| t.to_lowercase().contains("password:")), "no credentials in Slack: {dms:?}");
    // Only the token's hash is stored.
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()));
    let row = app.db().credential_token(&hash).await.unwrap().unwrap();
    assert_eq!((row.request_id, row.user_id.as_str(), row.used_at), (r.id.get(), "U0ALICE", None));
    assert!(app.db().credential_token(token).await.unwrap().is_none());
    drop(app);
}
