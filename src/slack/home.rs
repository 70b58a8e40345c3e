//! The App Home tab: published when someone opens it (`app_home_opened`),
//! after they act in it (from a spawned task, so Slack's event is
//! acknowledged at once), and by the notifier whenever one of their
//! requests changes, so a tab left open follows along. A home view is a
//! picture of the database, not a state change, so it is never a job of its
//! own and a failed publish never fails a notice: the next change or
//! opening makes it good.

use std::collections::HashMap;

use super::api::SlackApi;
use super::routes::SlackState;
use super::summaries::HomeView;
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
        for r in service.awaiting_decision(identity).await? {
            let approvals = service.approvals(r.id).await?;
            awaiting.push((r, approvals));
        }
    }
    let view = HomeView { now, linked: identity.is_some(), active: &active, pending: &pending, awaiting: &awaiting };
    Ok(view.render())
}

/// Draws and publishes `user`'s App Home tab now; the error says which
/// step failed (for a warning in the log).
pub(crate) async fn publish(
    api: &SlackApi,
    service: &Service,
    config: &Config,
    now: Timestamp,
    user: &SlackUser,
) -> Result<(), String> {
    let view = render(service, config, now, user).await.map_err(|e| format!("could not build the home tab: {e}"))?;
    api.publish_home(user.user_id(), &view).await.map_err(|e| format!("could not publish the home tab: {e}"))
}

/// Publishes `user`'s App Home tab in the background.
pub(crate) fn publish_soon(state: &SlackState, user: SlackUser) {
    let state = state.clone();
    tokio::spawn(async move {
        let now = state.clock.now();
        if let Err(e) = publish(&state.api, &state.service, &state.config, now, &user).await {
            tracing::warn!(error = %e, "home tab not refreshed");
        }
    });
}
