//! A lean fake of the Slack Web API for load: it answers with the shapes
//! jitbot's client needs and counts calls per method, and nothing more.
//!
//! The test suite's fake (`tests/it/support/fake_slack.rs`) keeps every
//! body and checks Block Kit limits on each call: right for correctness,
//! wrong under load, where it would hold gigabytes for 100,000 lifecycles and
//! take CPU from jitbot on a small machine. This one keeps counters only.
//!
//! It can answer 429 with `Retry-After` like Slack: by Slack's documented
//! tiers ([`FakeSlack::enforce_rate_limits`]), or for every n-th call of a
//! method ([`FakeSlack::rate_limit_every`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub const BOT_TOKEN: &str = "xoxb-bench-0000-token";

/// Counts for one Web API method.
#[derive(Debug, Default, Clone, Copy)]
pub struct MethodCount {
    /// Every call, answered or refused.
    pub calls: u64,
    /// Calls answered 429.
    pub rate_limited: u64,
}

/// A token bucket: `rate` per second, up to `burst` at once.
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Default)]
struct Shared {
    counts: Mutex<BTreeMap<String, MethodCount>>,
    buckets: Mutex<HashMap<(String, String), Bucket>>,
    every: Mutex<HashMap<String, u32>>,
    enforce: AtomicBool,
    next_ts: AtomicU64,
    last_call: Mutex<Option<Instant>>,
}

