//! `POST /slack/commands`, `/slack/interactions`, `/slack/events`.
//!
//! Every request is signature-checked on its raw body first (401 and nothing
//! written on failure), then its workspace is checked against
//! `slack.team_id`. Handlers only read and write the database through the
//! service and answer at once; Web API calls happen in jobs, except the
//! best-effort ephemeral answer to a click, which is posted to its
//! `response_url` from a spawned task after the acknowledgement.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::post;
use serde_json::json;

use super::api::SlackApi;
use super::dispatch::{Answer, BUSY, Delivery, Inbound, Transport, dispatch, note_request};
use super::payloads::{self, SlashCommand};
use super::signature;
use super::views::{escape, slack_date};
use crate::clock::SharedClock;
use crate::config::{Config, SlackConfig};
use crate::domain::command::{self, JitCommand, USAGE};
use crate::domain::{RequestId, SlackUser};
use crate::metrics::Metrics;
use crate::service::{ApprovalOutcome, ExtendCommand, ExtendOutcome, RequestCommand, Service, ServiceError};

/// Slack payloads are small; anything bigger is not from Slack.
pub const BODY_LIMIT: usize = 256 * 1024;

/// What the Slack handlers share.
#[derive(Clone)]
pub struct SlackState {
    /// The use cases.
    pub service: Service,
    /// For the signature window and `now`.
    pub clock: SharedClock,
    /// The whole config (roles for help texts).
    pub config: Arc<Config>,
    /// For ephemeral answers on `response_url`.
    pub api: SlackApi,
    /// Where the acknowledgement latency is recorded (served on `/metrics`).
    pub metrics: Metrics,
    /// Slots for commands and interactions in flight (see
    /// [`super::dispatch::ADMISSION_WAIT`]); one more waits briefly, then
    /// is answered busy.
    pub admission: Arc<tokio::sync::Semaphore>,
}

impl SlackState {
    /// The one workspace served.
    pub fn team_id(&self) -> &str {
        &self.slack().team_id
    }

    /// The channel where `role`'s approval cards go.
    pub(crate) fn approvals_channel(&self, role: &str) -> String {
        match super::approvals_channel(&self.config, role) {
            Some(channel) => channel,
            // The router is only mounted when `[slack]` is configured.
            None => unreachable!("slack routes mounted without [slack]"),
        }
    }

    fn slack(&self) -> &SlackConfig {
        // The router is only mounted when `[slack]` is configured.
        match &self.config.slack {
            Some(s) => s,
            None => unreachable!("slack routes mounted without [slack]"),
        }
    }
}

/// Why a Slack request was refused before reaching the workflow.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("invalid signature")]
    Signature(#[from] signature::SignatureError),
    #[error("{0}")]
    Malformed(String),
    #[error("this jitbot serves another Slack workspace")]
    ForeignTeam,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = match &self {
            Refusal::Signature(e) => {
                tracing::warn!(reason = %e, "refused a Slack request with a bad signature");
                StatusCode::UNAUTHORIZED
            }
            Refusal::Malformed(e) => {
                tracing::warn!(error = %e, "refused a malformed Slack request");
                StatusCode::BAD_REQUEST
            }
            Refusal::ForeignTeam => StatusCode::FORBIDDEN,
        };
        (status, format!("{self}\n")).into_response()
    }
}

/// What a slash command gets while jitbot is over its in-flight limit
/// (see [`crate::http::Bounds::overload_answer`]): the same ephemeral
/// "busy, nothing was changed" a delivery gets when the database is busy,
/// instead of a 503 that Slack shows as "dispatch_failed". It is sent
/// before the signature is checked, so it says nothing but that.
/// Interactions and events keep the 503: Slack shows nothing for either
/// body, and retries events by itself.
pub fn overload_answer(path: &str) -> Option<Response> {
    (path == "/slack/commands").then(|| {
        Json(json!({ "response_type": "ephemeral", "text": format!(":hourglass_flowing_sand: {BUSY}") }))
            .into_response()
    })
}

