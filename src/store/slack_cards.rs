//! Where approval cards were posted.

use crate::domain::{RequestId, Timestamp};

use super::{Db, StoreResult, on_conn};

/// A posted approval card.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CardRow {
    /// Channel id.
    pub channel: String,
    /// Message timestamp (Slack's message id).
    pub ts: String,
}

impl Db {
    /// The card of a request, if one was posted.
    pub async fn card(&self, id: RequestId) -> StoreResult<Option<CardRow>> {
        Ok(on_conn!(db self, |c| {
            sqlx::query_as::<_, CardRow>("SELECT channel, ts FROM slack_cards WHERE request_id = $1")
                .bind(id.get())
                .fetch_optional(c)
                .await?
        }))
    }

    /// Remembers a posted card (the first one wins).
    pub async fn save_card(&self, id: RequestId, card: &CardRow, now: Timestamp) -> StoreResult<()> {
        on_conn!(db self, |c| {
            sqlx::query(
                "INSERT INTO slack_cards (request_id, channel, ts, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (request_id) DO NOTHING",
            )
            .bind(id.get())
            .bind(&card.channel)
            .bind(&card.ts)
            .bind(now.millis())
            .execute(c)
            .await?;
        });
        Ok(())
    }
}
