//! What the notifier needs besides the notice itself: where a request's
//! approval card was posted (so every later notice updates that message in
//! place instead of posting a new one), and the one-time credentials link
//! for the "access is active" DM. The notifier runs inside notify jobs and
//! reaches the database only through these.

use super::{Service, ServiceResult};
use crate::domain::{RequestId, Timestamp};
use crate::store::CardRow;

/// A posted approval card: the channel and Slack's message timestamp,
/// which together name the message to update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostedCard {
    /// Channel id.
    pub channel: String,
    /// Message timestamp (Slack's message id).
    pub ts: String,
}

impl Service {
    /// The card posted for request `id`, if one was.
    pub async fn posted_card(&self, id: RequestId) -> ServiceResult<Option<PostedCard>> {
        Ok(self.db.card(id).await?.map(|c| PostedCard { channel: c.channel, ts: c.ts }))
    }

    /// Remembers the card posted for request `id` (the first one saved wins).
    pub async fn remember_card(&self, id: RequestId, card: &PostedCard, now: Timestamp) -> ServiceResult<()> {
        let row = CardRow { channel: card.channel.clone(), ts: card.ts.clone() };
        Ok(self.db.save_card(id, &row, now).await?)
    }
}
