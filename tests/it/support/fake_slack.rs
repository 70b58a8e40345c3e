//! A local fake of the Slack Web API: records every call, answers with the
//! shapes Slack documents (HTTP 200 + `{"ok": ...}`, 429 with `Retry-After`),
//! keeps posted messages so tests can read a card's current content, and
//! rejects Block Kit that breaks Slack's documented limits with
//! `invalid_blocks`, as Slack does.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub const BOT_TOKEN: &str = "xoxb-test-0000-token";
pub const APP_TOKEN: &str = "xapp-test-0000-token";

/// A scripted failure for the next call of a method.
#[derive(Debug, Clone, Copy)]
pub enum Failure {
    RateLimited { retry_after_secs: u64 },
    ServerError,
}

#[derive(Debug, Clone)]
pub struct ApiCall {
    pub method: String,
    pub body: Value,
    pub ok: bool,
}

#[derive(Default)]
struct FakeState {
    calls: Vec<ApiCall>,
    messages: BTreeMap<(String, String), Value>,
    next_ts: u64,
    failures: HashMap<String, VecDeque<Failure>>,
    violations: Vec<String>,
    responses: Vec<(String, Value)>,
    emails: HashMap<String, String>,
    /// Open Socket Mode connections: a sender per socket.
    sockets: Vec<tokio::sync::mpsc::UnboundedSender<SocketOut>>,
    /// Acknowledgements received, by envelope id.
    acks: HashMap<String, Value>,
    connections_opened: u32,
    next_envelope: u64,
    next_socket: usize,
    base_host: String,
    /// Open modals and published home tabs, by view id.
    views: BTreeMap<String, Value>,
    used_triggers: std::collections::HashSet<String>,
    homes: HashMap<String, String>,
}

/// What the fake sends down a socket.
#[derive(Debug)]
pub enum SocketOut {
    Text(String),
    Close,
}

