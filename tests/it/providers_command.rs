//! The `command` provider with the small programs in `tests/scripts/`:
//! argument lists without a shell, the `JITBOT_*` facts, a clean
//! environment, timeouts, captured output, one-shot actions, failing
//! revocations that alert and an administrator's retry.

use std::path::Path;
use std::time::{Duration, Instant};

use jitbot::clock::Clock;
use jitbot::metrics::Counter;
use jitbot::notify::NoticeKind;

use crate::support::providers::{ProviderApp, jitbot, script};
use crate::support::{start_time, user};

fn extra(marker: &Path) -> String {
    let m = marker.display();
    format!(
        r#"
[providers.cmd]
kind = "command"
grant_command = ["{grant}", "--cluster", "prod"]
revoke_command = ["{grant}", "--revoke"]
timeout = "10s"
env = {{ MARKER_DIR = "{m}" }}

[providers.hang]
kind = "command"
grant_command = ["{hang}"]
revoke_command = ["{hang}"]
timeout = "1s"
env = {{ MARKER_DIR = "{m}" }}

[providers.noisy]
kind = "command"
grant_command = ["{noisy}"]
revoke_command = ["{noisy}"]
env = {{ MARKER_DIR = "{m}" }}

[providers.jobs]
kind = "command"
grant_command = ["{import}"]
env = {{ MARKER_DIR = "{m}" }}

[roles.k8s-edit]
description = "Edit in the payments namespace"
provider = "cmd"
grant = {{ args = ["--namespace", "payments", "$(touch {m}/pwned); `id`"] }}
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "30m"
max_duration = "4h"

[roles.hang-role]
description = "A target that never answers"
provider = "hang"
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "30m"
max_duration = "4h"

[roles.noisy-role]
description = "A chatty target"
provider = "noisy"
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "30m"
max_duration = "4h"

[roles.import]
description = "Run the data import for a project"
provider = "jobs"
one_shot = true
grant = {{ args = ["apollo"] }}
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "15m"
max_duration = "1h"
"#,
        grant = script("grant-access.sh"),
        hang = script("hang.sh"),
        noisy = script("noisy.sh"),
        import = script("import.sh"),
    )
}

async fn spawn() -> (ProviderApp, tempfile::TempDir) {
    let marker = tempfile::tempdir().unwrap();
    let t = ProviderApp::spawn(&extra(marker.path()), start_time()).await;
    (t, marker)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test]
async fn grant_and_revoke_run_the_program_with_the_facts_and_no_shell() {
    let (t, marker) = spawn().await;
    let id = t.grant("U0ALICE", "k8s-edit", "30m").await;
    assert_eq!(t.state(id).await, "active");
    let call = read(&marker.path().join(format!("grant-{}", id.get())));
    for line in [
        "[--cluster]",
        "[prod]",
        "[--namespace]",
        "[payments]",
        &format!("[$(touch {}/pwned); `id`]", marker.path().display()),
        "JITBOT_ACTION=grant",
        &format!("JITBOT_REQUEST_ID={}", id.get()),
        "JITBOT_ROLE=k8s-edit",
        "JITBOT_USER_EMAIL=alice@example.com",
        "JITBOT_USER_SUBJECT=alice",
        "JITBOT_SLACK_ID=U0ALICE",
        "JITBOT_EXPIRES_AT=2026-01-01T00:30:00Z",
        &format!("MARKER_DIR={}", marker.path().display()),
    ] {
        assert!(call.contains(line), "the grant call lacks {line:?}:\n{call}");
    }
    assert!(!marker.path().join("pwned").exists(), "an argument must never reach a shell");
    // jitbot's own environment (here: cargo's variables) is not passed on.
    assert!(!call.contains("CARGO_"), "the program inherited jitbot's environment:\n{call}");
    let detail = t.audit_detail(id, "grant.applied").await;
    assert_eq!(detail["output"], "grant done for alice@example.com (k8s-edit)");

    t.advance(Duration::from_secs(31 * 60));
    t.drain().await;
    assert_eq!(t.state(id).await, "revoked");
    let call = read(&marker.path().join(format!("revoke-{}", id.get())));
    assert!(call.contains("[--revoke]") && call.contains("JITBOT_ACTION=revoke"), "{call}");
    assert_eq!(t.audit_detail(id, "revoke.applied").await["output"], "revoke done for alice@example.com (k8s-edit)");
    assert_eq!(read(&marker.path().join("calls")).lines().count(), 2);
}

