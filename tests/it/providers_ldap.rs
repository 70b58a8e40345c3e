//! The `ldap_group` provider against a real OpenLDAP server started per
//! test (see `support::slapd`): jitbot binds as a DN that may write only the
//! member attribute of the listed groups, over StartTLS checked against the
//! test CA, and every assertion reads the group back from the directory.

use std::time::Duration;

use jitbot::clock::{Clock, SystemClock};
use jitbot::domain::RequestState;
use jitbot::notify::NoticeKind;

use crate::support::pg::PgTarget;
use crate::support::providers::{ProviderApp, jitbot};
use crate::support::slapd::{BIND_DN, BIND_PASSWORD, EVIL, PEOPLE, PLACEHOLDER, Slapd, group, person};
use crate::support::{start_time, user};

/// The provider (StartTLS to `url` with the test CA unless `tls` says
/// otherwise) and roles over the test directory's groups.
fn extra_with(url: &str, tls: &str, password: &str) -> String {
    let role = |name: &str, cn: &str, default: &str| {
        format!(
            r#"
[roles.{name}]
description = "Membership of {cn}"
provider = "dir"
grant = {{ group = "{}" }}
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "{default}"
max_duration = "4h"
"#,
            group(cn)
        )
    };
    format!(
        r#"
[providers.dir]
kind = "ldap_group"
url = "{url}"
{tls}
bind_dn = "{BIND_DN}"
bind_password = "{password}"
user_base = "{PEOPLE}"
user_filter_attribute = "mail"
timeout = "5s"

[providers.dir-unique]
kind = "ldap_group"
url = "{url}"
{tls}
bind_dn = "{BIND_DN}"
bind_password = "{password}"
user_base = "{PEOPLE}"
user_filter_attribute = "uid"
user_value = "{{email_local}}"
email_domains = ["example.com"]
member_attribute = "uniqueMember"

[roles.auditors]
description = "Membership of a groupOfUniqueNames"
provider = "dir-unique"
grant = {{ group = "{}" }}
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "30m"
max_duration = "4h"
{}{}{}{}{}"#,
        group("auditors"),
        role("readers", "prod-readers", "30m"),
        role("readers-long", "prod-readers", "2h"),
        role("writers", "prod-writers", "30m"),
        role("solo", "solo", "30m"),
        role("db-admin", "db-admins", "30m"),
    )
}

fn extra(s: &Slapd) -> String {
    extra_with(&s.url(), &format!("ca_file = \"{}\"", s.ca_file().display()), BIND_PASSWORD)
}

async fn setup() -> Option<(Slapd, ProviderApp)> {
    let s = Slapd::start().await?;
    let t = ProviderApp::spawn(&extra(&s), start_time()).await;
    Some((s, t))
}

fn notes(detail: &serde_json::Value) -> String {
    detail["notes"]
        .as_array()
        .map(|n| n.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join("; "))
        .unwrap_or_default()
}

/// Everything the audit trail holds for a request, as one string.
async fn audit_text(t: &ProviderApp, id: jitbot::domain::RequestId) -> String {
    t.audit(id).await.into_iter().map(|(a, d)| format!("{a} {d}\n")).collect()
}

#[tokio::test]
async fn a_grant_adds_the_requester_to_the_group_and_expiry_removes_them() {
    let Some((s, t)) = setup().await else { return };
    assert!(!s.is_member("prod-readers", "alice").await, "no standing access");

    let id = t.grant("U0ALICE", "readers", "30m").await;
    assert_eq!(t.state(id).await, "active");
    assert_eq!(s.members("prod-readers").await, vec![PLACEHOLDER.to_owned(), person("alice")]);
    assert_eq!(
        notes(&t.audit_detail(id, "grant.applied").await),
        format!("added {} to {}", person("alice"), group("prod-readers"))
    );

    t.advance(Duration::from_secs(30 * 60));
    t.drain().await;
    assert_eq!(t.state(id).await, "revoked");
    assert_eq!(s.members("prod-readers").await, vec![PLACEHOLDER.to_owned()], "only the placeholder is left");
    assert_eq!(
        notes(&t.audit_detail(id, "revoke.applied").await),
        format!("removed {} from {}", person("alice"), group("prod-readers"))
    );
    assert_eq!(t.notices(id).last(), Some(&NoticeKind::Revoked));
}

