//! One-line, redacted summaries of the errors Socket Mode reports.
//!
//! slack-morphism hands its error handler errors whose `Display` carries
//! the whole envelope it could not parse (`Body: '{...}'`), and Slack's
//! envelopes carry `response_url`s (which let anyone answer as the bot for
//! 30 minutes), trigger ids and what people typed into forms. A log line
//! gets only what an operator needs to act: the kind of error, where in the
//! JSON it failed, the body's size and the envelope type.
//!
//! What lives elsewhere: the Socket Mode connection ([`super::socket`]).

use std::error::Error;

use slack_morphism::errors::{SlackClientError, SlackClientProtocolError};

/// Longest text (in characters) taken from an error we do not know.
const MAX_UNKNOWN: usize = 200;

/// A summary of `err` that is safe to log at WARN.
pub fn summarize(err: &(dyn Error + 'static)) -> String {
    if let Some(e) = err.downcast_ref::<SlackClientError>() {
        return match e {
            SlackClientError::ProtocolError(p) => protocol(p),
            SlackClientError::ApiError(a) => format!("Slack API error {}", word(&a.code)),
            SlackClientError::HttpError(h) => format!("Slack HTTP error {}", h.status_code),
            SlackClientError::RateLimitError(r) => format!("Slack rate limit, retry after {:?}", r.retry_after),
            SlackClientError::EndOfStream(_) => "Slack closed the stream".to_owned(),
            SlackClientError::SocketModeProtocolError(p) => {
                format!("Socket Mode protocol error: {}", scrub(&p.message))
            }
            SlackClientError::HttpProtocolError(_) => "Slack HTTP protocol error".to_owned(),
            SlackClientError::SystemError(s) => {
                format!("Slack system error: {}", scrub(s.message.as_deref().unwrap_or("")))
            }
        };
    }
    if let Some(p) = err.downcast_ref::<SlackClientProtocolError>() {
        return protocol(p);
    }
    if let Some(j) = err.downcast_ref::<serde_json::Error>() {
        return json(j);
    }
    scrub(&err.to_string())
}

fn protocol(p: &SlackClientProtocolError) -> String {
    let body = p.json_body.as_deref().unwrap_or("");
    let kind = envelope_type(body).map(|t| format!(", envelope type {t}")).unwrap_or_default();
    format!("malformed Slack envelope ({}; {} bytes{kind})", json(&p.json_error), body.len())
}

/// serde_json's message quotes the offending value; this keeps only its
/// category and position.
fn json(e: &serde_json::Error) -> String {
    format!("JSON {:?} error at line {} column {}", e.classify(), e.line(), e.column())
}

/// The envelope's `type` (and its payload's), when the body is JSON at all.
fn envelope_type(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let outer = v.get("type").and_then(|t| t.as_str()).map(word)?;
    match v.get("payload").and_then(|p| p.get("type")).and_then(|t| t.as_str()) {
        Some(inner) => Some(format!("{outer}/{}", word(inner))),
        None => Some(outer),
    }
}

/// An identifier-like word, or `?`: Slack's codes and types are such words.
fn word(s: &str) -> String {
    if !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
        s.to_owned()
    } else {
        "?".to_owned()
    }
}

/// Text of an error we do not know: quoted parts, URLs and tokens removed,
/// and cut short.
fn scrub(text: &str) -> String {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match quote {
            Some(q) if c == q => {
                out.push('…');
                out.push(c);
                quote = None;
            }
            Some(_) => {}
            None if c == '"' || c == '\'' || c == '`' => {
                out.push(c);
                quote = Some(c);
            }
            None => out.push(c),
        }
    }
    if quote.is_some() {
        out.push('…');
    }
    let words: Vec<&str> = out
        .split_whitespace()
        .map(|w| {
            let lower = w.to_ascii_lowercase();
            if lower.contains("://") || ["xox", "xapp-", "hooks.slack"].iter().any(|p| lower.contains(p)) {
                "[REDACTED]"
            } else {
                w
            }
        })
        .collect();
    let joined = words.join(" ");
    if joined.chars().count() > MAX_UNKNOWN {
        format!("{}…", joined.chars().take(MAX_UNKNOWN).collect::<String>())
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENVELOPE: &str = r#"{"type":"slash_commands","envelope_id":"e1","payload":{"type":"block_actions","response_url":"https://hooks.slack.com/commands/T1/123/secret-hook","text":"my private reason","trigger_id":"trig-42"}}"#;

    fn parse_failure() -> serde_json::Error {
        match serde_json::from_str::<u32>(r#""https://hooks.slack.com/commands/T1/123/secret-hook""#) {
            Err(e) => e,
            Ok(_) => unreachable!(),
        }
    }

    #[test]
    fn a_malformed_envelope_is_summarised_without_its_contents() {
        let err: Box<dyn Error + Send + Sync> =
            SlackClientProtocolError::new(parse_failure()).with_json_body(ENVELOPE.to_owned()).into();
        // What slack-morphism's own Display would have logged.
        assert!(err.to_string().contains("secret-hook"));
        let shown = summarize(err.as_ref());
        for secret in ["secret-hook", "hooks.slack.com", "my private reason", "trig-42"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("slash_commands/block_actions"), "{shown}");
        assert!(shown.contains(&format!("{} bytes", ENVELOPE.len())), "{shown}");

        let wrapped: Box<dyn Error + Send + Sync> = Box::new(SlackClientError::ProtocolError(
            SlackClientProtocolError::new(parse_failure()).with_json_body(ENVELOPE.to_owned()),
        ));
        let shown = summarize(wrapped.as_ref());
        assert!(!shown.contains("secret-hook") && shown.contains("malformed Slack envelope"), "{shown}");
    }

    #[test]
    fn json_and_unknown_errors_lose_quoted_values_urls_and_tokens() {
        let err: Box<dyn Error + Send + Sync> = Box::new(parse_failure());
        let shown = summarize(err.as_ref());
        assert!(!shown.contains("secret-hook"), "{shown}");
        assert!(shown.contains("line 1"), "{shown}");

        let err: Box<dyn Error + Send + Sync> =
            "posting to https://hooks.slack.com/x/y failed with xoxb-123 and 'form value'".into();
        let shown = summarize(err.as_ref());
        for secret in ["hooks.slack.com", "xoxb-123", "form value"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("posting to"), "{shown}");

        let api: Box<dyn Error + Send + Sync> = Box::new(SlackClientError::ApiError(
            slack_morphism::errors::SlackClientApiError::new("invalid_auth".into())
                .with_http_response_body("{\"response_url\":\"https://hooks.slack.com/z\"}".into()),
        ));
        assert_eq!(summarize(api.as_ref()), "Slack API error invalid_auth");
    }
}