#[tokio::test]
async fn a_failing_program_is_retried_with_its_output_in_the_audit_trail() {
    let (t, marker) = spawn().await;
    std::fs::write(marker.path().join("fail-grant"), "").unwrap();
    let r = t.request("U0ALICE", "k8s-edit", "30m").await.unwrap();
    t.service().approve(r.id, &user("U0BOB"), t.now()).await.unwrap();
    t.drain().await;
    assert_eq!(t.state(r.id).await, "granting");
    let failed = t.audit_detail(r.id, "grant.attempt_failed").await;
    assert_eq!(failed["error"], "grant command grant-access.sh exited with status 3: boom: the target refused");
    assert_eq!(failed["output"], "checking access for alice@example.com\n[stderr]\nboom: the target refused");
    std::fs::remove_file(marker.path().join("fail-grant")).unwrap();
    t.advance(Duration::from_secs(6));
    t.drain().await;
    assert_eq!(t.state(r.id).await, "active");
    assert_eq!(t.metrics.get(Counter::GrantAttemptsFailed), 1);
    assert_eq!(t.metrics.get(Counter::GrantsApplied), 1);
}

#[tokio::test]
async fn a_program_that_hangs_is_killed_with_everything_it_started() {
    let (t, marker) = spawn().await;
    let r = t.request("U0ALICE", "hang-role", "30m").await.unwrap();
    t.service().approve(r.id, &user("U0BOB"), t.now()).await.unwrap();
    let started = Instant::now();
    t.drain().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "the 1s timeout took {took:?}");
    let failed = t.audit_detail(r.id, "grant.attempt_failed").await;
    assert_eq!(failed["error"], "grant command hang.sh did not finish within 1s and was killed");
    assert_eq!(failed["output"], "starting");
    // The child it started was killed too (gone, or a zombie nobody reaps).
    let pid = read(&marker.path().join("child.pid")).trim().to_owned();
    assert!(!pid.is_empty());
    let stat = read(&Path::new("/proc").join(&pid).join("stat"));
    assert!(stat.is_empty() || stat.contains(") Z "), "the child {pid} still runs: {stat}");
}

#[tokio::test]
async fn long_output_is_cut_before_it_reaches_the_audit_trail() {
    let (t, _marker) = spawn().await;
    let id = t.grant("U0ALICE", "noisy-role", "30m").await;
    assert_eq!(t.state(id).await, "active");
    let output = t.audit_detail(id, "grant.applied").await["output"].as_str().unwrap().to_owned();
    assert!(output.len() < 9000, "{} bytes kept", output.len());
    assert!(output.starts_with("oooo") && output.contains("[stderr]\neeee"));
    assert_eq!(output.matches("[output truncated]").count(), 2);
}

