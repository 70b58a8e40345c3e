//! The review queue for break-glass: a request the requester approved alone
//! stays flagged until someone has looked at it afterwards. Operators list
//! the flagged requests and mark each reviewed with a note
//! (`jitbot review list` / `jitbot review done`); both the flag and the
//! review are in the audit trail, so an auditor can see that every
//! break-glass was followed up, by whom and when.

use super::{Refusal, Service, ServiceError, ServiceResult};
use crate::audit::{self, Actor, Event};
use crate::domain::{AccessRequest, RequestId, Timestamp};

/// The shortest review note accepted: "ok" says nothing to an auditor.
pub const REVIEW_NOTE_MIN: usize = 4;

impl Service {
    /// Break-glass requests not yet reviewed, oldest first.
    pub async fn awaiting_review(&self) -> ServiceResult<Vec<AccessRequest>> {
        Ok(self.db.requests_for_review().await?)
    }

    /// Marks request `id` reviewed by `actor` with `note` (audited).
    #[tracing::instrument(skip_all, fields(request_id = id.get(), actor = %actor))]
    pub async fn mark_reviewed(&self, id: RequestId, actor: &Actor, note: &str, now: Timestamp) -> ServiceResult<()> {
        let note = note.trim();
        if note.chars().count() < REVIEW_NOTE_MIN {
            return Err(ServiceError::NotAllowed(Refusal::ReviewNoteTooShort));
        }
        let mut tx = self.db.begin().await?;
        let Some(request) = tx.request(id).await? else { return Err(ServiceError::NotFound(id)) };
        if !tx.mark_reviewed(id).await? {
            return Err(ServiceError::NotAllowed(Refusal::NotWaitingForReview(id)));
        }
        let event = Event::RequestReviewed {
            note,
            role: request.role.as_str(),
            requester: &request.requester,
            break_glass_reason: request.break_glass_reason.as_deref(),
        };
        audit::append(&mut tx, now, actor, Some(id), event).await?;
        tx.commit().await?;
        Ok(())
    }
}