#[derive(Clone)]
pub struct FakeSlack {
    shared: Arc<Shared>,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

/// Slack's documented limits: (rate per second, burst), and whether the
/// limit is per channel (`chat.postMessage`: about one message per second
/// per channel, short bursts allowed) rather than per method (tier 3
/// `chat.update`: 50 per minute; tier 4 `views.*`, `users.info`: 100 per minute).
fn tier(method: &str) -> Option<(f64, f64, bool)> {
    match method {
        "chat.postMessage" => Some((1.0, 3.0, true)),
        "chat.update" => Some((50.0 / 60.0, 10.0, false)),
        "views.publish" | "views.open" | "views.update" | "users.info" => Some((100.0 / 60.0, 20.0, false)),
        _ => None,
    }
}

impl FakeSlack {
    pub async fn start() -> anyhow::Result<Self> {
        let shared = Arc::new(Shared { next_ts: AtomicU64::new(1), ..Default::default() });
        let app = axum::Router::new()
            .route("/api/{method}", axum::routing::post(api).get(api))
            .route("/hooks/{*path}", axum::routing::post(|| async { StatusCode::OK }))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("fake Slack stopped: {e}");
            }
        });
        Ok(Self { shared, base })
    }

    pub fn api_url(&self) -> String {
        format!("{}/api", self.base)
    }

    /// Answers 429 as Slack's documented tiers would (see [`tier`]).
    pub fn enforce_rate_limits(&self, on: bool) {
        self.shared.enforce.store(on, Ordering::SeqCst);
        self.shared.buckets.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Answers 429 (`Retry-After: 1`) to every `n`-th call of `method`
    /// (`n = 2`: half of them); `n = 0` stops.
    pub fn rate_limit_every(&self, method: &str, n: u32) {
        self.shared.every.lock().unwrap_or_else(|e| e.into_inner()).insert(method.to_owned(), n);
    }

    /// How many calls of `method` were answered 429.
    pub fn rate_limited(&self, method: &str) -> u64 {
        self.counts().get(method).map_or(0, |c| c.rate_limited)
    }

    /// Counts per method since start (or [`Self::reset`]).
    pub fn counts(&self) -> BTreeMap<String, MethodCount> {
        self.shared.counts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn total_calls(&self) -> u64 {
        self.counts().values().map(|c| c.calls).sum()
    }

    pub fn reset(&self) {
        self.shared.counts.lock().unwrap_or_else(|e| e.into_inner()).clear();
        *self.shared.last_call.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// When the last call arrived.
    pub fn last_call(&self) -> Option<Instant> {
        *self.shared.last_call.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn ok(body: Value) -> Response {
    (StatusCode::OK, [("content-type", "application/json; charset=utf-8")], body.to_string()).into_response()
}

fn too_many(retry_after: u64) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [("content-type", "application/json; charset=utf-8"), ("retry-after", &retry_after.to_string())],
        json!({"ok": false, "error": "ratelimited"}).to_string(),
    )
        .into_response()
}

fn parse_body(headers: &HeaderMap, body: &[u8]) -> Value {
    let json_type =
        headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
    if json_type {
        return serde_json::from_slice(body).unwrap_or(Value::Null);
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    Value::Object(pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
}

/// Seconds until the bucket has a token again, or `None` when one was taken.
fn take(shared: &Shared, method: &str, channel: &str) -> Option<u64> {
    let (rate, burst, per_channel) = tier(method)?;
    let key = (method.to_owned(), if per_channel { channel.to_owned() } else { String::new() });
    let mut buckets = shared.buckets.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    let b = buckets.entry(key).or_insert(Bucket { tokens: burst, at: now });
    b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
    b.at = now;
    if b.tokens >= 1.0 {
        b.tokens -= 1.0;
        None
    } else {
        Some((((1.0 - b.tokens) / rate).ceil() as u64).max(1))
    }
}

async fn api(
    State(shared): State<Arc<Shared>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    query: axum::extract::RawQuery,
    body: Bytes,
) -> Response {
    let mut body = parse_body(&headers, &body);
    if let Some(q) = query.0 {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&q).unwrap_or_default();
        for (k, v) in pairs {
            body[k] = Value::String(v);
        }
    }
    let channel = body["channel"].as_str().unwrap_or("").to_owned();
    let limited = {
        let n = {
            let mut counts = shared.counts.lock().unwrap_or_else(|e| e.into_inner());
            let c = counts.entry(method.clone()).or_default();
            c.calls += 1;
            c.calls
        };
        *shared.last_call.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        let every = shared.every.lock().unwrap_or_else(|e| e.into_inner()).get(&method).copied().unwrap_or(0);
        if every > 0 && n.is_multiple_of(u64::from(every)) {
            Some(1)
        } else if shared.enforce.load(Ordering::SeqCst) {
            take(&shared, &method, &channel)
        } else {
            None
        }
    };
    if let Some(retry_after) = limited {
        let mut counts = shared.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.entry(method).or_default().rate_limited += 1;
        return too_many(retry_after);
    }
    match method.as_str() {
        "chat.postMessage" => {
            // Posting to a user id lands in the app's DM with them.
            let channel = match channel.strip_prefix('U') {
                Some(rest) => format!("D{rest}"),
                None => channel,
            };
            let ts = format!("1767225600.{:06}", shared.next_ts.fetch_add(1, Ordering::SeqCst));
            let message =
                json!({"type": "message", "text": body["text"], "user": "U0BOT", "bot_id": "B0FAKE", "ts": ts});
            ok(json!({"ok": true, "channel": channel, "ts": ts, "message": message}))
        }
        "chat.update" => {
            let ts = body["ts"].clone();
            let message =
                json!({"type": "message", "text": body["text"], "user": "U0BOT", "bot_id": "B0FAKE", "ts": ts});
            ok(json!({"ok": true, "channel": channel, "ts": ts, "text": body["text"], "message": message}))
        }
        "views.publish" | "views.open" | "views.update" => {
            let mut view = body["view"].clone();
            if view.is_string() {
                view = serde_json::from_str(view.as_str().unwrap_or("null")).unwrap_or(Value::Null);
            }
            let n = shared.next_ts.fetch_add(1, Ordering::SeqCst);
            view["id"] = json!(format!("V{n:010}"));
            view["team_id"] = json!("T0BENCH");
            view["hash"] = json!(format!("{n}.bench"));
            view["state"] = json!({"values": {}});
            ok(json!({"ok": true, "view": view}))
        }
        "users.info" => {
            let user = body["user"].as_str().unwrap_or("U0").to_owned();
            let handle = user.to_lowercase();
            ok(json!({"ok": true, "user": {
                "id": user, "team_id": "T0BENCH", "name": handle, "real_name": handle, "deleted": false,
                "profile": {"display_name": handle, "real_name": handle, "email": format!("{handle}@bench.example")}
            }}))
        }
        _ => ok(json!({"ok": true})),
    }
}
