//! The `aws_identity_center` provider against a local AWS API emulator
//! (`moto_server`, one per test): jitbot's assignments are read back
//! through the emulator's `ListAccountAssignments`, as an administrator
//! would see them in the AWS console.
//!
//! Where the emulator differs from AWS (moto 5.2):
//! - assignment creation and deletion report `SUCCEEDED` at once, so the
//!   `IN_PROGRESS` polling, `FAILED` and the wait running out are covered by
//!   the provider's unit tests;
//! - its permission set ARNs are `arn:aws:sso:::instance/ssoins-.../ps-...`
//!   rather than the documented `arn:aws:sso:::permissionSet/ssoins-.../ps-...`
//!   that jitbot's config accepts, so these roles name permission sets by
//!   name (ARN parsing is unit tested);
//! - `CreateAccountAssignment` adds a duplicate when the assignment exists
//!   (AWS does not), which lets the tests show that jitbot never creates one
//!   twice;
//! - `CreatePermissionSet` without a session duration answers with a number
//!   where AWS sends an ISO 8601 string, so the fixture always gives one;
//! - IAM policies are not enforced, so an `AccessDenied` refusal is only
//!   unit tested.

use std::time::Duration;

use jitbot::clock::{Clock, SystemClock};
use jitbot::domain::{RequestState, Timestamp};
use jitbot::notify::NoticeKind;

use crate::support::moto::{ACCOUNT, Moto, REGION};
use crate::support::pg::PgTarget;
use crate::support::providers::{ProviderApp, jitbot};
use crate::support::{start_time, user};

/// The emulator with two permission sets and Identity Center users for
/// alice and dave (carol, linked too, has none).
struct Aws {
    moto: Moto,
    read_only: String,
    power_user: String,
    alice: String,
    dave: String,
}

impl Aws {
    async fn start() -> Option<Self> {
        let moto = Moto::start().await?;
        let read_only = moto.create_permission_set("ReadOnly").await;
        let power_user = moto.create_permission_set("PowerUser").await;
        let alice = moto.create_user("alice@example.com", "alice@example.com").await;
        let dave = moto.create_user("dave@example.com", "dave@example.com").await;
        Some(Self { moto, read_only, power_user, alice, dave })
    }

    fn extra(&self) -> String {
        let m = &self.moto;
        format!(
            r#"
[providers.aws]
kind = "aws_identity_center"
instance_arn = "{instance}"
identity_store_id = "{store}"
region = "{REGION}"
endpoint_url = "{url}"
timeout = "5s"
assignment_wait = "10s"

[roles.aws-ro]
description = "Read-only in the production account"
provider = "aws"
grant = {{ account = "{ACCOUNT}", permission_set = "ReadOnly" }}
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "30m"
max_duration = "4h"

[roles.aws-ro-long]
description = "Read-only in the production account, for longer"
provider = "aws"
grant = {{ account = "{ACCOUNT}", permission_set = "ReadOnly" }}
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "2h"
max_duration = "4h"

[roles.aws-power]
description = "Power user in the production account"
provider = "aws"
grant = {{ account = "{ACCOUNT}", permission_set = "PowerUser" }}
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "30m"
max_duration = "4h"

[roles.aws-gone]
description = "A permission set that was deleted"
provider = "aws"
grant = {{ account = "{ACCOUNT}", permission_set = "NoSuchSet" }}
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "30m"
max_duration = "4h"
"#,
            instance = m.instance_arn,
            store = m.identity_store_id,
            url = m.url,
        )
    }

    async fn spawn(&self, start: Timestamp, db_url: Option<String>) -> ProviderApp {
        let t = ProviderApp::spawn_on(&self.extra(), start, db_url).await;
        t.link("U0CAROL", "carol", &["engineering"]).await;
        t
    }
}

fn notes(detail: &serde_json::Value) -> String {
    detail["notes"]
        .as_array()
        .map(|n| n.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join("; "))
        .unwrap_or_default()
}

#[tokio::test]
async fn an_assignment_is_created_on_grant_and_deleted_at_expiry() {
    let Some(aws) = Aws::start().await else { return };
    let t = aws.spawn(start_time(), None).await;
    assert!(!aws.moto.is_assigned(&aws.read_only, &aws.alice).await, "no standing access");

    let id = t.grant("U0ALICE", "aws-ro", "30m").await;
    assert_eq!(t.state(id).await, "active");
    assert_eq!(aws.moto.assignments(&aws.read_only, &aws.alice).await, 1);
    assert!(!aws.moto.is_assigned(&aws.power_user, &aws.alice).await, "only the role's permission set");
    assert_eq!(
        notes(&t.audit_detail(id, "grant.applied").await),
        format!("assigned permission set ReadOnly in account {ACCOUNT} for userName alice@example.com")
    );

    t.advance(Duration::from_secs(30 * 60));
    t.drain().await;
    assert_eq!(t.state(id).await, "revoked");
    assert!(!aws.moto.is_assigned(&aws.read_only, &aws.alice).await);
    assert_eq!(
        notes(&t.audit_detail(id, "revoke.applied").await),
        format!("removed permission set ReadOnly in account {ACCOUNT} for userName alice@example.com")
    );
    assert_eq!(t.notices(id).last(), Some(&NoticeKind::Revoked));
}

