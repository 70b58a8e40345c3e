//! The browser side of linking: `GET /oidc/link/{token}` (a confirmation
//! page that changes nothing, so link scanners use up nothing), `POST
//! /oidc/start` (binds the login to this browser with a cookie and sends it
//! to the IdP), `GET /oidc/callback` (verifies everything and stores the
//! link), `GET /oidc/signin` (a plain sign-in for jitbot's own pages,
//! whose state lives in a sealed cookie, see [`super::login_state`]).
//! Every failure is a small error page that says what to do; codes,
//! tokens and secrets never appear in pages or logs.
//!
//! Unauthenticated requests write nothing: a plain sign-in writes its
//! browser session only after the IdP vouched for the person, and a link
//! login is stored only for a valid link token (issued in Slack), at most
//! [`MAX_LOGINS_PER_TOKEN`] per token.

use std::sync::Arc;
use std::time::Duration;

use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::login_state::{SignInSealer, SignInState};
use super::{Oidc, TokenCipher, hash_token, random_token};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::domain::{Identity, SlackUser, Timestamp};
use crate::service::{LINK_TOKEN_TTL, OidcLogin, Service, ServiceError};
use crate::slack::SlackApi;

/// The cookie that ties a login to the browser that started it.
pub const BROWSER_COOKIE: &str = "jitbot_login";
/// The cookie of a browser session after a plain sign-in.
pub const SESSION_COOKIE: &str = "jitbot_session";
/// The cookie that carries a plain sign-in's sealed state to the callback.
pub const SIGN_IN_COOKIE: &str = "jitbot_signin";
/// Logins one link token may have in flight: each `POST /oidc/start` with
/// it stores one, and a token holder looping on it must not fill the table.
pub const MAX_LOGINS_PER_TOKEN: i64 = 5;
/// The longest link token accepted in a path or form (real ones are 43
/// characters); longer input is refused before it is hashed or looked up.
const MAX_TOKEN_LEN: usize = 128;
/// The longest authorization code accepted from the callback's query.
const MAX_CODE_LEN: usize = 2048;
/// How long a browser session lasts, and how recent the IdP authentication
/// behind it must be.
pub const SESSION_TTL: Duration = Duration::from_secs(600);

/// Where a plain sign-in may send the browser back to: only jitbot's own
/// pages that need it (no open redirect).
fn allowed_return(path: &str) -> bool {
    // The access report (`crate::insights`), for auditors.
    if matches!(path, "/report" | "/report.json" | "/report.csv") {
        return true;
    }
    path.strip_prefix("/credentials/").is_some_and(|t| {
        !t.is_empty() && t.len() <= 64 && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

/// What the OIDC pages share.
#[derive(Clone)]
pub struct IdpState {
    /// The OIDC client.
    pub oidc: Arc<Oidc>,
    /// The use cases.
    pub service: Service,
    /// Time.
    pub clock: SharedClock,
    /// Config (display name, email rule, public URL).
    pub config: Arc<Config>,
    /// Slack, for the profile email and display name.
    pub slack: SlackApi,
    /// Encrypts refresh tokens at rest.
    pub cipher: Option<TokenCipher>,
    /// Seals plain sign-ins' state into their cookie.
    pub sign_in_sealer: SignInSealer,
}

/// Mounts `/oidc/*`.
pub fn router(state: IdpState) -> Router {
    Router::new()
        .route("/oidc/link/{token}", get(confirm_page))
        .route("/oidc/start", post(start))
        .route("/oidc/callback", get(callback))
        .route("/oidc/signin", get(sign_in))
        // Its only body is a form with a link token.
        .layer(axum::extract::DefaultBodyLimit::max(crate::http::SMALL_FORM_LIMIT))
        .with_state(state)
}

use crate::http::{FormTargets, html_escape as escape};

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    page_with(status, title, body, FormTargets::Own)
}

fn page_with(status: StatusCode, title: &str, body: &str, forms: FormTargets) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{t} · jitbot</title><style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;line-height:1.5}}\
         button{{font-size:1rem;padding:.6rem 1.2rem}}</style></head><body><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    );
    crate::http::html_page(status, html, forms)
}

fn error_page(status: StatusCode, what: &str) -> Response {
    page(
        status,
        "Sign-in did not work",
        &format!(
            "<p>{}</p><p>Nothing was changed. Run <code>/jit link</code> in Slack to start again.</p>",
            escape(what)
        ),
    )
}