/// Mounts the three endpoints.
pub fn router(state: SlackState) -> Router {
    Router::new()
        .route("/slack/commands", post(commands))
        .route("/slack/interactions", post(interactions))
        .route("/slack/events", post(events))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

fn verify(state: &SlackState, headers: &HeaderMap, body: &[u8]) -> Result<(), Refusal> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    // The HTTP routes are only mounted in HTTP mode, where the secret is required.
    let secret = state.slack().signing_secret.as_ref().map(|s| s.expose()).unwrap_or_default();
    signature::verify(
        secret.as_bytes(),
        header("x-slack-request-timestamp"),
        header("x-slack-signature"),
        body,
        state.clock.now(),
    )?;
    Ok(())
}

fn is_retry(headers: &HeaderMap) -> bool {
    headers.contains_key("x-slack-retry-num")
}

/// An ephemeral answer: text, and sometimes a sign-in button.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    /// The text (also the fallback when there are blocks).
    pub text: String,
    /// Block Kit blocks, when the answer has a button.
    pub blocks: Vec<serde_json::Value>,
}

impl From<String> for Reply {
    fn from(text: String) -> Self {
        Self { text, blocks: Vec::new() }
    }
}

/// A message with a "Sign in" button carrying a fresh single-use link token.
async fn sign_in_reply(
    state: &SlackState,
    user: &SlackUser,
    text: String,
    max_age: Option<std::time::Duration>,
) -> Reply {
    let Some(idp) = &state.config.idp else { return text.into() };
    let now = state.clock.now();
    let token = match state.service.start_link(user, max_age, now).await {
        Ok(t) => t,
        Err(e) => return explain(&e, user).into(),
    };
    let url = format!("{}/oidc/link/{token}", state.config.server.public_base());
    let label = super::views::truncate(&format!("Sign in with {}", idp.display_name), 75);
    Reply {
        blocks: vec![
            json!({"type": "section", "text": {"type": "mrkdwn", "text": super::views::fit(&escape(&text), 3000)}}),
            json!({"type": "actions", "elements": [{"type": "button", "action_id": "sign_in", "url": url, "style": "primary",
                "text": {"type": "plain_text", "text": label}}]}),
            json!({"type": "context", "elements": [{"type": "mrkdwn", "text": "The link works once, for 10 minutes, and only for you."}]}),
        ],
        text: format!("{text} {url}"),
    }
}

/// Explains a refusal, offering a sign-in button when signing in fixes it.
pub(crate) async fn answer_error(state: &SlackState, e: &ServiceError, user: &SlackUser) -> Reply {
    match e {
        ServiceError::SignInRequired { reason, max_age } => {
            let mut text = reason.clone();
            if let Some(first) = text.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            sign_in_reply(state, user, format!("{text}."), *max_age).await
        }
        ServiceError::NotLinked if state.config.idp.is_some() => {
            sign_in_reply(
                state,
                user,
                "You have not linked your Slack account to your company identity yet, so jitbot cannot check your groups. Sign in once to link it.".into(),
                None,
            )
            .await
        }
        other => explain(other, user).into(),
    }
}

async fn commands(State(state): State<SlackState>, headers: HeaderMap, body: Bytes) -> Response {
    let arrived = std::time::Instant::now();
    if let Err(refusal) = verify(&state, &headers, &body) {
        return refusal.into_response();
    }
    let inbound = match payloads::parse_command(&body) {
        Ok(cmd) => Inbound::Command(cmd),
        Err(e) => return Refusal::Malformed(e).into_response(),
    };
    http_answer(dispatch(&state, http_delivery(inbound, &headers, arrived)).await)
}

/// A delivery that arrived over HTTP at `arrived`.
fn http_delivery(inbound: Inbound, headers: &HeaderMap, arrived: std::time::Instant) -> Delivery {
    Delivery { inbound, retry: is_retry(headers), transport: Transport::Http, arrived }
}

/// Puts the dispatcher's answer on the HTTP wire.
fn http_answer(answer: Answer) -> Response {
    match answer {
        Answer::Ack => StatusCode::OK.into_response(),
        Answer::Message(reply) => Json(Answer::message_json(&reply)).into_response(),
        Answer::ViewResponse(value) => Json(value).into_response(),
        Answer::Challenge(challenge) => Json(json!({"challenge": challenge})).into_response(),
        Answer::Refused(refusal) => refusal.into_response(),
    }
}

