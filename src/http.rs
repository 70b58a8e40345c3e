//! The HTTP surface: health, readiness and Slack's endpoints; the IdP's
//! endpoints mount here when they arrive.
//!
//! One error type, [`HttpError`], turns failures into statuses and logs the
//! cause of a 500 without returning it.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::store::Db;

/// What handlers share.
#[derive(Clone)]
pub struct HttpState {
    /// The database, for readiness.
    pub db: Db,
}

/// A failure on the HTTP surface.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A dependency is down; the caller should retry.
    #[error("service unavailable")]
    Unavailable,
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        match self {
            HttpError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable\n").into_response(),
        }
    }
}

/// Builds the router; Slack's endpoints are mounted when `[slack]` is configured.
pub fn router(state: HttpState, slack: Option<crate::slack::routes::SlackState>) -> Router {
    let router = Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).with_state(state);
    match slack {
        Some(slack) => router.merge(crate::slack::routes::router(slack)),
        None => router,
    }
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the database answers too, so a load balancer stops sending
/// Slack traffic to a replica that could only say "try again".
async fn readyz(State(state): State<HttpState>) -> Result<&'static str, HttpError> {
    state.db.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check failed");
        HttpError::Unavailable
    })?;
    Ok("ready\n")
}
