//! What the job handlers read before they act: the request a job is for,
//! its decisions (for a notice), the target with its stored grant spec
//! (for a provider call), and the audit head a checkpoint anchors. Reads
//! only; what a job then records is in `job_outcomes`. The reconciler and
//! the credentials page share [`Service::grant_target`].

use super::Service;
use crate::audit::{self, Checkpoint};
use crate::domain::{AccessRequest, Approval, RequestId, Timestamp};
use crate::providers::{GrantSpec, GrantTarget, ProviderError};
use crate::store::StoreError;

impl Service {
    /// Request `id` as it is now, or `None` if there is none (a job that
    /// outlived its request's row).
    pub async fn job_request(&self, id: RequestId) -> Result<Option<AccessRequest>, StoreError> {
        self.db.request(id).await
    }

    /// The decisions on request `id` so far, in order, for a notice.
    pub async fn job_approvals(&self, id: RequestId) -> Result<Vec<Approval>, StoreError> {
        self.db.approvals(id).await
    }

    /// The target of a request with its stored grant spec, for a provider
    /// call; `None` when the request has no expiry (nothing was granted).
    /// A spec that cannot be read is retryable, one that cannot be parsed
    /// is not.
    pub async fn grant_target(&self, request: &AccessRequest) -> Result<Option<GrantTarget>, ProviderError> {
        let Some(target) = GrantTarget::of(request) else { return Ok(None) };
        let spec = self
            .db
            .grant_spec(request.id)
            .await
            .map_err(|e| ProviderError::retryable(format!("cannot read the grant spec: {e}")))?;
        let spec = spec
            .map(|s| GrantSpec::from_json(&s))
            .transpose()
            .map_err(|e| ProviderError::permanent(format!("the stored grant spec is unreadable: {e}")))?;
        Ok(Some(target.with_spec(spec)))
    }

    /// A checkpoint of the audit head signed with `audit.key`; `None`
    /// without a key or while the trail is empty.
    pub async fn audit_checkpoint(&self, now: Timestamp) -> Result<Option<Checkpoint>, StoreError> {
        audit::checkpoint(&self.db, now).await
    }

    /// Whether the audit trail is keyed (checkpoints can be signed at all).
    pub fn audit_keyed(&self) -> bool {
        self.db.audit_key().is_some()
    }

    /// The hash of audit row `seq`, or `None` if there is no such row (it
    /// was deleted: a checkpoint notices the trail was rewound).
    pub async fn audit_hash_at(&self, seq: i64) -> Result<Option<String>, StoreError> {
        Ok(self.db.audit_row(seq).await?.map(|row| row.hash))
    }
}
