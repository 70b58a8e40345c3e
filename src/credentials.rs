//! The one-time credentials page for logins jitbot created (`postgres`
//! roles with `ephemeral_login = true`).
//!
//! Credentials never travel through Slack. When such a grant is active, the
//! requester's DM carries a link to `{server.public_url}/credentials/{token}`:
//!
//! - the token is 32 random bytes, stored only as its SHA-256, bound to the
//!   request and the requester, valid until the access expires, and usable
//!   once (a newer link for the same request retires older unused ones);
//! - `GET` shows a confirmation page and changes nothing (link previews and
//!   scanners fetch links);
//! - `POST` claims the token, makes a fresh random password, sends the
//!   database only its SCRAM-SHA-256 verifier
//!   ([`crate::providers::postgres::scram`]) and shows the password once,
//!   with `Cache-Control: no-store`. The page can never be shown again.
//!
//! Before either, the person at the browser must be the requester, signed
//! in at the IdP. That check sits behind [`BrowserIdentity`]: with `[idp]`
//! it is `crate::idp::OidcBrowserIdentity` (a short browser session after a
//! fresh IdP sign-in at `/oidc/signin`, which the page links to); without
//! `[idp]` it is [`SignInNotWired`], which refuses everyone.

use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::audit::{self, Actor, AuditAction};
use crate::clock::SharedClock;
use crate::domain::{AccessRequest, RequestState, Timestamp};
use crate::providers::postgres::scram;
use crate::providers::{GrantSpec, Providers, spec::PostgresGrantSpec};
use crate::store::{Db, StoreError};

/// Someone signed in at the browser, as the IdP vouched for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserUser {
    /// IdP issuer.
    pub issuer: String,
    /// IdP subject (`sub`).
    pub subject: String,
}

/// Why the browser's user is not known; the message is shown on the page.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SignInRequired(pub String);

/// Who is signed in at the browser making a request. The credentials page
/// only shows a password to the requester, signed in at the IdP.
#[async_trait]
pub trait BrowserIdentity: Send + Sync + 'static {
    /// The signed-in user of this browser request, or why there is none.
    async fn signed_in(&self, headers: &HeaderMap) -> Result<BrowserUser, SignInRequired>;

    /// Where the browser signs in to come back to `return_to`, if it can.
    fn sign_in_url(&self, _return_to: &str) -> Option<String> {
        None
    }
}

/// The [`BrowserIdentity`] without an `[idp]`: there is no way to sign in,
/// so nobody is signed in and the credentials page refuses to set
/// passwords. With `[idp]`, `crate::idp::OidcBrowserIdentity` is used.
#[derive(Debug, Default, Clone, Copy)]
pub struct SignInNotWired;

#[async_trait]
impl BrowserIdentity for SignInNotWired {
    async fn signed_in(&self, _headers: &HeaderMap) -> Result<BrowserUser, SignInRequired> {
        Err(SignInRequired(
            "Signing in with your company account is not available on this jitbot yet (it has no [idp]), so no \
             password can be shown here. Ask a jitbot administrator."
                .to_owned(),
        ))
    }
}

/// What the page's handlers share.
#[derive(Clone)]
pub struct CredentialsPage {
    /// Tokens, requests, audit.
    pub db: Db,
    /// For expiry.
    pub clock: SharedClock,
    /// To set the password in the target.
    pub providers: Providers,
    /// Who is at the browser.
    pub identity: Arc<dyn BrowserIdentity>,
    /// `server.public_url`, to refuse cross-site form posts.
    pub public_url: String,
}

/// Mounts `GET` and `POST /credentials/{token}`.
pub fn router(state: CredentialsPage) -> Router {
    Router::new().route("/credentials/{token}", get(show).post(reveal)).with_state(state)
}

