//! The events of the audit trail, each with the detail it records.
//!
//! The detail of a row is part of what its hash covers, and auditors query
//! it by key, so each event builds it here, once, with the keys (and their
//! order) that rows have always had: a call site names what happened, not
//! how it is spelled. Add variants; never change what an existing one
//! writes (old rows would still verify, but queries would split in two).

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::AuditAction;
use crate::domain::{AccessDuration, Identity, RequestId, RequestState, SlackUser, Timestamp};

/// What a provider call had to say for the trail: its notes and captured
/// output. Added to a detail only when present, so details of providers
/// that report nothing keep their shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallOutput<'a> {
    /// Short facts ("terminated 2 sessions of alice").
    pub notes: &'a [String],
    /// Captured program output, already truncated.
    pub output: Option<&'a str>,
}

impl CallOutput<'_> {
    fn add_to(self, mut detail: Value) -> Value {
        if !self.notes.is_empty() {
            detail["notes"] = json!(self.notes);
        }
        if let Some(output) = self.output {
            detail["output"] = json!(output);
        }
        detail
    }
}

/// A failed provider call: its message and captured output.
#[derive(Debug, Clone, Copy)]
pub struct CallError<'a> {
    /// What went wrong, safe to show.
    pub message: &'a str,
    /// Captured program output, already truncated.
    pub output: Option<&'a str>,
}

impl<'a> CallError<'a> {
    fn output(self) -> CallOutput<'a> {
        CallOutput { notes: &[], output: self.output }
    }
}

