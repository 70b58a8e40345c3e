//! The App Home tab: published when someone opens it (`app_home_opened`)
//! and again after they act in it, from a spawned task so Slack's event is
//! acknowledged at once. A home view is a picture of the database, not a
//! state change, so it is not a job: a lost refresh is made good by the
//! next opening.

use std::collections::HashMap;

use super::routes::SlackState;
use super::summaries::HomeView;
use crate::domain::{AccessDuration, RequestState, SlackUser};
use crate::service::ServiceError;

/// Builds `user`'s home view from the database.
async fn render(state: &SlackState, user: &SlackUser) -> Result<serde_json::Value, ServiceError> {
    let service = &state.service;
    let db = service.db();
    let mine = db.open_requests_of(user).await?;
    let mut choices: HashMap<String, Vec<AccessDuration>> = HashMap::new();
    let mut active = Vec::new();
    let mut pending = Vec::new();
    for r in mine {
        if r.state == RequestState::Pending {
            let approvals = db.approvals(r.id).await?;
            pending.push((r, approvals));
        } else {
            let role = r.role.as_str().to_owned();
            let durations = choices
                .entry(role)
                .or_insert_with(|| state.config.role_policy(&r.role).map(|p| p.duration_choices()).unwrap_or_default())
                .clone();
            active.push((r, durations));
        }
    }
    let identity = service.linked_identity(user).await?;
    let mut awaiting = Vec::new();
    if let Some(identity) = &identity {
        for r in service.awaiting_decision(identity).await? {
            let approvals = db.approvals(r.id).await?;
            awaiting.push((r, approvals));
        }
    }
    let view = HomeView {
        now: state.clock.now(),
        linked: identity.is_some(),
        active: &active,
        pending: &pending,
        awaiting: &awaiting,
    };
    Ok(view.render())
}

/// Publishes `user`'s App Home tab in the background.
pub(crate) fn publish_soon(state: &SlackState, user: SlackUser) {
    let state = state.clone();
    tokio::spawn(async move {
        let view = match render(&state, &user).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "could not build the home tab");
                return;
            }
        };
        if let Err(e) = state.api.publish_home(user.user_id(), &view).await {
            tracing::warn!(error = %e, "could not publish the home tab");
        }
    });
}
