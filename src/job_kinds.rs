//! What the durable jobs are, below both the service (which writes them in
//! the transaction that decided them) and [`crate::jobs`] (which runs them):
//! the kinds, their typed payloads, and the fence and outcome a job run is
//! recorded with. Pure data: no I/O, no clock.

use std::time::Duration;

use serde_json::json;

use crate::domain::{RequestId, SlackUser};
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
    /// Redraw one person's App Home tab from the database as it is when the
    /// job runs (payload: a [`PersonPayload`]). At most one is queued per
    /// person, so many changes in a few seconds cost one `views.publish`.
    RedrawHome,
    /// Post one audit-channel line for the revocations of one minute that
    /// were held back because the minute already had its share of lines
    /// (payload: a [`DigestPayload`]).
    AuditDigest,
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
            Self::RedrawHome => "redraw_home",
            Self::AuditDigest => "audit_digest",
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
            "redraw_home" => Some(Self::RedrawHome),
            "audit_digest" => Some(Self::AuditDigest),
            "report_digest" => Some(Self::ReportDigest),
            "notify" => {
                let v: serde_json::Value = serde_json::from_str(payload).ok()?;
                serde_json::from_value(v.get("notice")?.clone()).ok().map(Self::Notify)
            }
            _ => None,
        }
    }
}

/// Which queue a job waits in. Each lane is claimed on its own, with slots
/// of its own, so a backlog in one never delays the other: revocations
/// must not wait behind thousands of notices when Slack is slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobLane {
    /// Jobs that change access or alarm about it: grants (one-shot actions
    /// included), revocations, extensions at the target, overdue checks.
    Access,
    /// Everything people are told, and bookkeeping: notices, DMs,
    /// reminders, redraws, announcements, refreshes, checkpoints.
    Notice,
}

impl JobLane {
    /// Every lane, most urgent first: the order the scheduler claims in.
    pub const ALL: [JobLane; 2] = [JobLane::Access, JobLane::Notice];

    /// The stored name (`jobs.lane`, and the `lane` label on `/metrics`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Notice => "notice",
        }
    }
}

impl std::fmt::Display for JobLane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl JobKind {
    /// The lane a job of this kind waits in, stored with it when written.
    pub fn lane(self) -> JobLane {
        match self {
            Self::Grant | Self::Revoke | Self::ExtendGrant | Self::OverdueCheck => JobLane::Access,
            Self::Notify(_)
            | Self::DirectMessage
            | Self::RefreshLink
            | Self::TimeOut
            | Self::Remind
            | Self::WarnExpiry
            | Self::Announce
            | Self::AuditCheckpoint
            | Self::RedrawHome
            | Self::AuditDigest
            | Self::ReportDigest => JobLane::Notice,
        }
    }

    /// The series a job belongs to, stored with it when written: jobs of
    /// one series run one at a time, in the order they were written.
    ///
    /// - a request's notices (a card must be posted before it is updated);
    /// - one person's group refreshes (a rotating refresh token must never
    ///   be spent twice, even by two replicas; the payload names the person);
    /// - one person's App Home redraws (an older picture must never land
    ///   after a newer one).
    ///
    /// Other kinds run independently (`None`).
    pub fn series(self, request: Option<RequestId>, payload: &str) -> Option<String> {
        match self {
            Self::Notify(_) => request.map(|r| format!("notify:{}", r.get())),
            Self::RefreshLink => Some(format!("refresh_link:{payload}")),
            Self::RedrawHome => Some(format!("redraw_home:{payload}")),
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

/// Payload of the audit digest job: the minute (epoch minutes) whose held
/// revocation lines it posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DigestPayload {
    /// Epoch milliseconds divided by 60,000.
    pub minute: i64,
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
            JobKind::RedrawHome,
            JobKind::AuditDigest,
        ] {
            assert_eq!(JobKind::from_stored(kind.name(), &kind.payload()), Some(kind));
        }
    }

    #[test]
    fn access_changes_have_a_lane_of_their_own() {
        for kind in [JobKind::Grant, JobKind::Revoke, JobKind::ExtendGrant, JobKind::OverdueCheck] {
            assert_eq!(kind.lane(), JobLane::Access, "{kind}");
        }
        for kind in [
            JobKind::Notify(NoticeKind::Revoked),
            JobKind::DirectMessage,
            JobKind::RefreshLink,
            JobKind::TimeOut,
            JobKind::Remind,
            JobKind::WarnExpiry,
            JobKind::Announce,
            JobKind::AuditCheckpoint,
        ] {
            assert_eq!(kind.lane(), JobLane::Notice, "{kind}");
        }
    }

    #[test]
    fn notices_of_a_request_and_refreshes_of_a_person_form_series() {
        let id = Some(RequestId::new(7));
        let notice = JobKind::Notify(NoticeKind::Granted);
        assert_eq!(notice.series(id, "{}").as_deref(), Some("notify:7"));
        assert_eq!(JobKind::Notify(NoticeKind::Revoked).series(id, "{}"), notice.series(id, "{}"));
        assert_eq!(JobKind::RefreshLink.series(None, "p").as_deref(), Some("refresh_link:p"));
        assert_eq!(JobKind::Revoke.series(id, "{}"), None);
    }
}
