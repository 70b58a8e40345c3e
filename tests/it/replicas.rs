//! Several replicas on one database: revocations are performed exactly once
//! and shared between replicas, a replica that dies mid-job is taken over
//! when its lease runs out, and a database outage is survived.
//!
//! Replicas here are complete `App`s, each with its own pool and its real
//! scheduler loop, sharing the database, the manual clock and the webhook
//! target. On PostgreSQL their leases run on the database's clock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use jitbot::app::App;
use jitbot::domain::Timestamp;
use jitbot::jobs::SchedulerOptions;
use jitbot::notify::NoticeKind;
use jitbot::providers::{ApprovedGrant, GrantTarget, Provider, ProviderError, ProviderReport, Providers};
use jitbot::service::ServiceError;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::support::{Backend, TestApp, both_backends, eventually_within, postgres_server, user};

/// A replica's scheduler loop running in a task of its own.
struct RunningLoop {
    app: App,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunningLoop {
    fn start(app: App) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let scheduler = app.scheduler().clone();
        let task = tokio::spawn(scheduler.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        Self { app, stop, task }
    }

    /// Stops the loop the way SIGTERM does: running jobs finish first.
    async fn stop(self) -> App {
        self.stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(30), self.task).await.expect("the loop stops").unwrap();
        self.app
    }

    /// Kills the loop mid-work: its tasks are dropped where they stand, as if
    /// the process died (its committed claims stay in the database).
    async fn kill(self) {
        self.task.abort();
        assert!(self.task.await.unwrap_err().is_cancelled());
        drop(self.app);
    }
}

/// Writes `n` active grants of `prod-db-readonly`, each with its revocation
/// due at the grant's expiry (30 minutes from now), straight into the tables:
/// approving and granting 1,000 requests through the service would dominate
/// the run, and the revocations are what is under test. Returns the expiry.
async fn seed_active_grants(t: &TestApp, n: i64) -> Timestamp {
    assert_eq!(t.backend, Backend::Postgres, "the bulk insert uses generate_series");
    let now = t.now().millis();
    let expires = t.now().plus(Duration::from_secs(30 * 60));
    t.exec(&format!(
        "INSERT INTO access_requests
           (team_id, requester_id, requester_issuer, requester_subject, requester_email, role, provider,
            duration_ms, reason, approvals_required, state, open_slot, created_at, decided_at, granted_at,
            expires_at, updated_at)
         SELECT 'T0WORK', 'U0BULK' || g, 'https://idp.example', 'bulk' || g, 'bulk' || g || '@example.com',
                'prod-db-readonly', 'ops-hook', 1800000, 'bulk', 1, 'active',
                'T0WORK/U0BULK' || g || '/prod-db-readonly', {now}, {now}, {now}, {exp}, {now}
         FROM generate_series(1, {n}) AS g",
        exp = expires.millis()
    ))
    .await;
    t.exec(
        "INSERT INTO jobs (kind, request_id, payload, state, due_at, attempt, created_at, lane)
         SELECT 'revoke', id, '{}', 'queued', expires_at, 0, created_at, 'access' FROM access_requests
         WHERE reason = 'bulk'",
    )
    .await;
    expires
}

/// What one two-replica run measured.
struct Figures {
    jobs: i64,
    concurrency: usize,
    /// From the moment the revocations fell due until the last one was done.
    revocations: Duration,
    /// Until the queue was empty, including the "revoked" notices.
    everything: Duration,
    /// Revocation jobs per replica (`worker` column).
    by_worker: Vec<(String, i64)>,
}

