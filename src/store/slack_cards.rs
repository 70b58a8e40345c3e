//! Where approval cards were posted, and a hash of what each last showed.

use crate::domain::{RequestId, Timestamp};

use super::{Db, StoreResult, on_conn};

/// A posted approval card.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CardRow {
    /// Channel id.
    pub channel: String,
    /// Message timestamp (Slack's message id).
    pub ts: String,
    /// A hash of the card as last drawn (`None` for cards posted before
    /// hashes were kept): an identical redraw is skipped.
    pub rendered_hash: Option<String>,
}

impl Db {
    /// The card of a request, if one was posted.
    pub async fn card(&self, id: RequestId) -> StoreResult<Option<CardRow>> {
        Ok(on_conn!(db self, |c| {
            sqlx::query_as::<_, CardRow>("SELECT channel, ts, rendered_hash FROM slack_cards WHERE request_id = $1")
                .bind(id.get())
                .fetch_optional(c)
                .await?
        }))
    }

    /// Remembers a posted card (the first one wins).
    pub async fn save_card(&self, id: RequestId, card: &CardRow, now: Timestamp) -> StoreResult<()> {
        on_conn!(write self, |c| {
            sqlx::query(
                "INSERT INTO slack_cards (request_id, channel, ts, created_at, rendered_hash) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (request_id) DO NOTHING",
            )
            .bind(id.get())
            .bind(&card.channel)
            .bind(&card.ts)
            .bind(now.millis())
            .bind(&card.rendered_hash)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// Remembers what the card of request `id` shows now.
    pub async fn set_card_hash(&self, id: RequestId, hash: &str) -> StoreResult<()> {
        on_conn!(write self, |c| {
            sqlx::query("UPDATE slack_cards SET rendered_hash = $2 WHERE request_id = $1")
                .bind(id.get())
                .bind(hash)
                .execute(c)
                .await?;
        });
        Ok(())
    }
}
