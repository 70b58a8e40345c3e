//! Single-use tokens: link tokens (`/jit link`) and credentials links are
//! both stored only as hashes and used by one conditional `UPDATE`, so that
//! of two concurrent redemptions exactly one wins. Written once here.

use crate::domain::Timestamp;

use super::{StoreResult, Tx, on_conn};

/// A table of single-use tokens, keyed by `token_hash`.
#[derive(Debug, Clone, Copy)]
pub(super) enum SingleUse {
    /// `link_tokens`: unused and unexpired.
    LinkToken,
    /// `credential_tokens`: unused, not replaced by a newer link, unexpired.
    CredentialToken,
}

impl SingleUse {
    /// The statement that uses a token up (`$1` its hash, `$2` now).
    fn use_up(self) -> &'static str {
        match self {
            SingleUse::LinkToken => {
                "UPDATE link_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2"
            }
            SingleUse::CredentialToken => {
                "UPDATE credential_tokens SET used_at = $2
                 WHERE token_hash = $1 AND used_at IS NULL AND superseded_at IS NULL AND expires_at > $2"
            }
        }
    }
}

impl Tx {
    /// Marks the token used if it is still usable; `false` if it was used,
    /// replaced or expired (or a concurrent redemption won).
    pub(super) async fn use_up_token(
        &mut self,
        table: SingleUse,
        token_hash: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let n = on_conn!(tx self, |c| {
            sqlx::query(table.use_up())
                .bind(token_hash)
                .bind(now.millis())
                .execute(c)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }
}
