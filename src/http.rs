//! The HTTP surface: health, readiness and Slack's endpoints; the IdP's
//! endpoints mount here when they arrive.
//!
//! One error type, [`HttpError`], turns failures into statuses and logs the
//! cause of a 500 without returning it.
//!
//! [`bounded`] wraps the whole router: a request timeout and a limit on
//! requests in flight, so neither slow clients nor a flood can hold tasks,
//! connections and memory without bound. Body limits are per router
//! (Slack's own, the OIDC pages' [`SMALL_FORM_LIMIT`], SCIM's
//! [`SCIM_BODY_LIMIT`]).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::Semaphore;

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
pub fn same_origin(public_url: &crate::config::Url, headers: &axum::http::HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site") {
        return matches!(site, "same-origin" | "none");
    }
    match header("origin") {
        None => true,
        Some(origin) => public_url.origin().ascii_serialization() == origin,
    }
}

/// The security headers of every HTML page jitbot serves (the OIDC pages,
/// the credentials page): the pages may hold a password, their URLs hold
/// tokens, and none needs scripts, framing, caching or a referrer. Written
/// once so that a new page cannot forget one. The CSP is added by
/// [`html_page`] according to where the page's forms go.
pub const PAGE_HEADERS: [(header::HeaderName, &str); 6] = [
    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
    (header::CACHE_CONTROL, "no-store"),
    (header::PRAGMA, "no-cache"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
];

/// Where a page's forms may lead, for its Content-Security-Policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormTargets {
    /// Only to jitbot (`form-action 'self'`): every page but one.
    Own,
    /// To jitbot, which redirects to the identity provider: the OIDC link
    /// confirmation page. Browsers apply `form-action` to the redirect too,
    /// and the IdP's authorization endpoint may be on any host, so the
    /// directive is left out for this page (everything else stays denied).
    ThroughToIdp,
}

impl FormTargets {
    fn csp(self) -> &'static str {
        match self {
            FormTargets::Own => {
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
            }
            FormTargets::ThroughToIdp => "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        }
    }
}

/// An HTML page with [`PAGE_HEADERS`] and a CSP that denies everything but
/// inline styles, frames nowhere and lets forms lead only to `forms`.
/// `html` is the whole document, already escaped by the caller.
pub fn html_page(status: StatusCode, html: String, forms: FormTargets) -> Response {
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    for (name, value) in PAGE_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(forms.csp()));
    response
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// The body limit of browser forms (the OIDC pages, the credentials page):
/// they carry a token and a button, a few hundred bytes.
pub const SMALL_FORM_LIMIT: usize = 16 * 1024;
/// The body limit of SCIM requests: a user or a group with its members, far
/// below axum's 2 MiB default (bulk operations are not supported).
pub const SCIM_BODY_LIMIT: usize = 512 * 1024;

/// The request timeout and in-flight limit, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// The longest one request may take (reading its body included).
    pub request_timeout: Duration,
    /// Requests served at once.
    pub max_concurrent_requests: usize,
    /// What a route answers instead of a bare 503 when the in-flight limit
    /// is reached, for clients that show a 503 as a cryptic failure (Slack
    /// shows a slash command's 503 as "dispatch_failed"). `None`: 503.
    pub overload_answer: Option<OverloadAnswer>,
}

/// The answer a path gets when jitbot is over its in-flight limit, if it
/// has one of its own (see [`Bounds::overload_answer`]).
pub type OverloadAnswer = fn(path: &str) -> Option<Response>;

/// Wraps `router` in the [`Bounds`]: beyond the in-flight limit a request
/// gets 503 with `Retry-After` at once (never a queue), and a request that
/// takes longer than the timeout gets 503 and is dropped. `/healthz` is
/// exempt from the in-flight limit, so an overloaded replica is not taken
/// for a dead one.
pub fn bounded(router: Router, bounds: Bounds) -> Router {
    let permits = Arc::new(Semaphore::new(bounds.max_concurrent_requests));
    let timeout = bounds.request_timeout;
    let overload = bounds.overload_answer;
    router.layer(axum::middleware::from_fn(move |req: Request, next: Next| {
        let permits = permits.clone();
        async move { limit(permits, timeout, overload, req, next).await }
    }))
}

async fn limit(
    permits: Arc<Semaphore>,
    timeout: Duration,
    overload: Option<OverloadAnswer>,
    req: Request,
    next: Next,
) -> Response {
    let permit = if req.uri().path() == "/healthz" {
        None
    } else {
        match permits.try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                if let Some(answer) = overload.and_then(|answer| answer(req.uri().path())) {
                    tracing::warn!("too many requests in flight; answering busy");
                    return answer;
                }
                tracing::warn!("too many requests in flight; answering 503");
                return unavailable("jitbot is busy; please try again\n");
            }
        }
    };
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let resp = match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            // The route only: no query, and no long segment (tokens in paths).
            let path: String = path
                .split('/')
                .filter(|s| !s.is_empty())
                .take(2)
                .map(|s| if s.len() > 16 { "…" } else { s })
                .fold(String::new(), |acc, s| acc + "/" + s);
            tracing::warn!(%method, path, timeout = ?timeout, "request timed out");
            unavailable("the request took too long; please try again\n")
        }
    };
    drop(permit);
    resp
}

fn unavailable(text: &'static str) -> Response {
    let mut resp = (StatusCode::SERVICE_UNAVAILABLE, text).into_response();
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets the
/// requests in flight finish.
///
/// Written out rather than `axum::serve` for one setting: a request's head
/// (request line and headers) must arrive within `head_timeout` of the
/// connection's start or of the previous response (`server.idle_timeout`),
/// or the connection is closed. Without it, a client that trickles its
/// headers holds a connection and a task forever; [`bounded`]'s timeout
/// only starts once the head is in.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    head_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(head_timeout);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: pause, keep serving.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let conn = graceful.watch(http.serve_connection(hyper_util::rt::TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
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
        let own = &"https://jitbot.example.com".parse().unwrap();
        assert!(same_origin(own, &headers(&[("sec-fetch-site", "same-origin"), ("origin", "null")])));
        assert!(!same_origin(own, &headers(&[("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(own, &headers(&[("sec-fetch-site", "same-site")])));
        assert!(same_origin(own, &headers(&[("origin", "https://jitbot.example.com")])));
        assert!(!same_origin(own, &headers(&[("origin", "https://evil.example")])));
        assert!(!same_origin(own, &headers(&[("origin", "null")])));
        assert!(same_origin(own, &headers(&[])), "non-browser clients send neither");
    }

    #[test]
    fn every_page_gets_the_same_headers_and_only_the_idp_hand_off_may_post_onwards() {
        for forms in [FormTargets::Own, FormTargets::ThroughToIdp] {
            let r = html_page(StatusCode::OK, "<!doctype html>".to_owned(), forms);
            let h = |name: header::HeaderName| r.headers()[name].to_str().unwrap().to_owned();
            assert_eq!(h(header::CACHE_CONTROL), "no-store");
            assert_eq!(h(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
            assert_eq!(h(header::REFERRER_POLICY), "no-referrer");
            assert_eq!(h(header::X_FRAME_OPTIONS), "DENY");
            assert!(h(header::CONTENT_TYPE).starts_with("text/html"));
            let csp = h(header::CONTENT_SECURITY_POLICY);
            assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
            assert_eq!(csp.contains("form-action 'self'"), forms == FormTargets::Own, "{csp}");
        }
    }
}
