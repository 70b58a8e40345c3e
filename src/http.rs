//! The HTTP surface: health and readiness today; Slack's and the IdP's
//! endpoints mount here as those transports arrive.
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

/// Builds the router.
pub fn router(state: HttpState) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).with_state(state)
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
