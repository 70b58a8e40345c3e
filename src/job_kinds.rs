//! What the durable jobs are, below both the service (which writes them in
//! the transaction that decided them) and [`crate::jobs`] (which runs them):
//! the kinds, their typed payloads, and the fence and outcome a job run is
//! recorded with. Pure data: no I/O, no clock.

use std::time::Duration;

use serde_json::json;

use crate::domain::SlackUser;
use crate::notify::NoticeKind;

/// How long after its expiry a revocation may still be unfinished before
/// people are alerted (the revocation is due at expiry; a healthy one takes
/// seconds).
pub const REVOKE_OVERDUE_AFTER: Duration = Duration::from_secs(60);

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Apply the grant of a request in `granting`.
    Grant,
    /// Remove the access of a request (at expiry, or early).
    Revoke,
    /// Tell people about a change.
    Notify(NoticeKind),
    /// Send one person a direct message (payload: team, user, text).
    DirectMessage,
    /// Re-read a person's groups with their refresh token (payload: team, user).
    RefreshLink,
    /// A minute after expiry: alert if the access may still exist.
    OverdueCheck,
    /// End a request nobody decided in time (its role's `approval_timeout`).
    TimeOut,
    /// Remind the approvers of a request still pending halfway to its timeout.
    Remind,
    /// Warn the holder shortly before their access ends (payload: the expiry it is for).
    WarnExpiry,
    /// Tell the provider an extension moved the expiry (payload: the new expiry).
    ExtendGrant,
    /// Tell the audit channel something that concerns no single request
    /// (payload: an [`crate::notify::Announcement`]), such as the kill switch.
    Announce,
    /// Post a signed checkpoint of the audit trail's head to the audit
    /// channel, then schedule the next one (payload: a [`CheckpointPayload`]).
    /// One exists at a time across replicas.
    AuditCheckpoint,
    /// Post the weekly access report digest to the audit channel, then
    /// schedule the next one (`report.digest`). One exists at a time
    /// across replicas.
    ReportDigest,
}

impl JobKind {
    /// The stored kind.
    pub fn name(self) -> &'static str {
        match self {
            Self::Grant => "grant",
            Self::Revoke => "revoke",
            Self::Notify(_) => "notify",
            Self::DirectMessage => "direct_message",
            Self::RefreshLink => "refresh_link",
            Self::OverdueCheck => "overdue_check",
            Self::TimeOut => "time_out",
            Self::Remind => "remind",
            Self::WarnExpiry => "warn_expiry",
            Self::ExtendGrant => "extend_grant",
            Self::Announce => "announce",
            Self::AuditCheckpoint => "audit_checkpoint",
            Self::ReportDigest => "report_digest",
        }
    }

    /// The stored payload of request jobs (person jobs carry a [`PersonPayload`]).
    pub fn payload(self) -> String {
        match self {
            Self::Notify(kind) => json!({ "notice": kind }).to_string(),
            _ => "{}".to_owned(),
        }
    }

    /// The kind of a stored job (its `kind` and `payload` columns); `None`
    /// for a kind this version does not know or a notice it cannot read.
    pub fn from_stored(kind: &str, payload: &str) -> Option<Self> {
        match kind {
            "grant" => Some(Self::Grant),
            "revoke" => Some(Self::Revoke),
            "direct_message" => Some(Self::DirectMessage),
            "refresh_link" => Some(Self::RefreshLink),
            "overdue_check" => Some(Self::OverdueCheck),
            "time_out" => Some(Self::TimeOut),
            "remind" => Some(Self::Remind),
            "warn_expiry" => Some(Self::WarnExpiry),
            "extend_grant" => Some(Self::ExtendGrant),
            "announce" => Some(Self::Announce),
            "audit_checkpoint" => Some(Self::AuditCheckpoint),
            "report_digest" => Some(Self::ReportDigest),
            "notify" => {
                let v: serde_json::Value = serde_json::from_str(payload).ok()?;
                serde_json::from_value(v.get("notice")?.clone()).ok().map(Self::Notify)
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One claim of a job: its id and the attempt this run holds. Every write a
/// run makes is conditional on both, so a worker whose lease was taken over
/// writes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobFence {
    /// The job.
    pub id: i64,
    /// The attempt this run claimed.
    pub attempt: i64,
}

/// How one run of a job ended, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// Finished.
    Done,
    /// Put back for a later attempt.
    Retried,
    /// Gave up.
    Failed,
    /// Another worker owns the job now; nothing was written.
    LostLease,
}

/// Payload of jobs tied to one expiry of a request (revocation, warning):
/// an extension writes new ones, and these tell the old ones apart.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ExpiryPayload {
    /// The `expires_at` (epoch milliseconds) the job was written for.
    pub expires_at: i64,
}

/// Payload of the audit checkpoint job: the head the last checkpoint
/// posted (row 0 and no hash before the first).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckpointPayload {
    /// The row anchored last.
    #[serde(default)]
    pub seq: i64,
    /// Its hash.
    #[serde(default)]
    pub hash: String,
}

/// Payload of jobs about one person.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct PersonPayload {
    /// Workspace.
    pub team_id: String,
    /// User.
    pub user_id: String,
    /// Message text (direct messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl PersonPayload {
    /// The stored payload of a job about `user` (with `text` for a DM).
    pub fn json(user: &SlackUser, text: Option<&str>) -> String {
        let payload = Self {
            team_id: user.team_id().to_owned(),
            user_id: user.user_id().to_owned(),
            text: text.map(str::to_owned),
        };
        // Serialising two strings and an option cannot fail.
        serde_json::to_string(&payload).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_kinds_round_trip_through_rows() {
        for kind in [
            JobKind::Grant,
            JobKind::Revoke,
            JobKind::Notify(NoticeKind::Granted),
            JobKind::TimeOut,
            JobKind::Remind,
            JobKind::Notify(NoticeKind::Reminder),
            JobKind::WarnExpiry,
            JobKind::OverdueCheck,
        ] {
            assert_eq!(JobKind::from_stored(kind.name(), &kind.payload()), Some(kind));
        }
    }
}
