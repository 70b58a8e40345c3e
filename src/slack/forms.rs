//! Modals in use: opening them and handling what is submitted.
//!
//! A `trigger_id` is only good for 3 seconds, so a form is opened right
//! away, from a spawned task, after the few database reads that decide
//! whether it should open at all (is the person linked, may they decide).
//! A submission is answered synchronously, in the HTTP response itself,
//! because that is the only place Slack shows field errors
//! (`response_action: errors`); it only touches the database through the
//! service, like a slash command.

use serde_json::{Value, json};

use super::modals::{self, BreakGlassForm, DenyForm, RequestForm, RequestSent, RoleChoice, field};
use super::payloads::ViewPayload;
use super::routes::{Reply, SlackState, answer_error, explain};
use super::views::{escape, truncate};
use crate::domain::{AccessDuration, PolicyError, RequestId, SlackUser, Timestamp};
use crate::service::{RequestCommand, ServiceError};

/// Opens `view` in a spawned task (the trigger expires in 3 seconds); when
/// Slack refuses, tells the person on `response_url` if there is one.
fn open_soon(state: &SlackState, trigger_id: &str, view: Value, response_url: Option<String>) {
    let api = state.api.clone();
    let trigger = trigger_id.to_owned();
    tokio::spawn(async move {
        if let Err(e) = api.open_view(&trigger, &view).await {
            tracing::warn!(error = %e, "could not open a modal");
            if let Some(url) = response_url {
                let text = "Slack did not open the form in time; please try again.";
                if let Err(e) = api.respond(&url, text, &[]).await {
                    tracing::warn!(error = %e, "could not answer on the response_url");
                }
            }
        }
    });
}

/// The roles `user` may request, for the form; an explanation instead when
/// there is nothing to show.
async fn role_choices(state: &SlackState, user: &SlackUser) -> Result<Vec<RoleChoice>, Reply> {
    let identity = match state.service.linked_identity(user).await {
        Ok(Some(identity)) => identity,
        Ok(None) => return Err(answer_error(state, &ServiceError::NotLinked, user).await),
        Err(e) => return Err(explain(&e, user).into()),
    };
    let roles: Vec<RoleChoice> = state
        .service
        .requestable_roles(&identity)
        .into_iter()
        .map(|(policy, description)| RoleChoice { policy, description })
        .collect();
    if roles.is_empty() {
        return Err("Your groups do not allow you to request any role. `/jit whoami` shows your groups."
            .to_owned()
            .into());
    }
    Ok(roles)
}

/// `/jit request` without a reason (or **Request access** in the home
/// tab): opens the request form (with `role` chosen, if given). Returns no
/// answer when the form opens.
pub(crate) async fn open_request_form(
    state: &SlackState,
    user: &SlackUser,
    role: Option<String>,
    trigger_id: &str,
    response_url: Option<String>,
) -> Option<Reply> {
    let roles = match role_choices(state, user).await {
        Ok(r) => r,
        Err(reply) => return Some(reply),
    };
    if let Some(r) = &role
        && !roles.iter().any(|c| c.policy.role.as_str() == r)
    {
        let known = roles.iter().map(|c| format!("`{}`", c.policy.role)).collect::<Vec<_>>().join(", ");
        return Some(format!("You cannot request `{}`. Roles you can request: {known}.", escape(r)).into());
    }
    if trigger_id.is_empty() {
        return Some("Usage: `/jit request <role> [duration] <reason>`".to_owned().into());
    }
    let selected = role.as_deref().or((roles.len() == 1).then(|| roles[0].policy.role.as_str()));
    let view = RequestForm { roles: &roles, selected, reason: None, ticket: None }.render();
    open_soon(state, trigger_id, view, response_url);
    None
}

/// A different role was chosen in the open request form: redraw it with
/// that role's durations and ticket field, keeping what was typed.
pub(crate) async fn role_changed(state: &SlackState, user: &SlackUser, view: &ViewPayload) {
    let Ok(roles) = role_choices(state, user).await else { return };
    let rendered = RequestForm {
        roles: &roles,
        selected: view.value(field::ROLE),
        reason: view.value(field::REASON),
        ticket: view.value(field::TICKET),
    }
    .render();
    let api = state.api.clone();
    let (id, hash) = (view.id.clone(), view.hash.clone());
    tokio::spawn(async move {
        if let Err(e) = api.update_view(&id, hash.as_deref(), &rendered).await {
            tracing::warn!(error = %e, "could not redraw the request form");
        }
    });
}

/// **Deny** on a card: opens the small form for an optional reason, if
/// this person's denial would count. Without a trigger (an old client),
/// denies at once without a reason.
pub(crate) async fn open_deny_form(
    state: &SlackState,
    user: &SlackUser,
    id: RequestId,
    trigger_id: Option<&str>,
    now: Timestamp,
) -> Option<Reply> {
    let request = match state.service.may_decide(id, user, now).await {
        Ok(r) => r,
        Err(e) => return Some(answer_error(state, &e, user).await),
    };
    match trigger_id.filter(|t| !t.is_empty()) {
        Some(trigger) => {
            open_soon(state, trigger, DenyForm { request: &request }.render(), None);
            None
        }
        None => Some(match state.service.deny(id, user, None, now).await {
            Ok(_) => format!("You denied request #{}.", id.get()).into(),
            Err(e) => answer_error(state, &e, user).await,
        }),
    }
}

