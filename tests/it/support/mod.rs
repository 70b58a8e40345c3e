//! Shared test fixtures: a signed-webhook receiver that records calls, a
//! recording notifier, and `TestApp`, which builds the real app on a fresh
//! database (a temp SQLite file, or a new database on the PostgreSQL server
//! named by `JITBOT_TEST_DATABASE_URL`) with a manual clock.
//!
//! `both_backends!` turns one test body into a `sqlite` and a `postgres`
//! test, so the two backends are held to the very same assertions, and
//! [`eventually`] is the one way a test waits: for a recorded outcome,
//! never for time to pass.
//!
//! The other helpers live beside this file: [`fake_slack`] (the fake Slack
//! Web API and Socket Mode), [`slack`] (`SlackEnv`, the signed client and
//! `both_transports!`), [`idp`] (the test identity provider and a browser),
//! [`pg`] (PostgreSQL targets) and [`providers`] (provider environments).

pub mod fake_slack;
pub mod idp;
pub mod moto;
pub mod pg;
pub mod providers;
pub mod slack;
pub mod slapd;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use jitbot::app::{App, Deps};
use jitbot::clock::{Clock, ManualClock};
use jitbot::config::Config;
use jitbot::domain::{AccessDuration, Identity, RequestId, SlackUser, Timestamp};
use jitbot::jobs::{JobKind, SchedulerOptions};
use jitbot::notify::{Notice, NoticeKind, Notifier, NotifyError};
use jitbot::providers::Providers;
use jitbot::service::{RequestCommand, Service};
use jitbot::store::{Db, NewJob, Pool, Tx};
use sha2::Sha256;
use sqlx::Connection;

pub const WEBHOOK_SECRET: &str = "test-webhook-secret-0123456789";
pub const TEAM: &str = "T0WORK";

/// Names the PostgreSQL server the tests may create databases on, e.g.
/// `postgres://postgres@127.0.0.1:5432/test`.
pub const PG_ENV: &str = "JITBOT_TEST_DATABASE_URL";

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server URL, or `None` (with a notice) when the tests
/// should skip PostgreSQL. In CI (`CI=true`) a missing URL fails the test
/// instead: there the PostgreSQL tests must not silently stop running.
pub fn postgres_server() -> Option<String> {
    match std::env::var(PG_ENV) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "{PG_ENV} is not set but CI=true: the PostgreSQL tests must run in CI. \
             Set it to a server URL such as postgres://postgres@127.0.0.1:5432/test"
        ),
        _ => {
            eprintln!("note: {PG_ENV} is not set; skipping this PostgreSQL test");
            None
        }
    }
}

/// For each listed `async fn NAME(backend: Backend)`, generates
/// `mod NAME { fn sqlite(); fn postgres(); }` tests that run it on each
/// backend. The PostgreSQL variant skips (or fails in CI) when no server is
/// configured, see [`postgres_server`]. A body left off the list is dead
/// code, which the compiler reports.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name($crate::support::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                if $crate::support::postgres_server().is_some() {
                    super::$name($crate::support::Backend::Postgres).await
                }
            }
        }
    )*};
}
pub(crate) use both_backends;