/// Checks a link token without using it up.
async fn check_token(state: &IdpState, token: &str, now: Timestamp) -> Result<(SlackUser, Option<Duration>), Response> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(error_page(StatusCode::NOT_FOUND, "This sign-in link is not valid."));
    }
    let row = state.service.link_token(&hash_token(token)).await.map_err(|e| {
        tracing::error!(error = %e, "cannot read link token");
        error_page(StatusCode::SERVICE_UNAVAILABLE, "jitbot cannot read its database right now; please try again.")
    })?;
    let Some(row) = row else {
        return Err(error_page(StatusCode::NOT_FOUND, "This sign-in link is not valid."));
    };
    if row.used_at.is_some() {
        return Err(error_page(StatusCode::GONE, "This sign-in link was already used."));
    }
    if row.expires_at <= now.millis() {
        return Err(error_page(StatusCode::GONE, "This sign-in link has expired (links work for 10 minutes)."));
    }
    let user = SlackUser::parse(&row.team_id, &row.user_id)
        .map_err(|_| error_page(StatusCode::INTERNAL_SERVER_ERROR, "This sign-in link is damaged."))?;
    let max_age = row.max_age_ms.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0)));
    Ok((user, max_age))
}

async fn confirm_page(State(state): State<IdpState>, Path(token): Path<String>) -> Response {
    let now = state.clock.now();
    let (user, _) = match check_token(&state, &token, now).await {
        Ok(v) => v,
        Err(page) => return page,
    };
    let name = match state.slack.user_profile(user.user_id()).await {
        Ok(p) => p.display_name,
        Err(_) => user.user_id().to_owned(),
    };
    let idp = state.config.idp.as_ref().map(|i| i.display_name.clone()).unwrap_or_default();
    // Without the email match, nothing ties the sign-in to this Slack
    // account but the person's own judgement: name the account plainly.
    let unmatched = if state.config.idp.as_ref().is_some_and(|i| !i.require_email_match) {
        format!(
            "<p id=\"account\">Slack workspace <code>{}</code>, user <code>{}</code>.</p>\
             <p id=\"warning\"><strong>Warning:</strong> signing in gives this Slack account your groups: whoever \
             uses it can then request and approve access as you. Continue only if this is your own Slack account.</p>",
            escape(user.team_id()),
            escape(user.user_id())
        )
    } else {
        String::new()
    };
    page_with(
        StatusCode::OK,
        "Link your Slack account",
        &format!(
            "<p>Link Slack user <strong>@{}</strong> to {}?</p>{unmatched}\
             <p>jitbot will use the groups your identity provider reports to decide what you may request and approve.</p>\
             <form method=\"post\" action=\"/oidc/start\"><input type=\"hidden\" name=\"token\" value=\"{}\">\
             <button type=\"submit\" id=\"continue\">Sign in with {}</button></form>",
            escape(&name),
            escape(&idp),
            escape(&token),
            escape(&idp)
        ),
        FormTargets::ThroughToIdp,
    )
}

#[derive(Deserialize)]
struct StartForm {
    token: String,
}

async fn start(State(state): State<IdpState>, headers: HeaderMap, Form(form): Form<StartForm>) -> Response {
    // Login CSRF: an attacker's link token submitted from the victim's browser.
    if !crate::http::same_origin(&state.config.server.public_url, &headers) {
        return error_page(StatusCode::FORBIDDEN, "This form must be sent from jitbot's own page.");
    }
    let now = state.clock.now();
    let (_, max_age) = match check_token(&state, &form.token, now).await {
        Ok(v) => v,
        Err(page) => return page,
    };
    begin_login(&state, hash_token(&form.token), max_age).await
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// The value of cookie `name`.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

fn browser_cookie(headers: &HeaderMap) -> Option<String> {
    cookie(headers, BROWSER_COOKIE)
}

#[derive(Deserialize)]
struct SignInQuery {
    return_to: String,
}

/// Starts a plain sign-in (no link): the IdP authenticates the person
/// afresh and the browser comes back to `return_to` with a session. Writes
/// nothing: the state travels in a sealed cookie.
async fn sign_in(State(state): State<IdpState>, Query(q): Query<SignInQuery>) -> Response {
    if !allowed_return(&q.return_to) {
        return error_page(StatusCode::BAD_REQUEST, "This sign-in link is not valid.");
    }
    let now = state.clock.now();
    let login = match state.oidc.start(Some(SESSION_TTL)).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = ?e, "cannot start a sign-in");
            return error_page(StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
        }
    };
    let sealed = state.sign_in_sealer.seal(&SignInState {
        state: login.state,
        nonce: login.nonce,
        pkce_verifier: login.pkce_verifier,
        return_to: q.return_to,
        expires_at: now.plus(LINK_TOKEN_TTL).millis(),
    });
    match sealed {
        Ok(sealed) => {
            redirect_with_cookie(&state, &login.authorize_url, &format!("{SIGN_IN_COOKIE}={sealed}; Path=/oidc"))
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot seal a sign-in state");
            error_page(StatusCode::INTERNAL_SERVER_ERROR, "jitbot cannot start a sign-in right now; please try again.")
        }
    }
}