/// Seeds `n` grants, starts two replicas' loops, moves the clock past the
/// expiry and waits until every job is done.
async fn two_replicas_revoke(t: &TestApp, n: i64) -> Figures {
    let expires = seed_active_grants(t, n).await;
    let a = RunningLoop::start(t.replica("replica-a").await);
    let b = RunningLoop::start(t.replica("replica-b").await);
    let concurrency = a.app.scheduler().concurrency();
    // Let both loops reach their idle sleep, so neither has a head start.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(t.number("SELECT COUNT(*) FROM jobs WHERE state <> 'queued'").await, 0, "nothing is due yet");

    let started = Instant::now();
    t.clock.set(expires.plus(Duration::from_secs(1)));
    let timeout = Duration::from_secs(300);
    eventually_within("every revocation", timeout, async || {
        t.number("SELECT COUNT(*) FROM jobs WHERE kind = 'revoke' AND state = 'done'").await == n
    })
    .await;
    let revocations = started.elapsed();
    eventually_within("an empty queue", timeout, async || {
        t.number("SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')").await == 0
    })
    .await;
    let everything = started.elapsed();
    a.stop().await;
    b.stop().await;
    let by_worker =
        t.pairs("SELECT worker, COUNT(*) FROM jobs WHERE kind = 'revoke' GROUP BY worker ORDER BY worker").await;
    Figures { jobs: n, concurrency, revocations, everything, by_worker }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_revoke_a_thousand_grants_exactly_once_and_share_the_work() {
    if postgres_server().is_none() {
        return;
    }
    let t = TestApp::spawn_with_pool(Backend::Postgres, 16).await;
    let n = 1000;
    let figures = two_replicas_revoke(&t, n).await;

    // Every grant revoked, each exactly once: count the provider's calls.
    let seeded: Vec<i64> = t
        .pairs("SELECT 'id', id FROM access_requests WHERE reason = 'bulk' ORDER BY id")
        .await
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    assert_eq!(seeded.len(), 1000);
    let mut per_request: BTreeMap<i64, usize> = BTreeMap::new();
    for call in t.hook.calls() {
        assert_eq!(call.action, "revoke", "only revocations were due");
        assert!(call.signature_ok);
        *per_request.entry(call.request_id).or_default() += 1;
    }
    let duplicates: Vec<_> = per_request.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicates.is_empty(),
        "{} requests revoked more than once, e.g. (request, calls) {:?}",
        duplicates.len(),
        &duplicates[..duplicates.len().min(5)]
    );
    assert_eq!(per_request.keys().copied().collect::<Vec<_>>(), seeded, "no revocation missing");
    assert_eq!(t.number("SELECT COUNT(*) FROM access_requests WHERE state <> 'revoked'").await, 0);
    assert_eq!(
        t.number("SELECT COUNT(*) FROM jobs WHERE kind = 'revoke' AND attempt <> 1").await,
        0,
        "no job was claimed twice"
    );
    assert_eq!(t.number("SELECT COUNT(*) FROM audit_events WHERE action = 'revoke.applied'").await, n);
    jitbot::audit::verify(t.db()).await.unwrap();
    let notices = t.notifier.notices.lock().unwrap().clone();
    assert_eq!(notices.len(), 1000, "one 'revoked' notice per grant");
    assert!(notices.iter().all(|(kind, _, state)| *kind == NoticeKind::Revoked && state == "revoked"));

    // Both replicas did a substantial share.
    let workers: Vec<&str> = figures.by_worker.iter().map(|(w, _)| w.as_str()).collect();
    assert_eq!(workers, ["replica-a", "replica-b"], "{:?}", figures.by_worker);
    for (worker, done) in &figures.by_worker {
        assert!(*done >= n / 5, "{worker} revoked only {done} of {n}: {:?}", figures.by_worker);
    }
}

/// A target that never answers: the replica calling it hangs mid-job.
struct StuckProvider {
    calls: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl Provider for StuckProvider {
    async fn grant(&self, _: &ApprovedGrant, _: Timestamp) -> Result<ProviderReport, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::pending().await
    }

    async fn revoke(&self, _: &GrantTarget, _: Timestamp) -> Result<ProviderReport, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::pending().await
    }
}

