//! `SlackEnv`: the real app serving HTTP on port 0 with its scheduler loop
//! running, a fake Slack Web API, a webhook target and a manual clock; plus
//! a client that signs requests the way Slack does, built from the payload
//! fixtures in `tests/fixtures/slack/`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use hmac::{Hmac, Mac};
use jitbot::app::{App, Deps};
use jitbot::clock::{Clock, ManualClock};
use jitbot::config::Config;
use jitbot::domain::{Identity, RequestId};
use jitbot::jobs::SchedulerOptions;
use jitbot::service::Service;
use jitbot::store::Db;
use serde_json::Value;
use sha2::Sha256;

use crate::support::fake_slack::{BOT_TOKEN, FakeSlack};
use crate::support::{WebhookReceiver, config_text, start_time, user};

pub const SIGNING_SECRET: &str = "test-signing-secret-abcdef";
pub const APPROVALS: &str = "C0APPROVALS";
pub const AUDIT: &str = "C0AUDIT";

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/slack/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

pub fn slack_config_text(db_url: &str, hook_url: &str, api_url: &str) -> String {
    format!(
        "{}\n[slack]\nmode = \"http\"\nbot_token = \"{BOT_TOKEN}\"\nsigning_secret = \"{SIGNING_SECRET}\"\napi_url = \"{api_url}\"\nteam_id = \"T0WORK\"\napprovals_channel = \"{APPROVALS}\"\naudit_channel = \"{AUDIT}\"\n",
        config_text(db_url, hook_url)
    )
}

