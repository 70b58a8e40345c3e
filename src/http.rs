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

/// Whether a form POST came from jitbot's own pages (`public_url`), so that
/// another site cannot make a browser submit one (CSRF). Browsers that send
/// `Sec-Fetch-Site` are judged by it (a page served with a strict referrer
/// policy sends `Origin: null` even from itself); older ones by `Origin`.
pub fn same_origin(public_url: &str, headers: &axum::http::HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site") {
        return matches!(site, "same-origin" | "none");
    }
    match header("origin") {
        None => true,
        Some(origin) => reqwest::Url::parse(public_url).is_ok_and(|u| u.origin().ascii_serialization() == origin),
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn form_posts_must_come_from_jitbots_own_pages() {
        let own = "https://jitbot.example.com";
        assert!(same_origin(own, &headers(&[("sec-fetch-site", "same-origin"), ("origin", "null")])));
        assert!(!same_origin(own, &headers(&[("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(own, &headers(&[("sec-fetch-site", "same-site")])));
        assert!(same_origin(own, &headers(&[("origin", "https://jitbot.example.com")])));
        assert!(!same_origin(own, &headers(&[("origin", "https://evil.example")])));
        assert!(!same_origin(own, &headers(&[("origin", "null")])));
        assert!(same_origin(own, &headers(&[])), "non-browser clients send neither");
    }
}