#[derive(Clone)]
pub struct FakeSlack {
    state: Arc<Mutex<FakeState>>,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl FakeSlack {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(FakeState { next_ts: 1, ..Default::default() }));
        let app = axum::Router::new()
            .route("/api/{method}", axum::routing::post(api).get(api_get))
            .route("/hooks/{*path}", axum::routing::post(hook))
            .route("/socket", axum::routing::get(socket))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        state.lock().unwrap().base_host = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { state, base }
    }

    pub fn api_url(&self) -> String {
        format!("{}/api", self.base)
    }

    pub fn response_url(&self, n: u32) -> String {
        format!("{}/hooks/actions/T0WORK/{n}/secret", self.base)
    }

    /// Sets a user's Slack profile email (default: `alice@example.com` for `U0ALICE`).
    pub fn set_email(&self, user: &str, email: &str) {
        self.state.lock().unwrap().emails.insert(user.to_owned(), email.to_owned());
    }

    pub fn fail_next(&self, method: &str, failure: Failure) {
        self.state.lock().unwrap().failures.entry(method.to_owned()).or_default().push_back(failure);
    }

    pub fn calls(&self, method: &str) -> Vec<ApiCall> {
        self.state.lock().unwrap().calls.iter().filter(|c| c.method == method).cloned().collect()
    }

    /// Successful posts to a channel (or user DM), oldest first.
    pub fn posts_to(&self, channel: &str) -> Vec<Value> {
        self.calls("chat.postMessage")
            .into_iter()
            .filter(|c| c.ok && c.body["channel"] == channel)
            .map(|c| c.body)
            .collect()
    }

    /// Every message currently in a channel, oldest first.
    pub fn messages_in(&self, channel: &str) -> Vec<Value> {
        self.state.lock().unwrap().messages.iter().filter(|((c, _), _)| c == channel).map(|(_, m)| m.clone()).collect()
    }

    /// Bodies posted to response URLs.
    pub fn responses(&self) -> Vec<Value> {
        self.state.lock().unwrap().responses.iter().map(|(_, b)| b.clone()).collect()
    }

    /// How many Socket Mode connections are open now.
    pub fn open_sockets(&self) -> usize {
        self.state.lock().unwrap().sockets.iter().filter(|s| !s.is_closed()).count()
    }

    /// How many times jitbot asked for a Socket Mode URL.
    pub fn connections_opened(&self) -> u32 {
        self.state.lock().unwrap().connections_opened
    }

    /// Sends an envelope of `kind` with `payload` down one open socket
    /// (round robin, as Slack spreads events) and returns its id.
    pub fn send_envelope(&self, kind: &str, payload: Value, accepts_response_payload: bool) -> String {
        self.send_envelope_attempt(kind, payload, accepts_response_payload, 0)
    }

    /// Like [`Self::send_envelope`], as Slack's `retry_attempt`-th redelivery
    /// (0 for the first delivery).
    pub fn send_envelope_attempt(
        &self,
        kind: &str,
        payload: Value,
        accepts_response_payload: bool,
        retry_attempt: u32,
    ) -> String {
        let mut s = self.state.lock().unwrap();
        s.next_envelope += 1;
        let id = format!("env-{:06}", s.next_envelope);
        let mut envelope = json!({"envelope_id": id, "type": kind, "payload": payload,
            "accepts_response_payload": accepts_response_payload});
        if kind == "events_api" || retry_attempt > 0 {
            envelope["retry_attempt"] = json!(retry_attempt);
            envelope["retry_reason"] = json!(if retry_attempt > 0 { "timeout" } else { "" });
        }
        s.sockets.retain(|tx| !tx.is_closed());
        assert!(!s.sockets.is_empty(), "no Socket Mode connection is open");
        let i = s.next_socket % s.sockets.len();
        s.next_socket += 1;
        s.sockets[i].send(SocketOut::Text(envelope.to_string())).unwrap();
        id
    }

    /// The acknowledgement of an envelope, if it arrived.
    pub fn ack(&self, envelope_id: &str) -> Option<Value> {
        self.state.lock().unwrap().acks.get(envelope_id).cloned()
    }

    /// Closes every socket abruptly, as a network failure would.
    pub fn drop_sockets(&self) {
        let mut s = self.state.lock().unwrap();
        for tx in s.sockets.drain(..) {
            let _ = tx.send(SocketOut::Close);
        }
    }

    /// Asks every connection to go away (`disconnect` envelope, reason
    /// `refresh_requested`), as Slack does before recycling a host.
    pub fn send_disconnect(&self) {
        let s = self.state.lock().unwrap();
        let msg = json!({"type": "disconnect", "reason": "refresh_requested",
            "debug_info": {"host": "applink-fake"}})
        .to_string();
        for tx in &s.sockets {
            let _ = tx.send(SocketOut::Text(msg.clone()));
        }
    }

    /// Block Kit or protocol violations seen (tests assert this stays empty).
    pub fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.clone()
    }
}

fn ok(body: Value) -> Response {
    (StatusCode::OK, [("content-type", "application/json; charset=utf-8")], body.to_string()).into_response()
}

fn slack_error(error: &str, errors: Vec<String>) -> Response {
    ok(json!({"ok": false, "error": error, "errors": errors}))
}

fn parse_body(headers: &HeaderMap, body: &[u8]) -> Value {
    let json_type =
        headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
    if json_type {
        serde_json::from_slice(body).unwrap_or(Value::Null)
    } else {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
        let mut map = serde_json::Map::new();
        for (k, v) in pairs {
            let parsed =
                if k == "blocks" { serde_json::from_str(&v).unwrap_or(Value::String(v)) } else { Value::String(v) };
            map.insert(k, parsed);
        }
        Value::Object(map)
    }
}