/// Explains a refusal to the person who acted.
pub(crate) fn explain(e: &ServiceError, user: &SlackUser) -> String {
    match e {
        ServiceError::NotLinked => format!(
            "You have not linked your Slack account to your company identity yet, so jitbot cannot check your groups. \
             Ask a jitbot administrator to link you:\n`jitbot link add --team {} --user {} --email <your email> --groups <your groups>`",
            user.team_id(),
            user.user_id()
        ),
        ServiceError::Unavailable => format!(":hourglass_flowing_sand: {BUSY}"),
        other => {
            let mut text = other.to_string();
            if let Some(first) = text.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            format!(":no_entry: {}.", escape(text.trim_end_matches('.')))
        }
    }
}

/// Runs a slash command from either transport and returns the ephemeral answer.
pub(crate) async fn run_command(state: &SlackState, user: &SlackUser, cmd: &SlashCommand) -> Reply {
    let parsed = match command::parse(&cmd.text) {
        Ok(c) => c,
        Err(e) => return e.0.into(),
    };
    let now = state.clock.now();
    let service = &state.service;
    if let JitCommand::Revoke(id)
    | JitCommand::Retry(id)
    | JitCommand::Cancel(id)
    | JitCommand::Extend { id, .. }
    | JitCommand::BreakGlass { id, .. } = &parsed
    {
        note_request(*id);
    }
    match parsed {
        JitCommand::Help => help(state, user).await.into(),
        // Handled before (it answers with a modal, not a message).
        JitCommand::RequestForm { .. } => "Run `/jit request` to open the request form.".to_owned().into(),
        JitCommand::Link => match &state.config.idp {
            Some(idp) => {
                sign_in_reply(
                    state,
                    user,
                    format!("Link your Slack account to {} so jitbot can check your groups.", idp.display_name),
                    None,
                )
                .await
            }
            None => "Linking through an identity provider is not set up here; ask a jitbot administrator to link you with `jitbot link add`.".to_owned().into(),
        },
        JitCommand::Unlink { confirm } => {
            let lines = |requests: &[crate::domain::AccessRequest]| -> String {
                requests
                    .iter()
                    .map(|r| format!("\n• #{} `{}`: {}", r.id.get(), r.role, r.state.describe()))
                    .collect()
            };
            match service.unlink_self(user, confirm, now).await {
                Ok(crate::service::UnlinkOutcome::NoLink) => "You have no link.".to_owned().into(),
                Ok(crate::service::UnlinkOutcome::WouldEnd(live)) => format!(
                    "Unlinking ends this access of yours (grants are revoked, pending requests cancelled):{}\n\
                     Run `/jit unlink confirm` to unlink and end it; nothing has changed yet.",
                    lines(&live)
                )
                .into(),
                Ok(crate::service::UnlinkOutcome::Unlinked(ended)) if ended.is_empty() => {
                    "Your link was removed. Run `/jit link` to link again.".to_owned().into()
                }
                Ok(crate::service::UnlinkOutcome::Unlinked(ended)) => format!(
                    "Your link was removed, and this access ended with it:{}\nRun `/jit link` to link again.",
                    lines(&ended)
                )
                .into(),
                Err(e) => explain(&e, user).into(),
            }
        }
        JitCommand::Request { role, duration, reason } => {
            let request = RequestCommand {
                requester: user.clone(),
                role,
                duration,
                reason,
                ticket: None,
                client_key: (!cmd.trigger_id.is_empty()).then(|| format!("slack-command:{}", cmd.trigger_id)),
            };
            let made = service.request(request, now).await;
            if let Ok(r) = &made {
                note_request(r.id);
            }
            match made {
                Ok(r) if r.auto_approved.is_some() => format!(
                    "Request #{} for `{}` ({}) was auto-approved ({}): granting it now. You will get a DM when it is active.",
                    r.id.get(),
                    r.role,
                    r.duration,
                    escape(r.auto_approved.as_deref().unwrap_or(""))
                )
                .into(),
                Ok(r) => {
                    let channel = state.approvals_channel(r.role.as_str());
                    let mut text = format!(
                        "Request #{} for `{}` ({}) sent to <#{channel}> for approval. You will get a DM when it is decided.",
                        r.id.get(),
                        r.role,
                        r.duration
                    );
                    if let Some(t) = r.decide_by {
                        text.push_str(&format!(" It times out {} if nobody decides.", slack_date(t)));
                    }
                    if state.config.roles.get(r.role.as_str()).is_some_and(|c| c.break_glass) {
                        text.push_str(&format!(
                            "\nIn an emergency this role allows break-glass: `/jit break-glass {} <reason>` approves it yourself (announced and flagged for review).",
                            r.id.get()
                        ));
                        return Reply {
                            blocks: vec![
                                json!({"type": "section", "text": {"type": "mrkdwn", "text": super::views::fit(&text, 3000)}}),
                                json!({"type": "actions", "elements": [{"type": "button", "action_id": "break_glass",
                                    "value": r.id.get().to_string(), "style": "danger",
                                    "text": {"type": "plain_text", "text": "Break glass"}}]}),
                            ],
                            text,
                        };
                    }
                    text.into()
                }
                Err(e) => answer_error(state, &e, user).await,
            }
        }
        JitCommand::List => list(state, user).await,
        JitCommand::Pending => pending(state, user).await,
        JitCommand::Revoke(id) => match service.revoke(id, user, now).await {
            Ok(r) if &r.requester == user => {
                format!(
                    "Ending your `{}` access (request #{}) now. You will get a DM when it is done.",
                    r.role,
                    id.get()
                )
                .into()
            }
            Ok(r) => {
                format!("Revoking <@{}>'s `{}` access (request #{}) now.", r.requester.user_id(), r.role, id.get())
                    .into()
            }
            Err(e) => answer_error(state, &e, user).await,
        },
        JitCommand::Retry(id) => match service.retry_revoke_as(id, user, now).await {
            Ok(r) => format!(
                "Retrying the revocation of request #{} (<@{}> `{}`) now; the card shows the result.",
                id.get(),
                r.requester.user_id(),
                r.role
            )
            .into(),
            Err(e) => answer_error(state, &e, user).await,
        },
        JitCommand::Extend { id, duration, reason } => {
            let cmd = ExtendCommand {
                requester: user.clone(),
                request: id,
                duration,
                reason,
                client_key: (!cmd.trigger_id.is_empty()).then(|| format!("slack-command:{}", cmd.trigger_id)),
            };
            extend_reply(state, user, service.extend(cmd, now).await).await
        }
        JitCommand::BreakGlass { id, reason } => match service.break_glass(id, user, &reason, now).await {
            Ok(r) => format!(
                ":rotating_light: Break-glass: you approved request #{} for `{}` ({}) yourself. Granting it now; this is announced and flagged for review.",
                id.get(),
                r.role,
                r.duration
            )
            .into(),
            Err(e) => answer_error(state, &e, user).await,
        },
        JitCommand::RevokeAll { reason } => confirm_revoke_all(state, user, &reason, now).await,
        JitCommand::Unfreeze { reason } => match service.release_kill_switch(user, &reason, now).await {
            Ok(Some(was)) => format!(
                ":white_check_mark: Kill switch released (it was engaged {} by {}). Approvals grant access again; the audit channel was told.",
                slack_date(was.at()),
                escape(&was.engaged_by)
            )
            .into(),
            Ok(None) => "The kill switch is not engaged; approvals grant access as usual.".to_owned().into(),
            Err(e) => answer_error(state, &e, user).await,
        },
        JitCommand::Cancel(id) => match service.cancel(id, user, now).await {
            Ok(r) => format!("Request #{} for `{}` cancelled.", id.get(), r.role).into(),
            Err(e) => explain(&e, user).into(),
        },
        JitCommand::Whoami => match service.link_summary(user).await {
            Ok(Some(link)) => {
                // The claims login templates read, so a person can see which
                // database login their requests will use.
                let claims: String = link
                    .claims
                    .iter()
                    .map(|(name, value)| format!("\nClaim `{}`: `{}`", escape(name), escape(value)))
                    .collect();
                format!(
                    "You are linked to *{}* (subject `{}` at `{}`).\nGroups: {}{claims}\nLast confirmed {}.",
                    escape(&link.email),
                    escape(&link.subject),
                    escape(&link.issuer),
                    match (&state.config.idp, link.missing_groups_claim) {
                        (Some(idp), true) => crate::domain::policy::missing_groups_note(&idp.groups_claim),
                        _ => link.groups.join(", "),
                    },
                    slack_date(link.confirmed_at)
                )
                .into()
            }
            Ok(None) => answer_error(state, &ServiceError::NotLinked, user).await,
            Err(e) => explain(&e, user).into(),
        },
    }
}