async fn a_replica_that_dies_mid_revocation_is_taken_over_when_its_lease_runs_out(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let req = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap();
    t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap();
    t.drain().await;
    assert_eq!(t.state(req.id).await, "active");

    // Short leases, renewed often: the takeover happens within seconds.
    let lease = Duration::from_secs(2);
    let options = |worker: &str| SchedulerOptions {
        worker_id: worker.into(),
        lease,
        renew_every: Duration::from_millis(300),
        ..Default::default()
    };
    let stuck_calls = Arc::new(AtomicUsize::new(0));
    let mut providers = Providers::from_config(&t.config()).unwrap();
    providers.insert("ops-hook", Arc::new(StuckProvider { calls: stuck_calls.clone() }));
    let a = RunningLoop::start(t.replica_with(options("replica-a"), Some(providers)).await);

    // At expiry replica A claims the revocation and hangs in the provider call.
    t.advance(Duration::from_secs(31 * 60));
    eventually_within("replica A calling the provider", Duration::from_secs(10), async || {
        stuck_calls.load(Ordering::SeqCst) == 1
    })
    .await;
    let b = RunningLoop::start(t.replica_with(options("replica-b"), None).await);
    // While A lives it renews its lease: B must not take the job over, even
    // well past the lease's length.
    tokio::time::sleep(lease + Duration::from_secs(1)).await;
    assert_eq!(t.hook.count("revoke", req.id), 0, "a live replica's job is not taken over");
    let job = format!("SELECT worker, attempt FROM jobs WHERE kind = 'revoke' AND request_id = {}", req.id.get());
    assert_eq!(t.pairs(&job).await, vec![("replica-a".to_owned(), 1)]);

    a.kill().await;
    // A's lease runs out (in real time on PostgreSQL, on the domain clock on SQLite).
    t.advance(lease + Duration::from_secs(1));
    eventually_within("replica B taking the revocation over", Duration::from_secs(15), async || {
        t.hook.count("revoke", req.id) == 1
    })
    .await;
    eventually_within("the request revoked", Duration::from_secs(5), async || t.state(req.id).await == "revoked").await;
    b.stop().await;

    assert_eq!(t.hook.count("revoke", req.id), 1, "revoked exactly once");
    assert_eq!(stuck_calls.load(Ordering::SeqCst), 1);
    assert_eq!(t.pairs(&job).await, vec![("replica-b".to_owned(), 2)]);
    let revoked = t.audit_actions(req.id).await.into_iter().filter(|a| a == "revoke.applied").count();
    assert_eq!(revoked, 1);
    // The dead replica's attempt is fenced off: it can no longer complete the job.
    let job_id =
        t.number(&format!("SELECT id FROM jobs WHERE kind = 'revoke' AND request_id = {}", req.id.get())).await;
    let mut tx = t.db().begin().await.unwrap();
    assert!(!tx.complete_job(job_id, 1, t.now()).await.unwrap());
    tx.rollback().await.unwrap();
}