#[tokio::test]
async fn leases_and_grant_specs_work_with_jitbot_s_own_database_on_postgresql() {
    let Some(pg) = PgTarget::create().await else { return };
    let Some(aws) = Aws::start().await else { return };
    let t = aws.spawn(start_time(), Some(pg.store_url().await)).await;
    let short = t.grant("U0ALICE", "aws-ro", "30m").await;
    let long = t.grant("U0ALICE", "aws-ro-long", "2h").await;
    assert_eq!((t.state(short).await, t.state(long).await), ("active".into(), "active".into()));
    assert_eq!(aws.moto.assignments(&aws.read_only, &aws.alice).await, 1, "one assignment, held twice");
    t.advance(Duration::from_secs(31 * 60));
    t.drain().await;
    assert_eq!(t.state(short).await, "revoked");
    assert!(aws.moto.is_assigned(&aws.read_only, &aws.alice).await);
    t.advance(Duration::from_secs(90 * 60));
    t.drain().await;
    assert_eq!(t.state(long).await, "revoked");
    assert!(!aws.moto.is_assigned(&aws.read_only, &aws.alice).await);
    assert_eq!(t.app.db().lease(long).await.unwrap().unwrap().outcome.as_deref(), Some("revoked"));
}

#[tokio::test]
async fn two_roles_sharing_one_assignment_keep_it_until_the_last_one_ends() {
    let Some(aws) = Aws::start().await else { return };
    let t = aws.spawn(start_time(), None).await;
    let short = t.grant("U0ALICE", "aws-ro", "30m").await;
    let long = t.grant("U0ALICE", "aws-ro-long", "2h").await;
    assert_eq!(aws.moto.assignments(&aws.read_only, &aws.alice).await, 1);

    t.advance(Duration::from_secs(31 * 60));
    t.drain().await;
    assert_eq!(t.state(short).await, "revoked");
    assert!(aws.moto.is_assigned(&aws.read_only, &aws.alice).await, "the longer grant still holds it");
    let n = notes(&t.audit_detail(short, "revoke.applied").await);
    assert_eq!(n, format!("left in place: request(s) {long} still hold the same access"));

    t.advance(Duration::from_secs(90 * 60));
    t.drain().await;
    assert_eq!(t.state(long).await, "revoked");
    assert!(!aws.moto.is_assigned(&aws.read_only, &aws.alice).await);
}

#[tokio::test]
async fn an_assignment_held_before_jitbot_granted_it_is_never_removed() {
    let Some(aws) = Aws::start().await else { return };
    let t = aws.spawn(start_time(), None).await;
    aws.moto.assign(&aws.read_only, &aws.dave).await;
    let id = t.grant("U0DAVE", "aws-ro", "30m").await;
    assert_eq!(t.state(id).await, "active");
    assert!(notes(&t.audit_detail(id, "grant.applied").await).contains("already held this access before jitbot"));
    assert_eq!(aws.moto.assignments(&aws.read_only, &aws.dave).await, 1, "nothing was added");
    t.advance(Duration::from_secs(31 * 60));
    t.drain().await;
    assert_eq!(t.state(id).await, "revoked");
    assert!(aws.moto.is_assigned(&aws.read_only, &aws.dave).await, "jitbot never removes what it did not give");
    assert!(notes(&t.audit_detail(id, "revoke.applied").await).contains("held this access before jitbot"));

    // Once the standing assignment is gone, a new grant is jitbot's to remove.
    aws.moto.unassign(&aws.read_only, &aws.dave).await;
    let id = t.grant("U0DAVE", "aws-ro", "30m").await;
    assert!(aws.moto.is_assigned(&aws.read_only, &aws.dave).await);
    t.advance(Duration::from_secs(31 * 60));
    t.drain().await;
    assert_eq!(t.state(id).await, "revoked");
    assert!(!aws.moto.is_assigned(&aws.read_only, &aws.dave).await);
}

