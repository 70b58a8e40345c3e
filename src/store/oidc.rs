//! Rows of the OIDC linking flow: link tokens and in-flight logins. Tokens
//! and states are only ever stored as hashes.

use crate::domain::{SlackUser, Timestamp};

use super::single_use::SingleUse;
use super::{Db, StoreResult, Tx, on_conn};

/// A link token, looked up by hash.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LinkTokenRow {
    /// Slack workspace it was issued for.
    pub team_id: String,
    /// Slack user it was issued for.
    pub user_id: String,
    /// Required freshness of the IdP authentication (step-up), if any.
    pub max_age_ms: Option<i64>,
    /// When it stops working.
    pub expires_at: i64,
    /// When it was consumed.
    pub used_at: Option<i64>,
}

/// An in-flight login, looked up by the hash of its `state`.
#[derive(Clone, sqlx::FromRow)]
pub struct LoginRow {
    /// The link token it continues.
    pub token_hash: String,
    /// Hash of the browser-binding cookie.
    pub browser_hash: String,
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// The PKCE verifier for the code exchange.
    pub pkce_verifier: String,
    /// When it stops working.
    pub expires_at: i64,
    /// When its callback was used.
    pub used_at: Option<i64>,
}

// Written by hand so that the PKCE verifier never reaches a log line.
impl std::fmt::Debug for LoginRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRow")
            .field("token_hash", &self.token_hash)
            .field("browser_hash", &self.browser_hash)
            .field("nonce", &self.nonce)
            .field("pkce_verifier", &"[REDACTED]")
            .field("expires_at", &self.expires_at)
            .field("used_at", &self.used_at)
            .finish()
    }
}

impl Db {
    /// Deletes link tokens, logins and browser sessions that expired more
    /// than a day ago, so unused sign-in rows do not pile up.
    pub async fn purge_expired_sign_ins(&self, now: Timestamp) -> StoreResult<()> {
        let cutoff = now.millis() - 86_400_000;
        on_conn!(write self, |c| {
            sqlx::query("DELETE FROM link_tokens WHERE expires_at < $1").bind(cutoff).execute(&mut *c.acquire().await?).await?;
            sqlx::query("DELETE FROM oidc_logins WHERE expires_at < $1").bind(cutoff).execute(&mut *c.acquire().await?).await?;
            sqlx::query("DELETE FROM browser_sessions WHERE expires_at < $1").bind(cutoff).execute(&mut *c.acquire().await?).await?;
        });
        Ok(())
    }

