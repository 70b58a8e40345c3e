//! The HTTP server's own bounds: a body limit per route, a request timeout
//! and a limit on requests in flight, so slow or numerous clients cannot
//! hold tasks, connections and memory without bound.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::slack::{SlackEnv, SlackEnvOptions};

/// An `[idp]` whose issuer is not reachable: the OIDC routes are mounted
/// all the same (discovery is retried on the next sign-in).
const IDP: &str = "\n[idp]\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"jitbot\"\nclient_secret = \"secret-0123\"\n";

async fn env() -> SlackEnv {
    SlackEnv::start_with(SlackEnvOptions {
        extra_toml: IDP.into(),
        edit: |text| {
            text.replacen("[server]\n", "[server]\nrequest_timeout = \"2s\"\nmax_concurrent_requests = 2\n", 1)
        },
        ..Default::default()
    })
    .await
}

async fn env_with_short_idle_timeout() -> SlackEnv {
    SlackEnv::start_with(SlackEnvOptions {
        edit: |text| text.replacen("[server]\n", "[server]\nidle_timeout = \"2s\"\n", 1),
        ..Default::default()
    })
    .await
}

/// Sends a form POST's headers and only the start of its body, as a slow
/// (or malicious) client would, and leaves the connection open.
async fn slow_post(base: &str, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: jitbot\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: 100\r\n\r\ntoken="
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// The status line of the answer on `stream`.
async fn status_line(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the connection closed without an answer");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_sign_in_form_is_refused_with_413() {
    let env = env().await;
    let http = reqwest::Client::new();
    let url = format!("{}/oidc/start", env.base);
    let big = "a".repeat(20 * 1024);
    let resp = http.post(&url).form(&[("token", big.as_str())]).send().await.unwrap();
    assert_eq!(resp.status(), 413);
    // A form of the usual size is read and answered.
    let resp = http.post(&url).form(&[("token", "not-a-real-token")]).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_requests_are_cut_off_and_a_flood_gets_503_at_once() {
    let env = env().await;
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut first = slow_post(&env.base, "/oidc/start").await;
    let mut second = slow_post(&env.base, "/oidc/start").await;

    // Both slots are taken: the next request is refused at once, not queued.
    let readyz = format!("{}/readyz", env.base);
    let refused = loop {
        let asked = Instant::now();
        let resp = http.get(&readyz).send().await.unwrap();
        if resp.status() == 503 {
            break (asked.elapsed(), resp);
        }
        assert!(started.elapsed() < Duration::from_secs(2), "the slow requests never took the slots");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(refused.0 < Duration::from_secs(1), "refused quickly: {:?}", refused.0);
    assert_eq!(refused.1.headers()["retry-after"], "1");
    // Liveness is always answered.
    assert_eq!(http.get(format!("{}/healthz", env.base)).send().await.unwrap().status(), 200);

    // The slow requests are cut off by the 2 s timeout, without the rest of their bodies.
    for stream in [&mut first, &mut second] {
        let line = tokio::time::timeout(Duration::from_secs(20), status_line(stream)).await.expect("an answer");
        assert!(line.starts_with("HTTP/1.1 503"), "{line}");
    }
    assert!(started.elapsed() >= Duration::from_millis(1900), "{:?}", started.elapsed());
    // And their slots are free again.
    assert_eq!(http.get(&readyz).send().await.unwrap().status(), 200);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slash_command_over_the_limit_is_told_jitbot_is_busy_not_given_a_503() {
    let env = env().await;
    let http = reqwest::Client::new();
    let started = Instant::now();
    let _first = slow_post(&env.base, "/oidc/start").await;
    let _second = slow_post(&env.base, "/oidc/start").await;
    let commands = format!("{}/slack/commands", env.base);
    let (elapsed, body) = loop {
        let asked = Instant::now();
        let resp = http
            .post(&commands)
            .form(&[("command", "/jit"), ("text", "request prod-db-readonly 1h x")])
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap();
        if body.contains("busy") {
            assert_eq!(status, 200, "{body}");
            break (asked.elapsed(), body);
        }
        assert!(started.elapsed() < Duration::from_secs(2), "the slow requests never took the slots: {status} {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(elapsed < Duration::from_secs(1), "answered at once: {elapsed:?}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["response_type"], "ephemeral");
    assert!(answer["text"].as_str().unwrap().contains("nothing was changed"), "{answer}");
    // Other routes keep the plain 503.
    assert_eq!(http.get(format!("{}/readyz", env.base)).send().await.unwrap().status(), 503);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_trickles_its_headers_is_cut_off() {
    let env = env_with_short_idle_timeout().await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(env.base.trim_start_matches("http://")).await.unwrap();
    stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: jitbot\r\n").await.unwrap();
    // The rest of the head never comes: the server ends the connection by itself.
    let mut got = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection was held open");
    let answer = String::from_utf8_lossy(&got);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(1900), "{:?}", started.elapsed());
    // Whole requests are served as before.
    assert_eq!(reqwest::get(format!("{}/readyz", env.base)).await.unwrap().status(), 200);
    env.stop().await;
}
