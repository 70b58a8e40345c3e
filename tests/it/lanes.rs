//! Revocations first: the access lane has slots of its own, so a backlog of
//! notices stuck on a slow Slack never delays a revocation; a process that
//! dies mid-job costs seconds, not a lease; the queue shows on `/metrics`;
//! an idle scheduler does not poll, however many jobs wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jitbot::app::App;
use jitbot::domain::{RequestId, SlackUser};
use jitbot::jobs::{JobKind, JobLane, SchedulerOptions};
use jitbot::metrics::Metrics;
use jitbot::notify::{Notice, NoticeKind, Notifier, NotifyError};
use jitbot::store::Claim;
use tokio::task::JoinHandle;

use crate::support::{Backend, TestApp, both_backends, eventually, eventually_within, insert_job, user};

/// A Slack that never answers: every notice and DM hangs in its slot.
#[derive(Default)]
struct StuckSlack {
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl Notifier for StuckSlack {
    async fn notify(&self, _: &Notice) -> Result<(), NotifyError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::pending().await
    }

    async fn direct_message(&self, _: &SlackUser, _: &str) -> Result<(), NotifyError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::pending().await
    }
}

/// Runs `app`'s scheduler loop until the handle is aborted (a kill: the
/// stuck notices never finish, so a graceful stop would wait forever).
fn run_loop(app: &App) -> JoinHandle<()> {
    tokio::spawn(app.scheduler().clone().run(std::future::pending::<()>()))
}