async fn api(
    State(state): State<Arc<Mutex<FakeState>>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = parse_body(&headers, &body);
    let mut s = state.lock().unwrap();
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    if method == "apps.connections.open" {
        // Slack requires the app-level token here, not the bot token.
        if auth != format!("Bearer {APP_TOKEN}") {
            s.violations.push("apps.connections.open: missing or wrong app-level token".into());
            return slack_error("invalid_auth", vec![]);
        }
        s.connections_opened += 1;
        let url = format!("ws://{}/socket?ticket={}", s.base_host.clone(), s.connections_opened);
        s.calls.push(ApiCall { method, body, ok: true });
        return ok(json!({"ok": true, "url": url}));
    }
    if auth != format!("Bearer {BOT_TOKEN}") {
        s.violations.push(format!("{method}: missing or wrong bot token"));
        s.calls.push(ApiCall { method, body, ok: false });
        return slack_error("invalid_auth", vec![]);
    }
    if let Some(f) = s.failures.get_mut(&method).and_then(VecDeque::pop_front) {
        s.calls.push(ApiCall { method, body, ok: false });
        return match f {
            Failure::RateLimited { retry_after_secs } => (
                StatusCode::TOO_MANY_REQUESTS,
                [("content-type", "application/json; charset=utf-8"), ("retry-after", &retry_after_secs.to_string())],
                json!({"ok": false, "error": "ratelimited"}).to_string(),
            )
                .into_response(),
            Failure::ServerError => (StatusCode::INTERNAL_SERVER_ERROR, "upstream error").into_response(),
        };
    }
    let result = match method.as_str() {
        "chat.postMessage" | "chat.update" => check_message(&body),
        "views.open" | "views.update" => check_view(&body["view"], "modal"),
        "views.publish" => check_view(&body["view"], "home"),
        other => Err(("unknown_method".to_owned(), vec![format!("the fake does not implement {other}")])),
    };
    if let Err((error, errors)) = result {
        s.violations.push(format!("{method}: {error}: {}", errors.join("; ")));
        s.calls.push(ApiCall { method, body, ok: false });
        return slack_error(&error, errors);
    }
    if method.starts_with("views.") {
        return views(&mut s, method, body);
    }
    let channel = body["channel"].as_str().unwrap_or("").to_owned();
    let content = json!({"type": "message", "text": body["text"], "blocks": body.get("blocks").cloned().unwrap_or(json!([])), "user": "U0BOT", "bot_id": "B0FAKE"});
    let response = match method.as_str() {
        "chat.postMessage" => {
            // Posting to a user id lands in the app's DM with them.
            let channel = if channel.starts_with('U') || channel.starts_with('W') {
                format!("D{}", &channel[1..])
            } else {
                channel
            };
            let ts = format!("1767225600.{:06}", s.next_ts);
            s.next_ts += 1;
            let mut message = content.clone();
            message["ts"] = json!(ts);
            s.messages.insert((channel.clone(), ts.clone()), message.clone());
            json!({"ok": true, "channel": channel, "ts": ts, "message": message})
        }
        _ => {
            let ts = body["ts"].as_str().unwrap_or("").to_owned();
            if !s.messages.contains_key(&(channel.clone(), ts.clone())) {
                s.calls.push(ApiCall { method, body, ok: false });
                return slack_error("message_not_found", vec![]);
            }
            let mut message = content.clone();
            message["ts"] = json!(ts);
            s.messages.insert((channel.clone(), ts.clone()), message);
            json!({"ok": true, "channel": channel, "ts": ts, "text": body["text"], "message": content})
        }
    };
    s.calls.push(ApiCall { method, body, ok: true });
    ok(response)
}

/// `views.open`, `views.update`, `views.publish`: keeps each view with an
/// id and a hash, as Slack does; a trigger works once; an update with a
/// stale hash is refused.
fn views(s: &mut FakeState, method: String, body: Value) -> Response {
    let fail = |s: &mut FakeState, method: String, body: Value, error: &str| {
        s.calls.push(ApiCall { method, body, ok: false });
        slack_error(error, vec![])
    };
    let n = s.views.len() + 1;
    let id = match method.as_str() {
        "views.open" => {
            let trigger = body["trigger_id"].as_str().unwrap_or("").to_owned();
            if trigger.is_empty() || !s.used_triggers.insert(trigger) {
                s.violations.push("views.open: a trigger_id is single-use".into());
                return fail(s, method, body, "invalid_trigger_id");
            }
            format!("V{n:08}")
        }
        "views.update" => {
            let id = body["view_id"].as_str().unwrap_or("").to_owned();
            let Some(current) = s.views.get(&id) else { return fail(s, method, body, "not_found") };
            if body.get("hash").and_then(Value::as_str).is_some_and(|h| Some(h) != current["hash"].as_str()) {
                return fail(s, method, body, "hash_conflict");
            }
            id
        }
        _ => {
            let user = body["user_id"].as_str().unwrap_or("").to_owned();
            if !user.starts_with('U') {
                return fail(s, method, body, "invalid_user_id");
            }
            let id = s.homes.get(&user).cloned().unwrap_or_else(|| format!("V{n:08}"));
            s.homes.insert(user, id.clone());
            id
        }
    };
    let mut view = body["view"].clone();
    view["id"] = json!(id);
    view["team_id"] = json!("T0WORK");
    view["hash"] = json!(format!("{}.{:08x}", n, s.calls.len()));
    view["state"] = json!({"values": {}});
    s.views.insert(id, view.clone());
    s.calls.push(ApiCall { method, body, ok: true });
    ok(json!({"ok": true, "view": view}))
}