/// A link that was issued.
#[derive(Debug, Clone)]
pub struct IssuedLink {
    /// The full URL (contains the token: never log it).
    pub url: String,
    /// The login it sets a password for.
    pub login: String,
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn ephemeral_spec(spec: Option<String>) -> Option<PostgresGrantSpec> {
    match GrantSpec::from_json(&spec?).ok()? {
        GrantSpec::Postgres(p) if p.ephemeral => Some(p),
        _ => None,
    }
}

/// Issues a fresh link for an active request with a jitbot-created login
/// (`None` for any other request). Called when the "access is active" DM is
/// sent; a retried DM issues a new link and retires the old one.
pub async fn issue_link(
    db: &Db,
    request: &AccessRequest,
    public_url: &str,
    now: Timestamp,
) -> Result<Option<IssuedLink>, StoreError> {
    if request.state != RequestState::Active {
        return Ok(None);
    }
    let (Some(spec), Some(expires_at)) = (ephemeral_spec(db.grant_spec(request.id).await?), request.expires_at) else {
        return Ok(None);
    };
    let bytes: [u8; 32] = rand::rng().random();
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let mut tx = db.begin().await?;
    tx.insert_credential_token(&token_hash(&token), request.id, &request.requester, expires_at, now).await?;
    audit::append(
        &mut tx,
        now,
        &Actor::System,
        AuditAction::CredentialsLinkIssued,
        Some(request.id),
        json!({"login": spec.login.as_str(), "valid_until": expires_at.to_string()}),
    )
    .await?;
    tx.commit().await?;
    Ok(Some(IssuedLink {
        url: format!("{}/credentials/{token}", public_url.trim_end_matches('/')),
        login: spec.login.as_str().to_owned(),
    }))
}

/// A page, always uncacheable and unframeable (it may hold a password, and
/// its URL holds a token).
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"robots\" content=\"noindex\">\
         <title>{t}</title><style>body{{font-family:sans-serif;max-width:40em;margin:3em auto;padding:0 1em}}\
         code{{font-size:1.2em;background:#eee;padding:.2em .4em}}</style></head><body><h1>{t}</h1>{body}</body></html>",
        t = html_escape(title)
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::PRAGMA, "no-cache"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn internal(e: StoreError) -> Response {
    tracing::error!(error = ?e, "credentials page: store error");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again",
        "<p>jitbot could not check this link right now. Try again in a moment.</p>",
    )
}

/// A checked link: still usable, its request active, and the browser's user
/// is the requester.
struct Checked {
    hash: String,
    request: AccessRequest,
    spec: PostgresGrantSpec,
}

async fn check(state: &CredentialsPage, token: &str, headers: &HeaderMap) -> Result<Checked, Response> {
    let gone = |why: &str| page(StatusCode::GONE, "Link no longer valid", &format!("<p>{}</p>", html_escape(why)));
    let plausible = token.len() == 43 && token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let hash = token_hash(token);
    let row = if plausible { state.db.credential_token(&hash).await.map_err(internal)? } else { None };
    let Some(row) = row else {
        return Err(page(StatusCode::NOT_FOUND, "Unknown link", "<p>This credentials link is not valid.</p>"));
    };
    let now = state.clock.now();
    if row.used_at.is_some() {
        return Err(gone(
            "This link was already used. The password was shown once and cannot be shown again; if you lost it, ask for access anew.",
        ));
    }
    if row.superseded_at.is_some() {
        return Err(gone("A newer link was sent to you for this access; use that one."));
    }
    if row.expires_at <= now.millis() {
        return Err(gone("This link expired together with the access it was for."));
    }
    let request = state
        .db
        .request(crate::domain::RequestId::new(row.request_id))
        .await
        .map_err(internal)?
        .filter(|r| r.state == RequestState::Active)
        .ok_or_else(|| gone("The access this link was for has ended."))?;
    let spec = ephemeral_spec(state.db.grant_spec(request.id).await.map_err(internal)?)
        .ok_or_else(|| gone("This access has no login to set a password for."))?;
    let user = state.identity.signed_in(headers).await.map_err(|e| {
        let button = state
            .identity
            .sign_in_url(&format!("/credentials/{token}"))
            .map(|url| format!("<p><a id=\"sign-in\" href=\"{}\">Sign in</a></p>", html_escape(&url)))
            .unwrap_or_default();
        page(StatusCode::UNAUTHORIZED, "Sign-in required", &format!("<p>{}</p>{button}", html_escape(&e.0)))
    })?;
    let bound_user = request.requester.team_id() == row.team_id && request.requester.user_id() == row.user_id;
    if !bound_user || user.issuer != request.requester_issuer || user.subject != request.requester_subject {
        tracing::warn!(request_id = request.id.get(), "credentials link opened by someone other than the requester");
        return Err(page(
            StatusCode::FORBIDDEN,
            "Not your link",
            "<p>This link belongs to another person's access request. Nothing was changed.</p>",
        ));
    }
    Ok(Checked { hash, request, spec })
}