/// One thing that happened, with what the trail records about it.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// Someone linked their identity by signing in.
    LinkSignedIn { identity: &'a Identity, groups_claim_missing: bool, auth_time: Option<Timestamp> },
    /// An administrator created or replaced a link by hand.
    LinkAddedByAdmin { identity: &'a Identity },
    /// A link was removed; the requests it ended.
    LinkRemoved { slack: &'a SlackUser, reason: &'a str, ended: &'a [RequestId] },
    /// SCIM deprovisioning removed a link.
    LinkRemovedByScim { slack: &'a SlackUser, reason: &'a str },
    /// A link's groups were re-read with its refresh token.
    LinkRefreshed { slack: &'a SlackUser, groups_before: &'a BTreeSet<String>, groups: &'a BTreeSet<String> },
    /// The IdP removed the person from groups (SCIM).
    LinkGroupsRemoved { slack: &'a SlackUser, removed: &'a [String], groups: &'a BTreeSet<String> },
    /// SCIM reactivated an identity.
    LinkReactivated { scim_id: &'a str, subject: Option<&'a str>, emails: &'a [String] },
    /// A request for a role was made.
    RequestCreated {
        role: &'a str,
        provider: &'a str,
        duration: AccessDuration,
        reason: &'a str,
        ticket: Option<&'a str>,
        approvals_required: u32,
        decide_by: Option<Timestamp>,
        requester: &'a Identity,
    },
    /// An extension of the request `extends` was asked for.
    ExtensionCreated {
        extends: RequestId,
        role: &'a str,
        provider: &'a str,
        duration: AccessDuration,
        reason: &'a str,
        ticket: Option<&'a str>,
        approvals_required: u32,
        decide_by: Option<Timestamp>,
    },
    /// One approver approved; not yet enough.
    ApprovalRecorded { approvals: u32, required: u32 },
    /// The request got its approvals.
    RequestApproved { approvals: u32, required: u32, expires_at: Timestamp },
    /// An approver denied the request.
    RequestDenied { reason: Option<&'a str> },
    /// The requester withdrew the request.
    RequestWithdrawn,
    /// A request was cancelled because of something else (`why`).
    RequestCancelled { why: &'a str },
    /// A pending request was cancelled because its requester lost the
    /// link or the groups behind it.
    RequestCancelledForLink { reason: &'a str },
    /// The kill switch cancelled a pending request.
    RequestCancelledByKillSwitch { detail: &'a str },
    /// The role's auto-approval rule granted the request.
    RequestAutoApproved { why: &'a str, expires_at: Option<Timestamp> },
    /// The requester approved their own request (break-glass).
    RequestBreakGlass { reason: &'a str, expires_at: Timestamp },
    /// Someone reviewed a break-glass request afterwards.
    RequestReviewed { note: &'a str, role: &'a str, requester: &'a SlackUser, break_glass_reason: Option<&'a str> },
    /// Nobody decided before the role's approval timeout.
    RequestTimedOut { decide_by: Option<Timestamp> },
    /// An approved extension moved the request's expiry.
    AccessExtended { extension: RequestId, from: Timestamp, to: Timestamp },
    /// A grant call is about to be made.
    GrantAttempted { provider: &'a str, attempt: i64 },
    /// The provider applied the grant (perhaps while a revocation was pending).
    GrantApplied { provider: &'a str, revocation_pending: bool, report: CallOutput<'a> },
    /// A grant attempt failed and is retried at `retry_at`.
    GrantAttemptFailed { attempt: i64, error: CallError<'a>, retry_at: Timestamp },
    /// The grant failed for good.
    GrantFailed { attempt: i64, error: CallError<'a> },
    /// A grant job found the request expired before it could be granted.
    GrantSkipped,
    /// A grant call was never answered and the request expired meanwhile.
    GrantInterrupted,
    /// The provider was told an extension moved the expiry.
    GrantExtended { provider: &'a str, expires_at: Timestamp, report: CallOutput<'a> },
    /// The provider could not be told about an extension.
    GrantExtendFailed { provider: &'a str, error: &'a str },
    /// Someone ended access before its expiry (`detail` says who and why).
    RevokeRequested { detail: &'a str },
    /// The provider removed the access.
    RevokeApplied { provider: &'a str, early: bool, report: CallOutput<'a> },
    /// A revocation attempt failed and is retried at `retry_at`.
    RevokeAttemptFailed { attempt: i64, error: CallError<'a>, retry_at: Timestamp },
    /// Access still existed a minute after its expiry.
    RevokeOverdue { state: RequestState, expires_at: Option<Timestamp>, last_error: Option<&'a str> },
    /// An administrator asked for a failing revocation to be tried again;
    /// `queued_new` when no revocation was queued and a new one was.
    RevokeRetryRequested { state: RequestState, last_error: Option<&'a str>, queued_new: bool },
    /// A one-shot action ran.
    ActionCompleted { provider: &'a str, report: CallOutput<'a> },
    /// A one-shot action failed.
    ActionFailed { provider: &'a str, error: CallError<'a> },
    /// The reconciler found the target differing from the database.
    ReconcileDrift { finding: &'a str },
    /// The reconciler removed access that should have been gone.
    ReconcileRevoked { finding: &'a str },
    /// A one-time credentials link was sent.
    CredentialsLinkIssued { login: &'a str, valid_until: Timestamp },
    /// The requester set a fresh password through the credentials page.
    CredentialsPasswordSet { login: &'a str, requester_subject: &'a str },
    /// The kill switch was pulled.
    RevokeAll { reason: &'a str, revoking: &'a [RequestId], cancelled: &'a [RequestId] },
    /// The kill switch was released; who engaged it, when (epoch
    /// milliseconds) and why.
    KillSwitchReleased { reason: &'a str, engaged_by: &'a str, engaged_at: i64, engaged_reason: &'a str },
    /// jitbot started keyed and sealed an unsealed head.
    AuditKeyed { unsealed_head_seq: i64 },
    /// jitbot found the head moved without the key.
    AuditHeadMismatch { head_seq: i64, problem: &'static str },
}

fn ids(ids: &[RequestId]) -> Vec<i64> {
    ids.iter().map(|i| i.get()).collect()
}

impl Event<'_> {
    /// The action it is stored as.
    pub fn action(&self) -> AuditAction {
        match self {
            Self::LinkSignedIn { .. } | Self::LinkAddedByAdmin { .. } => AuditAction::LinkAdded,
            Self::LinkRemoved { .. } | Self::LinkRemovedByScim { .. } => AuditAction::LinkRemoved,
            Self::LinkRefreshed { .. } => AuditAction::LinkRefreshed,
            Self::LinkGroupsRemoved { .. } => AuditAction::LinkGroupsRemoved,
            Self::LinkReactivated { .. } => AuditAction::LinkReactivated,
            Self::RequestCreated { .. } | Self::ExtensionCreated { .. } => AuditAction::RequestCreated,
            Self::ApprovalRecorded { .. } => AuditAction::ApprovalRecorded,
            Self::RequestApproved { .. } => AuditAction::RequestApproved,
            Self::RequestDenied { .. } => AuditAction::RequestDenied,
            Self::RequestWithdrawn
            | Self::RequestCancelled { .. }
            | Self::RequestCancelledForLink { .. }
            | Self::RequestCancelledByKillSwitch { .. } => AuditAction::RequestCancelled,
            Self::RequestAutoApproved { .. } => AuditAction::RequestAutoApproved,
            Self::RequestBreakGlass { .. } => AuditAction::RequestBreakGlass,
            Self::RequestReviewed { .. } => AuditAction::RequestReviewed,
            Self::RequestTimedOut { .. } => AuditAction::RequestTimedOut,
            Self::AccessExtended { .. } => AuditAction::AccessExtended,
            Self::GrantAttempted { .. } => AuditAction::GrantAttempted,
            Self::GrantApplied { .. } => AuditAction::GrantApplied,
            Self::GrantAttemptFailed { .. } => AuditAction::GrantAttemptFailed,
            Self::GrantFailed { .. } => AuditAction::GrantFailed,
            Self::GrantSkipped => AuditAction::GrantSkipped,
            Self::GrantInterrupted => AuditAction::GrantInterrupted,
            Self::GrantExtended { .. } => AuditAction::GrantExtended,
            Self::GrantExtendFailed { .. } => AuditAction::GrantExtendFailed,
            Self::RevokeRequested { .. } => AuditAction::RevokeRequested,
            Self::RevokeApplied { .. } => AuditAction::RevokeApplied,
            Self::RevokeAttemptFailed { .. } => AuditAction::RevokeAttemptFailed,
            Self::RevokeOverdue { .. } => AuditAction::RevokeOverdue,
            Self::RevokeRetryRequested { .. } => AuditAction::RevokeRetryRequested,
            Self::ActionCompleted { .. } => AuditAction::ActionCompleted,
            Self::ActionFailed { .. } => AuditAction::ActionFailed,
            Self::ReconcileDrift { .. } => AuditAction::ReconcileDrift,
            Self::ReconcileRevoked { .. } => AuditAction::ReconcileRevoked,
            Self::CredentialsLinkIssued { .. } => AuditAction::CredentialsLinkIssued,
            Self::CredentialsPasswordSet { .. } => AuditAction::CredentialsPasswordSet,
            Self::RevokeAll { .. } => AuditAction::RevokeAll,
            Self::KillSwitchReleased { .. } => AuditAction::KillSwitchReleased,
            Self::AuditKeyed { .. } => AuditAction::AuditKeyed,
            Self::AuditHeadMismatch { .. } => AuditAction::AuditHeadMismatch,
        }
    }

    /// The detail it is stored with.
    pub fn detail(&self) -> Value {
        match *self {
            Self::LinkSignedIn { identity, groups_claim_missing, auth_time } => json!({
                "slack": identity.slack.to_string(),
                "issuer": identity.issuer,
                "subject": identity.subject,
                "email": identity.email,
                "groups": identity.groups,
                "groups_claim_missing": groups_claim_missing,
                "auth_time": auth_time.map(|t| t.to_string()),
                "source": "oidc",
            }),
            Self::LinkAddedByAdmin { identity } => json!({
                "slack": identity.slack.to_string(),
                "issuer": identity.issuer,
                "subject": identity.subject,
                "email": identity.email,
                "groups": identity.groups,
                "claims": identity.claims,
                "source": "admin",
            }),
            Self::LinkRemoved { slack, reason, ended } => {
                json!({"slack": slack.to_string(), "reason": reason, "ended": ids(ended)})
            }
            Self::LinkRemovedByScim { slack, reason } => json!({"slack": slack.to_string(), "reason": reason}),
            Self::LinkRefreshed { slack, groups_before, groups } => {
                json!({"slack": slack.to_string(), "groups_before": groups_before, "groups": groups})
            }
            Self::LinkGroupsRemoved { slack, removed, groups } => {
                json!({"slack": slack.to_string(), "removed": removed, "groups": groups})
            }
            Self::LinkReactivated { scim_id, subject, emails } => {
                json!({"scim_id": scim_id, "subject": subject, "emails": emails})
            }
            Self::RequestCreated {
                role,
                provider,
                duration,
                reason,
                ticket,
                approvals_required,
                decide_by,
                requester,
            } => json!({
                "role": role,
                "provider": provider,
                "duration": duration.to_string(),
                "reason": reason,
                "ticket": ticket,
                "approvals_required": approvals_required,
                "decide_by": decide_by.map(|t| t.to_string()),
                "requester": {"email": requester.email, "subject": requester.subject, "issuer": requester.issuer},
            }),
            Self::ExtensionCreated {
                extends,
                role,
                provider,
                duration,
                reason,
                ticket,
                approvals_required,
                decide_by,
            } => {
                json!({
                    "extends": extends.get(),
                    "role": role,
                    "provider": provider,
                    "duration": duration.to_string(),
                    "reason": reason,
                    "ticket": ticket,
                    "approvals_required": approvals_required,
                    "decide_by": decide_by.map(|t| t.to_string()),
                })
            }
            Self::ApprovalRecorded { approvals, required } => json!({"approvals": approvals, "required": required}),
            Self::RequestApproved { approvals, required, expires_at } => {
                json!({"approvals": approvals, "required": required, "expires_at": expires_at.to_string()})
            }
            Self::RequestDenied { reason } => json!({"reason": reason}),
            Self::RequestWithdrawn => json!({}),
            Self::RequestCancelled { why } => json!({"why": why}),
            Self::RequestCancelledForLink { reason } => json!({"reason": reason}),
            Self::RequestCancelledByKillSwitch { detail } => json!({"detail": detail}),
            Self::RequestAutoApproved { why, expires_at } => {
                json!({"why": why, "expires_at": expires_at.map(|t| t.to_string())})
            }
            Self::RequestBreakGlass { reason, expires_at } => {
                json!({"reason": reason, "expires_at": expires_at.to_string(), "review_required": true})
            }
            Self::RequestReviewed { note, role, requester, break_glass_reason } => json!({
                "note": note,
                "role": role,
                "requester": requester.to_string(),
                "break_glass_reason": break_glass_reason,
            }),
            Self::RequestTimedOut { decide_by } => json!({"decide_by": decide_by.map(|t| t.to_string())}),
            Self::AccessExtended { extension, from, to } => {
                json!({"extension": extension.get(), "from": from.to_string(), "to": to.to_string()})
            }
            Self::GrantAttempted { provider, attempt } => json!({"provider": provider, "attempt": attempt}),
            Self::GrantApplied { provider, revocation_pending: false, report } => {
                report.add_to(json!({"provider": provider}))
            }
            Self::GrantApplied { provider, revocation_pending: true, report } => {
                report.add_to(json!({"provider": provider, "note": "applied while a revocation was pending"}))
            }
            Self::GrantAttemptFailed { attempt, error, retry_at }
            | Self::RevokeAttemptFailed { attempt, error, retry_at } => error
                .output()
                .add_to(json!({"attempt": attempt, "error": error.message, "retry_at": retry_at.to_string()})),
            Self::GrantFailed { attempt, error } => {
                error.output().add_to(json!({"attempt": attempt, "error": error.message}))
            }
            Self::GrantSkipped => json!({"why": "expired before it could be granted"}),
            Self::GrantInterrupted => {
                json!({"why": "grant attempt interrupted; access may have been applied; it is revoked at expiry"})
            }
            Self::GrantExtended { provider, expires_at, report } => {
                report.add_to(json!({"provider": provider, "expires_at": expires_at.to_string()}))
            }
            Self::GrantExtendFailed { provider, error } => json!({"provider": provider, "error": error}),
            Self::RevokeRequested { detail } => json!({"detail": detail}),
            Self::RevokeApplied { provider, early, report } => {
                report.add_to(json!({"provider": provider, "early": early}))
            }
            Self::RevokeOverdue { state, expires_at, last_error } => json!({
                "state": state.as_str(),
                "expires_at": expires_at.map(|t| t.to_string()),
                "last_error": last_error,
            }),
            Self::RevokeRetryRequested { state, last_error, queued_new } => {
                let how = if queued_new { "a new revocation was queued" } else { "the queued revocation runs now" };
                json!({"state": state.as_str(), "last_error": last_error, "action": how})
            }
            Self::ActionCompleted { provider, report } => report.add_to(json!({"provider": provider})),
            Self::ActionFailed { provider, error } => {
                error.output().add_to(json!({"provider": provider, "error": error.message}))
            }
            Self::ReconcileDrift { finding } | Self::ReconcileRevoked { finding } => json!({"finding": finding}),
            Self::CredentialsLinkIssued { login, valid_until } => {
                json!({"login": login, "valid_until": valid_until.to_string()})
            }
            Self::CredentialsPasswordSet { login, requester_subject } => {
                json!({"login": login, "requester_subject": requester_subject})
            }
            Self::RevokeAll { reason, revoking, cancelled } => json!({
                "reason": reason,
                "revoking": ids(revoking),
                "cancelled": ids(cancelled),
            }),
            Self::KillSwitchReleased { reason, engaged_by, engaged_at, engaged_reason } => json!({
                "reason": reason,
                "engaged_by": engaged_by,
                "engaged_at": engaged_at,
                "engaged_reason": engaged_reason,
            }),
            Self::AuditKeyed { unsealed_head_seq } => json!({ "unsealed_head_seq": unsealed_head_seq }),
            Self::AuditHeadMismatch { head_seq, problem } => json!({ "head_seq": head_seq, "problem": problem }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored details are part of each row's hash and of auditors'
    /// queries: these are the bytes rows have always had.
    #[test]
    fn details_keep_their_stored_form() {
        let notes = vec!["terminated 1 session".to_owned()];
        let report = CallOutput { notes: &notes, output: Some("ok") };
        let at = Timestamp::from_millis(0);
        let ids = [RequestId::new(3), RequestId::new(4)];
        let cases = [
            (Event::RequestWithdrawn, "request.cancelled", r#"{}"#),
            (
                Event::GrantApplied { provider: "pg", revocation_pending: true, report },
                "grant.applied",
                r#"{"note":"applied while a revocation was pending","notes":["terminated 1 session"],"output":"ok","provider":"pg"}"#,
            ),
            (
                Event::GrantFailed { attempt: 2, error: CallError { message: "down", output: None } },
                "grant.failed",
                r#"{"attempt":2,"error":"down"}"#,
            ),
            (
                Event::RevokeAll { reason: "incident", revoking: &ids, cancelled: &[] },
                "kill_switch.revoke_all",
                r#"{"cancelled":[],"reason":"incident","revoking":[3,4]}"#,
            ),
            (
                Event::RevokeRetryRequested { state: RequestState::RevokeFailed, last_error: None, queued_new: true },
                "revoke.retry_requested",
                r#"{"action":"a new revocation was queued","last_error":null,"state":"revoke_failed"}"#,
            ),
            (Event::GrantSkipped, "grant.skipped", r#"{"why":"expired before it could be granted"}"#),
            (
                Event::AccessExtended { extension: RequestId::new(5), from: at, to: at },
                "access.extended",
                r#"{"extension":5,"from":"1970-01-01T00:00:00Z","to":"1970-01-01T00:00:00Z"}"#,
            ),
        ];
        for (event, action, detail) in cases {
            assert_eq!(event.action().as_str(), action);
            assert_eq!(event.detail().to_string(), detail, "{action}");
        }
    }
}
