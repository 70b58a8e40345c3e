//! Socket Mode: jitbot opens websockets to Slack (through
//! `apps.connections.open` with the app-level token) instead of receiving
//! HTTP requests, so it needs no public URL for Slack.
//!
//! This file only moves bytes: it reads Slack's envelopes (`hello`,
//! `disconnect`, `slash_commands`, `interactive`, `events_api`), hands their
//! payloads (the very JSON Slack would POST in HTTP mode) to the one
//! dispatcher, and writes the acknowledgement, with the dispatcher's answer
//! as its `payload`. Each envelope is handled in a task of its own, so a
//! slow one never holds up the acknowledgement of the next. A dropped
//! socket or a `disconnect` request is followed by a new connection, with a
//! capped backoff while Slack cannot be reached.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::dispatch::{Answer, Delivery, Inbound, Transport, dispatch};
use super::routes::{Refusal, SlackState};
use crate::config::Secret;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The longest wait between two attempts to reach Slack again.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How long shutdown waits for envelopes still being handled, so their
/// acknowledgements go out (Slack's own limit is 3 seconds).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// One frame from Slack (only what routing needs; unknown fields ignored).
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    envelope_id: Option<String>,
    #[serde(default)]
    payload: Value,
    /// How many times Slack already tried to deliver this envelope.
    #[serde(default)]
    retry_attempt: u32,
    /// On `disconnect`: why Slack wants this connection gone.
    reason: Option<String>,
}

/// Opens connections: `apps.connections.open`, then the websocket.
#[derive(Clone)]
struct Opener {
    http: reqwest::Client,
    url: String,
    token: Secret,
}

impl Opener {
    async fn open(&self) -> anyhow::Result<Socket> {
        #[derive(Deserialize)]
        struct Opened {
            ok: bool,
            url: Option<String>,
            error: Option<String>,
        }
        let opened: Opened = self
            .http
            .post(&self.url)
            .bearer_auth(self.token.expose())
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach Slack's apps.connections.open: {}", e.without_url()))?
            .json()
            .await
            .map_err(|e| anyhow::anyhow!("apps.connections.open answered something unreadable: {}", e.without_url()))?;
        let url = match (opened.ok, opened.url) {
            (true, Some(url)) => url,
            _ => anyhow::bail!(
                "Slack refused to open a Socket Mode connection: {} (check slack.app_token: an app-level token with connections:write)",
                opened.error.unwrap_or_else(|| "no reason given".into())
            ),
        };
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the Socket Mode websocket: {e}"))?;
        Ok(socket)
    }
}

/// Holds the Socket Mode connections until shut down.
pub struct SocketMode {
    stop: watch::Sender<bool>,
    tasks: tokio::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl SocketMode {
    /// Opens `connections` websockets with the app-level token. The first
    /// opening of each fails start-up (a wrong token is a config error);
    /// later ones are retried for as long as jitbot runs.
    pub async fn connect(state: SlackState, app_token: &Secret, connections: u32) -> anyhow::Result<Self> {
        let api_url = state.config.slack.as_ref().map(|s| s.api_base().to_owned()).unwrap_or_default();
        let opener = Opener {
            http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?,
            url: format!("{api_url}/apps.connections.open"),
            token: app_token.clone(),
        };
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        for n in 0..connections.max(1) {
            let socket = opener.open().await?;
            tasks.push(tokio::spawn(keep_connected(state.clone(), opener.clone(), socket, stopped.clone(), n)));
        }
        Ok(Self { stop, tasks: tokio::sync::Mutex::new(tasks) })
    }

    /// Closes the connections after the envelopes in hand are acknowledged.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        for task in self.tasks.lock().await.drain(..) {
            let _ = task.await;
        }
    }
}

/// Why one connection's loop ended.
enum Ended {
    /// jitbot is shutting down.
    Stopped,
    /// The socket dropped or Slack asked us to reconnect.
    Lost(String),
}