both_backends!(a_replica_that_dies_mid_revocation_is_taken_over_when_its_lease_runs_out);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_whose_clock_runs_ahead_does_not_steal_a_live_lease() {
    if postgres_server().is_none() {
        return;
    }
    let t = TestApp::spawn_on(Backend::Postgres).await;
    let req = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap();
    t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap();
    t.drain().await;
    let options = |worker: &str| SchedulerOptions {
        worker_id: worker.into(),
        lease: Duration::from_secs(2),
        renew_every: Duration::from_millis(300),
        ..Default::default()
    };
    let stuck_calls = Arc::new(AtomicUsize::new(0));
    let mut providers = Providers::from_config(&t.config()).unwrap();
    providers.insert("ops-hook", Arc::new(StuckProvider { calls: stuck_calls.clone() }));
    let a = RunningLoop::start(t.replica_with(options("replica-a"), Some(providers)).await);
    t.advance(Duration::from_secs(31 * 60));
    eventually_within("replica A calling the provider", Duration::from_secs(10), async || {
        stuck_calls.load(Ordering::SeqCst) == 1
    })
    .await;

    // Replica B's host clock is an hour ahead. Were leases judged by the
    // replicas' clocks, every lease A holds would look long expired to B.
    let skewed = jitbot::clock::ManualClock::new(t.now().plus(Duration::from_secs(3600)));
    let b = RunningLoop::start(t.replica_on_clock(options("replica-b"), None, &skewed).await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(t.hook.count("revoke", req.id), 0, "B took over a job that A still holds");
    let job = format!("SELECT worker, attempt FROM jobs WHERE kind = 'revoke' AND request_id = {}", req.id.get());
    assert_eq!(t.pairs(&job).await, vec![("replica-a".to_owned(), 1)]);
    a.kill().await;
    eventually_within("B taking over once A's lease ran out", Duration::from_secs(10), async || {
        t.hook.count("revoke", req.id) == 1
    })
    .await;
    b.stop().await;
    assert_eq!(t.pairs(&job).await, vec![("replica-b".to_owned(), 2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_answers_try_again_and_the_scheduler_resumes_by_itself() {
    if postgres_server().is_none() {
        return;
    }
    let t = TestApp::spawn_on(Backend::Postgres).await;
    t.link("U0DAVE", "dave", &["engineering"]).await;
    let app = t.replica("survivor").await;
    let service = app.service().clone();
    let port = app.port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let readyz = async || reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await.unwrap().status().as_u16();
    assert_eq!(readyz().await, 200);

    let req = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap();
    service.approve(req.id, &user("U0BOB"), t.now()).await.unwrap();
    eventually_within("the grant", Duration::from_secs(5), async || t.hook.count("grant", req.id) == 1).await;
    let pending = t.request("U0DAVE", "prod-db-readonly", None).await.unwrap();

    // The database goes away: existing connections are cut, new ones refused.
    let name = t.database.pg_name().to_owned();
    t.database.admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).await;
    t.database.admin(&format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")).await;

    let asked = Instant::now();
    let e = service.approve(pending.id, &user("U0CAROL"), t.now()).await.unwrap_err();
    assert!(matches!(e, ServiceError::Unavailable), "{e:?}");
    assert!(e.to_string().contains("try again"), "{e}");
    assert!(asked.elapsed() < Duration::from_millis(2500), "answered within Slack's deadline: {:?}", asked.elapsed());
    let e = service.cancel(pending.id, &user("U0DAVE"), t.now()).await.unwrap_err();
    assert!(matches!(e, ServiceError::Unavailable), "{e:?}");
    assert_eq!(readyz().await, 503, "a replica without its database is not ready");

    // The revocation falls due during the outage: the loop's claims fail.
    t.advance(Duration::from_secs(31 * 60));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(t.hook.count("revoke", req.id), 0);
    assert!(!running.is_finished(), "an outage does not end the bot");

    // The database is back. Nobody pokes the scheduler: it resumes by itself.
    t.database.admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).await;
    eventually_within("the revocation after the outage", Duration::from_secs(30), async || {
        t.hook.count("revoke", req.id) == 1
    })
    .await;
    assert_eq!(readyz().await, 200);
    let approved = service.approve(pending.id, &user("U0CAROL"), t.now()).await.unwrap();
    assert!(matches!(approved, jitbot::service::ApprovalOutcome::Approved(_)));
    eventually_within("the grant after the outage", Duration::from_secs(5), async || {
        t.hook.count("grant", pending.id) == 1
    })
    .await;

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), running).await.unwrap().unwrap().unwrap();
    jitbot::audit::verify(t.db()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_written_by_another_replica_wakes_an_idle_one_at_once() {
    if postgres_server().is_none() {
        return;
    }
    let t = TestApp::spawn_on(Backend::Postgres).await;
    // An idle replica: nothing is due, so it sleeps until the manual clock
    // moves (it never does here) or something wakes it.
    let idle = RunningLoop::start(t.replica("idle").await);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Another replica (whose own scheduler is not running) takes the click.
    let req = t.request("U0ALICE", "prod-db-readonly", None).await.unwrap();
    let clicked = Instant::now();
    t.service().approve(req.id, &user("U0BOB"), t.now()).await.unwrap();
    eventually_within("the idle replica to grant", Duration::from_secs(5), async || t.hook.count("grant", req.id) == 1)
        .await;
    eprintln!("approval on one replica to grant by another: {:?}", clicked.elapsed());
    let worker = t
        .pairs(&format!("SELECT worker, attempt FROM jobs WHERE kind = 'grant' AND request_id = {}", req.id.get()))
        .await;
    assert_eq!(worker, vec![("idle".to_owned(), 1)]);
    idle.stop().await;
}

/// Not a timed test: measures how long two replicas take to revoke 1,000
/// grants and how they split the work, and prints the figures. Run with
///
/// ```sh
/// JITBOT_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
///   cargo test --release --test it -- --ignored --nocapture benchmark_two_replicas
/// ```
///
/// `JITBOT_BENCH_JOBS` (default 1000) and `JITBOT_BENCH_POOL` (each replica's
/// `database.max_connections`, default 20 as in production) vary the run.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark; run it explicitly"]
async fn benchmark_two_replicas() {
    if postgres_server().is_none() {
        return;
    }
    let env = |name: &str, default: u32| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (jobs, pool) = (env("JITBOT_BENCH_JOBS", 1000), env("JITBOT_BENCH_POOL", 20));
    let t = TestApp::spawn_with_pool(Backend::Postgres, pool).await;
    let f = two_replicas_revoke(&t, i64::from(jobs)).await;
    let secs = f.revocations.as_secs_f64();
    println!(
        "two replicas, {} revocation jobs, pool {pool} per replica, {} jobs at once per replica",
        f.jobs, f.concurrency
    );
    println!("  all revocations done: {:.2} s ({:.0} revocations/s)", secs, f.jobs as f64 / secs);
    println!("  queue empty (incl. {} notices): {:.2} s", f.jobs, f.everything.as_secs_f64());
    for (worker, done) in &f.by_worker {
        println!("  {worker}: {done} revocations ({:.1} %)", 100.0 * *done as f64 / f.jobs as f64);
    }
}