/// `server` with its database name replaced by `name`.
fn with_database(server: &str, name: &str) -> String {
    let (base, query) = server.split_once('?').map_or((server, None), |(b, q)| (b, Some(q)));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority..].find('/') {
        Some(i) => &base[..authority + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

#[test]
fn with_database_replaces_only_the_database_name() {
    assert_eq!(with_database("postgres://u@h:5432/test", "x"), "postgres://u@h:5432/x");
    assert_eq!(with_database("postgres://u:p@h/test?sslmode=require", "x"), "postgres://u:p@h/x?sslmode=require");
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
}

/// A database that exists for one test. A PostgreSQL one is dropped (with
/// its connections) when this is dropped, also when the test panics.
pub enum TestDatabase {
    Sqlite,
    Postgres { server: String, name: String },
}

impl TestDatabase {
    /// Creates a fresh database; returns it and its URL.
    pub async fn create(backend: Backend, dir: &std::path::Path) -> (Self, String) {
        match backend {
            Backend::Sqlite => (Self::Sqlite, format!("sqlite://{}", dir.join("jitbot.db").display())),
            Backend::Postgres => {
                let server = postgres_server().expect("the caller checked that PostgreSQL tests run");
                let name = format!("jitbot_test_{:016x}", rand::random::<u64>());
                let mut admin = sqlx::PgConnection::connect(&server)
                    .await
                    .unwrap_or_else(|e| panic!("cannot connect to {PG_ENV} = {server}: {e}"));
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
                admin.close().await.unwrap();
                let url = with_database(&server, &name);
                (Self::Postgres { server, name }, url)
            }
        }
    }

    /// Runs one statement on the server's admin database (e.g. to make this
    /// test's database refuse connections).
    pub async fn admin(&self, sql: &str) {
        let Self::Postgres { server, .. } = self else { panic!("only PostgreSQL has a server to administer") };
        let mut admin = sqlx::PgConnection::connect(server).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut admin).await.unwrap();
        admin.close().await.unwrap();
    }

    /// The PostgreSQL database name.
    pub fn pg_name(&self) -> &str {
        match self {
            Self::Postgres { name, .. } => name,
            Self::Sqlite => panic!("not a PostgreSQL database"),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Self::Postgres { server, name } = self else { return };
        let (server, name) = (server.clone(), name.clone());
        // Drop is synchronous and runs inside the test's runtime, where no
        // second runtime may be started: clean up on a thread of its own.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&server).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .execute(&mut admin)
                    .await?;
                admin.close().await
            })
        });
        if let Ok(Err(e)) = cleanup.join() {
            eprintln!("note: could not drop a test database: {e}");
        }
    }
}

/// 2026-01-01T00:00:00Z.
pub fn start_time() -> Timestamp {
    Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").unwrap()
}

/// One call the receiver got.
#[derive(Debug, Clone)]
pub struct HookCall {
    pub action: String,
    pub request_id: i64,
    pub body: serde_json::Value,
    pub signature_ok: bool,
    pub timestamp: i64,
    pub key_id: String,
    pub idempotency_key: String,
}

#[derive(Default)]
struct HookState {
    calls: Vec<HookCall>,
    fail_next: u32,
    fail_always: bool,
    delay: Duration,
    hang: bool,
}

/// A webhook target on port 0 that verifies signatures independently of
/// jitbot's code and can be told to fail.
#[derive(Clone)]
pub struct WebhookReceiver {
    state: Arc<Mutex<HookState>>,
    pub url: String,
}

fn verify(headers: &HeaderMap, body: &[u8]) -> (bool, i64) {
    let ts = headers.get("jitbot-timestamp").and_then(|v| v.to_str().ok()).unwrap_or("");
    let sig = headers.get("jitbot-signature").and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(b"v1:");
    mac.update(ts.as_bytes());
    mac.update(b":");
    mac.update(body);
    let expected = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
    (expected == sig, ts.parse().unwrap_or(0))
}

async fn receive(State(state): State<Arc<Mutex<HookState>>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let (signature_ok, timestamp) = verify(&headers, &body);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if state.lock().unwrap().hang {
        // Applied at the target, and the answer never comes (jitbot dies first).
        state.lock().unwrap().calls.push(HookCall {
            action: json["action"].as_str().unwrap_or("").to_owned(),
            request_id: json["request_id"].as_i64().unwrap_or(0),
            body: json,
            signature_ok,
            timestamp,
            key_id: String::new(),
            idempotency_key: String::new(),
        });
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return StatusCode::OK;
    }
    let delay = state.lock().unwrap().delay;
    tokio::time::sleep(delay).await;
    let mut s = state.lock().unwrap();
    if s.fail_always || s.fail_next > 0 {
        s.fail_next = s.fail_next.saturating_sub(1);
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    s.calls.push(HookCall {
        action: json["action"].as_str().unwrap_or("").to_owned(),
        request_id: json["request_id"].as_i64().unwrap_or(0),
        body: json,
        signature_ok,
        timestamp,
        key_id: headers.get("jitbot-key-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned(),
        idempotency_key: headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned(),
    });
    StatusCode::OK
}

impl WebhookReceiver {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(HookState::default()));
        let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { state, url }
    }

    pub fn calls(&self) -> Vec<HookCall> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn count(&self, action: &str, request: RequestId) -> usize {
        self.calls().iter().filter(|c| c.action == action && c.request_id == request.get()).count()
    }

    pub fn fail_next(&self, n: u32) {
        self.state.lock().unwrap().fail_next = n;
    }

    /// Makes every call take this long (a slow target system).
    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    /// Records each call as applied and never answers it.
    pub fn set_hang(&self, on: bool) {
        self.state.lock().unwrap().hang = on;
    }

    pub fn fail_always(&self, on: bool) {
        self.state.lock().unwrap().fail_always = on;
    }
}