pub struct SlackEnv {
    pub _dir: tempfile::TempDir,
    _database: crate::support::TestDatabase,
    pub clock: ManualClock,
    pub hook: WebhookReceiver,
    pub slack: FakeSlack,
    pub base: String,
    pub service: Service,
    pub db: Db,
    /// The whole config the app runs with (for the command line).
    pub config_text: String,
    pub transport: Transport,
    http: reqwest::Client,
    triggers: AtomicU32,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// A signed request as Slack would send it.
pub struct Signed {
    pub body: String,
    pub content_type: &'static str,
    pub timestamp: i64,
    pub signature: Option<String>,
    pub retry: bool,
}

pub fn slack_sign(timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SIGNING_SECRET.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// How Slack reaches jitbot in a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Signed HTTP requests to `/slack/*`.
    Http,
    /// Envelopes over the fake's Socket Mode websocket.
    Socket,
}

/// Variations of the environment.
pub struct SlackEnvOptions {
    /// HTTP or Socket Mode.
    pub transport: Transport,
    /// SQLite or PostgreSQL (a fresh database either way).
    pub backend: crate::support::Backend,
    /// Appended to the config (e.g. an `[idp]` table).
    pub extra_toml: String,
    /// Listen on this port (tests that must know the public URL up front).
    pub port: Option<u16>,
    /// Where the manual clock starts.
    pub start: jitbot::domain::Timestamp,
    /// Create the usual hand-made links.
    pub links: bool,
    /// Edits the whole config text (e.g. to add `step_up` to a role).
    pub edit: fn(String) -> String,
}

impl Default for SlackEnvOptions {
    fn default() -> Self {
        Self {
            transport: Transport::Http,
            backend: crate::support::Backend::Sqlite,
            extra_toml: String::new(),
            port: None,
            start: start_time(),
            links: true,
            edit: |s| s,
        }
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl SlackEnv {
    pub async fn start() -> Self {
        Self::start_with(SlackEnvOptions::default()).await
    }

    pub async fn start_with(options: SlackEnvOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (database, db_url) = crate::support::TestDatabase::create(options.backend, dir.path()).await;
        let hook = WebhookReceiver::start().await;
        let slack = FakeSlack::start().await;
        let clock = ManualClock::new(options.start);
        let mut text = slack_config_text(&db_url, &hook.url, &slack.api_url());
        if let Some(port) = options.port {
            text = text.replace(
                "listen = \"127.0.0.1:0\"",
                &format!("listen = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\""),
            );
        }
        if options.transport == Transport::Socket {
            text = text
                .replace(
                    "mode = \"http\"",
                    &format!(
                        "mode = \"socket\"\napp_token = \"{}\"\nsocket_connections = 1",
                        crate::support::fake_slack::APP_TOKEN
                    ),
                )
                .replace(&format!("signing_secret = \"{SIGNING_SECRET}\"\n"), "");
        }
        text.push_str(&options.extra_toml);
        let text = (options.edit)(text);
        let config = Config::parse(std::path::Path::new("test.toml"), &text).unwrap();
        let config_text = text.clone();
        let deps = Deps {
            clock: Arc::new(clock.clone()),
            notifier: None,
            providers: None,
            // Tests jump the clock by hours while notices are in flight: a
            // lease that lasts longer than any jump keeps a job that is
            // still delivering from being taken over (and delivered twice).
            // Leases themselves are tested with `TestApp`.
            scheduler: SchedulerOptions {
                worker_id: "slack-test".into(),
                lease: Duration::from_secs(30 * 86_400),
                ..Default::default()
            },
        };
        let app = App::build(config, deps).await.unwrap();
        let service = app.service().clone();
        let db = app.db().clone();
        let base = format!("http://127.0.0.1:{}", app.port());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        let env = Self {
            _dir: dir,
            _database: database,
            clock,
            hook,
            slack,
            base,
            service,
            db,
            config_text,
            transport: options.transport,
            http: reqwest::Client::new(),
            triggers: AtomicU32::new(1),
            stop: Some(stop),
            task: Some(task),
        };
        if options.transport == Transport::Socket {
            eventually("a Socket Mode connection", async || (env.slack.open_sockets() >= 1).then_some(())).await;
        }
        if options.links {
            env.link("U0ALICE", "alice", &["engineering"]).await;
            env.link("U0BOB", "bob", &["sre-leads"]).await;
            env.link("U0CAROL", "carol", &["sre-leads"]).await;
            env.link("U0MALLORY", "mallory", &["sales"]).await;
        }
        env
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
        self.service.add_link(&identity, &jitbot::audit::Actor::Cli("test".into()), self.clock.now()).await.unwrap();
    }

    pub fn clock_now_millis(&self) -> i64 {
        self.clock.now().millis()
    }

    pub fn now_secs(&self) -> i64 {
        self.clock.now().seconds()
    }

    /// A slash command body built from the documented fixture.
    pub fn command_body(&self, team: &str, user_id: &str, text: &str, trigger: Option<&str>) -> String {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(fixture("slash_command.form").trim()).unwrap();
        let n = self.triggers.fetch_add(1, Ordering::SeqCst);
        let pairs: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(k, v)| {
                let v = match k.as_str() {
                    "team_id" => team.to_owned(),
                    "user_id" => user_id.to_owned(),
                    "command" => "/jit".to_owned(),
                    "text" => text.to_owned(),
                    "channel_id" => "C0GENERAL".to_owned(),
                    "response_url" => self.slack.response_url(n),
                    "trigger_id" => trigger.map(str::to_owned).unwrap_or_else(|| format!("trigger-{n}")),
                    _ => v,
                };
                (k, v)
            })
            .collect();
        serde_urlencoded::to_string(pairs).unwrap()
    }

    /// A `block_actions` body built from the documented fixture.
    pub fn click_body(&self, team: &str, user_id: &str, action: &str, request: RequestId) -> String {
        let mut payload: Value = serde_json::from_str(&fixture("block_actions.json")).unwrap();
        let n = self.triggers.fetch_add(1, Ordering::SeqCst);
        payload["user"]["id"] = user_id.into();
        payload["user"]["team_id"] = team.into();
        payload["team"]["id"] = team.into();
        payload["channel"]["id"] = APPROVALS.into();
        payload["response_url"] = self.slack.response_url(n).into();
        // Unique per click, like Slack's: a trigger opens one modal.
        payload["trigger_id"] = format!("click-trigger-{n}").into();
        payload["actions"][0]["action_id"] = action.into();
        payload["actions"][0]["block_id"] = format!("decide:{}", request.get()).into();
        payload["actions"][0]["value"] = request.get().to_string().into();
        serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap()
    }

    pub fn signed(&self, body: String, content_type: &'static str) -> Signed {
        let timestamp = self.now_secs();
        let signature = Some(slack_sign(timestamp, &body));
        Signed { body, content_type, timestamp, signature, retry: false }
    }

    pub async fn send(&self, path: &str, s: Signed) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", s.content_type)
            .header("x-slack-request-timestamp", s.timestamp.to_string());
        if let Some(sig) = s.signature {
            req = req.header("x-slack-signature", sig);
        }
        if s.retry {
            req = req.header("x-slack-retry-num", "1").header("x-slack-retry-reason", "http_timeout");
        }
        req.body(s.body).send().await.unwrap()
    }

    /// Runs `/jit <text>` as `user_id` and returns the ephemeral text.
    pub async fn command(&self, user_id: &str, text: &str) -> String {
        self.command_json(user_id, text).await["text"].as_str().unwrap().to_owned()
    }

    /// Runs `/jit <text>` as `user_id` and returns the whole ephemeral answer.
    pub async fn command_json(&self, user_id: &str, text: &str) -> Value {
        let body = self.command_body("T0WORK", user_id, text, None);
        if self.transport == Transport::Socket {
            // The same fields, as the JSON payload of a `slash_commands` envelope.
            let fields: std::collections::BTreeMap<String, String> = serde_urlencoded::from_str(&body).unwrap();
            let id = self.slack.send_envelope("slash_commands", serde_json::to_value(fields).unwrap(), true);
            let ack = self.wait_ack(&id).await;
            let payload = ack["payload"].clone();
            assert_eq!(payload["response_type"], "ephemeral", "{ack}");
            return payload;
        }
        let resp = self.send("/slack/commands", self.signed(body, "application/x-www-form-urlencoded")).await;
        assert_eq!(resp.status(), 200);
        let json: Value = resp.json().await.unwrap();
        assert_eq!(json["response_type"], "ephemeral");
        json
    }

