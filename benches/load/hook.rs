//! The target system: a webhook receiver that verifies jitbot's signature
//! as the README's "Webhook receivers" tells receivers to, and notes when
//! each grant and revocation arrived (wall clock, to compare with the
//! `expires_at` jitbot sends).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const WEBHOOK_SECRET: &str = "bench-webhook-secret-0123456789";

/// What arrived for one request.
#[derive(Debug, Default, Clone, Copy)]
pub struct Arrivals {
    /// First grant call, wall-clock milliseconds.
    pub grant_ms: Option<i64>,
    /// First revoke call, wall-clock milliseconds.
    pub revoke_ms: Option<i64>,
    /// `expires_at` as sent (second precision), in milliseconds.
    pub expires_ms: Option<i64>,
}

#[derive(Default)]
struct HookState {
    by_request: HashMap<i64, Arrivals>,
    grants: u64,
    revokes: u64,
    repeats: u64,
    bad_signatures: u64,
}

#[derive(Clone)]
pub struct WebhookReceiver {
    state: Arc<Mutex<HookState>>,
    pub url: String,
}

/// Summary counts.
#[derive(Debug, Default, Clone, Copy)]
pub struct HookCounts {
    /// Distinct requests granted.
    pub grants: u64,
    /// Distinct requests revoked.
    pub revokes: u64,
    /// Calls for a request and action that had arrived before (retries).
    pub repeats: u64,
    pub bad_signatures: u64,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn signature_ok(headers: &HeaderMap, body: &[u8]) -> bool {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()) else { return false };
    mac.update(format!("v1:{}:", header("jitbot-timestamp")).as_bytes());
    mac.update(body);
    let Some(hex_sig) = header("jitbot-signature").strip_prefix("v1=") else { return false };
    let Ok(sig) = hex::decode(hex_sig) else { return false };
    mac.verify_slice(&sig).is_ok()
}

async fn receive(State(state): State<Arc<Mutex<HookState>>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let at = now_ms();
    let ok = signature_ok(&headers, &body);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let expires_ms =
        json["expires_at"].as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok()).map(|t| t.as_millisecond());
    let id = json["request_id"].as_i64().unwrap_or(0);
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    if !ok {
        s.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let mut a = s.by_request.get(&id).copied().unwrap_or_default();
    let slot = match json["action"].as_str() {
        Some("grant") => &mut a.grant_ms,
        Some("revoke") => &mut a.revoke_ms,
        _ => return StatusCode::OK,
    };
    let first = slot.is_none();
    slot.get_or_insert(at);
    if a.expires_ms.is_none() {
        a.expires_ms = expires_ms;
    }
    match (first, json["action"].as_str()) {
        (false, _) => s.repeats += 1,
        (true, Some("grant")) => s.grants += 1,
        (true, _) => s.revokes += 1,
    }
    s.by_request.insert(id, a);
    StatusCode::OK
}

impl WebhookReceiver {
    pub async fn start() -> anyhow::Result<Self> {
        let state = Arc::new(Mutex::new(HookState::default()));
        let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("webhook receiver stopped: {e}");
            }
        });
        Ok(Self { state, url })
    }

    pub fn counts(&self) -> HookCounts {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        HookCounts { grants: s.grants, revokes: s.revokes, repeats: s.repeats, bad_signatures: s.bad_signatures }
    }

    pub fn arrivals(&self, id: i64) -> Arrivals {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).by_request.get(&id).copied().unwrap_or_default()
    }

    /// Forgets everything (a new scenario).
    pub fn reset(&self) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = HookState::default();
    }
}
