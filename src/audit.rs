//! The tamper-evident audit trail: every step of every request, every link
//! change, appended as a hash-chained row in the same transaction as the
//! change it records.
//!
//! Row `n` stores `hash(n) = SHA-256(json([seq, at, actor, action,
//! request_id, detail, hash(n-1)]))`, and a single head row remembers the
//! newest `(seq, hash)`. Changing a row breaks its hash; deleting a row leaves
//! a gap in `seq`; deleting the newest rows leaves the head pointing past the
//! end. `jitbot audit verify` checks all three and names the first bad row.

use std::fmt;
use std::io::Write;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::domain::{RequestId, SlackUser, Timestamp};
use crate::store::{AuditRow, Db, StoreError, Tx};

/// The hash that precedes row 1.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who did something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A person in Slack.
    Slack(SlackUser),
    /// An administrator on the command line (the OS user name, if known).
    Cli(String),
    /// jitbot itself (jobs, expiry).
    System,
    /// The identity provider, through SCIM provisioning.
    Scim,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Slack(u) => write!(f, "slack:{u}"),
            Actor::Cli(name) => write!(f, "cli:{name}"),
            Actor::System => f.write_str("system"),
            Actor::Scim => f.write_str("scim"),
        }
    }
}

/// What happened. The stored names are a stable contract for auditors'
/// queries: add variants, never rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    /// An identity link was created or replaced.
    LinkAdded,
    /// An identity link was removed.
    LinkRemoved,
    /// A link's groups were re-read with its refresh token.
    LinkRefreshed,
    /// The IdP removed the person from groups (SCIM).
    LinkGroupsRemoved,
    /// SCIM reactivated an identity it had deactivated or deleted: it may link again.
    LinkReactivated,
    /// A request was made.
    RequestCreated,
    /// One approver approved (not yet enough approvals).
    ApprovalRecorded,
    /// The request got its approvals; grant and revocation are scheduled.
    RequestApproved,
    /// An approver denied the request.
    RequestDenied,
    /// The requester withdrew it.
    RequestCancelled,
    /// The provider applied the grant.
    GrantApplied,
    /// The provider was told an extension moved the expiry.
    GrantExtended,
    /// The provider could not be told about an extension.
    GrantExtendFailed,
    /// A grant attempt failed and will be retried.
    GrantAttemptFailed,
    /// The grant failed for good.
    GrantFailed,
    /// A grant job found nothing to do (request revoked or expired meanwhile).
    GrantSkipped,
    /// Someone ended access before its expiry.
    RevokeRequested,
    /// The provider removed the access.
    RevokeApplied,
    /// A revocation attempt failed; it is retried.
    RevokeAttemptFailed,
    /// A one-shot action ran successfully (its output is in the detail).
    ActionCompleted,
    /// A one-shot action failed; it is not run again.
    ActionFailed,
    /// Access still existed a minute after its expiry.
    RevokeOverdue,
    /// An administrator asked for a failing revocation to be tried again now.
    RevokeRetryRequested,
    /// The reconciler found the target differing from the database.
    ReconcileDrift,
    /// The reconciler removed access that should have been gone.
    ReconcileRevoked,
    /// A one-time credentials link was sent to the requester.
    CredentialsLinkIssued,
    /// The requester set a fresh password through the credentials page.
    CredentialsPasswordSet,
    /// The role's auto-approval rule granted the request without approvers.
    RequestAutoApproved,
    /// The requester approved their own request (break-glass); flagged for review.
    RequestBreakGlass,
    /// Someone reviewed a break-glass request afterwards (`jitbot review done`).
    RequestReviewed,
    /// Nobody decided before the role's approval timeout.
    RequestTimedOut,
    /// An approved extension moved the request's expiry.
    AccessExtended,
    /// Someone pulled the kill switch: all access revoked, pending requests cancelled.
    RevokeAll,
}

impl AuditAction {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LinkAdded => "link.added",
            Self::LinkRemoved => "link.removed",
            Self::LinkRefreshed => "link.refreshed",
            Self::LinkGroupsRemoved => "link.groups_removed",
            Self::LinkReactivated => "link.reactivated",
            Self::RequestCreated => "request.created",
            Self::ApprovalRecorded => "request.approval_recorded",
            Self::RequestApproved => "request.approved",
            Self::RequestDenied => "request.denied",
            Self::RequestCancelled => "request.cancelled",
            Self::GrantApplied => "grant.applied",
            Self::GrantExtended => "grant.extended",
            Self::GrantExtendFailed => "grant.extend_failed",
            Self::GrantAttemptFailed => "grant.attempt_failed",
            Self::GrantFailed => "grant.failed",
            Self::GrantSkipped => "grant.skipped",
            Self::RevokeRequested => "revoke.requested",
            Self::RevokeApplied => "revoke.applied",
            Self::RevokeAttemptFailed => "revoke.attempt_failed",
            Self::ActionCompleted => "action.completed",
            Self::ActionFailed => "action.failed",
            Self::RevokeOverdue => "revoke.overdue",
            Self::RevokeRetryRequested => "revoke.retry_requested",
            Self::ReconcileDrift => "reconcile.drift",
            Self::ReconcileRevoked => "reconcile.revoked",
            Self::CredentialsLinkIssued => "credentials.link_issued",
            Self::CredentialsPasswordSet => "credentials.password_set",
            Self::RequestAutoApproved => "request.auto_approved",
            Self::RequestBreakGlass => "request.break_glass",
            Self::RequestReviewed => "request.reviewed",
            Self::RequestTimedOut => "request.timed_out",
            Self::AccessExtended => "access.extended",
            Self::RevokeAll => "kill_switch.revoke_all",
        }
    }
}

