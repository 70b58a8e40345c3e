//! The App Home tab: published when someone opens it (`app_home_opened`,
//! which is also remembered; from a spawned task, so Slack's event is
//! acknowledged at once), and by a `redraw_home` job at once after they act
//! in it and a few seconds after one of their requests changed, so a tab
//! left open follows along. Those jobs exist only for people who opened the tab,
//! one at a time per person, and draw the database as it is when they run:
//! many changes cost one `views.publish`, and an older picture never lands
//! after a newer one.

use std::collections::HashMap;

use super::api::{SlackApi, SlackApiError};
use super::routes::SlackState;
use super::summaries::{HomeView, SECTION_LIMIT};
use crate::config::Config;
use crate::domain::{AccessDuration, RequestState, SlackUser, Timestamp};
use crate::service::{Service, ServiceError};

/// Builds `user`'s home view from the database.
async fn render(
    service: &Service,
    config: &Config,
    now: Timestamp,
    user: &SlackUser,
) -> Result<serde_json::Value, ServiceError> {
    let mine = service.open_requests(user).await?;
    let mut choices: HashMap<String, Vec<AccessDuration>> = HashMap::new();
    let mut active = Vec::new();
    let mut pending = Vec::new();
    for r in mine {
        if r.state == RequestState::Pending {
            let approvals = service.approvals(r.id).await?;
            pending.push((r, approvals));
        } else {
            let role = r.role.as_str().to_owned();
            let durations = choices
                .entry(role)
                .or_insert_with(|| config.role_policy(&r.role).map(|p| p.duration_choices()).unwrap_or_default())
                .clone();
            active.push((r, durations));
        }
    }
    let identity = service.linked_identity(user).await?;
    let mut awaiting = Vec::new();
    if let Some(identity) = &identity {
        for (i, r) in service.awaiting_decision(identity).await?.into_iter().enumerate() {
            // Only the first few are shown; the rest are counted.
            let approvals = if i < SECTION_LIMIT { service.approvals(r.id).await? } else { Vec::new() };
            awaiting.push((r, approvals));
        }
    }
    let view = HomeView { now, linked: identity.is_some(), active: &active, pending: &pending, awaiting: &awaiting };
    Ok(view.render())
}

/// Draws and publishes `user`'s App Home tab now; the error says which
/// step failed, with Slack's `Retry-After` (or the pacer's) when it is the
/// publish that must wait.
pub(crate) async fn publish(
    api: &SlackApi,
    service: &Service,
    config: &Config,
    now: Timestamp,
    user: &SlackUser,
) -> Result<(), SlackApiError> {
    let view = render(service, config, now, user)
        .await
        .map_err(|e| SlackApiError { message: format!("could not build the home tab: {e}"), retry_after: None })?;
    api.publish_home(user.user_id(), &view).await.map_err(|e| SlackApiError {
        message: format!("could not publish the home tab: {e}"),
        retry_after: e.retry_after,
    })
}

/// `user` opened their App Home tab: remembers it (from now on changes to
/// their requests redraw it) and draws it, in the background.
pub(crate) fn opened(state: &SlackState, user: SlackUser) {
    let state = state.clone();
    tokio::spawn(async move {
        let now = state.clock.now();
        if let Err(e) = state.service.home_opened(&user, now).await {
            tracing::warn!(error = %e, "could not remember that the home tab was opened");
        }
        if let Err(e) = publish(&state.api, &state.service, &state.config, now, &user).await {
            tracing::warn!(error = %e, "home tab not drawn");
        }
    });
}