/// Records every notice with the request state it carried.
#[derive(Default, Clone)]
pub struct RecordingNotifier {
    pub notices: Arc<Mutex<Vec<(NoticeKind, i64, String)>>>,
}

#[async_trait::async_trait]
impl Notifier for RecordingNotifier {
    async fn notify(&self, notice: &Notice) -> Result<(), NotifyError> {
        self.notices.lock().unwrap().push((notice.kind, notice.request.id.get(), notice.request.state.to_string()));
        Ok(())
    }
}

impl RecordingNotifier {
    pub fn kinds_for(&self, id: RequestId) -> Vec<NoticeKind> {
        self.notices.lock().unwrap().iter().filter(|(_, r, _)| *r == id.get()).map(|(k, _, _)| *k).collect()
    }
}

/// The config every test starts from: one webhook role needing one approval,
/// one needing two.
pub fn config_text(db_url: &str, hook_url: &str) -> String {
    config_text_with_pool(db_url, hook_url, 10)
}

/// [`config_text`] with a given `database.max_connections`.
pub fn config_text_with_pool(db_url: &str, hook_url: &str, max_connections: u32) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[database]
url = "{db_url}"
max_connections = {max_connections}

[policy]
admin_groups = ["jit-admins"]

[providers.ops-hook]
kind = "webhook"
url = "{hook_url}"
secret = "{WEBHOOK_SECRET}"
key_id = "k2026"

[roles.prod-db-readonly]
description = "Read-only SQL on production"
provider = "ops-hook"
requesters = ["engineering"]
approvers = ["sre-leads"]
default_duration = "30m"
max_duration = "4h"

[roles.prod-admin]
description = "Admin on production"
provider = "ops-hook"
requesters = ["engineering"]
approvers = ["sre-leads"]
approvals_required = 2
default_duration = "15m"
max_duration = "1h"
"#
    )
}

pub fn user(id: &str) -> SlackUser {
    SlackUser::parse(TEAM, id).unwrap()
}

/// A running test environment. Dropping the `App` without running its jobs
/// is how tests model a crash. The app's scheduler loop does not run: tests
/// drain it, or start replicas (more `App`s on the same database) that do.
pub struct TestApp {
    pub backend: Backend,
    pub dir: tempfile::TempDir,
    pub db_url: String,
    pub max_connections: u32,
    pub clock: ManualClock,
    pub hook: WebhookReceiver,
    pub notifier: RecordingNotifier,
    pub app: App,
    /// Declared last, so the app's pool is gone before the database is dropped.
    pub database: TestDatabase,
}

impl TestApp {
    /// On SQLite: the default for tests that are about behaviour, not about
    /// the backend. (Every current test runs on both backends, so nothing in
    /// this branch calls it; it stays the entry point for new tests.)
    #[allow(dead_code)]
    pub async fn spawn() -> Self {
        Self::spawn_on(Backend::Sqlite).await
    }

    /// On `backend`, with the default pool size. For PostgreSQL the caller
    /// checks [`postgres_server`] first (as `both_backends!` does).
    pub async fn spawn_on(backend: Backend) -> Self {
        Self::spawn_with_pool(backend, 10).await
    }

