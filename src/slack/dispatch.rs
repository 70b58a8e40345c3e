//! The one Slack dispatcher: both transports hand it what arrived and turn
//! its answer into their own wire format.
//!
//! HTTP mode (`routes.rs`) checks the signature, parses the form body and
//! reads the retry header; Socket Mode (`socket.rs`) parses the envelope and
//! reads `retry_attempt`. Everything after that (workspace check, who acted,
//! which command or button, what to answer) happens here, once, so the two
//! transports cannot drift apart: a behaviour written here is a behaviour
//! of both.
//!
//! Every delivery is answered within Slack's 3 seconds, busy or not. A
//! command or interaction first takes one of a bounded number of slots
//! (waiting at most [`ADMISSION_WAIT`]); then each database step waits at
//! most two seconds for a connection or a lock, and a use case
//! that meets a saturated database fails before its commit, its
//! transaction rolled back. Either way the person is told that jitbot is
//! busy and nothing was changed, which is then true: no deadline is ever
//! put around a use case, so a commit is never cut short and then denied.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tracing::Instrument;

use super::payloads::{EventEnvelope, Interaction, SlashCommand};
use super::routes::{self, Refusal, Reply, SlackState};
use crate::domain::command::{self, JitCommand};
use crate::domain::{RequestId, SlackUser};
use crate::metrics::Histogram;

/// What a person is told when jitbot cannot take their command or click
/// now: the database is saturated, or too many deliveries are in flight.
/// Only said when nothing was written.
pub(crate) const BUSY: &str = "jitbot is busy right now; nothing was changed — try again in a moment.";

/// How long a command or interaction waits for a slot among those in
/// flight before it is answered [`BUSY`]. With the database's own wait
/// after it, the answer still leaves within Slack's 3 seconds.
pub const ADMISSION_WAIT: Duration = Duration::from_millis(500);

/// How a delivery reached jitbot, as the metrics and traces name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// A signed HTTP request.
    Http,
    /// An envelope on a Socket Mode websocket.
    SocketMode,
}

impl Transport {
    fn label(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::SocketMode => "socket_mode",
        }
    }
}

/// What Slack delivered, parsed.
#[derive(Debug, Clone)]
pub(crate) enum Inbound {
    /// A `/jit` invocation.
    Command(SlashCommand),
    /// A click, a select, a submitted form.
    Interaction(Box<Interaction>),
    /// An Events API callback (or the URL check).
    Event(EventEnvelope),
}

/// One delivery from Slack, from either transport.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    /// The payload.
    pub inbound: Inbound,
    /// Slack is redelivering something it already sent (HTTP
    /// `X-Slack-Retry-Num`, Socket Mode `retry_attempt > 0`): a click that
    /// was already counted is not answered again.
    pub retry: bool,
    /// Which edge it came in on.
    pub transport: Transport,
    /// When it arrived (the acknowledgement's latency is measured from here).
    pub arrived: Instant,
}

/// The acknowledgement, before each transport puts it on the wire.
#[derive(Debug)]
pub(crate) enum Answer {
    /// An empty acknowledgement.
    Ack,
    /// An ephemeral message to the person who typed the command.
    Message(Reply),
    /// The answer to a submitted form: field errors, the next view, or
    /// closing the modal (`response_action`), which only the ack can carry.
    ViewResponse(Value),
    /// The Events API URL check.
    Challenge(String),
    /// Refused before reaching the workflow; nothing was changed.
    Refused(Refusal),
}

impl Answer {
    /// The ephemeral message's JSON, as Slack expects it in a command's
    /// acknowledgement (HTTP body or Socket Mode ack payload).
    pub(crate) fn message_json(reply: &Reply) -> Value {
        if reply.blocks.is_empty() {
            json!({"response_type": "ephemeral", "text": reply.text})
        } else {
            json!({"response_type": "ephemeral", "text": reply.text, "blocks": reply.blocks})
        }
    }
}

/// Handles one delivery: only database work through the service; provider
/// and Web API calls happen later in jobs (or, for opening a modal, in a
/// spawned task, because a `trigger_id` lasts 3 seconds). Runs in a
/// `slack_delivery` span that names the request once a use case knows it,
/// and records how long the acknowledgement took.
pub(crate) async fn dispatch(state: &SlackState, delivery: Delivery) -> Answer {
    let span = tracing::info_span!(
        "slack_delivery",
        transport = delivery.transport.label(),
        kind = delivery.kind(),
        retry = delivery.retry,
        request_id = tracing::field::Empty,
    );
    let (transport, arrived) = (delivery.transport, delivery.arrived);
    async move {
        let answer = handle(state, delivery).await;
        let took = arrived.elapsed();
        state.metrics.observe_duration(Histogram::SlackAck, &[("transport", transport.label())], took);
        // One line per delivery, at info like an access log: with the
        // span's fields it says who asked what, about which request, and
        // how fast it was answered.
        tracing::info!(ack_ms = took.as_millis(), "Slack delivery acknowledged");
        answer
    }
    .instrument(span)
    .await
}