#[tokio::test]
async fn a_person_without_an_identity_center_user_is_refused_when_asking() {
    let Some(aws) = Aws::start().await else { return };
    let t = aws.spawn(start_time(), None).await;
    let e = t.request("U0CAROL", "aws-ro", "30m").await.unwrap_err().to_string();
    assert!(e.contains("no IAM Identity Center user with userName carol@example.com"), "{e}");
    assert!(t.app.db().requests_in_states(&RequestState::ALL).await.unwrap().is_empty(), "no request was made");

    // A permission set named in the config that the instance does not have
    // fails the grant with the name, and nothing is assigned.
    let r = t.request("U0ALICE", "aws-gone", "30m").await.unwrap();
    t.service().approve(r.id, &user("U0BOB"), t.now()).await.unwrap();
    t.drain().await;
    let failed = t.audit_detail(r.id, "grant.failed").await;
    assert!(failed["error"].as_str().unwrap().contains("there is no permission set named NoSuchSet"), "{failed}");
    assert!(t.notices(r.id).contains(&NoticeKind::GrantFailed));
}

#[tokio::test]
async fn people_can_be_found_by_email_instead_of_user_name() {
    let Some(aws) = Aws::start().await else { return };
    // Erin's userName is not her email: only the email lookup finds her.
    let erin = aws.moto.create_user("erin", "erin@example.com").await;
    let by_name = aws.spawn(start_time(), None).await;
    by_name.link("U0ERIN", "erin", &["engineering"]).await;
    let e = by_name.request("U0ERIN", "aws-ro", "30m").await.unwrap_err().to_string();
    assert!(e.contains("no IAM Identity Center user with userName erin@example.com"), "{e}");

    let extra = aws.extra().replace("timeout = \"5s\"", "timeout = \"5s\"\nuser_lookup = \"email\"");
    let t = ProviderApp::spawn(&extra, start_time()).await;
    t.link("U0ERIN", "erin", &["engineering"]).await;
    let id = t.grant("U0ERIN", "aws-power", "30m").await;
    assert_eq!(t.state(id).await, "active");
    assert!(aws.moto.is_assigned(&aws.power_user, &erin).await);
    t.advance(Duration::from_secs(31 * 60));
    t.drain().await;
    assert_eq!(t.state(id).await, "revoked");
    assert!(!aws.moto.is_assigned(&aws.power_user, &erin).await);
}

