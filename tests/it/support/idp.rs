//! A real OpenID provider for the tests (`tests/idp/server.mjs`, npm
//! `oidc-provider`), an HTTP "browser" that follows redirects, keeps cookies
//! and fills the provider's login and consent forms, and `OidcEnv`: the
//! Slack environment with `[idp]` pointing at the provider.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use jitbot::clock::{Clock, SystemClock};
use serde_json::{Value, json};

use crate::support::slack::{SlackEnv, SlackEnvOptions, free_port};

pub const CLIENT_ID: &str = "jitbot";
pub const CLIENT_SECRET: &str = "jitbot-test-client-secret-0123";
pub const OTHER_CLIENT_ID: &str = "other-app";
pub const OTHER_CLIENT_SECRET: &str = "other-app-client-secret-0123";
pub const OTHER_REDIRECT: &str = "http://127.0.0.1:9/other/callback";
/// Base64 of 32 bytes, for `idp.token_encryption_key`.
pub const TOKEN_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn idp_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/idp")
}

/// Whether Node and the provider's packages are installed; in CI their
/// absence is a failure, elsewhere the test is skipped with a notice.
pub fn idp_available() -> bool {
    let node = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    let modules = idp_dir().join("node_modules/oidc-provider").exists();
    if node && modules {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but the test identity provider is not installed: run `npm ci` in tests/idp (see .ci/run)");
    }
    eprintln!("NOTICE: skipping an OIDC test: install Node.js and run `npm ci` in tests/idp");
    false
}

/// One account at the provider.
pub struct Account {
    pub login: &'static str,
    pub email: &'static str,
    pub groups: &'static [&'static str],
}

pub const ACCOUNTS: &[Account] = &[
    Account { login: "alice", email: "alice@example.com", groups: &["engineering"] },
    Account { login: "bob", email: "bob@example.com", groups: &["sre-leads", "engineering"] },
    Account { login: "carol", email: "carol@example.com", groups: &["sre-leads"] },
    Account { login: "mallory", email: "mallory@example.com", groups: &["sales"] },
];

