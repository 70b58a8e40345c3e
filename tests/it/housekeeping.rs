//! Housekeeping the scheduler does on its own: expired sign-in rows go
//! away without anyone running `/jit link`.

use std::time::Duration;

use crate::support::{Backend, TestApp, both_backends};

both_backends!(expired_sign_in_rows_are_purged_without_anyone_linking);

const COUNT_ROWS: &str = "SELECT 'rows', (SELECT COUNT(*) FROM link_tokens) + (SELECT COUNT(*) FROM oidc_logins) \
                          + (SELECT COUNT(*) FROM browser_sessions)";

async fn rows(t: &TestApp) -> i64 {
    t.pairs(COUNT_ROWS).await[0].1
}

async fn sign_in_rows(t: &TestApp, tag: &str) {
    let now = t.now().millis();
    let expires = now + 600_000;
    // Not through `/jit link`: that use case cleans up on its own.
    t.exec(&format!(
        "INSERT INTO link_tokens (token_hash, team_id, user_id, created_at, expires_at)
         VALUES ('token-{tag}', 'T0WORKSPACE', 'U0ALICE', {now}, {expires})"
    ))
    .await;
    t.exec(&format!(
        "INSERT INTO oidc_logins (state_hash, token_hash, browser_hash, nonce, pkce_verifier, created_at, expires_at)
         VALUES ('state-{tag}', 'token-{tag}', 'browser', 'nonce', 'verifier', {now}, {expires})"
    ))
    .await;
    t.exec(&format!(
        "INSERT INTO browser_sessions (session_hash, issuer, subject, created_at, expires_at)
         VALUES ('session-{tag}', 'https://idp.example', 'alice', {now}, {expires})"
    ))
    .await;
}

async fn expired_sign_in_rows_are_purged_without_anyone_linking(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    t.drain().await;
    sign_in_rows(&t, "old").await;
    assert_eq!(rows(&t).await, 3);

    // Two days on, nobody has linked; the scheduler's next pass cleans up.
    t.advance(Duration::from_secs(2 * 86_400));
    sign_in_rows(&t, "new").await;
    t.drain().await;
    assert_eq!(rows(&t).await, 3, "the expired rows are gone, the fresh ones stay");
    let left = t.pairs("SELECT state_hash, expires_at FROM oidc_logins").await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].0, "state-new");
}