async fn a_due_revocation_is_applied_while_thousands_of_notices_hang(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let req = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap();
    t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap();
    t.drain().await;
    assert_eq!(t.state(req.id).await, "active");
    // 2,000 direct messages, all due before the expiry: in one queue ordered
    // by due time every one of them comes before the revocation.
    let now = t.now();
    let mut tx = t.db().begin().await.unwrap();
    for i in 0..2000 {
        let payload = format!(r#"{{"team_id":"T0WORK","user_id":"U0BULK{i}","text":"hello"}}"#);
        insert_job(&mut tx, JobKind::DirectMessage, None, &payload, now, now).await;
    }
    tx.commit().await.unwrap();
    t.advance(Duration::from_secs(31 * 60));

    let slack = Arc::new(StuckSlack::default());
    let app = t
        .replica_with_notifier(SchedulerOptions { worker_id: "lanes".into(), ..Default::default() }, slack.clone())
        .await;
    let notice_slots = app.scheduler().lane_concurrency(JobLane::Notice);
    let running = run_loop(&app);
    eventually_within("the revocation", Duration::from_secs(10), async || t.hook.count("revoke", req.id) == 1).await;
    eventually("the request revoked", async || t.state(req.id).await == "revoked").await;
    // The notice lane was full of hanging deliveries the whole time.
    eventually("every notice slot hanging", async || slack.calls.load(Ordering::SeqCst) == notice_slots).await;
    let revoke = t
        .pairs(&format!("SELECT state, attempt FROM jobs WHERE kind = 'revoke' AND request_id = {}", req.id.get()))
        .await;
    assert_eq!(revoke, vec![("done".to_owned(), 1)], "revoked at the first attempt");
    let waiting = t
        .number(
            "SELECT COUNT(*) FROM jobs WHERE kind = 'direct_message' AND state = 'queued' AND payload LIKE '%U0BULK%'",
        )
        .await;
    assert_eq!(waiting, 2000 - i64::try_from(notice_slots).unwrap());
    running.abort();
    let _ = running.await;
}

async fn jobs_of_a_dead_process_are_taken_over_in_seconds_and_applied_once(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let req = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap();
    t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap();
    // A scheduler of another process claims the grant with a full lease,
    // announces itself once, and dies.
    t.db().worker_heartbeat("dead-process", "another-process", t.now()).await.unwrap();
    let stolen = t.db().claim_jobs("dead-process", t.now(), Duration::from_secs(60), 100).await.unwrap();
    let grant = stolen.iter().find(|j| j.kind == "grant").cloned().unwrap();
    assert_eq!(t.drain().await, 0, "its jobs are not free while its lease holds");

    // The restarted process (SQLite: frees them at start-up) or a replica
    // (PostgreSQL: once the dead worker's heartbeat is older than the
    // timeout) takes them over long before the 60 s lease ends.
    let options = SchedulerOptions {
        worker_id: "successor".into(),
        heartbeat_every: Duration::from_millis(300),
        heartbeat_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let app = t.replica_with(options, None).await;
    let running = run_loop(&app);
    eventually_within("the grant taken over", Duration::from_secs(10), async || t.hook.count("grant", req.id) == 1)
        .await;
    eventually("the request active", async || t.state(req.id).await == "active").await;
    running.abort();
    let _ = running.await;

    assert_eq!(t.hook.count("grant", req.id), 1, "granted once");
    let job = format!("SELECT worker, attempt FROM jobs WHERE id = {}", grant.id);
    assert_eq!(t.pairs(&job).await, vec![("successor".to_owned(), grant.attempt + 1)]);
    // The dead attempt is fenced off.
    let mut tx = t.db().begin().await.unwrap();
    assert!(!tx.complete_job(grant.id, grant.attempt, t.now()).await.unwrap());
    tx.rollback().await.unwrap();
}

async fn queue_depth_lateness_and_provider_calls_are_on_metrics(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let req = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap();
    t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap();
    let metrics = Metrics::default();
    let options = SchedulerOptions { worker_id: "metrics".into(), metrics: metrics.clone(), ..Default::default() };
    let app = t.replica_with(options, None).await;
    // Nothing runs yet: the grant waits in the access lane.
    let text = metrics.scrape().await;
    assert!(text.contains("# TYPE jitbot_jobs_due gauge\n"), "{text}");
    assert!(text.contains("jitbot_jobs_due{lane=\"access\"} 1\n"), "{text}");
    assert!(text.contains("jitbot_oldest_due_job_seconds{lane=\"access\"} 0\n"), "{text}");
    t.advance(Duration::from_secs(7));
    let text = metrics.scrape().await;
    assert!(text.contains("jitbot_oldest_due_job_seconds{lane=\"access\"} 7\n"), "{text}");

    let port = app.port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    eventually("the grant", async || t.hook.count("grant", req.id) == 1).await;
    // Half a minute past the expiry (30 minutes from the approval, 7 s ago),
    // before the overdue check comes due.
    t.advance(Duration::from_secs(30 * 60 + 30 - 7));
    eventually("the revocation", async || t.state(req.id).await == "revoked").await;
    let url = format!("http://127.0.0.1:{port}/metrics");
    let expected = [
        "jitbot_jobs_due{lane=\"access\"} 0\n",
        "jitbot_jobs_due{lane=\"notice\"} 0\n",
        "jitbot_provider_call_seconds_count{provider=\"ops-hook\",op=\"grant\"} 1\n",
        "jitbot_provider_call_seconds_count{provider=\"ops-hook\",op=\"revoke\"} 1\n",
        "jitbot_revocation_lateness_seconds_count 1\n",
        "jitbot_revocation_lateness_seconds_sum 30\n",
        "jitbot_revocation_lateness_seconds_bucket{le=\"10\"} 0\n",
        "jitbot_revocation_lateness_seconds_bucket{le=\"30\"} 1\n",
    ];
    let mut text = String::new();
    let complete = eventually_within("the figures on /metrics", Duration::from_secs(10), async || {
        text = reqwest::get(&url).await.unwrap().text().await.unwrap();
        expected.iter().all(|line| text.contains(line))
    });
    if tokio::time::timeout(Duration::from_secs(9), complete).await.is_err() {
        panic!("missing {:?} in\n{text}", expected.iter().filter(|l| !text.contains(*l)).collect::<Vec<_>>());
    }
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), running).await.unwrap().unwrap().unwrap();
}