pub struct TestIdp {
    child: Child,
    pub issuer: String,
    accounts: PathBuf,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Drop for TestIdp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestIdp {
    /// Starts the provider with the test accounts and two clients: jitbot
    /// (redirecting to `jitbot_callback`) and another application.
    pub fn start(jitbot_callback: &str, groups_in_id_token: bool, id_token_ttl_secs: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let accounts = dir.path().join("accounts.json");
        let map: serde_json::Map<String, Value> =
            ACCOUNTS.iter().map(|a| (a.login.to_owned(), json!({"email": a.email, "groups": a.groups}))).collect();
        std::fs::write(&accounts, Value::Object(map).to_string()).unwrap();
        let clients = json!([
            {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": [jitbot_callback],
             "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
             "require_auth_time": true},
            {"client_id": OTHER_CLIENT_ID, "client_secret": OTHER_CLIENT_SECRET, "redirect_uris": [OTHER_REDIRECT],
             "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"]},
        ]);
        // Node has been seen, on a loaded machine, to start without ever
        // printing its port: such a start is abandoned and made again.
        let (child, port) = (1..=3)
            .find_map(|attempt| {
                let mut child = Command::new("node")
                    .arg(idp_dir().join("server.mjs"))
                    .env("IDP_ACCOUNTS", &accounts)
                    .env("IDP_CLIENTS", clients.to_string())
                    .env("IDP_GROUPS_IN_ID_TOKEN", if groups_in_id_token { "1" } else { "0" })
                    .env("IDP_ID_TOKEN_TTL", id_token_ttl_secs.to_string())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                let stdout = child.stdout.take().unwrap();
                let (tx, rx) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stdout);
                    let mut line = String::new();
                    let _ = reader.read_line(&mut line);
                    let _ = tx.send(line);
                    // Keep reading, so that later output never meets a closed pipe.
                    let _ = std::io::copy(&mut reader, &mut std::io::sink());
                });
                match rx.recv_timeout(std::time::Duration::from_secs(30)) {
                    Ok(line) => {
                        let port = line.trim().strip_prefix("ready ").unwrap_or_else(|| panic!("the IdP did not start: {line:?}"));
                        Some((child, port.to_owned()))
                    }
                    Err(_) => {
                        eprintln!("NOTICE: the test IdP did not report its port within 30 s (attempt {attempt}); starting it again");
                        let _ = child.kill();
                        let _ = child.wait();
                        None
                    }
                }
            })
            .expect("the test IdP did not start in three attempts");
        Self { child, issuer: format!("http://127.0.0.1:{port}"), accounts, _dir: dir, http: reqwest::Client::new() }
    }

    /// Changes someone's groups at the IdP (read on their next token).
    pub fn set_groups(&self, login: &str, groups: &[&str]) {
        let mut all: Value = serde_json::from_str(&std::fs::read_to_string(&self.accounts).unwrap()).unwrap();
        all[login]["groups"] = json!(groups);
        std::fs::write(&self.accounts, all.to_string()).unwrap();
    }

    /// Sets one of someone's claims at the IdP to any JSON value (a string
    /// of groups; `null` to leave the claim out).
    pub fn set_claim(&self, login: &str, claim: &str, value: Value) {
        let mut all: Value = serde_json::from_str(&std::fs::read_to_string(&self.accounts).unwrap()).unwrap();
        all[login][claim] = value;
        std::fs::write(&self.accounts, all.to_string()).unwrap();
    }

    /// Marks someone's email unverified at the IdP.
    pub fn set_email_verified(&self, login: &str, verified: bool) {
        let mut all: Value = serde_json::from_str(&std::fs::read_to_string(&self.accounts).unwrap()).unwrap();
        all[login]["email_verified"] = json!(verified);
        std::fs::write(&self.accounts, all.to_string()).unwrap();
    }

    /// Moves the provider's clock forward.
    pub async fn advance(&self, d: Duration) {
        let url = format!("{}/__test/advance?ms={}", self.issuer, d.as_millis());
        assert_eq!(self.http.post(url).send().await.unwrap().status(), 204);
    }

    /// New signing key and fresh provider state (all refresh tokens die).
    pub async fn rotate(&self) {
        let url = format!("{}/__test/rotate", self.issuer);
        assert_eq!(self.http.post(url).send().await.unwrap().status(), 204);
    }

    /// Answers each token request `d` late (zero: at once).
    pub async fn hold_tokens(&self, d: Duration) {
        let url = format!("{}/__test/hold?ms={}", self.issuer, d.as_millis());
        assert_eq!(self.http.post(url).send().await.unwrap().status(), 204);
    }

    /// Answers only the next token request `d` late.
    pub async fn hold_next_token(&self, d: Duration) {
        let url = format!("{}/__test/hold?ms={}&count=1", self.issuer, d.as_millis());
        assert_eq!(self.http.post(url).send().await.unwrap().status(), 204);
    }

    /// How many token requests are being held right now.
    pub async fn tokens_held(&self) -> u32 {
        let url = format!("{}/__test/held", self.issuer);
        self.http.get(url).send().await.unwrap().text().await.unwrap().trim().parse().unwrap()
    }

    /// Stops the provider (an outage).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A page the browser ended on.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub url: String,
    pub body: String,
    pub headers: reqwest::header::HeaderMap,
}

/// An HTTP client that behaves like a browser for these flows.
pub struct Browser {
    http: reqwest::Client,
}

fn attr(body: &str, pattern: &str) -> Option<String> {
    let re = regex::Regex::new(pattern).unwrap();
    re.captures(body).map(|c| c[1].replace("&amp;", "&"))
}

impl Browser {
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    fn absolute(base: &str, location: &str) -> String {
        reqwest::Url::parse(base).unwrap().join(location).unwrap().to_string()
    }

