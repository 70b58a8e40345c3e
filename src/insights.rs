//! Access insights over HTTP: `GET /report` (a page with charts drawn
//! server-side as SVG and a filter form; no scripts), `GET /report.json`
//! (the report, as `jitbot report --format json` writes it) and
//! `GET /report.csv` (the requests behind it, for spreadsheets), all with
//! `?since=30d&role=R`.
//!
//! Who may read them: a BI tool with `Authorization: Bearer` and the
//! configured `report.token`, or a person signed in at the IdP (the same
//! browser session as the credentials page, see [`BrowserIdentity`]) whose
//! link is in `policy.auditor_groups` or `policy.admin_groups`. Everyone
//! else gets 401 (not signed in, or a wrong token) or 403 (signed in, not
//! a reader). A transport: it asks the service, never the store.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::SharedClock;
use crate::credentials::BrowserIdentity;
use crate::domain::Timestamp;
use crate::service::Service;

/// What the endpoints need.
#[derive(Clone)]
pub struct InsightsState {
    /// The read models.
    pub service: Service,
    /// "Now", the end of every period.
    pub clock: SharedClock,
    /// Who is signed in at the browser.
    pub identity: Arc<dyn BrowserIdentity>,
    /// `report.token`, if configured.
    pub token: Option<SecretString>,
}

/// The endpoints.
pub fn router(state: InsightsState) -> Router {
    Router::new()
        .route("/report", get(report_page))
        .route("/report.json", get(report_json))
        .route("/report.csv", get(report_csv))
        .with_state(state)
}

/// `?since=30d&role=R`.
#[derive(Debug, Deserialize)]
struct ReportQuery {
    since: Option<String>,
    role: Option<String>,
}

/// Why a report was not served; the message is safe to show.
#[derive(Debug)]
enum Refused {
    /// No credentials, or wrong ones.
    Unauthenticated(String),
    /// Signed in, but not a reader.
    Forbidden,
    /// A bad query parameter.
    BadQuery(String),
    /// The database could not answer.
    Unavailable,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Refused::Unauthenticated(m) => (StatusCode::UNAUTHORIZED, m),
            Refused::Forbidden => (
                StatusCode::FORBIDDEN,
                "only members of policy.auditor_groups or policy.admin_groups may read the access report".to_owned(),
            ),
            Refused::BadQuery(m) => (StatusCode::BAD_REQUEST, m),
            Refused::Unavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "jitbot cannot read its database right now; try again".to_owned())
            }
        };
        let mut response = (status, format!("{message}\n")).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// Equal tokens, compared in constant time over their digests (so neither
/// the content nor the length leaks through timing).
fn same_token(given: &str, expected: &str) -> bool {
    Sha256::digest(given.as_bytes()).ct_eq(&Sha256::digest(expected.as_bytes())).into()
}

/// Lets a reader through, or says why not.
async fn authorize(state: &InsightsState, headers: &HeaderMap, path: &str) -> Result<(), Refused> {
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let given = auth.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
        return match (given, &state.token) {
            (Some(given), Some(token)) if same_token(given, token.expose_secret()) => Ok(()),
            _ => Err(Refused::Unauthenticated("the bearer token is not report.token".to_owned())),
        };
    }
    let user = state.identity.signed_in(headers).await.map_err(|e| {
        let hint = state.identity.sign_in_url(path).map(|u| format!(" Sign in at {u}")).unwrap_or_default();
        Refused::Unauthenticated(format!("{e}{hint}"))
    })?;
    match state.service.may_read_report(&user.issuer, &user.subject).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Refused::Forbidden),
        Err(e) => {
            tracing::warn!(error = %e, "cannot check who may read the report");
            Err(Refused::Unavailable)
        }
    }
}