    /// Stores a new link token.
    pub async fn insert_link_token(
        &self,
        token_hash: &str,
        user: &SlackUser,
        max_age_ms: Option<i64>,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> StoreResult<()> {
        on_conn!(write self, |c| {
            sqlx::query(
                "INSERT INTO link_tokens (token_hash, team_id, user_id, max_age_ms, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(token_hash)
            .bind(user.team_id())
            .bind(user.user_id())
            .bind(max_age_ms)
            .bind(now.millis())
            .bind(expires_at.millis())
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// Reads a link token.
    pub async fn link_token(&self, token_hash: &str) -> StoreResult<Option<LinkTokenRow>> {
        Ok(on_conn!(db self, |c| {
            sqlx::query_as::<_, LinkTokenRow>(
                "SELECT team_id, user_id, max_age_ms, expires_at, used_at FROM link_tokens WHERE token_hash = $1",
            )
            .bind(token_hash)
            .fetch_optional(c)
            .await?
        }))
    }

    /// Stores a login started in a browser, unless its link token already
    /// has `max_per_token` logins stored (then `false`): one statement, so
    /// concurrent starts cannot pass the limit together by much.
    pub async fn insert_login(
        &self,
        state_hash: &str,
        row: &LoginRow,
        max_per_token: i64,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let n = on_conn!(write self, |c| {
            sqlx::query(
                "INSERT INTO oidc_logins (state_hash, token_hash, browser_hash, nonce, pkce_verifier, created_at, expires_at)
                 SELECT $1, $2, $3, $4, $5, $6, $7
                 WHERE (SELECT COUNT(*) FROM oidc_logins WHERE token_hash = $2) < $8",
            )
            .bind(state_hash)
            .bind(&row.token_hash)
            .bind(&row.browser_hash)
            .bind(&row.nonce)
            .bind(&row.pkce_verifier)
            .bind(now.millis())
            .bind(row.expires_at)
            .bind(max_per_token)
            .execute(c)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Marks a login's state used and returns it, exactly once: a second
    /// callback with the same state gets `None`.
    pub async fn take_login(&self, state_hash: &str, now: Timestamp) -> StoreResult<Option<LoginRow>> {
        Ok(on_conn!(write self, |c| {
            sqlx::query_as::<_, LoginRow>(
                "UPDATE oidc_logins SET used_at = $2 WHERE state_hash = $1 AND used_at IS NULL
                 RETURNING token_hash, browser_hash, nonce, pkce_verifier, expires_at, used_at",
            )
            .bind(state_hash)
            .bind(now.millis())
            .fetch_optional(c)
            .await?
        }))
    }
}

impl Db {
    /// Stores a browser session (its cookie value hashed).
    pub async fn insert_browser_session(
        &self,
        session_hash: &str,
        issuer: &str,
        subject: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> StoreResult<()> {
        on_conn!(write self, |c| {
            sqlx::query(
                "INSERT INTO browser_sessions (session_hash, issuer, subject, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(session_hash)
            .bind(issuer)
            .bind(subject)
            .bind(now.millis())
            .bind(expires_at.millis())
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// The `(issuer, subject)` of an unexpired browser session.
    pub async fn browser_session(&self, session_hash: &str, now: Timestamp) -> StoreResult<Option<(String, String)>> {
        Ok(on_conn!(db self, |c| {
            sqlx::query_as::<_, (String, String)>(
                "SELECT issuer, subject FROM browser_sessions WHERE session_hash = $1 AND expires_at > $2",
            )
            .bind(session_hash)
            .bind(now.millis())
            .fetch_optional(c)
            .await?
        }))
    }
}

/// What a refresh confirmed about a link.
#[derive(Debug, Clone, Copy)]
pub struct LinkConfirmation<'a> {
    /// The groups, as a JSON array.
    pub groups_json: &'a str,
    /// The kept claims, as a JSON object.
    pub claims_json: &'a str,
    /// When the person last authenticated, epoch ms, if the IdP said.
    pub auth_time: Option<i64>,
    /// The rotated refresh token (encrypted), if the IdP issued one.
    pub refresh_token: Option<&'a str>,
}

impl Tx {
    /// Consumes a link token if it is unused and unexpired; `false` otherwise.
    pub async fn consume_link_token(&mut self, token_hash: &str, now: Timestamp) -> StoreResult<bool> {
        self.use_up_token(SingleUse::LinkToken, token_hash, now).await
    }

    /// Records the groups and kept claims (and rotated refresh token) a
    /// refresh confirmed, only if the link is still at `version` (as read
    /// before the round trip to the IdP); `false` when it changed meanwhile
    /// (relinked, groups removed over SCIM, removed) and nothing was written.
    pub async fn confirm_link(
        &mut self,
        user: &SlackUser,
        version: i64,
        fresh: &LinkConfirmation<'_>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let LinkConfirmation { groups_json, claims_json, auth_time, refresh_token } = *fresh;
        let n = on_conn!(tx self, |c| {
            sqlx::query(
                "UPDATE identity_links SET groups_json = $3, auth_time = COALESCE($4, auth_time),
                   refresh_token = COALESCE($5, refresh_token), confirmed_at = $6, claims_json = $7,
                   version = version + 1
                 WHERE team_id = $1 AND user_id = $2 AND version = $8",
            )
            .bind(user.team_id())
            .bind(user.user_id())
            .bind(groups_json)
            .bind(auth_time)
            .bind(refresh_token)
            .bind(now.millis())
            .bind(claims_json)
            .bind(version)
            .execute(c)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Stores a rotated refresh token only, if the link still holds the
    /// token it was rotated from (a refresh whose groups were dropped because
    /// the link changed meanwhile must not lose the IdP's new token).
    pub async fn rotate_refresh_token(&mut self, user: &SlackUser, from: &str, to: &str) -> StoreResult<bool> {
        let n = on_conn!(tx self, |c| {
            sqlx::query(
                "UPDATE identity_links SET refresh_token = $4
                 WHERE team_id = $1 AND user_id = $2 AND refresh_token = $3",
            )
            .bind(user.team_id())
            .bind(user.user_id())
            .bind(from)
            .bind(to)
            .execute(c)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }
}

#[cfg(test)]
mod debug_tests {
    use super::LoginRow;

    #[test]
    fn debug_of_a_login_hides_the_pkce_verifier() {
        let row = LoginRow {
            token_hash: "th".into(),
            browser_hash: "bh".into(),
            nonce: "n".into(),
            pkce_verifier: "verifier-secret-0123456789".into(),
            expires_at: 1,
            used_at: None,
        };
        let shown = format!("{row:?}");
        assert!(!shown.contains("verifier-secret"), "{shown}");
        assert!(shown.contains("[REDACTED]"), "{shown}");
    }
}