#[tokio::test]
async fn the_lifecycle_and_leases_work_with_jitbot_s_own_database_on_postgresql() {
    let Some(s) = Slapd::start().await else { return };
    let Some(pg) = PgTarget::create().await else { return };
    let t = ProviderApp::spawn_on(&extra(&s), start_time(), Some(pg.store_url().await)).await;
    let short = t.grant("U0ALICE", "readers", "30m").await;
    let long = t.grant("U0ALICE", "readers-long", "2h").await;
    assert!(s.is_member("prod-readers", "alice").await);
    t.advance(Duration::from_secs(31 * 60));
    t.drain().await;
    assert_eq!(t.state(short).await, "revoked");
    assert!(s.is_member("prod-readers", "alice").await, "the longer grant still holds the membership");
    t.advance(Duration::from_secs(90 * 60));
    t.drain().await;
    assert_eq!(t.state(long).await, "revoked");
    assert!(!s.is_member("prod-readers", "alice").await);
    assert_eq!(t.app.db().lease(long).await.unwrap().unwrap().outcome.as_deref(), Some("revoked"));
}

#[tokio::test]
async fn two_roles_on_one_group_share_the_membership_until_the_last_ends() {
    let Some((s, t)) = setup().await else { return };
    let short = t.grant("U0ALICE", "readers", "30m").await;
    let long = t.grant("U0ALICE", "readers-long", "2h").await;
    assert_eq!((t.state(short).await, t.state(long).await), ("active".into(), "active".into()));

    t.advance(Duration::from_secs(31 * 60));
    t.drain().await;
    assert_eq!(t.state(short).await, "revoked");
    assert!(s.is_member("prod-readers", "alice").await, "the longer grant still holds the same membership");
    assert_eq!(
        notes(&t.audit_detail(short, "revoke.applied").await),
        format!("left in place: request(s) {long} still hold the same access")
    );

    t.advance(Duration::from_secs(90 * 60));
    t.drain().await;
    assert_eq!(t.state(long).await, "revoked");
    assert!(!s.is_member("prod-readers", "alice").await);
}

#[tokio::test]
async fn a_membership_held_before_jitbot_granted_it_is_never_removed() {
    let Some((s, t)) = setup().await else { return };
    s.set_member("prod-readers", &person("dave"), true).await;
    let id = t.grant("U0DAVE", "readers", "30m").await;
    assert_eq!(t.state(id).await, "active");
    assert!(notes(&t.audit_detail(id, "grant.applied").await).contains("already held this access before jitbot"));
    t.advance(Duration::from_secs(31 * 60));
    t.drain().await;
    assert_eq!(t.state(id).await, "revoked");
    assert!(s.is_member("prod-readers", "dave").await, "jitbot never removes what it did not give");
    assert!(notes(&t.audit_detail(id, "revoke.applied").await).contains("held this access before jitbot"));

    // Once the standing membership is gone, a new grant is jitbot's to remove.
    s.set_member("prod-readers", &person("dave"), false).await;
    let id = t.grant("U0DAVE", "readers", "30m").await;
    assert!(s.is_member("prod-readers", "dave").await);
    t.advance(Duration::from_secs(31 * 60));
    t.drain().await;
    assert_eq!(t.state(id).await, "revoked");
    assert!(!s.is_member("prod-readers", "dave").await);
}