/// The period a query asks for, ending now.
fn period(state: &InsightsState, q: &ReportQuery) -> Result<(Timestamp, Timestamp), Refused> {
    let now = state.clock.now();
    let since = crate::report::parse_since(q.since.as_deref().unwrap_or("30d"), now)
        .map_err(|e| Refused::BadQuery(format!("since: {e}")))?;
    Ok((since, now))
}

async fn report_json(
    State(state): State<InsightsState>,
    headers: HeaderMap,
    Query(q): Query<ReportQuery>,
) -> Result<Response, Refused> {
    authorize(&state, &headers, "/report.json").await?;
    let (since, until) = period(&state, &q)?;
    let report = state.service.report(since, until, role_filter(&q)).await.map_err(|_| Refused::Unavailable)?;
    let mut response = axum::Json(report).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The role asked for; the form's "all roles" sends an empty one.
fn role_filter(q: &ReportQuery) -> Option<&str> {
    q.role.as_deref().map(str::trim).filter(|r| !r.is_empty())
}

/// The page: the refusals as pages too (with the sign-in link), since a
/// person is reading.
async fn report_page(State(state): State<InsightsState>, headers: HeaderMap, Query(q): Query<ReportQuery>) -> Response {
    let page = |status: StatusCode, body: String| {
        let html = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>jitbot access report</title>\
             </head><body style=\"font-family:system-ui,sans-serif;margin:2rem\">{body}</body></html>"
        );
        crate::http::html_page(status, html, crate::http::FormTargets::Own)
    };
    if let Err(refused) = authorize(&state, &headers, "/report").await {
        return match refused {
            Refused::Unauthenticated(_) => {
                let link = state
                    .identity
                    .sign_in_url("/report")
                    .map(|u| format!("<p><a id=\"sign-in\" href=\"{}\">Sign in</a></p>", crate::http::html_escape(&u)))
                    .unwrap_or_else(|| "<p>Signing in is not available on this jitbot (it has no [idp]).</p>".into());
                page(StatusCode::UNAUTHORIZED, format!("<h1>Sign in to see the access report</h1>{link}"))
            }
            Refused::Forbidden => page(
                StatusCode::FORBIDDEN,
                "<h1>Not for you</h1><p>Only members of policy.auditor_groups or policy.admin_groups may read the \
                 access report.</p>"
                    .into(),
            ),
            other => other.into_response(),
        };
    }
    let since_text = q.since.clone().unwrap_or_else(|| "30d".to_owned());
    let (since, until) = match period(&state, &q) {
        Ok(p) => p,
        Err(Refused::BadQuery(m)) => {
            return page(
                StatusCode::BAD_REQUEST,
                format!("<h1>Bad period</h1><p>{}</p>", crate::http::html_escape(&m)),
            );
        }
        Err(other) => return other.into_response(),
    };
    match state.service.report(since, until, role_filter(&q)).await {
        Ok(report) => {
            let roles: Vec<String> = state.service.config().roles.keys().map(|r| r.as_str().to_owned()).collect();
            let html = crate::report::render::page(&report, Some((&since_text, &roles)));
            crate::http::html_page(StatusCode::OK, html, crate::http::FormTargets::Own)
        }
        Err(_) => Refused::Unavailable.into_response(),
    }
}

async fn report_csv(
    State(state): State<InsightsState>,
    headers: HeaderMap,
    Query(q): Query<ReportQuery>,
) -> Result<Response, Refused> {
    authorize(&state, &headers, "/report.csv").await?;
    let (since, until) = period(&state, &q)?;
    let rows = state.service.report_requests(since, until, role_filter(&q)).await.map_err(|_| Refused::Unavailable)?;
    let body = crate::report::render::requests_csv(&rows);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"jitbot-requests.csv\""),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_by_content() {
        assert!(same_token("a-long-report-token-0123456789abcdef", "a-long-report-token-0123456789abcdef"));
        assert!(!same_token("a-long-report-token-0123456789abcdeX", "a-long-report-token-0123456789abcdef"));
        assert!(!same_token("", "a-long-report-token-0123456789abcdef"));
    }
}