#[tokio::test]
async fn reconcile_reports_a_missing_assignment_and_one_that_came_back() {
    let Some(aws) = Aws::start().await else { return };
    // The command line reads the wall clock: start the app's clock there.
    let t = aws.spawn(SystemClock.now(), None).await;
    let gone = t.grant("U0ALICE", "aws-ro", "30m").await;
    let live = t.grant("U0DAVE", "aws-power", "30m").await;
    t.service().revoke(gone, &user("U0ALICE"), t.now()).await.unwrap();
    t.drain().await;
    assert_eq!(t.state(gone).await, "revoked");
    // Behind jitbot's back: alice's assignment comes back, dave's disappears.
    aws.moto.assign(&aws.read_only, &aws.alice).await;
    aws.moto.unassign(&aws.power_user, &aws.dave).await;

    let config = t.config_path();
    let config = config.to_str().unwrap();
    let out = jitbot(&["reconcile", "--config", config]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains(&format!(
            "request {gone} `aws-ro` of alice@example.com (provider aws): revoked in jitbot but still PRESENT"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "request {live} `aws-power` of dave@example.com (provider aws): active in jitbot but ABSENT"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("2 difference(s), 2 unresolved"), "{stdout}");
    assert!(aws.moto.is_assigned(&aws.read_only, &aws.alice).await, "without --fix nothing changes");

    let out = jitbot(&["reconcile", "--config", config, "--fix"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("still PRESENT in the target; revoked again"), "{stdout}");
    assert!(!aws.moto.is_assigned(&aws.read_only, &aws.alice).await);
}

#[test]
fn check_config_names_a_bad_account_or_permission_set() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jitbot.toml");
    let base = crate::support::config_text("sqlite://jitbot.db", "http://127.0.0.1:1/hook");
    let provider = r#"
[providers.aws]
kind = "aws_identity_center"
instance_arn = "arn:aws:sso:::instance/ssoins-0123456789abcdef"
identity_store_id = "d-0123456789"
region = "eu-west-1"

[roles.aws-ro]
description = "Read-only"
provider = "aws"
grant = { account = "123456789012", permission_set = "arn:aws:sso:::permissionSet/ssoins-0123456789abcdef/ps-0123456789abcdef" }
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "30m"
max_duration = "4h"
"#;
    let check = |text: &str| {
        std::fs::write(&path, format!("{base}\n{text}")).unwrap();
        let out = jitbot(&["check-config", path.to_str().unwrap()]);
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let (code, text) = check(provider);
    assert_eq!(code, Some(0), "{text}");
    let cases = [
        ("\"123456789012\"", "\"12345678901\"", "roles.aws-ro.grant.account: \"12345678901\" is not a 12-digit"),
        ("/ps-0123456789abcdef\"", "/ps-01\"", "roles.aws-ro.grant.permission_set: "),
        ("instance/ssoins-0123456789abcdef\"\n", "instance/0123\"\n", "providers.aws.instance_arn: "),
        ("\"eu-west-1\"", "\"Europe\"", "providers.aws.region: "),
        ("kind = \"aws_identity_center\"", "kind = \"aws_identity_center\"\nsecret = \"x\"", "unknown field `secret`"),
    ];
    for (from, to, want) in cases {
        let (code, text) = check(&provider.replacen(from, to, 1));
        assert_eq!(code, Some(1), "{to}: {text}");
        assert!(text.contains(want), "{to}: {text}");
    }
}

#[tokio::test]
async fn an_unreachable_aws_refuses_the_request_for_now_and_writes_nothing() {
    // Needs no emulator: nothing listens on port 1.
    let extra = r#"
[providers.aws]
kind = "aws_identity_center"
instance_arn = "arn:aws:sso:::instance/ssoins-0123456789abcdef"
identity_store_id = "d-0123456789"
region = "eu-west-1"
endpoint_url = "http://127.0.0.1:1"
timeout = "2s"

[roles.aws-ro]
description = "Read-only"
provider = "aws"
grant = { account = "123456789012", permission_set = "ReadOnly" }
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "30m"
max_duration = "4h"
"#;
    crate::support::moto::set_credentials_env();
    let t = ProviderApp::spawn(extra, start_time()).await;
    let e = t.request("U0ALICE", "aws-ro", "30m").await.unwrap_err().to_string();
    assert!(e.contains("aws could not be asked whether it knows you"), "{e}");
    assert!(e.contains("GetUserId") && e.contains("cannot call AWS"), "{e}");
    assert!(e.contains("try again in a moment"), "{e}");
    assert!(!e.contains("testing"), "no credentials in messages: {e}");
    assert!(t.app.db().requests_in_states(&RequestState::ALL).await.unwrap().is_empty(), "no request was made");
}

#[tokio::test]
async fn a_failing_revocation_is_retried_and_alerted_and_finishes_after_the_fix() {
    let Some(aws) = Aws::start().await else { return };
    let mut t = aws.spawn(start_time(), None).await;
    let id = t.grant("U0ALICE", "aws-ro", "30m").await;
    assert!(aws.moto.is_assigned(&aws.read_only, &aws.alice).await);
    // AWS becomes unreachable for jitbot (a wrong endpoint after a config change).
    let good = t.extra.clone();
    t.restart_with(&good.replace(&aws.moto.url, "http://127.0.0.1:1")).await;
    t.advance(Duration::from_secs(30 * 60));
    for step in [0, 6, 11] {
        t.advance(Duration::from_secs(step));
        t.drain().await;
    }
    assert_eq!(t.state(id).await, "revoke_failed");
    let alert = t.audit_line(id, NoticeKind::RevokeFailing).await;
    for needle in ["`aws-ro`", "<@U0ALICE>", "alice@example.com", "GetUserId", "cannot call AWS", "Connection refused"]
    {
        assert!(alert.contains(needle), "the alert lacks {needle:?}: {alert}");
    }
    assert!(aws.moto.is_assigned(&aws.read_only, &aws.alice).await, "(the access really is still there)");

    t.restart_with(&good).await;
    t.service().retry_revoke_as(id, &user("U0ADMIN"), t.now()).await.unwrap();
    t.drain().await;
    assert_eq!(t.state(id).await, "revoked");
    assert!(!aws.moto.is_assigned(&aws.read_only, &aws.alice).await);
}

#[tokio::test]
async fn an_extension_keeps_the_one_assignment_until_the_new_expiry() {
    let Some(aws) = Aws::start().await else { return };
    let t = aws.spawn(start_time(), None).await;
    let id = t.grant("U0ALICE", "aws-ro", "30m").await;
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
        other => panic!("aws-ro extensions need approval: {other:?}"),
    };
    t.service().approve(ext, &user("U0BOB"), t.now()).await.unwrap();
    t.drain().await;
    assert_eq!(
        notes(&t.audit_detail(id, "grant.extended").await),
        format!("permission set ReadOnly in account {ACCOUNT} for userName alice@example.com was already assigned")
    );
    assert_eq!(aws.moto.assignments(&aws.read_only, &aws.alice).await, 1, "applying it again adds nothing");

    t.advance(Duration::from_secs(31 * 60));
    t.drain().await;
    assert_eq!(t.state(id).await, "active", "the extension moved the expiry");
    assert!(aws.moto.is_assigned(&aws.read_only, &aws.alice).await);
    t.advance(Duration::from_secs(60 * 60));
    t.drain().await;
    assert_eq!(t.state(id).await, "revoked");
    assert!(!aws.moto.is_assigned(&aws.read_only, &aws.alice).await);
}