async fn show(State(state): State<CredentialsPage>, Path(token): Path<String>, headers: HeaderMap) -> Response {
    let c = match check(&state, &token, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let until = c.request.expires_at.map(|t| t.to_string()).unwrap_or_default();
    page(
        StatusCode::OK,
        "Set your database password",
        &format!(
            "<p>Request #{id}: login <code>{login}</code> in role <code>{role}</code>, valid until {until}.</p>\
             <p>Pressing the button sets a new random password and shows it <strong>once</strong>. \
             Have your client ready; this page cannot show it again.</p>\
             <form method=\"post\"><input type=\"hidden\" name=\"confirm\" value=\"yes\">\
             <button type=\"submit\">Set and show the password</button></form>",
            id = c.request.id.get(),
            login = html_escape(c.spec.login.as_str()),
            role = html_escape(c.spec.pg_role.as_str()),
            until = html_escape(&until),
        ),
    )
}

async fn reveal(State(state): State<CredentialsPage>, Path(token): Path<String>, headers: HeaderMap) -> Response {
    // The token alone would let a post from another site burn the link.
    if !crate::http::same_origin(&state.public_url, &headers) {
        return page(StatusCode::FORBIDDEN, "Refused", "<p>This form must be sent from jitbot's own page.</p>");
    }
    let c = match check(&state, &token, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let now = state.clock.now();
    // Claim first: of two concurrent posts only one gets a password.
    let claimed = async {
        let mut tx = state.db.begin().await?;
        let ok = tx.claim_credential_token(&c.hash, now).await?;
        tx.commit().await?;
        Ok::<bool, StoreError>(ok)
    };
    match claimed.await {
        Ok(true) => {}
        Ok(false) => {
            return page(
                StatusCode::GONE,
                "Link no longer valid",
                "<p>This link was already used. The password was shown once and cannot be shown again.</p>",
            );
        }
        Err(e) => return internal(e),
    }
    let (password, verifier) = scram::new_password();
    let result =
        match (crate::providers::target_of(&state.db, &c.request).await, state.providers.get(&c.request.provider)) {
            (Ok(Some(target)), Some(provider)) => provider.set_password(&target, &verifier).await,
            (Err(e), _) => Err(e),
            _ => Err(crate::providers::ProviderError::permanent("the provider of this access is not configured")),
        };
    if let Err(e) = result {
        tracing::warn!(request_id = c.request.id.get(), error = %e, "could not set a password from the credentials page");
        let released = async {
            let mut tx = state.db.begin().await?;
            tx.unclaim_credential_token(&c.hash, now).await?;
            tx.commit().await
        };
        if let Err(e) = released.await {
            tracing::warn!(error = %e, "could not give the credentials link back");
        }
        return page(
            StatusCode::BAD_GATEWAY,
            "Password not set",
            &format!(
                "<p>The database did not accept the new password: {}. Try again in a moment.</p>",
                html_escape(&e.message)
            ),
        );
    }
    let audited = async {
        let mut tx = state.db.begin().await?;
        audit::append(
            &mut tx,
            now,
            &Actor::System,
            AuditAction::CredentialsPasswordSet,
            Some(c.request.id),
            json!({"login": c.spec.login.as_str(), "requester_subject": c.request.requester_subject}),
        )
        .await?;
        tx.commit().await
    };
    if let Err(e) = audited.await {
        tracing::error!(error = ?e, request_id = c.request.id.get(), "password set but its audit event could not be written");
    }
    page(
        StatusCode::OK,
        "Your database password",
        &format!(
            "<p>Login <code>{login}</code>, password:</p><p><code id=\"password\">{password}</code></p>\
             <p>It works until {until}. This page will not show it again: copy it now.</p>",
            login = html_escape(c.spec.login.as_str()),
            password = html_escape(&password),
            until = html_escape(&c.request.expires_at.map(|t| t.to_string()).unwrap_or_default()),
        ),
    )
}