    /// On `backend`, with `database.max_connections = max_connections` for
    /// this app and every replica.
    pub async fn spawn_with_pool(backend: Backend, max_connections: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (database, db_url) = TestDatabase::create(backend, dir.path()).await;
        let hook = WebhookReceiver::start().await;
        let clock = ManualClock::new(start_time());
        let notifier = RecordingNotifier::default();
        let options = SchedulerOptions { worker_id: "test".into(), ..Default::default() };
        let app = build(&db_url, max_connections, &hook, &clock, Arc::new(notifier.clone()), options, None).await;
        let t = Self { backend, dir, db_url, max_connections, clock, hook, notifier, app, database };
        t.link("U0ALICE", "alice", &["engineering"]).await;
        t.link("U0BOB", "bob", &["sre-leads"]).await;
        t.link("U0CAROL", "carol", &["sre-leads"]).await;
        t.link("U0MALLORY", "mallory", &["sales"]).await;
        t.link("U0ADMIN", "admin", &["jit-admins"]).await;
        t
    }

    /// Simulates a crash and restart: the old app is dropped with whatever
    /// jobs it had not run, a new one is built on the same database.
    pub async fn restart(&mut self) {
        let options = SchedulerOptions { worker_id: "test".into(), ..Default::default() };
        let notifier = Arc::new(self.notifier.clone());
        let app = build(&self.db_url, self.max_connections, &self.hook, &self.clock, notifier, options, None).await;
        let old = std::mem::replace(&mut self.app, app);
        drop(old);
    }

    /// Another replica on the same database, clock, webhook target and
    /// notifier, named `worker_id` in the jobs it claims.
    pub async fn replica(&self, worker_id: &str) -> App {
        self.replica_with(SchedulerOptions { worker_id: worker_id.into(), ..Default::default() }, None).await
    }

    /// A replica with its own scheduler options and, optionally, providers.
    pub async fn replica_with(&self, options: SchedulerOptions, providers: Option<Providers>) -> App {
        self.replica_on_clock(options, providers, &self.clock).await
    }

    /// A replica whose clock is not the others' (a skewed host).
    pub async fn replica_on_clock(
        &self,
        options: SchedulerOptions,
        providers: Option<Providers>,
        clock: &ManualClock,
    ) -> App {
        let notifier = Arc::new(self.notifier.clone());
        build(&self.db_url, self.max_connections, &self.hook, clock, notifier, options, providers).await
    }

    /// A replica that tells people through `notifier` (a slow or stuck one).
    pub async fn replica_with_notifier(&self, options: SchedulerOptions, notifier: Arc<dyn Notifier>) -> App {
        build(&self.db_url, self.max_connections, &self.hook, &self.clock, notifier, options, None).await
    }

    /// The parsed test config (to build providers from).
    pub fn config(&self) -> Config {
        let text = config_text_with_pool(&self.db_url, &self.hook.url, self.max_connections);
        Config::parse(std::path::Path::new("test.toml"), &text).unwrap()
    }

    pub fn config_path(&self) -> PathBuf {
        let path = self.dir.path().join("jitbot.toml");
        std::fs::write(&path, config_text(&self.db_url, &self.hook.url)).unwrap();
        path
    }

    pub fn service(&self) -> &Service {
        self.app.service()
    }

    pub fn db(&self) -> &Db {
        self.app.db()
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub async fn link(&self, user_id: &str, name: &str, groups: &[&str]) {
        let identity = Identity {
            slack: user(user_id),
            issuer: "https://idp.example".into(),
            subject: name.into(),
            email: format!("{name}@example.com"),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            claims: Default::default(),
        };
        self.service().add_link(&identity, &jitbot::audit::Actor::Cli("test".into()), self.now()).await.unwrap();
    }

    pub async fn request(
        &self,
        who: &str,
        role: &str,
        duration: Option<&str>,
    ) -> Result<jitbot::domain::AccessRequest, jitbot::service::ServiceError> {
        self.service()
            .request(
                RequestCommand {
                    requester: user(who),
                    role: role.into(),
                    duration: duration.map(|d| AccessDuration::parse(d).unwrap()),
                    reason: "debugging INC-4821".into(),
                    ticket: None,
                    client_key: None,
                },
                self.now(),
            )
            .await
    }

    pub async fn drain(&self) -> usize {
        self.app.scheduler().drain().await.unwrap()
    }

    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }

    pub async fn state(&self, id: RequestId) -> String {
        self.app.db().request(id).await.unwrap().unwrap().state.to_string()
    }

    pub async fn audit_actions(&self, id: RequestId) -> Vec<String> {
        self.app.db().audit_rows_for_request(id.get()).await.unwrap().into_iter().map(|r| r.action).collect()
    }

    /// Runs a statement that is not part of the store's API (test setup,
    /// tampering) on either backend.
    pub async fn exec(&self, sql: &str) {
        exec(self.db(), sql).await
    }

    /// Rows of `(text, number)` from a query, on either backend.
    pub async fn pairs(&self, sql: &str) -> Vec<(String, i64)> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self.db().pool() {
            Pool::Sqlite(p) => sqlx::query_as(sql).fetch_all(p).await.unwrap(),
            Pool::Postgres(p) => sqlx::query_as(sql).fetch_all(p).await.unwrap(),
        }
    }

    /// One number from a query, on either backend.
    pub async fn number(&self, sql: &str) -> i64 {
        number(self.db(), sql).await
    }
}

/// One number from a query, on either backend.
pub async fn number(db: &Db, sql: &str) -> i64 {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    match db.pool() {
        Pool::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
        Pool::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
    }
}

/// Runs one raw statement on either backend.
pub async fn exec(db: &Db, sql: &str) {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    match db.pool() {
        Pool::Sqlite(p) => drop(sqlx::query(sql).execute(p).await.unwrap()),
        Pool::Postgres(p) => drop(sqlx::query(sql).execute(p).await.unwrap()),
    }
}

/// Writes a job of `kind` the way the service does: in the lane and the
/// series its kind puts it in.
pub async fn insert_job(
    tx: &mut Tx,
    kind: JobKind,
    request: Option<RequestId>,
    payload: &str,
    due: Timestamp,
    now: Timestamp,
) -> i64 {
    let series = kind.series(request, payload);
    let job = NewJob {
        kind: kind.name(),
        lane: kind.lane().as_str(),
        series: series.as_deref(),
        request_id: request,
        payload,
        due_at: due,
    };
    tx.insert_job(&job, now).await.unwrap()
}

/// What a wait can end on: `true`, or `Some(value)`.
pub trait Ready<T> {
    /// `Some` once the wait is over.
    fn ready(self) -> Option<T>;
}

impl Ready<()> for bool {
    fn ready(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Ready<T> for Option<T> {
    fn ready(self) -> Option<T> {
        self
    }
}

/// How long [`eventually`] waits: generous, CI machines are small and busy.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Polls `f` until it holds (for effects of background jobs, replicas and
/// spawned tasks) and returns what it found; fails naming `what` after
/// [`PATIENCE`].
pub async fn eventually<T, R: Ready<T>>(what: &str, f: impl AsyncFnMut() -> R) -> T {
    eventually_within(what, PATIENCE, f).await
}

/// [`eventually`] with a bound of its own, where the bound is the promise
/// under test (a replica takes over within its lease, ...).
pub async fn eventually_within<T, R: Ready<T>>(what: &str, timeout: Duration, mut f: impl AsyncFnMut() -> R) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f().await.ready() {
            return v;
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn build(
    db_url: &str,
    max_connections: u32,
    hook: &WebhookReceiver,
    clock: &ManualClock,
    notifier: Arc<dyn Notifier>,
    scheduler: SchedulerOptions,
    providers: Option<Providers>,
) -> App {
    let config =
        Config::parse(std::path::Path::new("test.toml"), &config_text_with_pool(db_url, &hook.url, max_connections))
            .unwrap();
    let deps = Deps { clock: Arc::new(clock.clone()), notifier: Some(notifier), providers, scheduler };
    App::build(config, deps).await.unwrap()
}