#[tokio::test]
async fn a_one_shot_action_runs_once_tells_the_requester_and_has_nothing_to_revoke() {
    let (t, marker) = spawn().await;
    let id = t.grant("U0ALICE", "import", "15m").await;
    assert_eq!(t.state(id).await, "completed");
    assert_eq!(read(&marker.path().join("runs")).lines().count(), 1);
    assert_eq!(t.notices(id), vec![NoticeKind::RequestCreated, NoticeKind::Approved, NoticeKind::ActionFinished]);
    let dm = t.dm_text(id, NoticeKind::ActionFinished).await;
    assert!(dm.contains("Your action `import` (request #1) ran"), "{dm}");
    assert!(dm.contains("imported 42 rows for project apollo as requested by alice@example.com &lt;&amp;&gt;"), "{dm}");
    let line = t.audit_line(id, NoticeKind::ActionFinished).await;
    assert!(line.contains("one-shot action ran") && !line.contains("42 rows"), "output goes to the requester: {line}");
    let detail = t.audit_detail(id, "action.completed").await;
    assert!(detail["output"].as_str().unwrap().starts_with("imported 42 rows"), "{detail}");

    // Nothing to revoke, now or at "expiry"; the action never runs again.
    let e = t.service().revoke(id, &user("U0ALICE"), t.now()).await.unwrap_err();
    assert!(e.to_string().contains("completed"), "{e}");
    t.run_for(Duration::from_secs(3600), Duration::from_secs(300)).await;
    assert_eq!(read(&marker.path().join("runs")).lines().count(), 1);
    assert_eq!(t.state(id).await, "completed");
    let jobs = t.app.db().job_counts().await.unwrap();
    assert!(jobs.iter().all(|(kind, _, _)| kind != "revoke" && kind != "overdue_check"), "{jobs:?}");
    assert_eq!(t.metrics.get(Counter::ActionsRun), 1);
    // It may be asked for again.
    t.request("U0ALICE", "import", "15m").await.unwrap();
}

#[tokio::test]
async fn a_failed_one_shot_action_is_not_retried() {
    let (t, marker) = spawn().await;
    std::fs::write(marker.path().join("fail-run"), "").unwrap();
    let id = t.grant("U0ALICE", "import", "15m").await;
    assert_eq!(t.state(id).await, "action_failed");
    t.run_for(Duration::from_secs(600), Duration::from_secs(60)).await;
    assert_eq!(read(&marker.path().join("runs")).lines().count(), 1, "a one-shot action runs at most once");
    let dm = t.dm_text(id, NoticeKind::ActionFinished).await;
    assert!(
        dm.contains("failed: run command import.sh exited with status 1: import failed: source bucket is empty"),
        "{dm}"
    );
    let detail = t.audit_detail(id, "action.failed").await;
    assert_eq!(detail["output"], "[stderr]\nimport failed: source bucket is empty");
}

#[tokio::test]
async fn a_one_shot_action_interrupted_by_a_crash_is_not_started_again() {
    let (t, marker) = spawn().await;
    let r = t.request("U0ALICE", "import", "15m").await.unwrap();
    t.service().approve(r.id, &user("U0BOB"), t.now()).await.unwrap();
    // A worker claims the grant job and dies before recording anything.
    let claimed = t.app.db().claim_jobs("dead-worker", t.now(), Duration::from_secs(60), 10).await.unwrap();
    assert!(claimed.iter().any(|j| j.kind == "grant"));
    t.advance(Duration::from_secs(61));
    t.drain().await;
    assert_eq!(t.state(r.id).await, "action_failed");
    assert!(read(&marker.path().join("runs")).is_empty(), "it may have run once already: never twice");
    let detail = t.audit_detail(r.id, "action.failed").await;
    assert!(detail["error"].as_str().unwrap().contains("interrupted"), "{detail}");
}