async fn help(state: &SlackState, user: &SlackUser) -> String {
    let mut text = format!("*jitbot* gives you temporary, approved access.\n{USAGE}");
    if let Ok(Some(identity)) = state.service.linked_identity(user).await {
        let mine: Vec<String> = state
            .service
            .requestable_roles(&identity)
            .into_iter()
            .map(|(p, description)| format!("• `{}`: {} (up to {})", p.role, escape(&description), p.max_duration))
            .collect();
        if mine.is_empty() {
            text.push_str("\n\nYour groups do not allow you to request any role.");
        } else {
            text.push_str(&format!("\n\n*Roles you can request*\n{}", mine.join("\n")));
        }
    }
    text
}

async fn list(state: &SlackState, user: &SlackUser) -> Reply {
    let service = &state.service;
    let mine = async {
        let open = service.open_requests(user).await?;
        let recent = service.recent_requests(user).await?;
        let waiting = match service.linked_identity(user).await? {
            Some(identity) => service.awaiting_decision(&identity).await?,
            None => Vec::new(),
        };
        Ok::<_, ServiceError>((open, recent, waiting))
    };
    match mine.await {
        Ok((open, recent, waiting)) => {
            let msg = super::summaries::MyRequests {
                open: &open,
                recent: &recent,
                waiting: &waiting,
                now: state.clock.now(),
            }
            .render();
            Reply { text: msg.text, blocks: msg.blocks }
        }
        Err(e) => explain(&e, user).into(),
    }
}

