//! The audit trail for the trail's own sake: sealing its head when jitbot
//! starts with an `audit.key` (the one use case that writes to the trail
//! for itself), and the reads `jitbot audit verify` and `export` make. The
//! chain rules live in [`crate::audit`].

use std::io::Write;

use super::{Service, ServiceResult};
use crate::audit::{self, Actor, Checkpoint, Event, VerifyError, VerifyReport};
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

    /// Walks the whole chain with `audit.key` (if set), checks the head and
    /// that every row `checkpoints` anchor is still there with the anchored
    /// hash; the first problem found is the error.
    pub async fn verify_audit_trail(&self, checkpoints: &[Checkpoint]) -> Result<VerifyReport, VerifyError> {
        audit::verify_against(&self.db, checkpoints).await
    }

    /// Writes the audit events at or after `since` (all without it) to `out`
    /// as JSON lines; returns how many.
    pub async fn export_audit_trail(&self, since: Option<Timestamp>, out: &mut dyn Write) -> anyhow::Result<u64> {
        let after = match since {
            None => 0,
            // Nothing at or after `since`: export nothing.
            Some(t) => self.db.audit_seq_at(t.millis()).await?.map(|seq| seq - 1).unwrap_or(i64::MAX),
        };
        audit::export(&self.db, after, out).await
    }
}