impl FakeSlack {
    /// A user's published App Home tab.
    pub fn home(&self, user: &str) -> Option<Value> {
        let s = self.state.lock().unwrap();
        s.homes.get(user).and_then(|id| s.views.get(id)).cloned()
    }

    /// The newest modal with this `callback_id`.
    pub fn modal(&self, callback_id: &str) -> Option<Value> {
        let s = self.state.lock().unwrap();
        s.views
            .values()
            .filter(|v| v["callback_id"] == callback_id)
            .max_by_key(|v| v["id"].as_str().map(str::to_owned))
            .cloned()
    }
}

/// `users.info` (a GET with query parameters, as slack-morphism sends it).
async fn api_get(
    State(state): State<Arc<Mutex<FakeState>>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let mut s = state.lock().unwrap();
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    let body = json!(query);
    if auth != format!("Bearer {BOT_TOKEN}") {
        s.violations.push(format!("{method}: missing or wrong bot token"));
        s.calls.push(ApiCall { method, body, ok: false });
        return slack_error("invalid_auth", vec![]);
    }
    if method != "users.info" {
        s.violations.push(format!("GET {method} is not implemented by the fake"));
        return slack_error("unknown_method", vec![]);
    }
    let user = query.get("user").cloned().unwrap_or_default();
    if !user.starts_with('U') && !user.starts_with('W') {
        s.calls.push(ApiCall { method, body, ok: false });
        return slack_error("user_not_found", vec![]);
    }
    let handle = user.trim_start_matches("U0").to_lowercase();
    let email = s.emails.get(&user).cloned().unwrap_or_else(|| format!("{handle}@example.com"));
    s.calls.push(ApiCall { method, body, ok: true });
    ok(json!({"ok": true, "user": {
        "id": user, "team_id": "T0WORK", "name": handle, "real_name": handle, "deleted": false,
        "profile": {"display_name": handle, "real_name": handle, "email": email}
    }}))
}

