//! The Slack Web API as jitbot uses it: post and update messages (through
//! slack-morphism, against the configurable `api_url`) and answer on a
//! `response_url` (only on Slack's hooks host). Every Web API call is paced
//! by Slack's documented tiers and counted per method (see [`super::pacer`]).

use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;

use super::pacer::Pacer;
use super::views::Message;
use crate::clock::SharedClock;
use crate::config::SlackConfig;
use crate::metrics::{LabelledCounter, Metrics};
use crate::notify::NotifyError;

/// The longest a call sleeps for its paced slot. Longer, and the caller is
/// told when to come back instead ([`SlackApiError::retry_after`]): a notice
/// job then gives its worker back and is rescheduled.
pub const MAX_PACED_WAIT: Duration = Duration::from_secs(2);

/// How long a 429 without a `Retry-After` blocks its method.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

/// The connector: hyper with rustls (plain HTTP allowed only for a local fake).
pub type Connector = SlackClientHyperConnector<HttpsConnector<HttpConnector>>;

/// A failed Web API call, with Slack's `Retry-After` when it sent one.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SlackApiError {
    /// What went wrong; never contains tokens.
    pub message: String,
    /// How long Slack asked us to wait (HTTP 429), or how long the pacer
    /// says the next slot is away.
    pub retry_after: Option<Duration>,
}

impl SlackApiError {
    fn plain(message: impl Into<String>) -> Self {
        Self { message: message.into(), retry_after: None }
    }
}

impl From<SlackApiError> for NotifyError {
    fn from(e: SlackApiError) -> Self {
        NotifyError { message: e.message, retry_after: e.retry_after }
    }
}

/// Describes a failed call; `true` when it was a 429 (whose `Retry-After`
/// is always set, to Slack's or a default).
fn describe(e: SlackClientError) -> (SlackApiError, bool) {
    let plain = |message: String| (SlackApiError::plain(message), false);
    match e {
        SlackClientError::RateLimitError(r) => {
            let retry_after = Some(r.retry_after.unwrap_or(DEFAULT_RETRY_AFTER));
            (SlackApiError { message: "Slack rate limit (HTTP 429)".to_owned(), retry_after }, true)
        }
        SlackClientError::ApiError(a) => plain(format!("Slack API error: {}", a.code)),
        SlackClientError::HttpError(h) => plain(format!("Slack answered HTTP {}", h.status_code.as_u16())),
        other => plain(format!("cannot reach Slack: {}", first_line(&other.to_string()))),
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(200).collect()
}

/// What jitbot reads from a Slack profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackProfile {
    /// Display name (or real name, or handle).
    pub display_name: String,
    /// Profile email, when visible to the app.
    pub email: Option<String>,
}

/// The Web API client.
#[derive(Clone)]
pub struct SlackApi {
    client: Arc<SlackClient<Connector>>,
    token: SlackApiToken,
    response_host: String,
    http: reqwest::Client,
    pacer: Arc<Pacer>,
    metrics: Metrics,
}

