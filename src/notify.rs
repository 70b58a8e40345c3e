//! Notices: what people are told about a request (the approval card, the
//! requester's DMs, alerts), behind a [`Notifier`] trait so the workflow
//! never knows about Slack.
//!
//! Notices are only ever sent from jobs: the transaction that changes a
//! request writes a `notify` job, and the job loads the request as it is
//! when the job runs, so a retried or late notice never shows stale state.

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{AccessRequest, Approval, SlackUser, Timestamp};

/// Which change a notice reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// A new request needs approvers.
    RequestCreated,
    /// An approval was recorded, more are needed.
    ApprovalRecorded,
    /// Enough approvals: access is being granted.
    Approved,
    /// An approver said no.
    Denied,
    /// The requester withdrew.
    Cancelled,
    /// Access is live.
    Granted,
    /// The grant could not be applied.
    GrantFailed,
    /// Access ended.
    Revoked,
    /// Revocation keeps failing: people must look.
    RevokeFailing,
    /// A one-shot action ran (or failed); the requester gets its output.
    ActionFinished,
    /// Access still exists a minute after it should have ended: people must look.
    RevokeOverdue,
    /// Granted without approvers by the role's auto-approval rule.
    AutoApproved,
    /// The requester approved their own request (break-glass): announced loudly.
    BreakGlass,
    /// Nobody decided before the approval timeout.
    TimedOut,
    /// Halfway to the approval timeout, still undecided: nudge the approvers.
    Reminder,
    /// Access ends soon: the holder may extend it or end it now.
    ExpiryWarning,
    /// An extension moved this request's expiry (its card shows the new one).
    Extended,
}

/// News that concerns no single request; stored as a job's payload.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Announcement {
    /// Someone pulled the kill switch.
    RevokeAll {
        /// Who: a Slack user id, when it was pulled in Slack.
        slack_user: Option<String>,
        /// Who, as the audit trail names them (`cli:alice`).
        actor: String,
        /// Why.
        reason: String,
        /// How many grants are being revoked.
        revoking: usize,
        /// How many pending requests were cancelled.
        cancelled: usize,
    },
    /// Someone released the kill switch: approvals grant again.
    KillSwitchReleased {
        /// Who: a Slack user id, when it was released in Slack.
        slack_user: Option<String>,
        /// Who, as the audit trail names them.
        actor: String,
        /// Why granting may resume.
        reason: String,
    },
    /// A signed checkpoint of the audit trail's head (see
    /// [`crate::audit::Checkpoint`]): posted outside the database so that
    /// `jitbot audit verify --checkpoint` can prove nothing up to it was
    /// removed.
    AuditCheckpoint {
        /// The checkpoint line, posted as is.
        line: String,
        /// The row the previous checkpoint anchored, when the trail no
        /// longer reaches it with the same hash (rows deleted, the database
        /// restored from an older copy): the post then says so loudly.
        rewound_from: Option<i64>,
    },
    /// The weekly access report digest: a few figures of the last week
    /// and its most urgent recommendations.
    ReportDigest {
        /// The figures, one short line each.
        lines: Vec<String>,
        /// The top recommendations (at most three), most urgent first.
        recommendations: Vec<String>,
        /// Where the full report is (the `/report` page).
        link: String,
    },
}

/// One notice, with the request as it is now.
#[derive(Debug, Clone)]
pub struct Notice {
    /// What happened.
    pub kind: NoticeKind,
    /// The request, freshly loaded.
    pub request: AccessRequest,
    /// Its decisions so far.
    pub approvals: Vec<Approval>,
    /// The job delivering it, if any: a retried delivery skips the
    /// messages an earlier attempt of the same job already sent.
    pub job_id: Option<i64>,
    /// Which attempt of that job this is (1 for the first).
    pub attempt: i64,
}

/// Why a notice could not be delivered.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct NotifyError {
    /// What went wrong (safe to log).
    pub message: String,
    /// When the receiver asked us to come back (Slack's `Retry-After`).
    pub retry_after: Option<Duration>,
}

/// Delivers notices. Failures are retried by the job system and never undo
/// the transition that caused them.
#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// Delivers one notice.
    async fn notify(&self, notice: &Notice) -> Result<(), NotifyError>;

    /// Sends one person a direct message not tied to a request (link
    /// confirmations, "sign in again").
    async fn direct_message(&self, user: &SlackUser, text: &str) -> Result<(), NotifyError> {
        tracing::info!(user = %user, text, "direct message");
        Ok(())
    }

    /// Tells the audit channel something that concerns no single request
    /// (the kill switch).
    async fn announce(&self, announcement: &Announcement) -> Result<(), NotifyError> {
        tracing::warn!(?announcement, "announcement");
        Ok(())
    }

    /// Redraws `user`'s overview (Slack's App Home tab) from the state as it
    /// is now; only called for people who opened it.
    async fn redraw_home(&self, _user: &SlackUser) -> Result<(), NotifyError> {
        Ok(())
    }

    /// Tells the audit channel, in one line, about `held`: revocations of
    /// the minute starting at `minute` that were not posted one by one
    /// because the minute already had its share of lines (`total` in all).
    async fn revocation_digest(
        &self,
        minute: Timestamp,
        held: &[AccessRequest],
        total: i64,
    ) -> Result<(), NotifyError> {
        tracing::info!(minute = %minute, held = held.len(), total, "revocation digest");
        Ok(())
    }
}

/// Writes notices to the log: the notifier when no chat transport is configured.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn notify(&self, notice: &Notice) -> Result<(), NotifyError> {
        tracing::info!(
            request_id = notice.request.id.get(),
            kind = ?notice.kind,
            state = %notice.request.state,
            role = %notice.request.role,
            "notice"
        );
        Ok(())
    }
}
