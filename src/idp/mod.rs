//! Identity federation over OpenID Connect: discovery, the authorization
//! code flow with PKCE, ID token verification, groups from the ID token or
//! userinfo, and refresh.
//!
//! What lives elsewhere: the browser-facing pages ([`routes`]), and the
//! use cases that read and write links, link tokens, logins in flight and
//! browser sessions ([`crate::service`], the only door to the database).

pub mod login_state;
pub mod routes;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce as AesNonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreResponseType,
    CoreRevocableToken, CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthenticationFlow, AuthorizationCode, Client, ClientId, ClientSecret, CsrfToken,
    EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenFields, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, Scope, StandardErrorResponse,
    StandardTokenResponse, TokenResponse as _,
};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use crate::clock::SharedClock;
use crate::config::IdpConfig;
use crate::domain::Timestamp;

/// Every claim the IdP sent beyond the standard ones; the groups claim is
/// read from here by its configured name.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtraClaims {
    /// Claim name to value.
    #[serde(flatten)]
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl AdditionalClaims for ExtraClaims {}

type Fields = IdTokenFields<
    ExtraClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type Tokens = StandardTokenResponse<Fields, CoreTokenType>;
type OidcClient = Client<
    ExtraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    Tokens,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

pub use crate::domain::random_token;

pub use crate::domain::hash_token;

/// Encrypts refresh tokens at rest (AES-256-GCM, random nonce per value).
#[derive(Clone)]
pub struct TokenCipher(Aes256Gcm);

impl TokenCipher {
    /// Builds the cipher from base64 of 32 bytes.
    pub fn from_base64(key: &str) -> Result<Self, String> {
        let bytes = crate::config::decode_token_key(key)?;
        Aes256Gcm::new_from_slice(&bytes).map(Self).map_err(|_| "invalid key".to_owned())
    }

    /// Encrypts; the output is `base64(nonce || ciphertext)`.
    pub fn seal(&self, plain: &str) -> Result<String, String> {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .0
            .encrypt(AesNonce::from_slice(&nonce), plain.as_bytes())
            .map_err(|_| "encryption failed".to_owned())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(STANDARD.encode(out))
    }

    /// Decrypts what [`TokenCipher::seal`] produced.
    pub fn open(&self, sealed: &str) -> Result<String, String> {
        let bytes = STANDARD.decode(sealed).map_err(|_| "not base64".to_owned())?;
        if bytes.len() < 13 {
            return Err("too short".into());
        }
        let (nonce, ct) = bytes.split_at(12);
        let plain = self.0.decrypt(AesNonce::from_slice(nonce), ct).map_err(|_| "wrong key or tampered".to_owned())?;
        String::from_utf8(plain).map_err(|_| "not UTF-8".to_owned())
    }
}

/// Why a sign-in failed. Messages are shown on the error page: they never
/// carry codes, tokens or secrets.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// Discovery or a network call to the IdP failed (the detail is for the
    /// log, not for pages).
    #[error("the identity provider cannot be reached right now; please try again later")]
    Unavailable(String),
    /// The IdP refused the code exchange (wrong or reused code, PKCE mismatch).
    #[error("the identity provider refused the sign-in ({0})")]
    Refused(String),
    /// The ID token failed verification.
    #[error("the identity provider's answer could not be verified: {0}")]
    Invalid(String),
    /// The IdP said the refresh token is no longer valid.
    #[error("the identity provider ended this sign-in")]
    InvalidGrant,
}

