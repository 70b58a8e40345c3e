//! The one Slack dispatcher: both transports hand it what arrived and turn
//! its answer into their own wire format.
//!
//! HTTP mode (`routes.rs`) checks the signature, parses the form body and
//! reads the retry header; Socket Mode (`socket.rs`) parses the envelope and
//! reads `retry_attempt`. Everything after that (workspace check, who acted,
//! which command or button, what to answer) happens here, once, so the two
//! transports cannot drift apart: a behaviour written here is a behaviour
//! of both.

use serde_json::{Value, json};

use super::payloads::{EventEnvelope, Interaction, SlashCommand};
use super::routes::{self, Refusal, Reply, SlackState};
use crate::domain::SlackUser;
use crate::domain::command::{self, JitCommand};

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
/// spawned task, because a `trigger_id` lasts 3 seconds).
#[tracing::instrument(skip_all, fields(kind = delivery.kind(), retry = delivery.retry))]
pub(crate) async fn dispatch(state: &SlackState, delivery: Delivery) -> Answer {
    match delivery.inbound {
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