/// Starts a login at the IdP for `purpose` (a link token's hash), bound to
/// this browser with a cookie.
async fn begin_login(state: &IdpState, purpose: String, max_age: Option<Duration>) -> Response {
    let now = state.clock.now();
    let login = match state.oidc.start(max_age).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = ?e, "cannot start a sign-in");
            return error_page(StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
        }
    };
    let browser = random_token();
    let row = OidcLogin {
        token_hash: purpose,
        browser_hash: hash_token(&browser),
        nonce: login.nonce,
        pkce_verifier: login.pkce_verifier,
        expires_at: now.plus(LINK_TOKEN_TTL).millis(),
        used_at: None,
    };
    match state.service.begin_oidc_login(&hash_token(&login.state), &row, MAX_LOGINS_PER_TOKEN, now).await {
        Ok(true) => {}
        Ok(false) => {
            return error_page(
                StatusCode::TOO_MANY_REQUESTS,
                "This sign-in link was started too many times. Run /jit link in Slack for a new one.",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot store a sign-in");
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "jitbot cannot write to its database right now; please try again.",
            );
        }
    }
    redirect_with_cookie(state, &login.authorize_url, &format!("{BROWSER_COOKIE}={browser}; Path=/oidc"))
}

fn redirect_with_cookie(state: &IdpState, location: &str, cookie: &str) -> Response {
    let secure = if state.config.server.public_url.scheme() == "https" { "; Secure" } else { "" };
    let cookie = format!("{cookie}; HttpOnly; SameSite=Lax; Max-Age=600{secure}");
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let (Ok(location), Ok(cookie)) = (HeaderValue::from_str(location), HeaderValue::from_str(&cookie)) {
        resp.headers_mut().insert(header::LOCATION, location);
        resp.headers_mut().insert(header::SET_COOKIE, cookie);
        resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// Finishes a plain sign-in: a browser session for the verified identity.
async fn finish_sign_in(state: &IdpState, login: &SignInState, code: &str) -> Response {
    let now = state.clock.now();
    // Checked when the sign-in started; checked again since it came back
    // through the browser (sealed, but the rule is cheap).
    if !allowed_return(&login.return_to) {
        return error_page(StatusCode::BAD_REQUEST, "This sign-in link is not valid.");
    }
    let verified = match state.oidc.finish(code, &login.pkce_verifier, &login.nonce, Some(SESSION_TTL)).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "sign-in refused");
            return error_page(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    let session = random_token();
    let stored =
        state.service.start_browser_session(&session, &verified.issuer, &verified.subject, now, SESSION_TTL).await;
    if let Err(e) = stored {
        tracing::error!(error = %e, "cannot store a browser session");
        return error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "jitbot cannot write to its database right now; please try again.",
        );
    }
    let location = format!("{}{}", state.config.server.public_base(), login.return_to);
    let mut resp = redirect_with_cookie(state, &location, &format!("{SESSION_COOKIE}={session}; Path=/"));
    // The sign-in state is spent.
    resp.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static("jitbot_signin=; Path=/oidc; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    resp
}

async fn callback(State(state): State<IdpState>, headers: HeaderMap, Query(q): Query<CallbackQuery>) -> Response {
    let now = state.clock.now();
    if let Some(error) = q.error {
        let error: String = error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
        return error_page(StatusCode::BAD_REQUEST, &format!("The identity provider did not sign you in ({error})."));
    }
    let Some(st) = q.state.filter(|s| !s.is_empty()) else {
        return error_page(StatusCode::BAD_REQUEST, "The identity provider's answer has no state.");
    };
    let Some(code) = q.code.filter(|c| !c.is_empty()) else {
        return error_page(StatusCode::BAD_REQUEST, "The identity provider's answer has no authorization code.");
    };
    if st.len() > MAX_TOKEN_LEN || code.len() > MAX_CODE_LEN {
        return error_page(StatusCode::BAD_REQUEST, "The identity provider's answer is not valid.");
    }
    // A plain sign-in: its state is in the sealed cookie, nothing is stored.
    if let Some(login) = cookie(&headers, SIGN_IN_COOKIE).and_then(|c| state.sign_in_sealer.open(&c, now))
        && bool::from(login.state.as_bytes().ct_eq(st.as_bytes()))
    {
        return finish_sign_in(&state, &login, &code).await;
    }
    let login = match state.service.take_oidc_login(&hash_token(&st), now).await {
        Ok(Some(l)) => l,
        Ok(None) => {
            return error_page(StatusCode::BAD_REQUEST, "This sign-in is unknown or was already completed (state).");
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read a sign-in");
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "jitbot cannot read its database right now; please try again.",
            );
        }
    };
    if login.expires_at <= now.millis() {
        return error_page(StatusCode::BAD_REQUEST, "This sign-in took too long and expired.");
    }
    let bound = browser_cookie(&headers).is_some_and(|c| hash_token(&c) == login.browser_hash);
    if !bound {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in was started in another browser. Open the link from Slack in this browser.",
        );
    }
    let row = match state.service.link_token(&login.token_hash).await {
        Ok(Some(r)) if r.used_at.is_none() && r.expires_at > now.millis() => r,
        Ok(_) => return error_page(StatusCode::GONE, "This sign-in link was already used or has expired."),
        Err(_) => {
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "jitbot cannot read its database right now; please try again.",
            );
        }
    };
    let Ok(user) = SlackUser::parse(&row.team_id, &row.user_id) else {
        return error_page(StatusCode::INTERNAL_SERVER_ERROR, "This sign-in link is damaged.");
    };
    let max_age = row.max_age_ms.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0)));
    let verified = match state.oidc.finish(&code, &login.pkce_verifier, &login.nonce, max_age).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(user = %user, error = %e, "sign-in refused");
            return error_page(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    let Some(email) = verified.email.clone() else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The identity provider did not share your email address (scope \"email\").",
        );
    };
    let rule = state.config.idp.as_ref().map(|i| i.email_verified).unwrap_or_default();
    if !rule.accepts(verified.email_verified) {
        let what = match verified.email_verified {
            Some(false) => format!("Your identity provider has not verified the email {email}."),
            _ => format!(
                "Your identity provider did not say whether it verified the email {email} (no email_verified claim). \
                 If it never sends that claim (Entra ID does not), an admin can set [idp] email_verified = \"if_present\"."
            ),
        };
        return error_page(StatusCode::BAD_REQUEST, &what);
    }
    let require_match = state.config.idp.as_ref().is_none_or(|i| i.require_email_match);
    if require_match {
        match state.slack.user_profile(user.user_id()).await {
            Ok(p) if p.email.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(&email)) => {}
            Ok(p) => {
                tracing::warn!(user = %user, "sign-in email does not match the Slack profile email");
                return error_page(
                    StatusCode::FORBIDDEN,
                    &format!(
                        "You signed in as {email}, but your Slack profile email is {}. Sign in with the account that matches your Slack profile.",
                        p.email.as_deref().unwrap_or("not visible to jitbot")
                    ),
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the Slack profile");
                return error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "jitbot cannot read your Slack profile right now; please try again.",
                );
            }
        }
    }
    let sealed = match (&verified.refresh_token, &state.cipher) {
        (Some(t), Some(cipher)) => cipher.seal(t).ok(),
        _ => None,
    };
    let identity = Identity {
        slack: user.clone(),
        issuer: verified.issuer.clone(),
        subject: verified.subject.clone(),
        email: email.clone(),
        groups: verified.groups.clone(),
        claims: verified.claims.clone(),
    };
    let missing = verified.groups_claim_missing;
    match state
        .service
        .link_from_oidc(&login.token_hash, &identity, verified.auth_time, sealed.as_deref(), missing, now)
        .await
    {
        Ok(()) => {}
        Err(ServiceError::NotAllowed(refusal)) => return error_page(StatusCode::GONE, &refusal.to_string()),
        Err(e) => return error_page(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
    let groups = identity.groups.iter().cloned().collect::<Vec<_>>().join(", ");
    let groups = if missing {
        super::missing_groups_note(&state.config.idp.as_ref().map(|i| i.groups_claim.clone()).unwrap_or_default())
    } else if groups.is_empty() {
        "none".to_owned()
    } else {
        groups
    };
    page(
        StatusCode::OK,
        "Linked",
        &format!(
            "<p id=\"result\">Linked as {} — groups: {}. You can close this tab.</p>",
            escape(&email),
            escape(&groups)
        ),
    )
}
