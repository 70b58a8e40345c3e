//! Socket Mode: jitbot opens websockets to Slack (through
//! `apps.connections.open` with the app-level token) instead of receiving
//! HTTP requests, so it needs no public URL for Slack.
//!
//! Envelopes are handed to the very functions the HTTP routes use
//! ([`routes::run_command`], [`routes::handle_interaction`]); this file only
//! converts slack-morphism's typed events to our payloads. The acknowledgement
//! goes out when a callback returns, and callbacks only touch the database:
//! provider and Web API calls are jobs. slack-morphism reconnects when a
//! socket drops or Slack sends a `disconnect` envelope.

use std::sync::Arc;

use slack_morphism::prelude::*;

use super::payloads::{Interaction, SlashCommand};
use super::routes::{self, SlackState};
use crate::domain::SlackUser;

type Failure = Box<dyn std::error::Error + Send + Sync>;

async fn state_of(states: &SlackClientEventsUserState) -> Option<SlackState> {
    states.read().await.get_user_state::<SlackState>().cloned()
}

async fn on_command(
    event: SlackCommandEvent,
    _client: Arc<SlackHyperClient>,
    states: SlackClientEventsUserState,
) -> Result<SlackCommandEventResponse, Failure> {
    let Some(state) = state_of(&states).await else { return Err("socket mode state missing".into()) };
    let reply = |text: String| {
        SlackCommandEventResponse::new(SlackMessageContent::new().with_text(text))
            .with_response_type(SlackMessageResponseType::Ephemeral)
    };
    if event.team_id.0 != state.team_id() {
        tracing::warn!(team = %event.team_id, "slash command from another workspace refused");
        return Ok(reply("This jitbot serves another Slack workspace; nothing was done.".into()));
    }
    let Ok(user) = SlackUser::parse(&event.team_id.0, &event.user_id.0) else {
        return Ok(reply("Slack sent a user id jitbot cannot read; nothing was done.".into()));
    };
    let cmd = SlashCommand {
        team_id: event.team_id.0.clone(),
        user_id: event.user_id.0.clone(),
        command: event.command.0.clone(),
        text: event.text.clone().unwrap_or_default(),
        channel_id: event.channel_id.0.clone(),
        response_url: event.response_url.0.to_string(),
        trigger_id: event.trigger_id.0.clone(),
    };
    let answer = routes::run_command(&state, &user, &cmd).await;
    let mut content = SlackMessageContent::new().with_text(answer.text);
    if !answer.blocks.is_empty() {
        let blocks: Vec<SlackBlock> = serde_json::from_value(serde_json::Value::Array(answer.blocks))?;
        content = content.with_blocks(blocks);
    }
    Ok(SlackCommandEventResponse::new(content).with_response_type(SlackMessageResponseType::Ephemeral))
}

async fn on_interaction(
    event: SlackInteractionEvent,
    _client: Arc<SlackHyperClient>,
    states: SlackClientEventsUserState,
) -> Result<SlackInteractionResponse, Failure> {
    let Some(state) = state_of(&states).await else { return Err("socket mode state missing".into()) };
    // The typed event serialises back to Slack's own JSON shape.
    let interaction: Interaction = serde_json::from_value(serde_json::to_value(&event)?)?;
    let response = match routes::handle_interaction(&state, interaction, false).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "interaction refused");
            return Ok(SlackInteractionResponse::Empty);
        }
    };
    // A form submission's answer (field errors, a new view) travels in the ack.
    let body = axum::body::to_bytes(response.into_body(), 1024 * 1024).await?;
    if body.is_empty() {
        return Ok(SlackInteractionResponse::Empty);
    }
    match serde_json::from_slice::<SlackViewSubmissionResponse>(&body) {
        Ok(answer) => Ok(SlackInteractionResponse::ViewSubmission(answer)),
        Err(_) => Ok(SlackInteractionResponse::Empty),
    }
}

async fn on_push_event(
    event: SlackPushEventCallback,
    _client: Arc<SlackHyperClient>,
    states: SlackClientEventsUserState,
) -> Result<(), Failure> {
    let Some(state) = state_of(&states).await else { return Err("socket mode state missing".into()) };
    if event.team_id.0 != state.team_id() {
        tracing::warn!(team = %event.team_id, "event from another workspace ignored");
        return Ok(());
    }
    if let SlackEventCallbackBody::AppHomeOpened(opened) = &event.event
        && opened.tab.as_deref() == Some("home")
        && let Ok(user) = SlackUser::parse(&event.team_id.0, &opened.user.0)
    {
        // Acknowledged now; the tab is drawn from a spawned task.
        super::home::publish_soon(&state, user);
    }
    Ok(())
}

fn on_error(
    err: Box<dyn std::error::Error + Send + Sync>,
    _client: Arc<SlackHyperClient>,
    _states: SlackClientEventsUserState,
) -> HttpStatusCode {
    // The error's Display can carry the whole envelope (response URLs, form
    // values): log a redacted summary only.
    tracing::warn!(error = %super::error_summary::summarize(err.as_ref()), "socket mode error");
    HttpStatusCode::OK
}

/// Holds the Socket Mode connections until shut down.
pub struct SocketMode {
    listener: SlackClientSocketModeListener<SlackClientHyperHttpsConnector>,
}

impl SocketMode {
    /// Opens `connections` websockets with the app-level token.
    pub async fn connect(state: SlackState, app_token: &str, connections: u32) -> anyhow::Result<Self> {
        let client = state.api.client();
        let environment = Arc::new(
            SlackClientEventsListenerEnvironment::new(client).with_error_handler(on_error).with_user_state(state),
        );
        let callbacks = SlackSocketModeListenerCallbacks::new()
            .with_command_events(on_command)
            .with_interaction_events(on_interaction)
            .with_push_events(on_push_event);
        let config = SlackClientSocketModeConfig::new().with_max_connections_count(connections);
        let listener = SlackClientSocketModeListener::new(&config, environment, callbacks);
        let token = SlackApiToken::new(SlackApiTokenValue(app_token.to_owned()));
        listener.listen_for(&token).await.map_err(|e| anyhow::anyhow!("cannot open a Socket Mode connection: {e}"))?;
        listener.start().await;
        Ok(Self { listener })
    }

    /// Closes the connections.
    pub async fn shutdown(&self) {
        self.listener.shutdown().await;
    }
}