#[tokio::test]
async fn a_person_without_a_directory_entry_is_refused_at_request_time() {
    let Some((s, t)) = setup().await else { return };
    t.link_as("U0ZED", "zed", "zed@example.com", &["engineering"]).await;
    let e = t.request("U0ZED", "readers", "30m").await.unwrap_err().to_string();
    assert!(e.contains("you have no entry in the directory behind dir"), "{e}");
    assert!(e.contains(&format!("mail=zed@example.com matches nobody under {PEOPLE}")), "{e}");
    assert!(t.app.db().requests_in_states(&RequestState::ALL).await.unwrap().is_empty(), "no request was made");
    assert_eq!(s.members("prod-readers").await, vec![PLACEHOLDER.to_owned()]);
}

#[tokio::test]
async fn a_filter_injection_through_the_identity_matches_nobody_and_changes_nothing() {
    let Some((s, t)) = setup().await else { return };
    // Unescaped, `(mail=*)` and `(mail=*)(uid=*...)` would match everyone.
    let attempts =
        [("U0EVE", format!("{EVIL}@example.com")), ("U0STAR", "*".to_owned()), ("U0OR", "x)(|(mail=*".into())];
    for (who, email) in &attempts {
        t.link_as(who, &who.to_lowercase(), email, &["engineering"]).await;
        let e = t.request(who, "readers", "30m").await.unwrap_err().to_string();
        assert!(e.contains("you have no entry in the directory"), "{email}: {e}");
    }
    assert!(t.app.db().requests_in_states(&RequestState::ALL).await.unwrap().is_empty(), "no request was made");
    assert_eq!(s.members("prod-readers").await, vec![PLACEHOLDER.to_owned()]);
    assert_eq!(s.members("prod-writers").await, vec![PLACEHOLDER.to_owned()]);
}