/// **Break glass**: opens the form for the mandatory reason, for the
/// requester of a pending request on a role that allows it.
pub(crate) async fn open_break_glass_form(
    state: &SlackState,
    user: &SlackUser,
    id: RequestId,
    trigger_id: Option<&str>,
) -> Option<Reply> {
    let (request, min_reason) = match state.service.may_break_glass(id, user).await {
        Ok(r) => r,
        Err(e) => return Some(answer_error(state, &e, user).await),
    };
    match trigger_id.filter(|t| !t.is_empty()) {
        Some(trigger) => {
            open_soon(state, trigger, BreakGlassForm { request: &request, min_reason }.render(), None);
            None
        }
        None => Some(format!("Use `/jit break-glass {} <reason>`.", id.get()).into()),
    }
}

/// A form that could not be handled because jitbot is busy: the modal
/// stays open with the reason on its reason field (every form has one),
/// so it can be sent again.
pub(crate) fn busy_errors() -> Value {
    errors(&[(field::REASON, super::dispatch::BUSY.to_owned())])
}

fn errors(errors: &[(&str, String)]) -> Value {
    let map: serde_json::Map<String, Value> =
        errors.iter().map(|(block, message)| ((*block).to_owned(), json!(truncate(message, 500)))).collect();
    json!({"response_action": "errors", "errors": map})
}

fn sentence(e: &ServiceError) -> String {
    if matches!(e, ServiceError::Unavailable) {
        return super::dispatch::BUSY.to_owned();
    }
    let mut text = e.to_string();
    if let Some(first) = text.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    format!("{}.", text.trim_end_matches('.'))
}

/// The form field a refusal is about.
fn field_of(e: &ServiceError, has_ticket_field: bool) -> &'static str {
    match e {
        ServiceError::Policy(PolicyError::DurationTooLong { .. }) => field::DURATION,
        ServiceError::Policy(PolicyError::ReasonTooShort { .. }) => field::REASON,
        ServiceError::Policy(
            PolicyError::TicketRequired { .. } | PolicyError::TicketMismatch { .. } | PolicyError::TicketTooLong { .. },
        ) if has_ticket_field => field::TICKET,
        ServiceError::Policy(
            PolicyError::TicketRequired { .. } | PolicyError::TicketMismatch { .. } | PolicyError::TicketTooLong { .. },
        ) => field::REASON,
        _ => field::ROLE,
    }
}

/// A submitted form: answered in the response (errors on the fields, the
/// next view, or closing the modal).
pub(crate) async fn submission(state: &SlackState, user: &SlackUser, view: &ViewPayload, now: Timestamp) -> Value {
    match view.callback_id.as_deref() {
        Some(modals::REQUEST_FORM) => submit_request(state, user, view, now).await,
        Some(modals::DENY_FORM) => {
            let Some(id) = view.private_metadata.as_deref().and_then(RequestId::parse) else {
                return clear();
            };
            match state.service.deny(id, user, view.value(field::REASON), now).await {
                Ok(_) => clear(),
                Err(e) => errors(&[(field::REASON, sentence(&e))]),
            }
        }
        Some(modals::BREAK_GLASS_FORM) => {
            let Some(id) = view.private_metadata.as_deref().and_then(RequestId::parse) else {
                return clear();
            };
            let reason = view.value(field::REASON).unwrap_or("");
            match state.service.break_glass(id, user, reason, now).await {
                Ok(_) => clear(),
                Err(e) => errors(&[(field::REASON, sentence(&e))]),
            }
        }
        _ => clear(),
    }
}

fn clear() -> Value {
    json!({"response_action": "clear"})
}

async fn submit_request(state: &SlackState, user: &SlackUser, view: &ViewPayload, now: Timestamp) -> Value {
    let Some(role) = view.value(field::ROLE).or(view.private_metadata.as_deref().filter(|r| !r.is_empty())) else {
        return errors(&[(field::ROLE, "Choose a role.".to_owned())]);
    };
    let duration = match view.value(field::DURATION) {
        None => None,
        Some(secs) => match secs.parse::<u64>().map(std::time::Duration::from_secs).map(AccessDuration::try_from_std) {
            Ok(Ok(d)) => Some(d),
            _ => return errors(&[(field::DURATION, "Choose a duration from the list.".to_owned())]),
        },
    };
    let Some(reason) = view.value(field::REASON) else {
        return errors(&[(field::REASON, "Say what you are doing and why.".to_owned())]);
    };
    let has_ticket_field = view.state.as_ref().is_some_and(|s| s.values.contains_key(field::TICKET));
    let cmd = RequestCommand {
        requester: user.clone(),
        role: role.to_owned(),
        duration,
        reason: reason.to_owned(),
        ticket: view.value(field::TICKET).map(str::to_owned),
        // Submitting the same form twice makes one request.
        client_key: Some(format!("slack-view:{}", view.id)),
    };
    match state.service.request(cmd, now).await {
        Ok(r) => {
            super::dispatch::note_request(r.id);
            let next = match &r.auto_approved {
                Some(why) => {
                    format!("Auto-approved ({}): granting it now. You will get a DM when it is active.", escape(why))
                }
                None => format!(
                    "Sent to <#{}> for approval. You will get a DM when it is decided.",
                    state.approvals_channel(r.role.as_str())
                ),
            };
            let view = RequestSent { request: &r, next: &next }.render();
            json!({"response_action": "update", "view": view})
        }
        Err(e) => errors(&[(field_of(&e, has_ticket_field), sentence(&e))]),
    }
}