/// What a verified sign-in or refresh established.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedIdentity {
    /// `iss`.
    pub issuer: String,
    /// `sub`.
    pub subject: String,
    /// The email, if the IdP sent one.
    pub email: Option<String>,
    /// The IdP's `email_verified` claim, `None` when it sent none (Entra
    /// ID); judged by `[idp] email_verified`.
    pub email_verified: Option<bool>,
    /// Groups from the configured claim.
    pub groups: BTreeSet<String>,
    /// The IdP sent no groups claim at all (neither in the ID token nor in
    /// userinfo): usually a missing scope or claim mapping, not "no groups".
    pub groups_claim_missing: bool,
    /// The claims login templates name (`{claims.NAME}`), as strings; from
    /// the ID token, or from userinfo when the ID token lacks them.
    pub claims: BTreeMap<String, String>,
    /// When the person authenticated at the IdP.
    pub auth_time: Option<Timestamp>,
    /// A refresh token, when the IdP issued one.
    pub refresh_token: Option<String>,
}

// Written by hand so that the refresh token never reaches a log line.
impl std::fmt::Debug for VerifiedIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedIdentity")
            .field("issuer", &self.issuer)
            .field("subject", &self.subject)
            .field("email", &self.email)
            .field("email_verified", &self.email_verified)
            .field("groups", &self.groups)
            .field("groups_claim_missing", &self.groups_claim_missing)
            .field("claims", &self.claims)
            .field("auth_time", &self.auth_time)
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| REDACTED))
            .finish()
    }
}

/// What `Debug` shows in place of a secret.
pub(crate) const REDACTED: &str = "[REDACTED]";

/// A login waiting for the IdP to send the browser back.
#[derive(Clone)]
pub struct StartedLogin {
    /// Where to send the browser.
    pub authorize_url: String,
    /// The `state` value (stored hashed).
    pub state: String,
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// The PKCE verifier.
    pub pkce_verifier: String,
}

// Written by hand: the state and PKCE verifier are what an attacker needs
// to finish someone else's sign-in.
impl std::fmt::Debug for StartedLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartedLogin")
            .field("authorize_url", &self.authorize_url)
            .field("state", &REDACTED)
            .field("nonce", &self.nonce)
            .field("pkce_verifier", &REDACTED)
            .finish()
    }
}

/// The OpenID Connect client. Discovery happens at start-up and again when
/// it failed before or an ID token names an unknown signing key.
pub struct Oidc {
    config: IdpConfigView,
    http: openidconnect::reqwest::Client,
    client: RwLock<Option<Arc<OidcClient>>>,
    clock: SharedClock,
}

/// The parts of `[idp]` the client needs, copied so the client owns them.
#[derive(Debug, Clone)]
struct IdpConfigView {
    issuer: String,
    client_id: String,
    /// [`crate::config::Secret`], so `Debug` shows `[REDACTED]`.
    client_secret: crate::config::Secret,
    groups_claim: String,
    groups_delimiter: Option<String>,
    scopes: Vec<String>,
    redirect_url: String,
    /// Claims to keep, from every login template of the config.
    kept_claims: BTreeSet<String>,
}

/// The kept claims that `all` (a whole claims set, as JSON) carries as
/// strings or numbers; other shapes cannot name a login and are skipped.
fn kept_claims_from(all: &serde_json::Value, kept: &BTreeSet<String>, into: &mut BTreeMap<String, String>) {
    for name in kept {
        if into.contains_key(name) {
            continue;
        }
        let value = match all.get(name) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => continue,
        };
        into.insert(name.clone(), value);
    }
}

/// The groups in claim `name`, or `None` when the claim is absent, null or
/// of a shape that cannot hold group names (the person is then told the
/// claim is missing rather than silently getting no groups). An array gives its strings; a string is one group, unless the
/// IdP is configured to send a `delimiter`-separated list
/// (`[idp] groups_delimiter`): group names may contain spaces and commas.
fn groups_from(claims: &ExtraClaims, name: &str, delimiter: Option<&str>) -> Option<BTreeSet<String>> {
    let one = |g: &str| Some(g.trim()).filter(|g| !g.is_empty()).map(str::to_owned);
    match claims.claims.get(name)? {
        serde_json::Value::Null => None,
        serde_json::Value::Array(items) => Some(items.iter().filter_map(|v| v.as_str().and_then(one)).collect()),
        serde_json::Value::String(s) => Some(match delimiter {
            Some(d) if !d.is_empty() => s.split(d).filter_map(one).collect(),
            _ => one(s).into_iter().collect(),
        }),
        _ => None,
    }
}

