//! Shared test fixtures: a signed-webhook receiver that records calls, a
//! recording notifier, and `TestApp`, which builds the real app on a fresh
//! temp database with a manual clock.

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
use jitbot::jobs::SchedulerOptions;
use jitbot::notify::{Notice, NoticeKind, Notifier, NotifyError};
use jitbot::service::{RequestCommand, Service};
use sha2::Sha256;

pub const WEBHOOK_SECRET: &str = "test-webhook-secret-0123456789";
pub const TEAM: &str = "T0WORK";

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
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[database]
url = "{db_url}"

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
/// is how tests model a crash.
pub struct TestApp {
    pub dir: tempfile::TempDir,
    pub db_url: String,
    pub clock: ManualClock,
    pub hook: WebhookReceiver,
    pub notifier: RecordingNotifier,
    pub app: App,
}

impl TestApp {
    pub async fn spawn() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db_url = format!("sqlite://{}", dir.path().join("jitbot.db").display());
        let hook = WebhookReceiver::start().await;
        let clock = ManualClock::new(start_time());
        let notifier = RecordingNotifier::default();
        let app = build(&db_url, &hook, &clock, &notifier).await;
        let t = Self { dir, db_url, clock, hook, notifier, app };
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
        let app = build(&self.db_url, &self.hook, &self.clock, &self.notifier).await;
        let old = std::mem::replace(&mut self.app, app);
        drop(old);
    }

    pub fn config_path(&self) -> PathBuf {
        let path = self.dir.path().join("jitbot.toml");
        std::fs::write(&path, config_text(&self.db_url, &self.hook.url)).unwrap();
        path
    }

    pub fn service(&self) -> &Service {
        self.app.service()
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
}

async fn build(db_url: &str, hook: &WebhookReceiver, clock: &ManualClock, notifier: &RecordingNotifier) -> App {
    let config = Config::parse(std::path::Path::new("test.toml"), &config_text(db_url, &hook.url)).unwrap();
    let deps = Deps {
        clock: Arc::new(clock.clone()),
        notifier: Some(Arc::new(notifier.clone())),
        providers: None,
        scheduler: SchedulerOptions { worker_id: "test".into(), ..Default::default() },
    };
    App::build(config, deps).await.unwrap()
}