/// Serves one connection, and opens a new one whenever it is lost.
async fn keep_connected(state: SlackState, opener: Opener, socket: Socket, mut stop: watch::Receiver<bool>, n: u32) {
    let mut socket = Some(socket);
    let mut backoff = Duration::from_millis(500);
    loop {
        if let Some(s) = socket.take() {
            match serve(&state, s, &mut stop).await {
                Ended::Stopped => return,
                Ended::Lost(why) => {
                    tracing::info!(connection = n, reason = %why, "Socket Mode connection lost; reconnecting");
                    backoff = Duration::from_millis(500);
                }
            }
        }
        match opener.open().await {
            Ok(s) => {
                socket = Some(s);
                continue;
            }
            Err(e) => tracing::warn!(connection = n, error = %e, retry_in = ?backoff, "cannot reconnect to Slack"),
        }
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Reads envelopes until the socket ends or jitbot stops.
async fn serve(state: &SlackState, socket: Socket, stop: &mut watch::Receiver<bool>) -> Ended {
    let (mut sink, mut stream) = socket.split();
    let (acks, mut outgoing) = mpsc::unbounded_channel::<Message>();
    let ended = loop {
        tokio::select! {
            _ = stop.changed() => break Ended::Stopped,
            Some(out) = outgoing.recv() => {
                if let Err(e) = sink.send(out).await {
                    break Ended::Lost(format!("cannot send: {e}"));
                }
            }
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    if let Some(reason) = receive(state, text.as_str(), &acks) {
                        break Ended::Lost(reason);
                    }
                }
                Some(Ok(Message::Ping(p))) => {
                    if sink.send(Message::Pong(p)).await.is_err() {
                        break Ended::Lost("cannot answer a ping".into());
                    }
                }
                Some(Ok(Message::Close(_))) | None => break Ended::Lost("closed by Slack".into()),
                Some(Err(e)) => break Ended::Lost(e.to_string()),
                Some(Ok(_)) => {}
            },
        }
    };
    // Envelopes already taken are acknowledged before the socket closes:
    // Slack would otherwise deliver them again on another connection.
    drop(acks);
    let drain = async {
        while let Some(out) = outgoing.recv().await {
            if sink.send(out).await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, drain).await;
    if matches!(ended, Ended::Stopped) {
        let _ = sink.send(Message::Close(None)).await;
    }
    ended
}

/// Handles one text frame; returns why the connection should be replaced,
/// if it should.
fn receive(state: &SlackState, text: &str, acks: &mpsc::UnboundedSender<Message>) -> Option<String> {
    let arrived = std::time::Instant::now();
    let envelope: Envelope = match serde_json::from_str(text) {
        Ok(e) => e,
        Err(e) => {
            // Never the frame itself: it carries response URLs and form values.
            tracing::warn!(error_kind = ?e.classify(), column = e.column(), "unreadable Socket Mode frame ignored");
            return None;
        }
    };
    let inbound = match envelope.kind.as_str() {
        "hello" => return None,
        "disconnect" => return Some(format!("Slack asked to reconnect ({})", envelope.reason.unwrap_or_default())),
        "slash_commands" => serde_json::from_value(envelope.payload).map(Inbound::Command),
        "interactive" => serde_json::from_value(envelope.payload).map(|i| Inbound::Interaction(Box::new(i))),
        "events_api" => serde_json::from_value(envelope.payload).map(Inbound::Event),
        other => {
            tracing::debug!(kind = other, "Socket Mode envelope of a type jitbot does not use acknowledged");
            if let Some(id) = &envelope.envelope_id {
                let _ = acks.send(ack(id, None));
            }
            return None;
        }
    };
    let Some(envelope_id) = envelope.envelope_id else {
        tracing::warn!(kind = %envelope.kind, "Socket Mode envelope without an envelope_id ignored");
        return None;
    };
    let inbound = match inbound {
        Ok(i) => i,
        Err(e) => {
            // Acknowledged, so Slack does not send it again; logged without its content.
            tracing::warn!(kind = %envelope.kind, error_kind = ?e.classify(), "malformed Socket Mode payload acknowledged and ignored");
            let _ = acks.send(ack(&envelope_id, None));
            return None;
        }
    };
    let delivery = Delivery { inbound, retry: envelope.retry_attempt > 0, transport: Transport::SocketMode, arrived };
    let state = state.clone();
    let acks = acks.clone();
    tokio::spawn(async move {
        let payload = match dispatch(&state, delivery).await {
            Answer::Ack | Answer::Challenge(_) => None,
            Answer::Message(reply) => Some(Answer::message_json(&reply)),
            Answer::ViewResponse(value) => Some(value),
            Answer::Refused(refusal) => {
                if let Refusal::Malformed(e) = &refusal {
                    tracing::warn!(error = %e, "refused a malformed Slack payload");
                }
                None
            }
        };
        let _ = acks.send(ack(&envelope_id, payload));
    });
    None
}

/// The acknowledgement frame, with the dispatcher's answer when it has one.
fn ack(envelope_id: &str, payload: Option<Value>) -> Message {
    let frame = match payload {
        Some(p) => json!({"envelope_id": envelope_id, "payload": p}),
        None => json!({"envelope_id": envelope_id}),
    };
    Message::Text(frame.to_string().into())
}
