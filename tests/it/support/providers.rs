//! `ProviderApp`: the real app (manual clock, temp SQLite, recording
//! notifier) with extra `[providers]` and `[roles]` appended to the base
//! test config, for the postgres and command provider tests.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jitbot::app::{App, Deps};
use jitbot::clock::{Clock, ManualClock};
use jitbot::config::Config;
use jitbot::domain::{AccessDuration, AccessRequest, Identity, RequestId, Timestamp};
use jitbot::jobs::SchedulerOptions;
use jitbot::metrics::Metrics;
use jitbot::notify::NoticeKind;
use jitbot::service::{RequestCommand, Service, ServiceError};
use jitbot::slack::views;
use serde_json::Value;

use crate::support::{RecordingNotifier, WebhookReceiver, config_text, user};

pub struct ProviderApp {
    pub dir: tempfile::TempDir,
    pub db_url: String,
    pub clock: ManualClock,
    pub notifier: RecordingNotifier,
    pub metrics: Metrics,
    pub extra: String,
    pub hook: WebhookReceiver,
    pub app: App,
}

impl ProviderApp {
    pub async fn spawn(extra: &str, start: Timestamp) -> Self {
        Self::spawn_on(extra, start, None).await
    }

    /// Like [`ProviderApp::spawn`], with jitbot's own database at `db_url`
    /// (a PostgreSQL store) instead of a temp SQLite file.
    pub async fn spawn_on(extra: &str, start: Timestamp, db_url: Option<String>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db_url = db_url.unwrap_or_else(|| format!("sqlite://{}", dir.path().join("jitbot.db").display()));
        let hook = WebhookReceiver::start().await;
        let clock = ManualClock::new(start);
        let notifier = RecordingNotifier::default();
        let metrics = Metrics::default();
        let app = build(&db_url, &hook, extra, &clock, &notifier, &metrics).await;
        let t = Self { dir, db_url, clock, notifier, metrics, extra: extra.to_owned(), hook, app };
        t.link("U0ALICE", "alice", &["engineering"]).await;
        t.link("U0DAVE", "dave", &["engineering"]).await;
        t.link("U0BOB", "bob", &["sre-leads"]).await;
        t.link("U0ADMIN", "admin", &["jit-admins"]).await;
        t
    }

    /// A restart with a changed config (`extra` replaced).
    pub async fn restart_with(&mut self, extra: &str) {
        self.extra = extra.to_owned();
        let app = build(&self.db_url, &self.hook, extra, &self.clock, &self.notifier, &self.metrics).await;
        drop(std::mem::replace(&mut self.app, app));
    }

    pub fn config_text(&self) -> String {
        format!("{}\n{}", config_text(&self.db_url, &self.hook.url), self.extra)
    }

    /// The config written to a file, for the command line.
    pub fn config_path(&self) -> PathBuf {
        let path = self.dir.path().join("jitbot.toml");
        std::fs::write(&path, self.config_text()).unwrap();
        path
    }

    pub fn service(&self) -> &Service {
        self.app.service()
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub async fn link(&self, user_id: &str, name: &str, groups: &[&str]) {
        self.link_as(user_id, name, &format!("{name}@example.com"), groups).await;
    }

    pub async fn link_as(&self, user_id: &str, subject: &str, email: &str, groups: &[&str]) {
        let identity = Identity {
            slack: user(user_id),
            issuer: "https://idp.example".into(),
            subject: subject.into(),
            email: email.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            claims: Default::default(),
        };
        self.service().add_link(&identity, &jitbot::audit::Actor::Cli("test".into()), self.now()).await.unwrap();
    }

    pub async fn request(&self, who: &str, role: &str, duration: &str) -> Result<AccessRequest, ServiceError> {
        self.service()
            .request(
                RequestCommand {
                    requester: user(who),
                    role: role.into(),
                    duration: Some(AccessDuration::parse(duration).unwrap()),
                    reason: "debugging INC-4821".into(),
                    ticket: None,
                    client_key: None,
                },
                self.now(),
            )
            .await
    }

    /// Requests, approves (as bob) and runs the grant.
    pub async fn grant(&self, who: &str, role: &str, duration: &str) -> RequestId {
        let r = self.request(who, role, duration).await.unwrap();
        self.service().approve(r.id, &user("U0BOB"), self.now()).await.unwrap();
        self.drain().await;
        r.id
    }

    pub async fn drain(&self) -> usize {
        self.app.scheduler().drain().await.unwrap()
    }

    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }

    /// Advances in steps, draining after each (for retries with backoff).
    pub async fn run_for(&self, total: Duration, step: Duration) {
        let mut passed = Duration::ZERO;
        while passed < total {
            self.advance(step);
            self.drain().await;
            passed += step;
        }
    }

    pub async fn request_now(&self, id: RequestId) -> AccessRequest {
        self.app.db().request(id).await.unwrap().unwrap()
    }

    pub async fn state(&self, id: RequestId) -> String {
        self.request_now(id).await.state.to_string()
    }

    /// `(action, detail)` of the request's audit rows, in order.
    pub async fn audit(&self, id: RequestId) -> Vec<(String, Value)> {
        self.app
            .db()
            .audit_rows_for_request(id.get())
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.action, serde_json::from_str(&r.detail).unwrap()))
            .collect()
    }

    pub async fn audit_detail(&self, id: RequestId, action: &str) -> Value {
        let rows = self.audit(id).await;
        rows.iter().rev().find(|(a, _)| a == action).map(|(_, d)| d.clone()).unwrap_or_else(|| {
            panic!("no {action} row for request {id}: {:?}", rows.iter().map(|(a, _)| a).collect::<Vec<_>>())
        })
    }

    pub fn notices(&self, id: RequestId) -> Vec<NoticeKind> {
        self.notifier.kinds_for(id)
    }

    /// The requester's DM for a notice, as Slack would show it.
    pub async fn dm_text(&self, id: RequestId, kind: NoticeKind) -> String {
        let r = self.request_now(id).await;
        views::RequesterDm { kind, request: &r, approvals: &[] }.render().map(|m| m.text).unwrap_or_default()
    }

    /// The audit-channel line for a notice, as Slack would show it.
    pub async fn audit_line(&self, id: RequestId, kind: NoticeKind) -> String {
        let r = self.request_now(id).await;
        views::AuditLine { kind, request: &r, approvals: &[] }.render().map(|m| m.text).unwrap_or_default()
    }
}

async fn build(
    db_url: &str,
    hook: &WebhookReceiver,
    extra: &str,
    clock: &ManualClock,
    notifier: &RecordingNotifier,
    metrics: &Metrics,
) -> App {
    let text = format!("{}\n{extra}", config_text(db_url, &hook.url));
    let config = Config::parse(std::path::Path::new("test.toml"), &text).unwrap();
    let deps = Deps {
        clock: Arc::new(clock.clone()),
        notifier: Some(Arc::new(notifier.clone())),
        providers: None,
        scheduler: SchedulerOptions {
            worker_id: "provider-test".into(),
            metrics: metrics.clone(),
            ..Default::default()
        },
    };
    App::build(config, deps).await.unwrap()
}

/// The repository's `tests/scripts/NAME`.
pub fn script(name: &str) -> String {
    format!("{}/tests/scripts/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs the `jitbot` binary.
pub fn jitbot(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_jitbot"))
        .args(args)
        .env_remove("JITBOT_DATABASE_URL")
        .output()
        .unwrap()
}