/// `/jit revoke-all <reason>`: for administrators, a confirmation with
/// what would be revoked; the button (behind Slack's confirmation dialog)
/// pulls the kill switch.
async fn confirm_revoke_all(
    state: &SlackState,
    user: &SlackUser,
    reason: &str,
    now: crate::domain::Timestamp,
) -> Reply {
    if let Err(e) = state.service.check_admin(user, now).await {
        return answer_error(state, &e, user).await;
    }
    let reason = super::views::truncate(reason.trim(), 1000);
    if reason.chars().count() < crate::service::REVOKE_ALL_REASON_MIN {
        return "Say why: `/jit revoke-all <reason>`, e.g. `/jit revoke-all credentials leaked, INC-4821`"
            .to_owned()
            .into();
    }
    let service = &state.service;
    let count = |states: &'static [crate::domain::RequestState]| async move {
        service.count_in_states(states).await.unwrap_or(0)
    };
    use crate::domain::RequestState as S;
    let live = count(&[S::Granting, S::Active, S::GrantFailed, S::Revoking, S::RevokeFailed]).await;
    let pending = count(&[S::Pending]).await;
    super::summaries::RevokeAllConfirmation { reason: &reason, live, pending }.render().into()
}

/// `/jit pending`: what waits for my decision, with Approve and Deny.
async fn pending(state: &SlackState, user: &SlackUser) -> Reply {
    let service = &state.service;
    let waiting = async {
        let Some(identity) = service.linked_identity(user).await? else { return Err(ServiceError::NotLinked) };
        let mut out = Vec::new();
        for r in service.awaiting_decision(&identity).await? {
            let approvals = service.approvals(r.id).await?;
            out.push((r, approvals));
        }
        Ok(out)
    };
    match waiting.await {
        Ok(requests) => {
            let msg = super::summaries::AwaitingMe { requests: &requests }.render();
            Reply { text: msg.text, blocks: msg.blocks }
        }
        Err(e) => answer_error(state, &e, user).await,
    }
}

