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
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;

use crate::clock::SharedClock;
use crate::http::html_escape;
use crate::providers::Providers;
pub use crate::service::IssuedLink;
use crate::service::{CredentialsLink, PasswordOutcome, Service, ServiceError, UsableLink};

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
    /// Links, requests, audit: the use cases.
    pub service: Service,
    /// For expiry.
    pub clock: SharedClock,
    /// To set the password in the target.
    pub providers: Providers,
    /// Who is at the browser.
    pub identity: Arc<dyn BrowserIdentity>,
    /// `server.public_url`, to refuse cross-site form posts.
    pub public_url: crate::config::Url,
}

/// Mounts `GET` and `POST /credentials/{token}`.
pub fn router(state: CredentialsPage) -> Router {
    Router::new().route("/credentials/{token}", get(show).post(reveal)).with_state(state)
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
    crate::http::html_page(status, html, crate::http::FormTargets::Own)
}

fn internal(e: ServiceError) -> Response {
    tracing::error!(error = ?e, "credentials page: store error");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again",
        "<p>jitbot could not check this link right now. Try again in a moment.</p>",
    )
}

async fn check(state: &CredentialsPage, token: &str, headers: &HeaderMap) -> Result<UsableLink, Response> {
    let gone = |why: &str| page(StatusCode::GONE, "Link no longer valid", &format!("<p>{}</p>", html_escape(why)));
    let plausible = token.len() == 43 && token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let now = state.clock.now();
    let link = if plausible {
        state.service.credentials_link(token, now).await.map_err(internal)?
    } else {
        CredentialsLink::Unknown
    };
    let c = match link {
        CredentialsLink::Unknown => {
            return Err(page(StatusCode::NOT_FOUND, "Unknown link", "<p>This credentials link is not valid.</p>"));
        }
        CredentialsLink::Used => {
            return Err(gone(
                "This link was already used. The password was shown once and cannot be shown again; if you lost it, ask for access anew.",
            ));
        }
        CredentialsLink::Superseded => return Err(gone("A newer link was sent to you for this access; use that one.")),
        CredentialsLink::Expired => return Err(gone("This link expired together with the access it was for.")),
        CredentialsLink::Ended => return Err(gone("The access this link was for has ended.")),
        CredentialsLink::NoLogin => return Err(gone("This access has no login to set a password for.")),
        CredentialsLink::Usable(c) => *c,
    };
    let user = state.identity.signed_in(headers).await.map_err(|e| {
        let button = state
            .identity
            .sign_in_url(&format!("/credentials/{token}"))
            .map(|url| format!("<p><a id=\"sign-in\" href=\"{}\">Sign in</a></p>", html_escape(&url)))
            .unwrap_or_default();
        page(StatusCode::UNAUTHORIZED, "Sign-in required", &format!("<p>{}</p>{button}", html_escape(&e.0)))
    })?;
    let request = &c.request;
    let bound_user = request.requester.team_id() == c.team_id && request.requester.user_id() == c.user_id;
    if !bound_user || user.issuer != request.requester_issuer || user.subject != request.requester_subject {
        tracing::warn!(request_id = request.id.get(), "credentials link opened by someone other than the requester");
        return Err(page(
            StatusCode::FORBIDDEN,
            "Not your link",
            "<p>This link belongs to another person's access request. Nothing was changed.</p>",
        ));
    }
    Ok(c)
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
    let password = match state.service.set_credentials_password(&c, &state.providers, state.clock.now()).await {
        Ok(PasswordOutcome::Set(password)) => password,
        Ok(PasswordOutcome::AlreadyUsed) => {
            return page(
                StatusCode::GONE,
                "Link no longer valid",
                "<p>This link was already used. The password was shown once and cannot be shown again.</p>",
            );
        }
        Ok(PasswordOutcome::NotSet(e)) => {
            return page(
                StatusCode::BAD_GATEWAY,
                "Password not set",
                &format!(
                    "<p>The database did not accept the new password: {}. Try again in a moment.</p>",
                    html_escape(&e.message)
                ),
            );
        }
        Err(e) => return internal(e),
    };
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
