//! The URLs in the config (`server.public_url`, `slack.api_url`,
//! `idp.issuer`, a webhook provider's `url`), parsed once at load and kept
//! parsed, so nothing after load re-checks a string. Each error names its
//! key; the TOML parser adds the line.

use std::fmt;

use serde::{Deserialize, Deserializer};
pub use url::Url;

/// Parses `raw`, the value of `key`, as an `http://` or `https://` URL.
pub fn parse_http_url(key: &str, raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("{key}: {raw:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{key} must be an http:// or https:// URL, not {raw:?}"));
    }
    Ok(url)
}

/// `url` as a base that paths are appended to: its text without a trailing
/// slash (`Url` writes one after a bare host).
pub fn base_of(url: &Url) -> &str {
    url.as_str().trim_end_matches('/')
}

/// The OIDC issuer exactly as configured. Discovery and every ID token
/// must name the issuer character for character (a trailing slash
/// matters), and `Url` would normalise it, so the text is kept as written
/// next to its parsed form.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuerUrl {
    text: String,
    url: Url,
}

impl IssuerUrl {
    /// Checks that `raw` is an http(s) URL (`idp.issuer`).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let url = parse_http_url("idp.issuer", raw)?;
        Ok(Self { text: raw.to_owned(), url })
    }

    /// The issuer as configured, for exact comparison.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The issuer, parsed.
    pub fn url(&self) -> &Url {
        &self.url
    }
}

impl fmt::Display for IssuerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for IssuerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

impl<'de> Deserialize<'de> for IssuerUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        IssuerUrl::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// `server.public_url`.
pub(super) fn public_url<'de, D: Deserializer<'de>>(d: D) -> Result<Url, D::Error> {
    let raw = String::deserialize(d)?;
    parse_http_url("server.public_url", &raw).map_err(serde::de::Error::custom)
}

/// `slack.api_url`: methods are appended as `{api_url}/{method}`, so a
/// trailing slash would double.
pub(super) fn slack_api_url<'de, D: Deserializer<'de>>(d: D) -> Result<Url, D::Error> {
    let raw = String::deserialize(d)?;
    let url = parse_http_url("slack.api_url", &raw).map_err(serde::de::Error::custom)?;
    if raw.ends_with('/') {
        return Err(serde::de::Error::custom("slack.api_url must be an http(s) URL without a trailing slash"));
    }
    Ok(url)
}

/// A webhook provider's `url` (the table's name is in the parser's
/// location of the error).
pub(super) fn webhook_url<'de, D: Deserializer<'de>>(d: D) -> Result<Url, D::Error> {
    let raw = String::deserialize(d)?;
    parse_http_url("the webhook provider's url", &raw).map_err(serde::de::Error::custom)
}

/// A URL written in this source, for defaults.
pub(super) fn constant(text: &'static str) -> Url {
    // The defaults are literals checked by a test below.
    #[allow(clippy::expect_used)]
    Url::parse(text).expect("a constant URL parses")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issuer_keeps_its_trailing_slash_and_other_urls_their_key() {
        let issuer = IssuerUrl::parse("https://idp.example/realms/x/").unwrap();
        assert_eq!(issuer.as_str(), "https://idp.example/realms/x/");
        assert_eq!(IssuerUrl::parse("https://idp.example").unwrap().as_str(), "https://idp.example");
        let e = IssuerUrl::parse("idp.example").unwrap_err();
        assert!(e.starts_with("idp.issuer: "), "{e}");
        let e = parse_http_url("server.public_url", "ftp://x").unwrap_err();
        assert!(e.starts_with("server.public_url must be an http:// or https:// URL"), "{e}");
        assert_eq!(base_of(&constant("http://localhost:8080")), "http://localhost:8080");
        assert_eq!(base_of(&constant("https://slack.com/api")), "https://slack.com/api");
    }
}
