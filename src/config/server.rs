//! `[server]`: where jitbot listens and how long it serves one request.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::urls::{self, Url};
use super::{At, std_duration};

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The socket the HTTP server binds (`/healthz`, `/readyz`, and later `/slack/*`, `/oidc/*`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The address browsers use to reach jitbot; used in links jitbot sends
    /// (an http(s) URL, checked at load).
    #[serde(default = "default_public_url", deserialize_with = "urls::public_url")]
    pub public_url: Url,
    /// The longest one HTTP request may take, reading its body included;
    /// then it gets 503 and its work is dropped (a slow or stuck client
    /// cannot hold a connection and a task forever).
    #[serde(default = "default_request_timeout", deserialize_with = "std_duration")]
    pub request_timeout: Duration,
    /// Requests served at once; one more gets 503 at once instead of
    /// queueing without bound (`/healthz` is always answered).
    #[serde(default = "default_max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    /// How long a connection may wait for a request's head (request line
    /// and headers, counted from the connection's start or the previous
    /// response); then it is closed. Bounds clients that trickle headers;
    /// keep it longer than a load balancer's idle timeout (AWS ALB: 60 s),
    /// or the balancer reuses connections jitbot is closing.
    #[serde(default = "default_idle_timeout", deserialize_with = "std_duration")]
    pub idle_timeout: Duration,
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(75)
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_max_concurrent_requests() -> usize {
    256
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_public_url() -> Url {
    urls::constant("http://localhost:8080")
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            public_url: default_public_url(),
            request_timeout: default_request_timeout(),
            max_concurrent_requests: default_max_concurrent_requests(),
            idle_timeout: default_idle_timeout(),
        }
    }
}

impl ServerConfig {
    /// The limits: a zero timeout or no request slots would serve nothing.
    pub(super) fn validate(&self, at: &At) -> Result<(), String> {
        if self.request_timeout.is_zero() {
            return Err(format!(
                "{}server.request_timeout must be more than 0s",
                at("server", Some("request_timeout"))
            ));
        }
        if self.idle_timeout.is_zero() {
            return Err(format!("{}server.idle_timeout must be more than 0s", at("server", Some("idle_timeout"))));
        }
        if self.max_concurrent_requests == 0 {
            return Err(format!(
                "{}server.max_concurrent_requests must be at least 1",
                at("server", Some("max_concurrent_requests"))
            ));
        }
        Ok(())
    }

    /// The public URL as a base that paths (`/oidc/link/...`) are appended to.
    pub fn public_base(&self) -> &str {
        urls::base_of(&self.public_url)
    }
}
