//! What `jitbot reconcile` (`crate::reconcile`) asks of the database: the
//! requests to compare, whether jitbot itself removed an access nobody
//! holds now, the lease steps of revoking again, and the audit events of
//! its findings. The comparison with targets stays in the reconciler.

use super::{Service, ServiceResult};
use crate::audit::{self, Actor, Event};
use crate::domain::{AccessRequest, RequestId, RequestState, Timestamp};

/// One finding of a reconcile run, as the audit trail records it.
#[derive(Debug, Clone)]
pub struct ReconcileFinding {
    /// The request.
    pub request: RequestId,
    /// Whether access that came back was revoked again.
    pub revoked_again: bool,
    /// What was found, for the trail.
    pub description: String,
}

impl Service {
    /// Requests in `states`.
    pub async fn requests_in_states(&self, states: &[RequestState]) -> ServiceResult<Vec<AccessRequest>> {
        Ok(self.db.requests_in_states(states).await?)
    }

    /// Whether jitbot itself removed the access `key` of request `id` and
    /// no other request holds it now (`releasing` counts as removed: an
    /// earlier `--fix` could not finish the removal).
    pub async fn removed_by_jitbot_and_unheld(&self, id: RequestId, key: &str) -> ServiceResult<bool> {
        let removed_by_jitbot =
            self.db.lease(id).await?.is_some_and(|l| l.state != "held" && l.outcome.as_deref() == Some("revoked"));
        Ok(removed_by_jitbot && self.db.lease_holders(key, id).await?.is_empty())
    }

    /// Takes request `id`'s lease back to `releasing` before revoking again;
    /// `false` when another request holds the access now.
    pub async fn reopen_release(&self, id: RequestId, provider: &str, now: Timestamp) -> ServiceResult<bool> {
        let mut tx = self.db.begin().await?;
        let reopened = tx.reopen_release(id, provider, now).await?;
        tx.commit().await?;
        Ok(reopened)
    }

    /// Finishes a release after the access was revoked again.
    pub async fn finish_release(&self, id: RequestId, now: Timestamp) -> ServiceResult<()> {
        let mut tx = self.db.begin().await?;
        tx.finish_release(id, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Appends every finding to the audit trail, in one transaction.
    pub async fn record_reconcile_findings(
        &self,
        findings: &[ReconcileFinding],
        actor: &Actor,
        now: Timestamp,
    ) -> ServiceResult<()> {
        if findings.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin().await?;
        for f in findings {
            let finding = &f.description;
            let event =
                if f.revoked_again { Event::ReconcileRevoked { finding } } else { Event::ReconcileDrift { finding } };
            audit::append(&mut tx, now, actor, Some(f.request), event).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