async fn interactions(State(state): State<SlackState>, headers: HeaderMap, body: Bytes) -> Response {
    let arrived = std::time::Instant::now();
    if let Err(refusal) = verify(&state, &headers, &body) {
        return refusal.into_response();
    }
    let inbound = match payloads::parse_interaction(&body) {
        Ok(interaction) => Inbound::Interaction(Box::new(interaction)),
        Err(e) => return Refusal::Malformed(e).into_response(),
    };
    http_answer(dispatch(&state, http_delivery(inbound, &headers, arrived)).await)
}

/// Handles a parsed interaction from either transport: only database work,
/// then an ephemeral answer posted to its `response_url` from a spawned task.
pub(crate) async fn handle_interaction(
    state: &SlackState,
    interaction: payloads::Interaction,
    retry: bool,
) -> Result<Answer, Refusal> {
    let state = state.clone();
    if interaction.team_id() != Some(state.slack().team_id.as_str()) {
        tracing::warn!(team = ?interaction.team_id(), "interaction from another workspace refused");
        return Err(Refusal::ForeignTeam);
    }
    let user = SlackUser::parse(interaction.team_id().unwrap_or_default(), &interaction.user.id)
        .map_err(Refusal::Malformed)?;
    match (interaction.kind.as_str(), &interaction.view) {
        ("view_submission", Some(view)) => {
            return Ok(Answer::ViewResponse(super::forms::submission(&state, &user, view, state.clock.now()).await));
        }
        ("block_actions", _) => {}
        _ => return Ok(Answer::Ack),
    }
    let trigger = interaction.trigger_id.as_deref();
    let in_home = interaction.view.as_ref().is_some_and(|v| v.kind.as_deref() == Some("home"));
    for action in &interaction.actions {
        let now = state.clock.now();
        let answer = match (action.action_id.as_str(), &interaction.view) {
            ("role", Some(view)) => {
                super::forms::role_changed(&state, &user, view).await;
                None
            }
            ("extend", _) => extend_action(&state, &user, action, trigger, now).await,
            ("request_form", _) => {
                let response_url = interaction.response_url.clone();
                super::forms::open_request_form(&state, &user, None, trigger.unwrap_or_default(), response_url).await
            }
            ("revoke_all", _) => {
                let reason = action.chosen().unwrap_or_default();
                Some(match state.service.revoke_all(&user, reason, now).await {
                    Ok(done) => Reply::from(format!(
                        ":rotating_light: Done: {} grant(s) being revoked, {} pending request(s) cancelled. The audit channel was told. Nothing is granted until an administrator runs `/jit unfreeze <reason>`.",
                        done.revoking.len(),
                        done.cancelled.len()
                    )),
                    Err(e) => answer_error(&state, &e, &user).await,
                })
            }
            (kind, _) => {
                let Some(id) = action.chosen().and_then(RequestId::parse) else { continue };
                note_request(id);
                match kind {
                    "deny" => super::forms::open_deny_form(&state, &user, id, trigger, now).await,
                    "break_glass" => super::forms::open_break_glass_form(&state, &user, id, trigger).await,
                    _ => decide_action(&state, &user, kind, id, retry, now).await,
                }
            }
        };
        if let (Some(reply), Some(url)) = (answer, interaction.response_url.clone()) {
            let api = state.api.clone();
            tokio::spawn(async move {
                if let Err(e) = api.respond(&url, &reply.text, &reply.blocks).await {
                    tracing::warn!(error = %e, "could not answer the click");
                }
            });
        }
    }
    if in_home {
        // Clicks in the home tab have nowhere to answer: the redrawn tab is
        // the answer, drawn at once by the person's serial redraw job.
        if let Err(e) = state.service.redraw_home_now(&user, state.clock.now()).await {
            tracing::warn!(error = %e, "home tab redraw not scheduled");
        }
    }
    Ok(Answer::Ack)
}