#[tokio::test]
async fn a_failing_revocation_alerts_then_an_administrator_retries_it() {
    let (t, marker) = spawn().await;
    let id = t.grant("U0ALICE", "k8s-edit", "30m").await;
    std::fs::write(marker.path().join("fail-revoke"), "").unwrap();
    t.advance(Duration::from_secs(30 * 60));
    t.drain().await;
    assert_eq!(t.state(id).await, "revoking");
    t.advance(Duration::from_secs(6));
    t.drain().await;
    assert_eq!(t.state(id).await, "revoking");
    t.advance(Duration::from_secs(11));
    t.drain().await;
    // The third failure (17 s after expiry) alerts, naming request, role, user and the error.
    assert_eq!(t.state(id).await, "revoke_failed");
    assert!(t.notices(id).contains(&NoticeKind::RevokeFailing));
    let alert = t.audit_line(id, NoticeKind::RevokeFailing).await;
    for needle in [
        "request #1",
        "`k8s-edit`",
        "<@U0ALICE>",
        "alice@example.com",
        "revoke command grant-access.sh exited with status 3: boom: the target refused",
    ] {
        assert!(alert.contains(needle), "the alert lacks {needle:?}: {alert}");
    }
    // A minute after expiry it is overdue: another alert and the counter
    // (once the revocation attempt running at that moment has failed too).
    t.advance(Duration::from_secs(44));
    t.drain().await;
    t.advance(Duration::from_secs(6));
    t.drain().await;
    assert!(t.notices(id).contains(&NoticeKind::RevokeOverdue), "{:?}", t.notices(id));
    assert_eq!(t.metrics.get(Counter::RevocationsOverdue), 1);
    let overdue = t.audit_line(id, NoticeKind::RevokeOverdue).await;
    assert!(overdue.contains("OVERDUE") && overdue.contains("boom: the target refused"), "{overdue}");
    assert!(t.audit(id).await.iter().any(|(a, _)| a == "revoke.overdue"));

    // Only administrators may retry; after the cause is fixed it goes through at once.
    let e = t.service().retry_revoke_as(id, &user("U0ALICE"), t.now()).await.unwrap_err();
    assert!(e.to_string().contains("only jitbot administrators"), "{e}");
    std::fs::remove_file(marker.path().join("fail-revoke")).unwrap();
    t.service().retry_revoke_as(id, &user("U0ADMIN"), t.now()).await.unwrap();
    t.drain().await;
    assert_eq!(t.state(id).await, "revoked");
    let retry = t.audit_detail(id, "revoke.retry_requested").await;
    assert_eq!(retry["state"], "revoke_failed");
}

#[tokio::test]
async fn retry_revoke_on_the_command_line() {
    // The command line reads the wall clock: start the app's clock there.
    let marker = tempfile::tempdir().unwrap();
    let t = ProviderApp::spawn(&extra(marker.path()), jitbot::clock::SystemClock.now()).await;
    let id = t.grant("U0ALICE", "k8s-edit", "30m").await;
    std::fs::write(marker.path().join("fail-revoke"), "").unwrap();
    t.service().revoke(id, &user("U0ALICE"), t.now()).await.unwrap();
    for _ in 0..3 {
        t.drain().await;
        t.advance(Duration::from_secs(21));
    }
    assert_eq!(t.state(id).await, "revoke_failed");
    let config = t.config_path();
    let out = jitbot(&["retry-revoke", "--config", config.to_str().unwrap(), "#1"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("request #1 (k8s-edit, revoke_failed): revocation will be tried again now"), "{stdout}");
    std::fs::remove_file(marker.path().join("fail-revoke")).unwrap();
    t.advance(Duration::from_secs(60));
    t.drain().await;
    assert_eq!(t.state(id).await, "revoked");

    let out = jitbot(&["retry-revoke", "--config", config.to_str().unwrap(), "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not waiting for a revocation (it is revoked)"));
}

#[tokio::test]
async fn a_one_shot_action_whose_approval_expired_unrun_ends_and_frees_its_slot() {
    let (t, marker) = spawn().await;
    let req = t.request("U0ALICE", "import", "15m").await.unwrap();
    t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap();
    // The scheduler was down for longer than the approval lasts.
    t.advance(Duration::from_secs(3600));
    t.drain().await;
    assert_eq!(read(&marker.path().join("runs")).lines().count(), 0, "an expired approval runs nothing");
    assert_eq!(t.state(req.id).await, "action_failed");
    assert!(t.request_now(req.id).await.state_detail.unwrap().contains("approval expired"));
    t.request("U0ALICE", "import", "15m").await.unwrap();
}
