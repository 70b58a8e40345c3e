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
    /// The modal submitted (`view_submission`) or acted in, or the App
    /// Home tab a button was clicked in.
    pub view: Option<ViewPayload>,
}

/// A view as Slack sends it back: which one, and what was typed into it.
#[derive(Debug, Clone, Deserialize)]
pub struct ViewPayload {
    /// Slack's id of the view (`V...`).
    pub id: String,
    /// `modal` or `home`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Guards `views.update` against overwriting a newer version.
    pub hash: Option<String>,
    /// Our `callback_id`: which form this is.
    pub callback_id: Option<String>,
    /// Our `private_metadata` (a request id or a role name).
    pub private_metadata: Option<String>,
    /// The inputs' current values.
    pub state: Option<ViewState>,
}

/// The values of a view's inputs, by block id and action id.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ViewState {
    /// `values[block_id][action_id]`.
    #[serde(default)]
    pub values: std::collections::HashMap<String, std::collections::HashMap<String, StateValue>>,
}

/// One input's value.
#[derive(Debug, Clone, Deserialize)]
pub struct StateValue {
    /// A text input's value.
    pub value: Option<String>,
    /// A select's chosen option.
    pub selected_option: Option<SelectedOption>,
}

impl ViewPayload {
    /// The value of the input `block_id` (whose action id is the same), as
    /// typed or chosen; `None` when empty.
    pub fn value(&self, block_id: &str) -> Option<&str> {
        let v = self.state.as_ref()?.values.get(block_id)?.get(block_id)?;
        v.value.as_deref().or(v.selected_option.as_ref().map(|o| o.value.as_str())).filter(|s| !s.trim().is_empty())
    }
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
    /// The event itself, on `event_callback`.
    pub event: Option<Event>,
}

/// The inner event of an `event_callback` (only what jitbot reads).
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    /// `app_home_opened`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The user it is about.
    pub user: Option<String>,
    /// `app_home_opened`: which tab (`home` or `messages`).
    pub tab: Option<String>,
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