/// A click on a button that carries a request id: Approve, Deny, I'm done.
async fn decide_action(
    state: &SlackState,
    user: &SlackUser,
    action_id: &str,
    id: RequestId,
    retry: bool,
    now: crate::domain::Timestamp,
) -> Option<Reply> {
    match action_id {
        "approve" => match state.service.approve(id, user, now).await {
            Ok(ApprovalOutcome::Approved(r)) if r.extends.is_some() => Some(Reply::from(format!(
                "You approved extension #{}: <@{}>'s `{}` access now lasts {} longer.",
                id.get(),
                r.requester.user_id(),
                r.role,
                r.duration
            ))),
            Ok(ApprovalOutcome::Approved(r)) => Some(Reply::from(format!(
                "You approved request #{}: granting <@{}> `{}` for {} now.",
                id.get(),
                r.requester.user_id(),
                r.role,
                r.duration
            ))),
            Ok(ApprovalOutcome::Recorded { request, approvals }) => Some(Reply::from(format!(
                "Your approval of request #{} is recorded ({approvals} of {}).",
                id.get(),
                request.approvals_required
            ))),
            Err(ServiceError::AlreadyVoted(_)) if retry => None,
            Err(e) => Some(answer_error(state, &e, user).await),
        },
        "cancel" => match state.service.cancel(id, user, now).await {
            Ok(r) => Some(Reply::from(format!("Request #{} for `{}` cancelled.", id.get(), r.role))),
            Err(e) => Some(answer_error(state, &e, user).await),
        },
        "done" => match state.service.revoke(id, user, now).await {
            Ok(r) => Some(Reply::from(format!(
                "Ending your `{}` access (request #{}) now. You will get a DM when it is done.",
                r.role,
                id.get()
            ))),
            Err(e) => Some(answer_error(state, &e, user).await),
        },
        _ => None,
    }
}

/// "Extend by…" picked in the expiry warning: the option's value is
/// `<request id>:<seconds>`.
async fn extend_action(
    state: &SlackState,
    user: &SlackUser,
    action: &payloads::Action,
    trigger_id: Option<&str>,
    now: crate::domain::Timestamp,
) -> Option<Reply> {
    let (id, secs) = action.chosen()?.split_once(':')?;
    let id = RequestId::parse(id)?;
    let duration = secs
        .parse::<u64>()
        .ok()
        .and_then(|s| crate::domain::AccessDuration::try_from_std(std::time::Duration::from_secs(s)).ok())?;
    let cmd = ExtendCommand {
        requester: user.clone(),
        request: id,
        duration: Some(duration),
        reason: None,
        client_key: trigger_id.filter(|t| !t.is_empty()).map(|t| format!("slack-action:{t}")),
    };
    Some(extend_reply(state, user, state.service.extend(cmd, now).await).await)
}

/// What the holder is told after asking for an extension.
async fn extend_reply(state: &SlackState, user: &SlackUser, result: Result<ExtendOutcome, ServiceError>) -> Reply {
    match result {
        Ok(ExtendOutcome::Extended { request, extension }) => format!(
            "Extended: your `{}` access (request #{}) now ends {} ({}).",
            request.role,
            request.id.get(),
            request.expires_at.map(slack_date).unwrap_or_default(),
            escape(
                extension
                    .auto_approved
                    .as_deref()
                    .map(|w| format!("auto-approved: {w}"))
                    .as_deref()
                    .unwrap_or("approved")
            )
        )
        .into(),
        Ok(ExtendOutcome::Pending(ext)) => {
            let channel = state.approvals_channel(ext.role.as_str());
            format!(
                "Extension request #{} (+{} for request #{}) sent to <#{channel}> for approval. Until it is approved your access ends as planned.",
                ext.id.get(),
                ext.duration,
                ext.extends.map(RequestId::get).unwrap_or_default()
            )
            .into()
        }
        Err(e) => answer_error(state, &e, user).await,
    }
}

async fn events(State(state): State<SlackState>, headers: HeaderMap, body: Bytes) -> Response {
    let arrived = std::time::Instant::now();
    if let Err(refusal) = verify(&state, &headers, &body) {
        return refusal.into_response();
    }
    let inbound = match serde_json::from_slice::<payloads::EventEnvelope>(&body) {
        Ok(envelope) => Inbound::Event(envelope),
        Err(e) => return Refusal::Malformed(format!("malformed event: {e}")).into_response(),
    };
    http_answer(dispatch(&state, http_delivery(inbound, &headers, arrived)).await)
}
