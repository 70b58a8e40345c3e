//! What a use case refuses, and why, in the words people see: transports
//! show [`Refusal`]'s text as it is (Slack replies, pages, the command
//! line), so a variant's wording is part of the product.

use super::{REVIEW_NOTE_MIN, REVOKE_ALL_REASON_MIN};
use crate::domain::{RequestId, RequestState, RoleName};

/// Why the actor may not do what they asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A sign-in link used twice, or too late.
    #[error("this sign-in link was already used or has expired; run /jit link in Slack for a new one")]
    SignInLinkUsed,
    /// The role has no usable grant for this requester.
    #[error("{role} cannot be granted to you: {why}")]
    CannotBeGranted { role: RoleName, why: String },
    /// The request's role was removed from the config since.
    #[error("role {role} is no longer configured; the request cannot be decided")]
    RoleGoneUndecidable { role: RoleName },
    /// The request's role was removed from the config since.
    #[error("role {role} is no longer configured")]
    RoleGone { role: RoleName },
    /// The requester lost the groups that allow the role.
    #[error("the requester is no longer in a group allowed to request {role}; the request cannot be approved")]
    RequesterLeftGroups { role: RoleName },
    /// The requester's identity link is gone.
    #[error("the requester's identity link was removed; the request cannot be approved")]
    RequesterUnlinked,
    /// Only the requester may cancel.
    #[error("only the requester can cancel request {0}")]
    NotTheRequester(RequestId),
    /// Only the requester or an administrator may end access early.
    #[error("only the requester or a jitbot administrator can revoke request {0}")]
    NotRequesterOrAdmin(RequestId),
    /// A one-shot action leaves nothing to revoke.
    #[error("request {0} is a one-shot action: there is nothing to revoke")]
    OneShot(RequestId),
    /// A retry for a request that is not being revoked.
    #[error("request {id} is not waiting for a revocation (it is {})", state.describe())]
    NoRevocationWaiting { id: RequestId, state: RequestState },
    /// Only administrators may retry a revocation.
    #[error("only jitbot administrators can retry a revocation")]
    NotAdminToRetry,
    /// Only administrators may pull or release the kill switch.
    #[error("only jitbot administrators (policy.admin_groups) can revoke all access")]
    NotAdmin,
    /// The kill switch needs a reason.
    #[error("say why you are revoking all access (at least {REVOKE_ALL_REASON_MIN} characters)")]
    RevokeAllReasonTooShort,
    /// Releasing the kill switch needs a reason.
    #[error("say why granting may resume (at least {REVOKE_ALL_REASON_MIN} characters)")]
    ReleaseReasonTooShort,
    /// An extension that found nothing to extend was cancelled.
    #[error("extension {id} was cancelled: {why}")]
    ExtensionCancelled { id: RequestId, why: String },
    /// An identity SCIM deactivated or deleted (`how`).
    #[error("{email} was {how} (SCIM), so it cannot be linked until the identity provider reactivates it")]
    Deprovisioned { email: String, how: String },
    /// Another person's link holds this email.
    #[error(
        "{email} is already linked to Slack user {team_id}/{user_id} as subject {subject:?} at {issuer}; \
         one person has one identity (remove that link first, or use its issuer and subject)"
    )]
    EmailTaken { email: String, team_id: String, user_id: String, subject: String, issuer: String },
    /// A review needs a note.
    #[error("a review needs a note of at least {REVIEW_NOTE_MIN} characters: what was checked, what was found")]
    ReviewNoteTooShort,
    /// The request is not flagged for review.
    #[error("request {0} is not waiting for review")]
    NotWaitingForReview(RequestId),
    /// Only the requester may extend their access.
    #[error("only the holder of request {0} can extend it")]
    NotTheHolder(RequestId),
    /// Only live access can be extended.
    #[error("request {id} is {}: only live access can be extended (ask again with /jit request)", state.describe())]
    NotLive { id: RequestId, state: RequestState },
    /// The access ended while the extension was being decided.
    #[error("request {0} ended while it was being extended")]
    EndedWhileExtending(RequestId),
    /// An extension that would not move the expiry.
    #[error("{0}")]
    NothingToExtend(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts people read (and Slack tests assert) stay as they were.
    #[test]
    fn refusals_read_as_before() {
        let taken = Refusal::EmailTaken {
            email: "alice@example.com".into(),
            team_id: "T1".into(),
            user_id: "U1".into(),
            subject: "sub-1".into(),
            issuer: "https://idp".into(),
        };
        assert_eq!(
            taken.to_string(),
            "alice@example.com is already linked to Slack user T1/U1 as subject \"sub-1\" at https://idp; one person \
             has one identity (remove that link first, or use its issuer and subject)"
        );
        let waiting = Refusal::NoRevocationWaiting { id: RequestId::new(7), state: RequestState::Active };
        assert_eq!(
            waiting.to_string(),
            format!("request #7 is not waiting for a revocation (it is {})", RequestState::Active.describe())
        );
        assert_eq!(
            Refusal::RevokeAllReasonTooShort.to_string(),
            "say why you are revoking all access (at least 4 characters)"
        );
    }
}