async fn an_idle_scheduler_with_ten_thousand_waiting_jobs_does_not_poll(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    // 10,000 revocations and 10,000 notices (each in a series of its own),
    // all due in an hour.
    let due = t.now().plus(Duration::from_secs(3600)).millis();
    let now = t.now().millis();
    t.exec(&format!(
        "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 10000)
         INSERT INTO jobs (kind, request_id, payload, state, due_at, attempt, created_at, lane, series)
         SELECT 'revoke', n, '{{}}', 'queued', {due} + n, 0, {now}, 'access', NULL FROM g
         UNION ALL
         SELECT 'notify', n, '{{\"notice\":\"granted\"}}', 'queued', {due} + n, 0, {now}, 'notice', 'notify:' || n FROM g"
    ))
    .await;
    let app = t.replica("idle").await;
    let running = run_loop(&app);
    // Start-up: one claim per lane and one read of the next wake-up.
    eventually("the first wake-up read", async || app.scheduler().queue_reads() >= 3).await;
    // (On PostgreSQL the listening connection wakes the loop once more when
    // it is up, so the first second may see a second round.)
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let settled = app.scheduler().queue_reads();
    assert!(settled <= 6, "{settled} queue reads at start-up");
    // A loop that spun would read the queue hundreds of times a second; an
    // idle one sleeps until the clock reaches the first due job.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(app.scheduler().queue_reads(), settled, "the idle scheduler read the queue again");
    // Reaching the first due job wakes it: it runs that job, then sleeps again.
    t.advance(Duration::from_secs(3601));
    eventually("the first revocation claimed", async || {
        t.number("SELECT COUNT(*) FROM jobs WHERE state <> 'queued'").await >= 1
    })
    .await;
    running.abort();
    let _ = running.await;
}

async fn a_catch_up_claims_the_most_overdue_revocations_first_in_batches(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let now = t.now();
    let mut tx = t.db().begin().await.unwrap();
    let mut by_lateness = Vec::new();
    for minutes in [5u64, 50, 20, 40, 10] {
        let due = now.minus(Duration::from_secs(60 * minutes));
        let id =
            insert_job(&mut tx, JobKind::Revoke, Some(RequestId::new(i64::try_from(minutes).unwrap())), "{}", due, now)
                .await;
        by_lateness.push((minutes, id));
    }
    // Notices even more overdue do not count in the access lane.
    let notice = JobKind::Notify(NoticeKind::Revoked);
    insert_job(&mut tx, notice, Some(RequestId::new(99)), &notice.payload(), now.minus(Duration::from_secs(7200)), now)
        .await;
    tx.commit().await.unwrap();
    by_lateness.sort_by_key(|(minutes, _)| std::cmp::Reverse(*minutes));
    let expected: Vec<i64> = by_lateness.iter().map(|(_, id)| *id).collect();
    let claim =
        Claim { worker: "catch-up", lane: Some("access"), lease: Duration::from_secs(60), limit: 3, dead_after: None };
    let first: Vec<i64> = t.db().claim(&claim, now).await.unwrap().into_iter().map(|j| j.id).collect();
    let mut first_sorted = first.clone();
    first_sorted.sort_by_key(|id| expected.iter().position(|e| e == id));
    assert_eq!(first_sorted, expected[..3], "one statement, the three most overdue");
    let rest: Vec<i64> = t.db().claim(&claim, now).await.unwrap().into_iter().map(|j| j.id).collect();
    assert_eq!(rest.len(), 2);
    assert!(rest.iter().all(|id| expected[3..].contains(id)));
}

both_backends!(
    a_catch_up_claims_the_most_overdue_revocations_first_in_batches,
    a_due_revocation_is_applied_while_thousands_of_notices_hang,
    jobs_of_a_dead_process_are_taken_over_in_seconds_and_applied_once,
    queue_depth_lateness_and_provider_calls_are_on_metrics,
    an_idle_scheduler_with_ten_thousand_waiting_jobs_does_not_poll,
);

/// A Slack that takes `delay` per call (a slow, rate-limited one).
struct SlowSlack {
    delay: Duration,
}

#[async_trait::async_trait]
impl Notifier for SlowSlack {
    async fn notify(&self, _: &Notice) -> Result<(), NotifyError> {
        tokio::time::sleep(self.delay).await;
        Ok(())
    }