fn row_hash(seq: i64, at: i64, actor: &str, action: &str, request_id: Option<i64>, detail: &str, prev: &str) -> String {
    let canonical = json!([seq, at, actor, action, request_id, detail, prev]).to_string();
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// Appends one event inside `tx`. Call it as the transaction's last write:
/// it locks the chain head until commit, and taking that lock last keeps
/// lock order the same in every transaction (no deadlocks on PostgreSQL).
pub async fn append(
    tx: &mut Tx,
    now: Timestamp,
    actor: &Actor,
    action: AuditAction,
    request: Option<RequestId>,
    detail: Value,
) -> Result<i64, StoreError> {
    let head = tx.lock_audit_head().await?;
    let actor = actor.to_string();
    let detail = detail.to_string();
    let request_id = request.map(RequestId::get);
    let hash = row_hash(head.seq, now.millis(), &actor, action.as_str(), request_id, &detail, &head.hash);
    let row = AuditRow {
        seq: head.seq,
        at: now.millis(),
        actor,
        action: action.as_str().to_owned(),
        request_id,
        detail,
        prev_hash: head.hash,
        hash,
    };
    tx.insert_audit_row(&row).await?;
    Ok(row.seq)
}

/// Why verification failed: the first problem found, naming the row.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A row's contents no longer match its hash.
    #[error("audit row {seq} was altered: its contents do not match its hash")]
    Altered { seq: i64 },
    /// A row does not link to its predecessor.
    #[error("audit row {seq} does not follow row {prev}: the chain is broken there")]
    Unlinked { seq: i64, prev: i64 },
    /// Rows are missing in the middle.
    #[error("audit row {missing} is missing (the chain jumps from row {prev} to row {next})")]
    Missing { missing: i64, prev: i64, next: i64 },
    /// Rows are missing at the end.
    #[error("audit rows {first}..={last} are missing (the head records {last} rows, the table ends at {prev})")]
    MissingTail { first: i64, last: i64, prev: i64 },
    /// The head does not match the last row.
    #[error("the audit head does not match row {seq}")]
    HeadMismatch { seq: i64 },
    /// The database could not be read.
    #[error("cannot read the audit log: {0}")]
    Store(#[from] StoreError),
}

/// Walks the whole chain; returns the number of rows verified.
pub async fn verify(db: &Db) -> Result<i64, VerifyError> {
    let mut prev_seq = 0;
    let mut prev_hash = GENESIS_HASH.to_owned();
    loop {
        let rows = db.audit_rows_after(prev_seq, 1000).await?;
        if rows.is_empty() {
            break;
        }
        for r in rows {
            if r.seq != prev_seq + 1 {
                return Err(VerifyError::Missing { missing: prev_seq + 1, prev: prev_seq, next: r.seq });
            }
            let expected = row_hash(r.seq, r.at, &r.actor, &r.action, r.request_id, &r.detail, &r.prev_hash);
            if expected != r.hash {
                return Err(VerifyError::Altered { seq: r.seq });
            }
            if r.prev_hash != prev_hash {
                return Err(VerifyError::Unlinked { seq: r.seq, prev: prev_seq });
            }
            prev_seq = r.seq;
            prev_hash = r.hash;
        }
    }
    let head = db.audit_head().await?;
    if head.seq > prev_seq {
        return Err(VerifyError::MissingTail { first: prev_seq + 1, last: head.seq, prev: prev_seq });
    }
    if head.seq != prev_seq || head.hash != prev_hash {
        return Err(VerifyError::HeadMismatch { seq: prev_seq });
    }
    Ok(prev_seq)
}

/// Writes rows with `seq > after` as JSON lines; returns how many.
pub async fn export(db: &Db, after: i64, out: &mut dyn Write) -> anyhow::Result<u64> {
    let mut last = after;
    let mut n = 0;
    loop {
        let rows = db.audit_rows_after(last, 1000).await?;
        if rows.is_empty() {
            break;
        }
        for r in rows {
            let detail: Value = serde_json::from_str(&r.detail).unwrap_or(Value::String(r.detail.clone()));
            let line = json!({
                "seq": r.seq,
                "at": Timestamp::from_millis(r.at).to_string(),
                "at_ms": r.at,
                "actor": r.actor,
                "action": r.action,
                "request_id": r.request_id,
                "detail": detail,
                "prev_hash": r.prev_hash,
                "hash": r.hash,
            });
            writeln!(out, "{line}")?;
            last = r.seq;
            n += 1;
        }
    }
    out.flush()?;
    Ok(n)
}
