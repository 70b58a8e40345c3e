//! Sealing the audit trail's head when jitbot starts with an `audit.key`.
//! The chain rules live in [`crate::audit`]; this is the one use case that
//! writes to the trail for the trail's own sake.

use super::{Service, ServiceResult};
use crate::audit::{self, Actor, Event};
use crate::domain::Timestamp;

impl Service {
    /// At start-up, with an audit key: when the head carries no MAC (the
    /// first start with `audit.key`, or someone without the key reset the
    /// head), appends an `audit.keyed` event, which keys the trail from
    /// there and seals the head. Returns that event's row, if one was
    /// written. An event rather than a silent seal: each time an unsealed
    /// head is found, the trail says so.
    #[tracing::instrument(skip_all)]
    pub async fn seal_audit_trail(&self, now: Timestamp) -> ServiceResult<Option<i64>> {
        if self.db.audit_key().is_none() {
            return Ok(None);
        }
        let mut tx = self.db.begin().await?;
        let head = tx.audit_head_for_update().await?;
        if head.mac.is_some() {
            tx.rollback().await?;
            return Ok(None);
        }
        let event = Event::AuditKeyed { unsealed_head_seq: head.seq };
        let seq = audit::append(&mut tx, now, &Actor::System, None, event).await?;
        tx.commit().await?;
        tracing::info!(seq, "audit trail keyed: the head is sealed with audit.key from here on");
        Ok(Some(seq))
    }
}
