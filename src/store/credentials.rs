//! Single-use links to the one-time credentials page. Only a token's
//! SHA-256 is stored, so a database dump does not hand out passwords.

use crate::domain::{RequestId, SlackUser, Timestamp};

use super::single_use::SingleUse;
use super::{Db, StoreResult, Tx, on_conn};

/// A stored credentials link.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CredentialTokenRow {
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    /// The request whose login it sets a password for.
    pub request_id: i64,
    /// The requester's workspace.
    pub team_id: String,
    /// The requester.
    pub user_id: String,
    /// When it stops working.
    pub expires_at: i64,
    /// When it was redeemed.
    pub used_at: Option<i64>,
    /// When a newer link for the same request replaced it.
    pub superseded_at: Option<i64>,
}

impl Tx {
    /// Stores a new link for `request`, retiring any unused earlier one (a
    /// retried DM sends a fresh link; only the newest works).
    pub async fn insert_credential_token(
        &mut self,
        token_hash: &str,
        request: RequestId,
        requester: &SlackUser,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<()> {
        on_conn!(tx self, |c| {
            sqlx::query(
                "UPDATE credential_tokens SET superseded_at = $2
                 WHERE request_id = $1 AND used_at IS NULL AND superseded_at IS NULL",
            )
            .bind(request.get())
            .bind(now.millis())
            .execute(&mut *c)
            .await?;
            sqlx::query(
                "INSERT INTO credential_tokens (token_hash, request_id, team_id, user_id, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(token_hash)
            .bind(request.get())
            .bind(requester.team_id())
            .bind(requester.user_id())
            .bind(now.millis())
            .bind(expires_at.millis())
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// Marks a link used if it is still usable; `false` if it was used,
    /// replaced or expired (or a concurrent redemption won).
    pub async fn claim_credential_token(&mut self, token_hash: &str, now: Timestamp) -> StoreResult<bool> {
        self.use_up_token(SingleUse::CredentialToken, token_hash, now).await
    }

    /// Gives a claimed link back after the password could not be set, so the
    /// requester can try again.
    pub async fn unclaim_credential_token(&mut self, token_hash: &str, claimed_at: Timestamp) -> StoreResult<()> {
        on_conn!(tx self, |c| {
            sqlx::query("UPDATE credential_tokens SET used_at = NULL WHERE token_hash = $1 AND used_at = $2")
                .bind(token_hash)
                .bind(claimed_at.millis())
                .execute(c)
                .await?;
        });
        Ok(())
    }
}

impl Db {
    /// The link with this token hash.
    pub async fn credential_token(&self, token_hash: &str) -> StoreResult<Option<CredentialTokenRow>> {
        Ok(on_conn!(db self, |c| {
            sqlx::query_as::<_, CredentialTokenRow>(
                "SELECT token_hash, request_id, team_id, user_id, expires_at, used_at, superseded_at
                 FROM credential_tokens WHERE token_hash = $1",
            )
            .bind(token_hash)
            .fetch_optional(c)
            .await?
        }))
    }
}
