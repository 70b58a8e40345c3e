//! Slack's inbound payloads, parsed into the few fields jitbot uses.
//! Shapes follow Slack's documentation of slash commands
//! (`application/x-www-form-urlencoded`), interactivity (`payload=` JSON) and
//! the Events API; unknown fields are ignored so Slack can add more.

use serde::Deserialize;

/// A slash command invocation.
#[derive(Debug, Clone, Deserialize)]
pub struct SlashCommand {
    /// Workspace.
    pub team_id: String,
    /// Who typed it.
    pub user_id: String,
    /// `/jit`.
    pub command: String,
    /// Everything after the command.
    #[serde(default)]
    pub text: String,
    /// Where the command was typed.
    #[serde(default)]
    pub channel_id: String,
    /// Where delayed responses may be posted.
    #[serde(default)]
    pub response_url: String,
    /// Unique per invocation; also our idempotency key for retried deliveries.
    #[serde(default)]
    pub trigger_id: String,
}

/// An interactive payload (the `payload` form field).
#[derive(Debug, Clone, Deserialize)]
pub struct Interaction {
    /// `block_actions`, `view_submission`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The workspace.
    pub team: Option<IdOnly>,
    /// Who clicked.
    pub user: InteractionUser,
    /// The clicked elements (one for a button).
    #[serde(default)]
    pub actions: Vec<Action>,
    /// Where an ephemeral answer to the clicker may be posted.
    pub response_url: Option<String>,
    /// Lets the app open a modal in answer, for 3 seconds; unique per click.
    pub trigger_id: Option<String>,
}

/// An object of which only the id matters.
#[derive(Debug, Clone, Deserialize)]
pub struct IdOnly {
    /// The id.
    pub id: String,
}

/// The user in an interaction.
#[derive(Debug, Clone, Deserialize)]
pub struct InteractionUser {
    /// User id.
    pub id: String,
    /// The user's workspace (present in every current payload).
    pub team_id: Option<String>,
}

/// One block action.
#[derive(Debug, Clone, Deserialize)]
pub struct Action {
    /// Our `action_id`.
    pub action_id: String,
    /// Our button `value`.
    pub value: Option<String>,
    /// The option picked in a select menu.
    pub selected_option: Option<SelectedOption>,
}

impl Action {
    /// The button's value or the picked option's value.
    pub fn chosen(&self) -> Option<&str> {
        self.value.as_deref().or(self.selected_option.as_ref().map(|o| o.value.as_str()))
    }
}

/// An option picked in a select menu.
#[derive(Debug, Clone, Deserialize)]
pub struct SelectedOption {
    /// Our option `value`.
    pub value: String,
}

impl Interaction {
    /// The workspace the interaction came from.
    pub fn team_id(&self) -> Option<&str> {
        self.team.as_ref().map(|t| t.id.as_str()).or(self.user.team_id.as_deref())
    }
}

/// An Events API envelope (only what routing needs).
#[derive(Debug, Clone, Deserialize)]
pub struct EventEnvelope {
    /// `url_verification` or `event_callback`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Present on `url_verification`.
    pub challenge: Option<String>,
    /// Present on `event_callback`.
    pub team_id: Option<String>,
}

/// Parses a slash-command form body.
pub fn parse_command(body: &[u8]) -> Result<SlashCommand, String> {
    serde_urlencoded::from_bytes(body).map_err(|e| format!("malformed slash command: {e}"))
}

/// Parses an interactivity form body (`payload=<json>`).
pub fn parse_interaction(body: &[u8]) -> Result<Interaction, String> {
    #[derive(Deserialize)]
    struct Form {
        payload: String,
    }
    let form: Form = serde_urlencoded::from_bytes(body).map_err(|e| format!("malformed interaction: {e}"))?;
    serde_json::from_str(&form.payload).map_err(|e| format!("malformed interaction payload: {e}"))
}