/// The Socket Mode websocket: `hello` first, then envelopes; every frame
/// jitbot sends back must be the ack of an envelope we sent.
async fn socket(State(state): State<Arc<Mutex<FakeState>>>, ws: axum::extract::ws::WebSocketUpgrade) -> Response {
    use axum::extract::ws::Message;
    ws.on_upgrade(move |mut socket| async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let hello = json!({"type": "hello", "num_connections": 1,
            "debug_info": {"host": "applink-fake", "approximate_connection_time": 18060},
            "connection_info": {"app_id": "A0FAKE"}});
        if socket.send(Message::Text(hello.to_string().into())).await.is_err() {
            return;
        }
        state.lock().unwrap().sockets.push(tx);
        loop {
            tokio::select! {
                out = rx.recv() => match out {
                    Some(SocketOut::Text(t)) => {
                        if socket.send(Message::Text(t.into())).await.is_err() {
                            break;
                        }
                    }
                    Some(SocketOut::Close) | None => break,
                },
                msg = socket.recv() => match msg {
                    Some(Ok(Message::Text(t))) => {
                        let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                        let mut s = state.lock().unwrap();
                        match v.get("envelope_id").and_then(Value::as_str) {
                            Some(id) => {
                                s.acks.insert(id.to_owned(), v.clone());
                            }
                            None => s.violations.push(format!("socket frame that is not an ack: {t}")),
                        }
                    }
                    Some(Ok(Message::Ping(p))) => {
                        let _ = socket.send(Message::Pong(p)).await;
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
            }
        }
    })
}

async fn hook(State(state): State<Arc<Mutex<FakeState>>>, Path(path): Path<String>, body: Bytes) -> StatusCode {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.lock().unwrap().responses.push((path, body));
    StatusCode::OK
}

/// Checks a message against Slack's documented limits.
fn check_message(body: &Value) -> Result<(), (String, Vec<String>)> {
    let mut errors = Vec::new();
    if body["channel"].as_str().is_none_or(str::is_empty) {
        return Err(("channel_not_found".into(), vec![]));
    }
    let text = body["text"].as_str().unwrap_or("");
    let blocks = body.get("blocks").and_then(Value::as_array).cloned().unwrap_or_default();
    if text.is_empty() && blocks.is_empty() {
        return Err(("no_text".into(), vec![]));
    }
    if text.chars().count() > 40_000 {
        return Err(("msg_too_long".into(), vec![]));
    }
    if blocks.len() > 50 {
        errors.push("no more than 50 items allowed [json-pointer:/blocks]".into());
    }
    check_blocks(&blocks, false, &mut errors);
    if errors.is_empty() { Ok(()) } else { Err(("invalid_blocks".into(), errors)) }
}

/// Checks a modal or home view against Slack's documented limits.
fn check_view(view: &Value, kind: &str) -> Result<(), (String, Vec<String>)> {
    let mut errors = Vec::new();
    if view["type"] != kind {
        return Err(("invalid_arguments".into(), vec![format!("view type must be {kind} [/view/type]")]));
    }
    let blocks = view["blocks"].as_array().cloned().unwrap_or_default();
    if blocks.len() > 100 {
        errors.push("no more than 100 items allowed [/view/blocks]".into());
    }
    if kind == "modal" {
        check_text(&view["title"], "/view/title", 24, true, &mut errors);
        for key in ["submit", "close"] {
            if let Some(t) = view.get(key) {
                check_text(t, &format!("/view/{key}"), 24, true, &mut errors);
            }
        }
        if blocks.iter().any(|b| b["type"] == "input") && view.get("submit").is_none() {
            errors.push("a modal with inputs needs a submit button [/view/submit]".into());
        }
    }
    if view["callback_id"].as_str().is_some_and(|c| c.len() > 255) {
        errors.push("callback_id must be at most 255 characters [/view/callback_id]".into());
    }
    if view["private_metadata"].as_str().is_some_and(|c| c.len() > 3000) {
        errors.push("private_metadata must be at most 3000 characters [/view/private_metadata]".into());
    }
    check_blocks(&blocks, true, &mut errors);
    if errors.is_empty() { Ok(()) } else { Err(("invalid_arguments".into(), errors)) }
}

/// Checks blocks; `surface_inputs` allows input blocks (modals, home tabs).
fn check_blocks(blocks: &[Value], surface_inputs: bool, errors: &mut Vec<String>) {
    let mut block_ids = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        let at = format!("/blocks/{i}");
        if let Some(id) = b.get("block_id").and_then(Value::as_str) {
            if id.len() > 255 {
                errors.push(format!("block_id must be at most 255 characters [{at}/block_id]"));
            }
            if block_ids.contains(&id) {
                errors.push(format!("block_id must be unique [{at}/block_id]"));
            }
            block_ids.push(id);
        }
        match b["type"].as_str().unwrap_or("") {
            "header" => check_text(&b["text"], &format!("{at}/text"), 150, true, errors),
            "section" => {
                let has_text = b.get("text").is_some();
                let fields = b.get("fields").and_then(Value::as_array);
                if !has_text && fields.is_none() {
                    errors.push(format!("section needs text or fields [{at}]"));
                }
                if has_text {
                    check_text(&b["text"], &format!("{at}/text"), 3000, false, errors);
                }
                if let Some(accessory) = b.get("accessory") {
                    check_element(accessory, &format!("{at}/accessory"), &["button", "static_select"], errors);
                }
                if let Some(fields) = fields {
                    if fields.len() > 10 {
                        errors.push(format!("no more than 10 fields allowed [{at}/fields]"));
                    }
                    for (j, f) in fields.iter().enumerate() {
                        check_text(f, &format!("{at}/fields/{j}"), 2000, false, errors);
                    }
                }
            }
            "context" => {
                let elements = b["elements"].as_array().cloned().unwrap_or_default();
                if elements.is_empty() || elements.len() > 10 {
                    errors.push(format!("context needs 1 to 10 elements [{at}/elements]"));
                }
                for (j, e) in elements.iter().enumerate() {
                    check_text(e, &format!("{at}/elements/{j}"), 3000, false, errors);
                }
            }
            "actions" => {
                let elements = b["elements"].as_array().cloned().unwrap_or_default();
                if elements.is_empty() || elements.len() > 25 {
                    errors.push(format!("actions needs 1 to 25 elements [{at}/elements]"));
                }
                let mut action_ids = Vec::new();
                for (j, e) in elements.iter().enumerate() {
                    let at = format!("{at}/elements/{j}");
                    let action_id = e["action_id"].as_str().unwrap_or("");
                    if action_ids.contains(&action_id) {
                        errors.push(format!("action_id must be unique in the block [{at}/action_id]"));
                    }
                    action_ids.push(action_id);
                    check_element(e, &at, &["button", "static_select"], errors);
                }
            }
            "divider" => {}
            "input" if surface_inputs => {
                check_text(&b["label"], &format!("{at}/label"), 2000, true, errors);
                if let Some(h) = b.get("hint") {
                    check_text(h, &format!("{at}/hint"), 2000, true, errors);
                }
                check_element(&b["element"], &format!("{at}/element"), &["plain_text_input", "static_select"], errors);
            }
            other => errors.push(format!("unknown block type {other:?} [{at}/type]")),
        }
    }
}