#[tokio::test]
async fn reconcile_reports_an_active_grant_whose_membership_is_missing() {
    let Some(s) = Slapd::start().await else { return };
    // The command line reads the wall clock: start the app's clock there.
    let t = ProviderApp::spawn(&extra(&s), SystemClock.now()).await;
    let live = t.grant("U0ALICE", "readers", "30m").await;
    let gone = t.grant("U0DAVE", "writers", "30m").await;
    t.service().revoke(gone, &user("U0DAVE"), t.now()).await.unwrap();
    t.drain().await;
    assert_eq!(t.state(gone).await, "revoked");
    // Behind jitbot's back: alice's membership disappears, dave's comes back.
    s.set_member("prod-readers", &person("alice"), false).await;
    s.set_member("prod-writers", &person("dave"), true).await;

    let config = t.config_path();
    let config = config.to_str().unwrap();
    let out = jitbot(&["reconcile", "--config", config]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains(&format!(
            "request {live} `readers` of alice@example.com (provider dir): active in jitbot but ABSENT"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "request {gone} `writers` of dave@example.com (provider dir): revoked in jitbot but still PRESENT"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("2 difference(s), 2 unresolved"), "{stdout}");

    let out = jitbot(&["reconcile", "--config", config, "--fix"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("still PRESENT in the target; revoked again"), "{stdout}");
    assert!(!s.is_member("prod-writers", "dave").await);
}

#[tokio::test]
async fn plaintext_ldap_is_refused_at_load_unless_explicitly_allowed() {
    let Some(s) = Slapd::start().await else { return };
    let plain = extra_with(&s.url(), "starttls = false", BIND_PASSWORD);
    let text = format!("{}\n{plain}", crate::support::config_text("sqlite://unused.db", "http://127.0.0.1:9/hook"));
    let e = jitbot::config::Config::parse(std::path::Path::new("test.toml"), &text).unwrap_err().to_string();
    assert!(e.contains("providers.dir.starttls = false would send the bind password"), "{e}");
    assert!(e.contains("allow_plaintext = true"), "{e}");
    assert!(!e.contains(BIND_PASSWORD), "{e}");

    let allowed = extra_with(&s.url(), "starttls = false\nallow_plaintext = true", BIND_PASSWORD);
    let t = ProviderApp::spawn(&allowed, start_time()).await;
    let id = t.grant("U0ALICE", "readers", "30m").await;
    assert_eq!(t.state(id).await, "active");
    assert!(s.is_member("prod-readers", "alice").await);
}

#[tokio::test]
async fn tls_is_checked_against_the_configured_ca_over_starttls_and_ldaps() {
    let Some(s) = Slapd::start().await else { return };
    let ca = format!("ca_file = \"{}\"", s.ca_file().display());
    // ldaps:// with the CA.
    let t = ProviderApp::spawn(&extra_with(&s.ldaps_url(), &ca, BIND_PASSWORD), start_time()).await;
    let id = t.grant("U0ALICE", "readers", "30m").await;
    assert_eq!(t.state(id).await, "active");
    assert!(s.is_member("prod-readers", "alice").await);

    // StartTLS without the CA (the system roots do not know the test CA):
    // nothing is sent in clear, the request is refused with the reason.
    let t = ProviderApp::spawn(&extra_with(&s.url(), "", BIND_PASSWORD), start_time()).await;
    let e = t.request("U0DAVE", "readers", "30m").await.unwrap_err().to_string();
    assert!(e.contains("could not be asked whether it knows you"), "{e}");
    assert!(e.contains("TLS failed"), "{e}");
    assert!(!s.is_member("prod-readers", "dave").await);
}

#[tokio::test]
async fn a_bad_bind_password_fails_the_grant_with_a_clear_audit_entry_and_no_secret() {
    let Some((s, mut t)) = setup().await else { return };
    let r = t.request("U0ALICE", "readers", "30m").await.unwrap();
    // The password is changed (or rotated badly) after the request was made.
    let wrong = "wrong-Password-4321";
    let bad = extra_with(&s.url(), &format!("ca_file = \"{}\"", s.ca_file().display()), wrong);
    t.restart_with(&bad).await;
    t.service().approve(r.id, &user("U0BOB"), t.now()).await.unwrap();
    t.drain().await;
    let failed = t.audit_detail(r.id, "grant.failed").await;
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains(&format!("binding as {BIND_DN}: the directory refused: invalidCredentials")), "{failed}");
    assert!(error.contains("check the provider's bind_dn and bind_password"), "{failed}");
    let all = audit_text(&t, r.id).await;
    assert!(!all.contains(wrong) && !all.contains(BIND_PASSWORD), "no password in the audit trail: {all}");
    assert!(t.notices(r.id).contains(&NoticeKind::GrantFailed));
    assert!(!s.is_member("prod-readers", "alice").await);
    // The provider's Debug form (what a log line could show) hides it too.
    let config = jitbot::config::Config::parse(std::path::Path::new("t.toml"), &t.config_text()).unwrap();
    let p = jitbot::providers::LdapGroupProvider::new(
        "dir",
        match &config.providers["dir"] {
            jitbot::config::ProviderConfig::LdapGroup(c) => c,
            _ => unreachable!(),
        },
    )
    .unwrap();
    assert!(!format!("{p:?} {config:?}").contains(wrong));
}

#[tokio::test]
async fn groups_the_bind_dn_may_not_change_and_the_last_member_fail_clearly() {
    let Some((s, t)) = setup().await else { return };
    // The ACL does not list db-admins: a permanent refusal, nothing changed.
    let r = t.request("U0ALICE", "db-admin", "30m").await.unwrap();
    t.service().approve(r.id, &user("U0BOB"), t.now()).await.unwrap();
    t.drain().await;
    let failed = t.audit_detail(r.id, "grant.failed").await;
    assert!(failed["error"].as_str().unwrap().contains("insufficientAccessRights"), "{failed}");
    assert!(!s.is_member("db-admins", "alice").await);

    // solo's only other member leaves while alice holds access: removing
    // alice would leave the groupOfNames empty, which the schema forbids.
    let id = t.grant("U0ALICE", "solo", "30m").await;
    assert_eq!(t.state(id).await, "active");
    s.set_member("solo", &person("carol"), false).await;
    t.advance(Duration::from_secs(30 * 60));
    for step in [0, 6, 11] {
        t.advance(Duration::from_secs(step));
        t.drain().await;
    }
    assert_eq!(t.state(id).await, "revoke_failed");
    let failed = t.audit_detail(id, "revoke.attempt_failed").await;
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("objectClassViolation") && error.contains("placeholder member"), "{failed}");
    let alert = t.audit_line(id, NoticeKind::RevokeFailing).await;
    assert!(alert.contains("<@U0ALICE>") && alert.contains("placeholder member"), "{alert}");
    assert!(
        s.is_member("solo", "alice").await,
        "(the membership really is still there: that is why people are alerted)"
    );

    // With a placeholder added, the retried revocation goes through.
    s.set_member("solo", PLACEHOLDER, true).await;
    t.service().retry_revoke_as(id, &user("U0ADMIN"), t.now()).await.unwrap();
    t.drain().await;
    assert_eq!(t.state(id).await, "revoked");
    assert_eq!(s.members("solo").await, vec![PLACEHOLDER.to_owned()]);
}

#[tokio::test]
async fn group_of_unique_names_members_are_found_by_uid_and_kept_in_unique_member() {
    let Some((s, t)) = setup().await else { return };
    let id = t.grant("U0ALICE", "auditors", "30m").await;
    assert_eq!(t.state(id).await, "active");
    assert_eq!(s.members("auditors").await, vec![PLACEHOLDER.to_owned(), person("alice")]);
    // {email_local} is only unambiguous within the configured domains.
    t.link_as("U0VENDOR", "vendor-alice", "alice@vendor.example", &["engineering"]).await;
    let e = t.request("U0VENDOR", "auditors", "30m").await.unwrap_err().to_string();
    assert!(e.contains("only for people from example.com"), "{e}");
    t.advance(Duration::from_secs(30 * 60));
    t.drain().await;
    assert_eq!(t.state(id).await, "revoked");
    assert_eq!(s.members("auditors").await, vec![PLACEHOLDER.to_owned()]);
}

#[tokio::test]
async fn an_unreachable_directory_refuses_the_request_and_a_failing_grant_is_retried() {
    // Needs no server: nothing listens on port 1.
    let t = ProviderApp::spawn(&extra_with("ldap://127.0.0.1:1", "", BIND_PASSWORD), start_time()).await;
    let e = t.request("U0ALICE", "readers", "30m").await.unwrap_err().to_string();
    assert!(e.contains("dir could not be asked whether it knows you"), "{e}");
    assert!(e.contains("connecting to the directory: cannot reach the directory"), "{e}");
    assert!(e.contains("nothing was changed, try again in a moment"), "{e}");
    assert!(t.app.db().requests_in_states(&RequestState::ALL).await.unwrap().is_empty());

    // The directory goes away between the request and the grant: the grant
    // is retried, then fails, and nothing is left to revoke.
    let Some(s) = Slapd::start().await else { return };
    let mut t = ProviderApp::spawn(&extra(&s), start_time()).await;
    let r = t.request("U0ALICE", "readers", "30m").await.unwrap();
    t.restart_with(&extra_with("ldap://127.0.0.1:1", "", BIND_PASSWORD)).await;
    t.service().approve(r.id, &user("U0BOB"), t.now()).await.unwrap();
    t.run_for(Duration::from_secs(600), Duration::from_secs(30)).await;
    let attempts = t.audit(r.id).await.into_iter().filter(|(a, _)| a == "grant.attempt_failed").count();
    assert!(attempts >= 2, "connection failures are retried ({attempts} attempts)");
    let failed = t.audit_detail(r.id, "grant.failed").await;
    assert!(failed["error"].as_str().unwrap().contains("cannot reach the directory"), "{failed}");
    assert!(t.notices(r.id).contains(&NoticeKind::GrantFailed));
    assert!(!s.is_member("prod-readers", "alice").await);
}