    /// Runs `/jit <text>` over the env's transport; returns the status and
    /// the raw answer (empty when the command answered with a modal).
    pub async fn command_raw(&self, user_id: &str, text: &str) -> (u16, String) {
        let body = self.command_body("T0WORK", user_id, text, None);
        if self.transport == Transport::Socket {
            let fields: std::collections::BTreeMap<String, String> = serde_urlencoded::from_str(&body).unwrap();
            let id = self.slack.send_envelope("slash_commands", serde_json::to_value(fields).unwrap(), true);
            let ack = self.wait_ack(&id).await;
            return (200, ack.get("payload").map(Value::to_string).unwrap_or_default());
        }
        let resp = self.send("/slack/commands", self.signed(body, "application/x-www-form-urlencoded")).await;
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// Runs `/jit <text>` with a fixed `trigger_id`, as Slack's
    /// `retry`-th delivery of it; returns the ephemeral answer.
    pub async fn command_retry(&self, user_id: &str, text: &str, trigger: &str, retry: u32) -> Value {
        let body = self.command_body("T0WORK", user_id, text, Some(trigger));
        if self.transport == Transport::Socket {
            let fields: std::collections::BTreeMap<String, String> = serde_urlencoded::from_str(&body).unwrap();
            let id =
                self.slack.send_envelope_attempt("slash_commands", serde_json::to_value(fields).unwrap(), true, retry);
            return self.wait_ack(&id).await["payload"].clone();
        }
        let mut signed = self.signed(body, "application/x-www-form-urlencoded");
        signed.retry = retry > 0;
        self.send("/slack/commands", signed).await.json().await.unwrap()
    }

    /// Delivers an interactive payload (a click, a form) over the env's
    /// transport, as Slack's `retry`-th redelivery when `retry > 0`; returns
    /// the status and the JSON answer, if any.
    pub async fn interact_attempt(&self, payload: &Value, retry: u32) -> (u16, Option<Value>) {
        if self.transport == Transport::Socket {
            let id = self.slack.send_envelope_attempt("interactive", payload.clone(), true, retry);
            let ack = self.wait_ack(&id).await;
            return (200, ack.get("payload").cloned());
        }
        let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
        let mut signed = self.signed(body, "application/x-www-form-urlencoded");
        signed.retry = retry > 0;
        let resp = self.send("/slack/interactions", signed).await;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, (!text.is_empty()).then(|| serde_json::from_str(&text).unwrap()))
    }

    /// Delivers an interactive payload over the env's transport.
    pub async fn interact(&self, payload: &Value) -> (u16, Option<Value>) {
        self.interact_attempt(payload, 0).await
    }

    /// Delivers an Events API callback over the env's transport.
    pub async fn deliver_event(&self, event: &Value) -> u16 {
        if self.transport == Transport::Socket {
            let id = self.slack.send_envelope("events_api", event.clone(), false);
            self.wait_ack(&id).await;
            return 200;
        }
        self.send("/slack/events", self.signed(event.to_string(), "application/json")).await.status().as_u16()
    }

    /// The `block_actions` payload of a click (see [`Self::click_body`]).
    pub fn click_payload(&self, team: &str, user_id: &str, action: &str, request: RequestId) -> Value {
        let body = self.click_body(team, user_id, action, request);
        let form: std::collections::BTreeMap<String, String> = serde_urlencoded::from_str(&body).unwrap();
        serde_json::from_str(&form["payload"]).unwrap()
    }

    /// Waits for the acknowledgement of an envelope (Slack's limit is 3 s;
    /// the wait here is generous for busy CI machines).
    pub async fn wait_ack(&self, envelope_id: &str) -> Value {
        eventually("the envelope's acknowledgement", async || self.slack.ack(envelope_id)).await
    }

    /// Clicks a card button as `user_id`.
    pub async fn click(&self, user_id: &str, action: &str, request: RequestId) -> u16 {
        let payload = self.click_payload("T0WORK", user_id, action, request);
        self.interact(&payload).await.0
    }

    pub async fn request_count(&self) -> usize {
        let states = jitbot::domain::RequestState::ALL;
        self.db.requests_in_states(&states).await.unwrap().len()
    }

    pub async fn state(&self, id: RequestId) -> String {
        self.db.request(id).await.unwrap().unwrap().state.to_string()
    }

    /// The current content of the request's approval card.
    pub fn card(&self, id: RequestId) -> Option<Value> {
        self.slack
            .messages_in(APPROVALS)
            .into_iter()
            .find(|m| m["blocks"][0]["text"]["text"].as_str() == Some(&format!("Access request #{}", id.get())))
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap().unwrap();
        }
        assert_eq!(self.slack.violations(), Vec::<String>::new(), "Slack would have refused some calls");
    }
}

/// For each listed `async fn NAME(transport: Transport)`, generates
/// `mod NAME { fn http(); fn socket(); }` tests that run it over signed
/// HTTP requests and over Socket Mode envelopes: every Slack behaviour is
/// one dispatcher's, and both edges must deliver it.
macro_rules! both_transports {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn http() {
                super::$name($crate::support::slack::Transport::Http).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn socket() {
                super::$name($crate::support::slack::Transport::Socket).await
            }
        }
    )*};
}
pub(crate) use both_transports;

pub use super::eventually;