    /// Follows redirects until a page, or until `stop` says to stop at a URL.
    pub async fn follow(&self, mut resp: reqwest::Response, stop: &dyn Fn(&str) -> bool) -> Page {
        loop {
            let url = resp.url().to_string();
            if resp.status().is_redirection() {
                let location = resp.headers()["location"].to_str().unwrap().to_owned();
                let next = Self::absolute(&url, &location);
                if stop(&next) {
                    let headers = resp.headers().clone();
                    return Page { status: resp.status().as_u16(), url: next, body: String::new(), headers };
                }
                resp = self.http.get(next).send().await.unwrap();
                continue;
            }
            let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
            return Page { status, url, body: resp.text().await.unwrap(), headers };
        }
    }

    pub async fn get(&self, url: &str) -> Page {
        let resp = self.http.get(url).send().await.unwrap();
        self.follow(resp, &|_| false).await
    }

    pub async fn post(&self, url: &str, form: &[(&str, &str)], stop: &dyn Fn(&str) -> bool) -> Page {
        let resp = self.http.post(url).form(form).send().await.unwrap();
        self.follow(resp, stop).await
    }

    /// Opens a `/jit link` URL, confirms, and stops right before the IdP
    /// (the returned page's `url` is the authorization request).
    pub async fn open_link(&self, link_url: &str) -> Page {
        let page = self.get(link_url).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let token = attr(&page.body, r#"name="token" value="([^"]+)""#).expect("the confirmation page has a form");
        let start = Self::absolute(link_url, "/oidc/start");
        self.post(&start, &[("token", &token)], &|next| next.contains("/auth?")).await
    }

    /// Signs in at the IdP from its authorization URL (login and consent
    /// forms as needed) and follows the way back to jitbot; `stop` may halt
    /// before the callback.
    pub async fn sign_in(&self, authorize_url: &str, login: &str, stop: &dyn Fn(&str) -> bool) -> Page {
        let mut page = self.follow(self.http.get(authorize_url).send().await.unwrap(), stop).await;
        for _ in 0..4 {
            if page.body.contains(r#"name="login""#) {
                let action = attr(&page.body, r#"action="([^"]+)""#).unwrap();
                let url = Self::absolute(&page.url, &action);
                page = self.post(&url, &[("prompt", "login"), ("login", login), ("password", "any")], stop).await;
            } else if page.body.contains(r#"value="consent""#) {
                let action = attr(&page.body, r#"action="([^"]+)""#).unwrap();
                let url = Self::absolute(&page.url, &action);
                page = self.post(&url, &[("prompt", "consent")], stop).await;
            } else {
                break;
            }
        }
        page
    }
}

/// Slack environment + provider, with jitbot's `[idp]` pointing at it.
pub struct OidcEnv {
    pub env: SlackEnv,
    pub idp: TestIdp,
    pub public_url: String,
}

pub struct OidcOptions {
    pub groups_in_id_token: bool,
    pub offline_access: bool,
    pub edit: fn(String) -> String,
    pub issuer_override: Option<String>,
    pub id_token_ttl_secs: u64,
    /// Appended to the config after `[idp]` (providers, roles).
    pub extra_toml: String,
    /// SQLite or PostgreSQL.
    pub backend: crate::support::Backend,
}

impl Default for OidcOptions {
    fn default() -> Self {
        Self {
            groups_in_id_token: true,
            offline_access: false,
            edit: |s| s,
            issuer_override: None,
            id_token_ttl_secs: 3600,
            extra_toml: String::new(),
            backend: crate::support::Backend::Sqlite,
        }
    }
}

impl OidcEnv {
    pub async fn start(options: OidcOptions) -> Self {
        let port = free_port();
        let public_url = format!("http://127.0.0.1:{port}");
        let idp = TestIdp::start(
            &format!("{public_url}/oidc/callback"),
            options.groups_in_id_token,
            options.id_token_ttl_secs,
        );
        let scopes = if options.offline_access {
            r#"["openid", "email", "profile", "groups", "offline_access"]"#
        } else {
            r#"["openid", "email", "profile", "groups"]"#
        };
        let issuer = options.issuer_override.unwrap_or_else(|| idp.issuer.clone());
        let extra_toml = format!(
            "\n[idp]\nissuer = \"{issuer}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\n\
             display_name = \"Test IdP\"\nscopes = {scopes}\ntoken_encryption_key = \"{TOKEN_KEY}\"\n{}",
            options.extra_toml
        );
        let env = SlackEnv::start_with(SlackEnvOptions {
            extra_toml,
            port: Some(port),
            // The provider runs on real time; the manual clock starts there too
            // and both are advanced together.
            start: SystemClock.now(),
            links: false,
            edit: options.edit,
            backend: options.backend,
            ..Default::default()
        })
        .await;
        Self { env, idp, public_url }
    }

    /// Advances jitbot's manual clock and the provider's clock together.
    pub async fn advance(&self, d: Duration) {
        self.idp.advance(d).await;
        self.env.clock.advance(d);
    }

    /// Advances only jitbot's clock (the provider is down).
    pub fn advance_jitbot_only(&self, d: Duration) {
        self.env.clock.advance(d);
    }

    /// The sign-in URL from an ephemeral answer's button.
    pub fn link_url(answer: &Value) -> String {
        answer["blocks"]
            .as_array()
            .and_then(|blocks| blocks.iter().find(|b| b["type"] == "actions"))
            .and_then(|b| b["elements"][0]["url"].as_str())
            .unwrap_or_else(|| panic!("no sign-in button in {answer}"))
            .to_owned()
    }

    /// `/jit link` as `user_id`, then the whole browser flow as `login`.
    pub async fn link(&self, user_id: &str, login: &str) -> Page {
        let answer = self.env.command_json(user_id, "link").await;
        self.complete(&Self::link_url(&answer), login).await
    }

    /// Links `user_id` as `login` and asserts it worked.
    pub async fn linked(&self, user_id: &str, login: &str) {
        let page = self.link(user_id, login).await;
        assert!(page.body.contains("Linked as"), "{page:?}");
    }

    /// The browser flow for a sign-in URL.
    pub async fn complete(&self, link_url: &str, login: &str) -> Page {
        let browser = Browser::new();
        let at_idp = browser.open_link(link_url).await;
        assert!(at_idp.url.contains("/auth?"), "expected a redirect to the IdP: {at_idp:?}");
        browser.sign_in(&at_idp.url, login, &|_| false).await
    }
}

/// Runs a sign-in for the *other* application and exchanges its code by
/// hand: a real ID token, issued for another audience. Returns it with the
/// nonce it carries.
pub async fn other_apps_id_token(idp: &TestIdp, login: &str) -> (String, String) {
    let nonce = "nonce-of-the-other-app";
    let verifier = "a-pkce-verifier-that-is-long-enough-for-the-rfc-7636-rules-0123";
    let challenge = {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
    };
    let mut url = reqwest::Url::parse(&format!("{}/auth", idp.issuer)).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", OTHER_CLIENT_ID)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid email")
        .append_pair("redirect_uri", OTHER_REDIRECT)
        .append_pair("state", "state-of-the-other-app")
        .append_pair("nonce", nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let browser = Browser::new();
    let page = browser.sign_in(url.as_str(), login, &|next| next.starts_with(OTHER_REDIRECT)).await;
    let code = reqwest::Url::parse(&page.url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no code in {page:?}"));
    let tokens: Value = reqwest::Client::new()
        .post(format!("{}/token", idp.issuer))
        .basic_auth(OTHER_CLIENT_ID, Some(OTHER_CLIENT_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", OTHER_REDIRECT),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (tokens["id_token"].as_str().unwrap_or_else(|| panic!("no id_token: {tokens}")).to_owned(), nonce.to_owned())
}