async fn handle(state: &SlackState, delivery: Delivery) -> Answer {
    let inbound = match delivery.inbound {
        Inbound::Event(envelope) => return event(state, envelope),
        other => other,
    };
    // Commands and interactions may write: each holds a slot while it runs.
    let slot = tokio::time::timeout(ADMISSION_WAIT, state.admission.clone().acquire_owned()).await;
    let Ok(Ok(_slot)) = slot else {
        tracing::warn!("too many Slack deliveries in flight; answered busy");
        return busy(state, inbound);
    };
    match inbound {
        Inbound::Command(cmd) => command(state, &cmd).await,
        Inbound::Interaction(interaction) => {
            match routes::handle_interaction(state, *interaction, delivery.retry).await {
                Ok(answer) => answer,
                Err(refusal) => Answer::Refused(refusal),
            }
        }
        Inbound::Event(envelope) => event(state, envelope),
    }
}

/// The answer to a delivery that got no slot: nothing was started. A
/// command is answered in its acknowledgement, a submitted form on its
/// reason field (it stays open, to be sent again), a click on its
/// `response_url`.
fn busy(state: &SlackState, inbound: Inbound) -> Answer {
    match inbound {
        Inbound::Command(_) => Answer::Message(format!(":hourglass_flowing_sand: {BUSY}").into()),
        Inbound::Interaction(interaction) if interaction.kind == "view_submission" => {
            Answer::ViewResponse(super::forms::busy_errors())
        }
        Inbound::Interaction(interaction) => {
            if let Some(url) = interaction.response_url.clone() {
                let api = state.api.clone();
                tokio::spawn(async move {
                    if let Err(e) = api.respond(&url, &format!(":hourglass_flowing_sand: {BUSY}"), &[]).await {
                        tracing::warn!(error = %e, "could not answer the click");
                    }
                });
            }
            Answer::Ack
        }
        Inbound::Event(_) => Answer::Ack,
    }
}

/// Names the request this delivery is about on its `slack_delivery` span.
pub(crate) fn note_request(id: RequestId) {
    tracing::Span::current().record("request_id", id.get());
}

impl Delivery {
    fn kind(&self) -> &'static str {
        match self.inbound {
            Inbound::Command(_) => "command",
            Inbound::Interaction(_) => "interaction",
            Inbound::Event(_) => "event",
        }
    }
}

async fn command(state: &SlackState, cmd: &SlashCommand) -> Answer {
    if cmd.team_id != state.team_id() {
        tracing::warn!(team = %cmd.team_id, "slash command from another workspace refused");
        return Answer::Message("This jitbot serves another Slack workspace; nothing was done.".to_owned().into());
    }
    let user = match SlackUser::parse(&cmd.team_id, &cmd.user_id) {
        Ok(u) => u,
        Err(e) => return Answer::Refused(Refusal::Malformed(e)),
    };
    if let Ok(JitCommand::RequestForm { role }) = command::parse(&cmd.text) {
        // The form opens from a spawned task; the command itself says nothing.
        let response_url = Some(cmd.response_url.clone()).filter(|u| !u.is_empty());
        return match super::forms::open_request_form(state, &user, role, &cmd.trigger_id, response_url).await {
            Some(reply) => Answer::Message(reply),
            None => Answer::Ack,
        };
    }
    Answer::Message(routes::run_command(state, &user, cmd).await)
}

fn event(state: &SlackState, envelope: EventEnvelope) -> Answer {
    if envelope.kind == "url_verification" {
        return Answer::Challenge(envelope.challenge.unwrap_or_default());
    }
    let team = envelope.team_id.as_deref().unwrap_or_default();
    if team != state.team_id() {
        tracing::warn!(team, "event from another workspace ignored");
        return Answer::Refused(Refusal::ForeignTeam);
    }
    if let Some(event) = &envelope.event
        && event.kind == "app_home_opened"
        && event.tab.as_deref() == Some("home")
        && let Some(user) = event.user.as_deref().and_then(|u| SlackUser::parse(team, u).ok())
    {
        // Acknowledged now; the tab is remembered and drawn from a spawned task.
        super::home::opened(state, user);
    }
    Answer::Ack
}