impl SlackApi {
    /// Builds the client for `config.api_url`. Plain `http://` is allowed
    /// only because tests point `api_url` at a local fake. `clock` keeps
    /// Slack's `Retry-After` in the time jobs are rescheduled in; `metrics`
    /// counts calls and 429s per method.
    pub fn new(config: &SlackConfig, clock: SharedClock, metrics: Metrics) -> anyhow::Result<Self> {
        let builder = hyper_rustls::HttpsConnectorBuilder::new().with_native_roots()?;
        let https = if config.api_url.scheme() == "http" {
            builder.https_or_http().enable_http1().build()
        } else {
            builder.https_only().enable_http1().build()
        };
        let connector = SlackClientHyperConnector::with_connector(https).with_slack_api_url(config.api_base());
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            client: Arc::new(SlackClient::new(connector)),
            token: SlackApiToken::new(SlackApiTokenValue(config.bot_token.expose().to_owned())),
            response_host: config.response_url_host(),
            http,
            pacer: Arc::new(Pacer::new(clock)),
            metrics,
        })
    }

    /// Waits for a paced slot for one call of `method` (to `channel`), at
    /// most [`MAX_PACED_WAIT`], and counts the call.
    async fn pace(&self, method: &'static str, channel: Option<&str>) -> Result<(), SlackApiError> {
        let wait = self.pacer.reserve(method, channel, MAX_PACED_WAIT).map_err(|retry| SlackApiError {
            message: format!("{method} waits {} ms for Slack's rate limit", retry.as_millis()),
            retry_after: Some(retry),
        })?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        self.metrics.inc_labelled(LabelledCounter::SlackApiCalls, &[("method", method)]);
        Ok(())
    }

    /// What a finished call of `method` (to `channel`) means: a 429 is
    /// counted and blocks the method (or channel) until its `Retry-After`.
    fn settle<T>(
        &self,
        method: &'static str,
        channel: Option<&str>,
        result: Result<T, SlackClientError>,
    ) -> Result<T, SlackApiError> {
        result.map_err(|e| {
            let (e, rate_limited) = describe(e);
            if rate_limited {
                self.metrics.inc_labelled(LabelledCounter::SlackRateLimited, &[("method", method)]);
                self.pacer.block(method, channel, e.retry_after.unwrap_or(DEFAULT_RETRY_AFTER));
                tracing::warn!(method, retry_after = ?e.retry_after, "Slack answered 429");
            }
            e
        })
    }

    fn content(msg: &Message) -> Result<SlackMessageContent, SlackApiError> {
        let mut content = SlackMessageContent::new().with_text(msg.text.clone());
        if !msg.blocks.is_empty() {
            let blocks: Vec<SlackBlock> = serde_json::from_value(serde_json::Value::Array(msg.blocks.clone()))
                .map_err(|e| SlackApiError::plain(format!("cannot encode blocks: {e}")))?;
            content = content.with_blocks(blocks);
        }
        Ok(content)
    }

    /// The underlying client (Socket Mode listens through it).
    pub fn client(&self) -> Arc<SlackClient<Connector>> {
        self.client.clone()
    }

    /// Posts a message; returns its `ts`. A user id as `channel` posts to
    /// that user's DM with the app.
    pub async fn post_message(&self, channel: &str, msg: &Message) -> Result<String, SlackApiError> {
        let req = SlackApiChatPostMessageRequest::new(channel.into(), Self::content(msg)?);
        self.pace("chat.postMessage", Some(channel)).await?;
        let session = self.client.open_session(&self.token);
        let resp = self.settle("chat.postMessage", Some(channel), session.chat_post_message(&req).await)?;
        Ok(resp.ts.0)
    }

    /// Posts a reply in the thread of message `thread_ts`; with `broadcast`
    /// the reply is also shown in the channel.
    pub async fn post_reply(
        &self,
        channel: &str,
        thread_ts: &str,
        msg: &Message,
        broadcast: bool,
    ) -> Result<String, SlackApiError> {
        let mut req = SlackApiChatPostMessageRequest::new(channel.into(), Self::content(msg)?);
        req.thread_ts = Some(SlackTs(thread_ts.to_owned()));
        req.reply_broadcast = Some(broadcast);
        self.pace("chat.postMessage", Some(channel)).await?;
        let session = self.client.open_session(&self.token);
        let resp = self.settle("chat.postMessage", Some(channel), session.chat_post_message(&req).await)?;
        Ok(resp.ts.0)
    }

    /// Replaces a posted message.
    pub async fn update_message(&self, channel: &str, ts: &str, msg: &Message) -> Result<(), SlackApiError> {
        let req = SlackApiChatUpdateRequest::new(channel.into(), Self::content(msg)?, SlackTs(ts.to_owned()));
        self.pace("chat.update", None).await?;
        let session = self.client.open_session(&self.token);
        self.settle("chat.update", None, session.chat_update(&req).await)?;
        Ok(())
    }

    fn view(view: &serde_json::Value) -> Result<SlackView, SlackApiError> {
        serde_json::from_value(view.clone()).map_err(|e| SlackApiError::plain(format!("cannot encode the view: {e}")))
    }

    /// Opens a modal in answer to an interaction. `trigger_id` is only
    /// good for 3 seconds after the interaction, so callers do this at once.
    pub async fn open_view(&self, trigger_id: &str, view: &serde_json::Value) -> Result<(), SlackApiError> {
        let req = SlackApiViewsOpenRequest::new(SlackTriggerId(trigger_id.to_owned()), Self::view(view)?);
        self.pace("views.open", None).await?;
        let session = self.client.open_session(&self.token);
        self.settle("views.open", None, session.views_open(&req).await)?;
        Ok(())
    }

    /// Replaces an open modal; with `hash`, only if nobody changed it since.
    pub async fn update_view(
        &self,
        view_id: &str,
        hash: Option<&str>,
        view: &serde_json::Value,
    ) -> Result<(), SlackApiError> {
        let mut req = SlackApiViewsUpdateRequest::new(Self::view(view)?);
        req.view_id = Some(SlackViewId(view_id.to_owned()));
        req.hash = hash.map(str::to_owned);
        self.pace("views.update", None).await?;
        let session = self.client.open_session(&self.token);
        self.settle("views.update", None, session.views_update(&req).await)?;
        Ok(())
    }

    /// Publishes a user's App Home tab.
    pub async fn publish_home(&self, user_id: &str, view: &serde_json::Value) -> Result<(), SlackApiError> {
        let req = SlackApiViewsPublishRequest::new(SlackUserId(user_id.to_owned()), Self::view(view)?);
        self.pace("views.publish", None).await?;
        let session = self.client.open_session(&self.token);
        self.settle("views.publish", None, session.views_publish(&req).await)?;
        Ok(())
    }

    /// A user's display name and profile email (`users.info`; the email needs
    /// the `users:read.email` scope).
    pub async fn user_profile(&self, user_id: &str) -> Result<SlackProfile, SlackApiError> {
        let req = SlackApiUsersInfoRequest::new(SlackUserId(user_id.to_owned()));
        self.pace("users.info", None).await?;
        let session = self.client.open_session(&self.token);
        let user = self.settle("users.info", None, session.users_info(&req).await)?.user;
        let (display, real, email) = match user.profile {
            Some(p) => (p.display_name, p.real_name, p.email.map(|e| e.0)),
            None => (None, None, None),
        };
        let display_name = [display, real, user.name]
            .into_iter()
            .flatten()
            .find(|n| !n.is_empty())
            .unwrap_or_else(|| user_id.to_owned());
        Ok(SlackProfile { display_name, email })
    }

    /// Whether `url` is a `response_url` jitbot may follow.
    pub fn response_url_allowed(&self, url: &str) -> bool {
        let Ok(u) = reqwest::Url::parse(url) else { return false };
        let host = format!("{}{}", u.host_str().unwrap_or(""), u.port().map(|p| format!(":{p}")).unwrap_or_default());
        let scheme_ok = u.scheme() == "https" || (u.scheme() == "http" && self.response_host != "hooks.slack.com");
        scheme_ok && host == self.response_host
    }

    /// Sends an ephemeral answer to the person who acted, through the
    /// `response_url` of their interaction. Any other host is refused.
    pub async fn respond(
        &self,
        response_url: &str,
        text: &str,
        blocks: &[serde_json::Value],
    ) -> Result<(), SlackApiError> {
        if !self.response_url_allowed(response_url) {
            return Err(SlackApiError {
                message: "response_url is not on Slack's hooks host".into(),
                retry_after: None,
            });
        }
        let mut body = json!({"response_type": "ephemeral", "replace_original": false, "text": text});
        if !blocks.is_empty() {
            body["blocks"] = serde_json::Value::Array(blocks.to_vec());
        }
        let resp = self.http.post(response_url).json(&body).send().await.map_err(|e| SlackApiError {
            message: format!("cannot reach the response_url: {}", if e.is_timeout() { "timed out" } else { "failed" }),
            retry_after: None,
        })?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(SlackApiError {
                message: format!("response_url answered HTTP {}", resp.status().as_u16()),
                retry_after: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, SlackMode};

    fn api(api_url: &str) -> SlackApi {
        SlackApi::new(
            &SlackConfig {
                mode: SlackMode::Http,
                bot_token: Secret::from("xoxb-1"),
                app_token: None,
                signing_secret: Some(Secret::from("s")),
                socket_connections: 1,
                api_url: api_url.parse().unwrap(),
                team_id: "T0WORK".into(),
                approvals_channel: "C0APPROVALS".into(),
                audit_channel: None,
            },
            std::sync::Arc::new(crate::clock::SystemClock),
            Metrics::default(),
        )
        .unwrap()
    }

    #[test]
    fn response_urls_are_only_followed_on_slacks_hooks_host() {
        let real = api("https://slack.com/api");
        assert!(real.response_url_allowed("https://hooks.slack.com/actions/T0WORK/1/abc"));
        assert!(!real.response_url_allowed("http://hooks.slack.com/actions/T0WORK/1/abc"));
        assert!(!real.response_url_allowed("https://hooks.slack.com.evil.example/actions"));
        assert!(!real.response_url_allowed("https://169.254.169.254/latest/meta-data"));
        assert!(!real.response_url_allowed("not a url"));
        let fake = api("http://127.0.0.1:4000/api");
        assert!(fake.response_url_allowed("http://127.0.0.1:4000/hooks/x"));
        assert!(!fake.response_url_allowed("http://127.0.0.1:4001/hooks/x"));
        assert!(!fake.response_url_allowed("https://hooks.slack.com/actions/x"));
    }
}
