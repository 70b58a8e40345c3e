//! What the notifier needs besides the notice itself: where a request's
//! approval card was posted (so every later notice updates that message in
//! place instead of posting a new one) and what it last showed (so an
//! identical redraw costs no Slack call), and the one-time credentials link
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
    /// A hash of the card as last drawn, when known.
    pub rendered_hash: Option<String>,
}

impl Service {
    /// The card posted for request `id`, if one was.
    pub async fn posted_card(&self, id: RequestId) -> ServiceResult<Option<PostedCard>> {
        Ok(self.db.card(id).await?.map(|c| PostedCard { channel: c.channel, ts: c.ts, rendered_hash: c.rendered_hash }))
    }

    /// Remembers the card posted for request `id` (the first one saved wins).
    pub async fn remember_card(&self, id: RequestId, card: &PostedCard, now: Timestamp) -> ServiceResult<()> {
        let row =
            CardRow { channel: card.channel.clone(), ts: card.ts.clone(), rendered_hash: card.rendered_hash.clone() };
        Ok(self.db.save_card(id, &row, now).await?)
    }

    /// Remembers that the card of request `id` now shows what `hash` names.
    pub async fn remember_card_drawn(&self, id: RequestId, hash: &str) -> ServiceResult<()> {
        Ok(self.db.set_card_hash(id, hash).await?)
    }
}