/// Checks one interactive element against Slack's documented limits.
fn check_element(e: &Value, at: &str, allowed: &[&str], errors: &mut Vec<String>) {
    let kind = e["type"].as_str().unwrap_or("");
    if !allowed.contains(&kind) {
        errors.push(format!("unsupported element type {kind:?} here [{at}]"));
        return;
    }
    let action_id = e["action_id"].as_str().unwrap_or("");
    if action_id.is_empty() || action_id.len() > 255 {
        errors.push(format!("action_id must be 1 to 255 characters [{at}/action_id]"));
    }
    if let Some(confirm) = e.get("confirm") {
        check_text(&confirm["title"], &format!("{at}/confirm/title"), 100, true, errors);
        check_text(&confirm["text"], &format!("{at}/confirm/text"), 300, false, errors);
        check_text(&confirm["confirm"], &format!("{at}/confirm/confirm"), 30, true, errors);
        check_text(&confirm["deny"], &format!("{at}/confirm/deny"), 30, true, errors);
    }
    match kind {
        "button" => {
            check_text(&e["text"], &format!("{at}/text"), 75, true, errors);
            if e["value"].as_str().is_some_and(|v| v.len() > 2000) {
                errors.push(format!("value must be at most 2000 characters [{at}/value]"));
            }
            if let Some(style) = e.get("style").and_then(Value::as_str)
                && style != "primary"
                && style != "danger"
            {
                errors.push(format!("style must be primary or danger [{at}/style]"));
            }
        }
        "static_select" => {
            if let Some(p) = e.get("placeholder") {
                check_text(p, &format!("{at}/placeholder"), 150, true, errors);
            }
            let options = e["options"].as_array().cloned().unwrap_or_default();
            if options.is_empty() || options.len() > 100 {
                errors.push(format!("options needs 1 to 100 items [{at}/options]"));
            }
            let mut values = Vec::new();
            for (k, o) in options.iter().enumerate() {
                check_option(o, &format!("{at}/options/{k}"), errors);
                values.push(o["value"].clone());
            }
            if let Some(initial) = e.get("initial_option")
                && !values.contains(&initial["value"])
            {
                errors.push(format!("initial_option must be one of the options [{at}/initial_option]"));
            }
        }
        "plain_text_input" => {
            if let Some(p) = e.get("placeholder") {
                check_text(p, &format!("{at}/placeholder"), 150, true, errors);
            }
            let max = e["max_length"].as_u64().unwrap_or(3000);
            let min = e["min_length"].as_u64().unwrap_or(0);
            if max > 3000 || min > 3000 || min > max {
                errors.push(format!("min_length/max_length must be within 0..=3000 [{at}]"));
            }
            if e["initial_value"].as_str().is_some_and(|v| v.chars().count() as u64 > max) {
                errors.push(format!("initial_value is longer than max_length [{at}/initial_value]"));
            }
        }
        _ => {}
    }
}