pub use crate::domain::policy::missing_groups_note;

/// openidconnect speaks chrono; this is the one conversion point.
fn chrono_of(t: Timestamp) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(t.millis()).unwrap_or_default()
}

impl Oidc {
    /// Builds the client; discovery is attempted by [`Oidc::discover`].
    /// `kept_claims` are the claims the login templates name
    /// ([`crate::config::Config::login_claims`]).
    pub fn new(
        config: &IdpConfig,
        public_url: &str,
        kept_claims: &BTreeSet<String>,
        clock: SharedClock,
    ) -> anyhow::Result<Self> {
        let http = openidconnect::reqwest::ClientBuilder::new()
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            config: IdpConfigView {
                issuer: config.issuer.as_str().to_owned(),
                client_id: config.client_id.clone(),
                client_secret: config.client_secret.clone(),
                groups_claim: config.groups_claim.clone(),
                groups_delimiter: config.groups_delimiter.clone(),
                scopes: config.scopes.clone(),
                redirect_url: format!("{}/oidc/callback", public_url.trim_end_matches('/')),
                kept_claims: kept_claims.clone(),
            },
            http,
            client: RwLock::new(None),
            clock,
        })
    }

    /// Fetches the discovery document and keys. Failure is reported and
    /// retried on the next sign-in; the rest of the bot keeps working.
    pub async fn discover(&self) -> Result<Arc<OidcClient>, OidcError> {
        let issuer = IssuerUrl::new(self.config.issuer.clone()).map_err(|e| OidcError::Invalid(e.to_string()))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| OidcError::Unavailable(format!("discovery failed: {}", short(&e))))?;
        let redirect =
            RedirectUrl::new(self.config.redirect_url.clone()).map_err(|e| OidcError::Invalid(e.to_string()))?;
        // Build through the core client type, then re-type with our claims.
        let client: OidcClient = Client::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(self.config.client_secret.expose().to_owned())),
        )
        .set_redirect_uri(redirect);
        let client = Arc::new(client);
        *self.client.write().await = Some(client.clone());
        Ok(client)
    }

    async fn client(&self) -> Result<Arc<OidcClient>, OidcError> {
        if let Some(c) = self.client.read().await.clone() {
            return Ok(c);
        }
        self.discover().await
    }

    /// Starts a login: a fresh `state`, nonce and PKCE pair. `max_age`
    /// forces a fresh authentication (step-up).
    pub async fn start(&self, max_age: Option<Duration>) -> Result<StartedLogin, OidcError> {
        let client = self.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in self.config.scopes.iter().filter(|s| *s != "openid") {
            req = req.add_scope(Scope::new(scope.clone()));
        }
        if self.config.scopes.iter().any(|s| s == "offline_access") {
            // Refresh tokens are only issued after explicit consent.
            req = req.add_prompt(CoreAuthPrompt::Consent);
        }
        if let Some(max_age) = max_age {
            req = req.set_max_age(max_age);
        }
        let (url, state, nonce) = req.url();
        Ok(StartedLogin {
            authorize_url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges the code, verifies the ID token (signature, `iss`, `aud`,
    /// `exp`, `nonce`, `at_hash`, and `auth_time` against `max_age`) and
    /// reads the groups, from userinfo when the ID token lacks them.
    pub async fn finish(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
        max_age: Option<Duration>,
    ) -> Result<VerifiedIdentity, OidcError> {
        let client = self.client().await?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Invalid(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| describe_token_error(&e))?;
        self.identity_from(client, &tokens, Some(nonce), max_age).await
    }

    /// Uses a refresh token to re-read the person's groups.
    pub async fn refresh(&self, refresh_token: &str) -> Result<VerifiedIdentity, OidcError> {
        let client = self.client().await?;
        let tokens = client
            .exchange_refresh_token(&RefreshToken::new(refresh_token.to_owned()))
            .map_err(|e| OidcError::Invalid(e.to_string()))?
            .request_async(&self.http)
            .await
            .map_err(|e| match describe_token_error(&e) {
                OidcError::Refused(msg) if msg.contains("invalid_grant") => OidcError::InvalidGrant,
                other => other,
            })?;
        let mut identity = self.identity_from(client, &tokens, None, None).await?;
        if identity.refresh_token.is_none() {
            // The IdP kept the old one (no rotation).
            identity.refresh_token = Some(refresh_token.to_owned());
        }
        Ok(identity)
    }

    async fn identity_from(
        &self,
        client: Arc<OidcClient>,
        tokens: &Tokens,
        nonce: Option<&str>,
        max_age: Option<Duration>,
    ) -> Result<VerifiedIdentity, OidcError> {
        let id_token = tokens.id_token().ok_or_else(|| OidcError::Invalid("no ID token in the response".into()))?;
        let (claims, client) = self.verify_claims(client, id_token, nonce, max_age).await?;
        if let Some(expected) = claims.access_token_hash() {
            let verifier = client.id_token_verifier();
            let alg = id_token.signing_alg().map_err(|e| OidcError::Invalid(e.to_string()))?;
            let key = id_token.signing_key(&verifier).map_err(|e| OidcError::Invalid(e.to_string()))?;
            let actual = openidconnect::AccessTokenHash::from_token(tokens.access_token(), alg, key)
                .map_err(|e| OidcError::Invalid(e.to_string()))?;
            if &actual != expected {
                return Err(OidcError::Invalid("the access token does not match the ID token's at_hash".into()));
            }
        }
        let delimiter = self.config.groups_delimiter.as_deref();
        let mut groups = groups_from(claims.additional_claims(), &self.config.groups_claim, delimiter);
        let mut email = claims.email().map(|e| e.as_str().to_owned());
        let mut email_verified = claims.email_verified();
        let mut kept = BTreeMap::new();
        if !self.config.kept_claims.is_empty() {
            let all = serde_json::to_value(&claims).map_err(|e| OidcError::Invalid(e.to_string()))?;
            kept_claims_from(&all, &self.config.kept_claims, &mut kept);
        }
        if groups.is_none() || email.is_none() || kept.len() < self.config.kept_claims.len() {
            // Some IdPs put scope claims only in userinfo.
            let info: openidconnect::UserInfoClaims<ExtraClaims, CoreGenderClaim> = client
                .user_info(tokens.access_token().clone(), Some(claims.subject().clone()))
                .map_err(|e| OidcError::Invalid(e.to_string()))?
                .request_async(&self.http)
                .await
                .map_err(|e| OidcError::Unavailable(format!("userinfo failed: {}", short(&e))))?;
            if groups.is_none() {
                groups = groups_from(info.additional_claims(), &self.config.groups_claim, delimiter);
            }
            if email.is_none() {
                email = info.email().map(|e| e.as_str().to_owned());
                email_verified = info.email_verified();
            }
            if kept.len() < self.config.kept_claims.len() {
                let all = serde_json::to_value(&info).map_err(|e| OidcError::Invalid(e.to_string()))?;
                kept_claims_from(&all, &self.config.kept_claims, &mut kept);
            }
        }
        Ok(VerifiedIdentity {
            issuer: claims.issuer().as_str().to_owned(),
            subject: claims.subject().as_str().to_owned(),
            email,
            email_verified,
            groups_claim_missing: groups.is_none(),
            groups: groups.unwrap_or_default(),
            claims: kept,
            auth_time: claims.auth_time().map(|t| Timestamp::from_millis(t.timestamp_millis())),
            refresh_token: tokens.refresh_token().map(|t| t.secret().clone()),
        })
    }
}

type Claims = openidconnect::IdTokenClaims<ExtraClaims, CoreGenderClaim>;
type IdToken =
    openidconnect::IdToken<ExtraClaims, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>;

impl Oidc {
    /// Verifies a raw ID token (signature, `iss`, `aud`, `exp`, `nonce`) the
    /// way a sign-in does. Exposed so the checks can be exercised with
    /// tokens the IdP issued to other clients.
    pub async fn verify_id_token(&self, raw: &str, nonce: &str) -> Result<(), OidcError> {
        let token: IdToken = raw.parse().map_err(|_| OidcError::Invalid("not a JWT".into()))?;
        let client = self.client().await?;
        self.verify_claims(client, &token, Some(nonce), None).await.map(|_| ())
    }

    /// Checks an ID token's claims; on an unknown signing key, fetches the
    /// IdP's keys once more (key rotation) and tries again.
    async fn verify_claims(
        &self,
        mut client: Arc<OidcClient>,
        id_token: &IdToken,
        nonce: Option<&str>,
        max_age: Option<Duration>,
    ) -> Result<(Claims, Arc<OidcClient>), OidcError> {
        let now = self.clock.now();
        let mut rediscovered = false;
        loop {
            let mut verifier = client.id_token_verifier().set_time_fn(move || chrono_of(now));
            if let Some(max_age) = max_age {
                let limit = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
                verifier = verifier.set_auth_time_verifier_fn(move |auth_time| match auth_time {
                    Some(t) if now.millis() - t.timestamp_millis() <= limit => Ok(()),
                    Some(_) => Err("you signed in too long ago for this role; sign in again".to_owned()),
                    None => Err("the identity provider did not say when you signed in".to_owned()),
                });
            }
            let expected_nonce = nonce.map(|n| Nonce::new(n.to_owned()));
            let result = match &expected_nonce {
                Some(n) => id_token.claims(&verifier, n).cloned(),
                // Refreshed ID tokens carry no nonce (OIDC Core 12.2).
                None => id_token.claims(&verifier, |_: Option<&Nonce>| Ok(())).cloned(),
            };
            drop(verifier);
            match result {
                Ok(c) => return Ok((c, client)),
                Err(openidconnect::ClaimsVerificationError::SignatureVerification(
                    openidconnect::SignatureVerificationError::NoMatchingKey,
                )) if !rediscovered => {
                    // The IdP rotated its keys: fetch them once more.
                    rediscovered = true;
                    client = self.discover().await?;
                }
                Err(e) => return Err(OidcError::Invalid(describe_claims_error(&e))),
            }
        }
    }
}

fn short(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        source = s.source();
    }
    msg.chars().take(300).collect()
}

fn describe_token_error<RE: std::error::Error + 'static>(
    e: &openidconnect::RequestTokenError<RE, StandardErrorResponse<openidconnect::core::CoreErrorResponseType>>,
) -> OidcError {
    match e {
        openidconnect::RequestTokenError::ServerResponse(r) => OidcError::Refused(r.error().as_ref().to_owned()),
        openidconnect::RequestTokenError::Request(inner) => OidcError::Unavailable(short(inner)),
        other => OidcError::Refused(short(other)),
    }
}

fn describe_claims_error(e: &openidconnect::ClaimsVerificationError) -> String {
    use openidconnect::ClaimsVerificationError as E;
    match e {
        E::Expired(_) => "the ID token has expired".into(),
        E::InvalidAudience(_) => "the ID token was issued for another application (audience)".into(),
        E::InvalidIssuer(_) => "the ID token comes from another issuer".into(),
        E::InvalidNonce(_) => "the ID token does not belong to this sign-in (nonce mismatch)".into(),
        E::InvalidAuthTime(msg) => msg.clone(),
        E::SignatureVerification(_) => "the ID token's signature is not valid".into(),
        other => short(other),
    }
}

/// Re-reads groups with stored refresh tokens (the `refresh_link` job).
pub struct IdpRefresher {
    /// The OIDC client.
    pub oidc: Arc<Oidc>,
    /// Decrypts and re-encrypts refresh tokens.
    pub cipher: Option<TokenCipher>,
    /// Where links live, and the use case that ends a refused link.
    pub service: crate::service::Service,
}

impl IdpRefresher {
    /// Ends a link the IdP no longer vouches for, and the access it held,
    /// unless the link changed since it was read (at `version`).
    async fn end_link(
        &self,
        user: &crate::domain::SlackUser,
        version: i64,
        why: &str,
        now: Timestamp,
    ) -> Result<(), String> {
        match self.service.end_refused_link(user, version, why, now).await {
            Ok(Some(ended)) => {
                tracing::info!(user = %user, ended = ended.len(), why, "link ended by its identity provider");
                Ok(())
            }
            Ok(None) => {
                tracing::info!(user = %user, "link changed during the refresh; the refusal is dropped");
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

#[async_trait::async_trait]
impl crate::jobs::LinkRefresher for IdpRefresher {
    async fn refresh(&self, user: &crate::domain::SlackUser, now: Timestamp) -> Result<(), String> {
        let service = |e: crate::service::ServiceError| e.to_string();
        // Everything below is decided against this read: if the link changes
        // during the round trip to the IdP (a SCIM group removal, a new
        // sign-in, a removal), the refresh result is dropped.
        let Some(link) = self.service.link_for_refresh(user).await.map_err(service)? else { return Ok(()) };
        let Some(sealed) = link.refresh_token.as_deref() else { return Ok(()) };
        let Some(cipher) = &self.cipher else { return Err("no token_encryption_key configured".into()) };
        let Ok(token) = cipher.open(sealed) else {
            return self
                .end_link(user, link.version, "its stored sign-in could not be read (the encryption key changed)", now)
                .await;
        };
        match self.oidc.refresh(&token).await {
            Ok(fresh) if fresh.subject != link.subject => {
                self.end_link(user, link.version, "the identity provider returned a different identity", now).await
            }
            Ok(fresh) => {
                let rotated = fresh.refresh_token.as_deref().map(|t| cipher.seal(t)).transpose()?;
                let confirmed = crate::service::LinkRefresh {
                    groups: &fresh.groups,
                    claims: &fresh.claims,
                    auth_time: fresh.auth_time,
                    sealed_refresh_token: rotated.as_deref(),
                    groups_claim_missing: fresh.groups_claim_missing,
                };
                if !self.service.record_link_refresh(user, &link, &confirmed, now).await.map_err(service)? {
                    tracing::info!(user = %user, "link changed during the refresh; its groups were not stored");
                }
                Ok(())
            }
            Err(OidcError::InvalidGrant) => {
                self.end_link(user, link.version, "the identity provider no longer accepts your sign-in", now).await
            }
            // An outage: keep the link, retry later; decisions meanwhile are refused.
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Who is at the browser, from the session a plain sign-in
/// (`/oidc/signin`) created: what the one-time credentials page checks.
pub struct OidcBrowserIdentity {
    /// Where sessions live.
    pub service: crate::service::Service,
    /// Session expiry.
    pub clock: SharedClock,
    /// `server.public_url`, for the sign-in link.
    pub public_url: crate::config::Url,
}

#[async_trait::async_trait]
impl crate::credentials::BrowserIdentity for OidcBrowserIdentity {
    async fn signed_in(
        &self,
        headers: &axum::http::HeaderMap,
    ) -> Result<crate::credentials::BrowserUser, crate::credentials::SignInRequired> {
        let needed = || {
            crate::credentials::SignInRequired(
                "Sign in with your company account first: only the person who asked for this access may see its password."
                    .to_owned(),
            )
        };
        let session = routes::cookie(headers, routes::SESSION_COOKIE).ok_or_else(needed)?;
        match self.service.browser_session(&session, self.clock.now()).await {
            Ok(Some((issuer, subject))) => Ok(crate::credentials::BrowserUser { issuer, subject }),
            Ok(None) => Err(needed()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read a browser session");
                Err(crate::credentials::SignInRequired(
                    "jitbot cannot read its database right now; please try again.".into(),
                ))
            }
        }
    }

    fn sign_in_url(&self, return_to: &str) -> Option<String> {
        let mut url =
            reqwest::Url::parse(&format!("{}/oidc/signin", crate::config::urls::base_of(&self.public_url))).ok()?;
        url.query_pairs_mut().append_pair("return_to", return_to);
        Some(url.to_string())
    }
}

#[cfg(test)]
mod debug_tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_client_secret_refresh_token_state_and_pkce_verifier() {
        let config = IdpConfigView {
            issuer: "https://idp.example".into(),
            client_id: "jitbot".into(),
            client_secret: crate::config::Secret::from("client-secret-0123456789"),
            groups_claim: "groups".into(),
            groups_delimiter: None,
            scopes: vec!["openid".into()],
            redirect_url: "https://jitbot.example/oidc/callback".into(),
            kept_claims: BTreeSet::new(),
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("client-secret-0123456789"), "{shown}");
        assert!(shown.contains("jitbot"), "{shown}");

        let identity = VerifiedIdentity {
            issuer: "https://idp.example".into(),
            subject: "alice".into(),
            email: Some("alice@example.com".into()),
            email_verified: Some(true),
            groups: BTreeSet::new(),
            groups_claim_missing: false,
            claims: BTreeMap::new(),
            auth_time: None,
            refresh_token: Some("refresh-token-0123456789".into()),
        };
        let shown = format!("{identity:?}");
        assert!(!shown.contains("refresh-token-0123456789"), "{shown}");
        assert!(shown.contains("alice@example.com"), "{shown}");

        let login = StartedLogin {
            authorize_url: "https://idp.example/auth".into(),
            state: "state-value-0123456789".into(),
            nonce: "nonce".into(),
            pkce_verifier: "pkce-verifier-0123456789".into(),
        };
        let shown = format!("{login:?}");
        assert!(!shown.contains("pkce-verifier-0123456789"), "{shown}");
        assert!(!shown.contains("state-value-0123456789"), "{shown}");
    }
}

#[cfg(test)]
mod groups_claim_tests {
    use super::*;

    fn claims(value: serde_json::Value) -> ExtraClaims {
        ExtraClaims { claims: serde_json::json!({ "groups": value }).as_object().cloned().unwrap_or_default() }
    }

    fn set(items: &[&str]) -> Option<BTreeSet<String>> {
        Some(items.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn a_string_is_one_group_unless_a_delimiter_is_configured() {
        assert_eq!(groups_from(&claims("db admins".into()), "groups", None), set(&["db admins"]));
        assert_eq!(groups_from(&claims("a, b".into()), "groups", None), set(&["a, b"]));
        assert_eq!(groups_from(&claims("db admins, ops".into()), "groups", Some(",")), set(&["db admins", "ops"]));
        assert_eq!(groups_from(&claims("".into()), "groups", None), set(&[]));
        assert_eq!(
            groups_from(&claims(serde_json::json!(["db admins", "ops", 3])), "groups", Some(",")),
            set(&["db admins", "ops"])
        );
    }

    #[test]
    fn an_absent_or_null_claim_is_missing_not_empty() {
        assert_eq!(groups_from(&ExtraClaims::default(), "groups", None), None);
        assert_eq!(groups_from(&claims(serde_json::Value::Null), "groups", None), None);
        assert_eq!(groups_from(&claims(serde_json::json!([])), "groups", None), set(&[]));
        assert_eq!(groups_from(&claims(serde_json::json!({"a": 1})), "groups", None), None);
        assert_eq!(groups_from(&claims(serde_json::json!(7)), "groups", None), None);
    }
}
