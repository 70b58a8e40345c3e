//! Slack's side of the conversation: slash commands and button clicks,
//! signed as Slack signs them (`v0=` + hex HMAC-SHA256 of
//! `v0:{timestamp}:{body}` with the signing secret).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::process::{APPROVALS, SIGNING_SECRET, TEAM};

/// How one delivery went.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status, or `None` when no answer came within the client's timeout.
    pub status: Option<u16>,
    pub body: String,
    pub latency: Duration,
    /// Wall-clock milliseconds when the request was sent and answered.
    pub sent_ms: i64,
    pub answered_ms: i64,
}

impl Answer {
    /// The request number in a "Request #N ..." answer.
    pub fn request_id(&self) -> Option<i64> {
        let v: serde_json::Value = serde_json::from_str(&self.body).ok()?;
        let text = v["text"].as_str()?;
        let rest = text.split_once("Request #")?.1;
        rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    }

    /// The ephemeral text, for reports of what went wrong.
    pub fn text(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["text"].as_str().map(str::to_owned))
            .unwrap_or_else(|| self.body.chars().take(200).collect())
    }
}

#[derive(Clone)]
pub struct SlackClient {
    http: reqwest::Client,
    base: String,
    hooks: String,
}

static TRIGGER: AtomicU64 = AtomicU64::new(1);

fn sign(timestamp: i64, body: &str) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(SIGNING_SECRET.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

impl SlackClient {
    /// `base`: jitbot's URL; `fake_slack`: where `response_url`s point.
    pub fn new(base: &str, fake_slack: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).pool_max_idle_per_host(1024).build()?;
        Ok(Self { http, base: base.to_owned(), hooks: format!("{fake_slack}/hooks") })
    }

    async fn post(&self, path: &str, body: String) -> Answer {
        let timestamp = crate::hook::now_ms() / 1000;
        let signature = sign(timestamp, &body);
        let sent_ms = crate::hook::now_ms();
        let start = Instant::now();
        let result = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", timestamp.to_string())
            .header("x-slack-signature", signature)
            .body(body)
            .send()
            .await;
        let (status, body) = match result {
            Ok(r) => {
                let status = r.status().as_u16();
                match r.text().await {
                    Ok(b) => (Some(status), b),
                    Err(_) => (None, String::new()),
                }
            }
            Err(_) => (None, String::new()),
        };
        Answer { status, body, latency: start.elapsed(), sent_ms, answered_ms: crate::hook::now_ms() }
    }

    /// `/jit <text>` as `user`.
    pub async fn command(&self, user: &str, text: &str) -> Answer {
        let n = TRIGGER.fetch_add(1, Ordering::Relaxed);
        let body = serde_urlencoded::to_string([
            ("token", "bench-verification-token"),
            ("team_id", TEAM),
            ("team_domain", "bench"),
            ("channel_id", "C0GENERAL"),
            ("channel_name", "general"),
            ("user_id", user),
            ("user_name", &user.to_lowercase()),
            ("command", "/jit"),
            ("text", text),
            ("response_url", &format!("{}/commands/{TEAM}/{n}/bench", self.hooks)),
            ("trigger_id", &format!("{n}.bench.trigger")),
            ("api_app_id", "A0BENCH"),
        ])
        .unwrap_or_default();
        self.post("/slack/commands", body).await
    }

    /// A click on a card button (`approve`, ...) for request `id` as `user`.
    pub async fn click(&self, user: &str, action: &str, id: i64) -> Answer {
        let n = TRIGGER.fetch_add(1, Ordering::Relaxed);
        let payload = json!({
            "type": "block_actions",
            "user": {"id": user, "username": user.to_lowercase(), "name": user.to_lowercase(), "team_id": TEAM},
            "api_app_id": "A0BENCH",
            "token": "bench-verification-token",
            "container": {"type": "message", "message_ts": "1767225600.000001", "channel_id": APPROVALS, "is_ephemeral": false},
            "trigger_id": format!("{n}.bench.click"),
            "team": {"id": TEAM, "domain": "bench"},
            "enterprise": null,
            "is_enterprise_install": false,
            "channel": {"id": APPROVALS, "name": "approvals"},
            "message": {"type": "message", "text": "Access request", "user": "U0BOT", "ts": "1767225600.000001"},
            "state": {"values": {}},
            "response_url": format!("{}/actions/{TEAM}/{n}/bench", self.hooks),
            "actions": [{
                "action_id": action, "block_id": format!("decide:{id}"),
                "text": {"type": "plain_text", "text": "Approve", "emoji": true},
                "value": id.to_string(), "style": "primary", "type": "button", "action_ts": "1767225600.000001"
            }]
        });
        let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap_or_default();
        self.post("/slack/interactions", body).await
    }
}