fn check_option(o: &Value, at: &str, errors: &mut Vec<String>) {
    check_text(&o["text"], &format!("{at}/text"), 75, true, errors);
    let value = o["value"].as_str().unwrap_or("");
    if value.is_empty() || value.len() > 150 {
        errors.push(format!("value must be 1 to 150 characters [{at}/value]"));
    }
    if let Some(d) = o.get("description") {
        check_text(d, &format!("{at}/description"), 75, true, errors);
    }
}

fn check_text(t: &Value, at: &str, max: usize, plain_only: bool, errors: &mut Vec<String>) {
    let kind = t["type"].as_str().unwrap_or("");
    let text = t["text"].as_str().unwrap_or("");
    if kind != "plain_text" && (plain_only || kind != "mrkdwn") {
        errors.push(format!(
            "text type must be {} [{at}/type]",
            if plain_only { "plain_text" } else { "plain_text or mrkdwn" }
        ));
    }
    if text.is_empty() {
        errors.push(format!("text must not be empty [{at}/text]"));
    }
    if text.chars().count() > max {
        errors.push(format!("must be less than {} characters [{at}/text]", max + 1));
    }
}

#[test]
fn the_fake_rejects_blocks_that_break_slacks_limits() {
    let long = "x".repeat(3001);
    let body = json!({"channel": "C1", "text": "t", "blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text": long}},
        {"type": "header", "text": {"type": "mrkdwn", "text": "h"}},
        {"type": "actions", "elements": [{"type": "button", "action_id": "a", "text": {"type": "plain_text", "text": "y".repeat(76)}}]},
        {"type": "bogus"}
    ]});
    let (error, errors) = check_message(&body).unwrap_err();
    assert_eq!(error, "invalid_blocks");
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(check_message(&json!({"channel": "C1", "text": "hello"})).is_ok());
}

#[test]
fn the_fake_rejects_views_that_break_slacks_limits() {
    let input = json!({"type": "input", "block_id": "b", "label": {"type": "plain_text", "text": "L"},
        "element": {"type": "plain_text_input", "action_id": "a", "min_length": 10, "max_length": 5}});
    let view = json!({"type": "modal", "title": {"type": "plain_text", "text": "x".repeat(25)}, "blocks": [input]});
    let (_, errors) = check_view(&view, "modal").unwrap_err();
    assert_eq!(errors.len(), 3, "title, missing submit, min > max: {errors:?}");
    assert!(check_view(&view, "home").is_err(), "a modal is not a home tab");
    let message = json!({"channel": "C1", "text": "t", "blocks": [{"type": "input", "label": {"type": "plain_text", "text": "L"},
        "element": {"type": "plain_text_input", "action_id": "a"}}]});
    assert!(check_message(&message).is_err(), "input blocks belong in views");
    let ok = json!({"type": "modal", "title": {"type": "plain_text", "text": "Request access"},
        "submit": {"type": "plain_text", "text": "Request"}, "blocks": [{"type": "input", "block_id": "b",
        "label": {"type": "plain_text", "text": "L"}, "element": {"type": "static_select", "action_id": "s",
        "options": [{"text": {"type": "plain_text", "text": "30m"}, "value": "1800"}]}}]});
    assert!(check_view(&ok, "modal").is_ok());
}
