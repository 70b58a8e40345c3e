//! `[slack]`: the Slack app jitbot talks through.

use serde::Deserialize;

use super::urls::{self, Url};
use super::{At, Secret};

/// How Slack reaches jitbot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlackMode {
    /// jitbot opens websockets to Slack (no public URL needed for Slack).
    Socket,
    /// Slack POSTs to `/slack/commands`, `/slack/interactions`, `/slack/events`.
    Http,
}

/// `[slack]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// Transport: `socket` (websockets opened by jitbot) or `http`.
    pub mode: SlackMode,
    /// The bot token (`xoxb-...`) for Web API calls.
    pub bot_token: Secret,
    /// The app-level token (`xapp-...`, scope `connections:write`); Socket Mode only.
    pub app_token: Option<Secret>,
    /// The app's signing secret; every HTTP request from Slack is checked
    /// against it. Required in HTTP mode.
    pub signing_secret: Option<Secret>,
    /// Websocket connections each replica holds in Socket Mode (Slack
    /// delivers each event to one of them).
    #[serde(default = "default_socket_connections")]
    pub socket_connections: u32,
    /// Base URL of the Web API; tests point it at a local fake. Checked at
    /// load: http(s), no trailing slash.
    #[serde(default = "default_slack_api_url", deserialize_with = "urls::slack_api_url")]
    pub api_url: Url,
    /// The one workspace served; requests from any other are refused.
    pub team_id: String,
    /// Default channel for approval cards.
    pub approvals_channel: String,
    /// Optional channel that receives a line for every decision and alerts.
    pub audit_channel: Option<String>,
}

fn default_socket_connections() -> u32 {
    2
}

fn default_slack_api_url() -> Url {
    urls::constant("https://slack.com/api")
}

impl SlackConfig {
    /// The only host a `response_url` may point at: Slack's hooks host, or
    /// the host of a custom `api_url` (a local fake Slack in tests).
    pub fn response_url_host(&self) -> String {
        let u = &self.api_url;
        match u.host_str() {
            Some("slack.com") => "hooks.slack.com".to_owned(),
            host => format!("{}{}", host.unwrap_or(""), u.port().map(|p| format!(":{p}")).unwrap_or_default()),
        }
    }

    /// The Web API's base, which `/{method}` is appended to.
    pub fn api_base(&self) -> &str {
        urls::base_of(&self.api_url)
    }
}

impl SlackConfig {
    /// Ids of the right shape, tokens of the right kind for the mode.
    pub(super) fn validate(&self, at: &At) -> Result<(), String> {
        let is_id = |s: &str, first: &[char]| {
            s.len() >= 2 && s.starts_with(first) && s.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        };
        if !is_id(&self.team_id, &['T', 'E']) {
            return Err(format!(
                "{}slack.team_id must be a Slack workspace id like T0123ABCD",
                at("slack", Some("team_id"))
            ));
        }
        if !is_id(&self.approvals_channel, &['C', 'G']) {
            return Err(format!(
                "{}slack.approvals_channel must be a channel id like C0123ABCD (not a #name)",
                at("slack", Some("approvals_channel"))
            ));
        }
        if let Some(ch) = &self.audit_channel
            && !is_id(ch, &['C', 'G'])
        {
            return Err(format!(
                "{}slack.audit_channel must be a channel id like C0123ABCD",
                at("slack", Some("audit_channel"))
            ));
        }
        match self.mode {
            SlackMode::Socket => match &self.app_token {
                Some(t) if t.expose().starts_with("xapp-") => {}
                Some(_) => {
                    return Err(format!(
                        "{}slack.app_token must be an app-level token (xapp-...)",
                        at("slack", Some("app_token"))
                    ));
                }
                None => {
                    return Err(format!(
                        "{}slack.app_token is required with mode = \"socket\" (an app-level token with connections:write)",
                        at("slack", Some("mode"))
                    ));
                }
            },
            SlackMode::Http => match &self.signing_secret {
                None => {
                    return Err(format!(
                        "{}slack.signing_secret is required with mode = \"http\"",
                        at("slack", Some("mode"))
                    ));
                }
                // Anyone can compute an HMAC with an empty or tiny key.
                Some(s) if s.expose().trim().len() < 16 => {
                    return Err(format!(
                        "{}slack.signing_secret is too short: use the app's Signing Secret from Slack",
                        at("slack", Some("signing_secret"))
                    ));
                }
                Some(_) => {}
            },
        }
        if !(1..=10).contains(&self.socket_connections) {
            return Err(format!(
                "{}slack.socket_connections must be between 1 and 10",
                at("slack", Some("socket_connections"))
            ));
        }
        if !self.bot_token.expose().starts_with("xoxb-") {
            return Err(format!("{}slack.bot_token must be a bot token (xoxb-...)", at("slack", Some("bot_token"))));
        }
        Ok(())
    }
}