    async fn direct_message(&self, _: &SlackUser, _: &str) -> Result<(), NotifyError> {
        tokio::time::sleep(self.delay).await;
        Ok(())
    }
}

/// Catch-up after an outage: `n` grants expired while jitbot was down,
/// each with a notice written earlier and still undelivered (so in one
/// queue ordered by due time every notice would come first), Slack taking
/// 200 ms per call. Prints when the first and the last revocation were
/// applied after start.
///
/// ```sh
/// JITBOT_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test JITBOT_BENCH_JOBS=10000 \
///   cargo test --release --test it -- --ignored --nocapture benchmark_catch_up
/// ```
///
/// (`JITBOT_BENCH_POOL` sets `database.max_connections`, default 20.)
async fn benchmark_catch_up(backend: Backend) {
    let env = |name: &str, default: u32| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (n, pool) = (i64::from(env("JITBOT_BENCH_JOBS", 2000)), env("JITBOT_BENCH_POOL", 20));
    let t = TestApp::spawn_with_pool(backend, pool).await;
    let now = t.now().millis();
    let expires = t.now().plus(Duration::from_secs(30 * 60));
    t.exec(&format!(
        "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {n})
         INSERT INTO access_requests
           (team_id, requester_id, requester_issuer, requester_subject, requester_email, role, provider,
            duration_ms, reason, approvals_required, state, open_slot, created_at, decided_at, granted_at,
            expires_at, updated_at)
         SELECT 'T0WORK', 'U0BULK' || n, 'https://idp.example', 'bulk' || n, 'bulk' || n || '@example.com',
                'prod-db-readonly', 'ops-hook', 1800000, 'bulk', 1, 'active',
                'T0WORK/U0BULK' || n || '/prod-db-readonly', {now}, {now}, {now}, {exp} + n, {now}
         FROM g",
        exp = expires.millis()
    ))
    .await;
    t.exec(
        "INSERT INTO jobs (kind, request_id, payload, state, due_at, attempt, created_at, lane, series)
         SELECT 'revoke', id, '{}', 'queued', expires_at, 0, created_at, 'access', NULL
         FROM access_requests WHERE reason = 'bulk'
         UNION ALL
         SELECT 'notify', id, '{\"notice\":\"granted\"}', 'queued', created_at, 0, created_at, 'notice', 'notify:' || id
         FROM access_requests WHERE reason = 'bulk'",
    )
    .await;
    // Down past every expiry.
    t.clock.set(expires.plus(Duration::from_secs(3600)));
    let started = std::time::Instant::now();
    let slack = Arc::new(SlowSlack { delay: Duration::from_millis(200) });
    let app =
        t.replica_with_notifier(SchedulerOptions { worker_id: "bench".into(), ..Default::default() }, slack).await;
    let slots = (app.scheduler().lane_concurrency(JobLane::Access), app.scheduler().lane_concurrency(JobLane::Notice));
    let running = run_loop(&app);
    let done = "SELECT COUNT(*) FROM jobs WHERE kind = 'revoke' AND state = 'done'";
    eventually_within("the first revocation", Duration::from_secs(600), async || t.number(done).await >= 1).await;
    let first = started.elapsed();
    eventually_within("every revocation", Duration::from_secs(1800), async || t.number(done).await == n).await;
    let all = started.elapsed();
    let notices = t.number("SELECT COUNT(*) FROM jobs WHERE kind = 'notify' AND state = 'done'").await;
    running.abort();
    let _ = running.await;
    println!(
        "{backend:?}: {n} revocations overdue at start (pool {pool}: {} access / {} notice slots, Slack 200 ms per call): \
         first applied after {:.2} s, all after {:.2} s ({:.0}/s); {notices} notices delivered meanwhile",
        slots.0,
        slots.1,
        first.as_secs_f64(),
        all.as_secs_f64(),
        n as f64 / all.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark; run it explicitly"]
async fn benchmark_catch_up_sqlite() {
    benchmark_catch_up(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark; run it explicitly"]
async fn benchmark_catch_up_postgres() {
    if crate::support::postgres_server().is_none() {
        return;
    }
    benchmark_catch_up(Backend::Postgres).await;
}
