//! An access request as the rest of the program sees it: typed, validated,
//! loaded from the store.

use super::ids::{RequestId, RoleName, SlackUser};
use super::state::RequestState;
use super::time::{AccessDuration, Timestamp};

/// One ask for a role, at some point in its lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequest {
    /// The request number.
    pub id: RequestId,
    /// Who asked.
    pub requester: SlackUser,
    /// The requester's IdP issuer when they asked.
    pub requester_issuer: String,
    /// The requester's IdP subject when they asked.
    pub requester_subject: String,
    /// The requester's verified email when they asked.
    pub requester_email: String,
    /// What they asked for.
    pub role: RoleName,
    /// The provider that grants it (copied from the role when asked, so a
    /// later config change cannot redirect the revocation).
    pub provider: String,
    /// How long access lasts once approved.
    pub duration: AccessDuration,
    /// Why, in the requester's words.
    pub reason: String,
    /// An optional ticket reference.
    pub ticket: Option<String>,
    /// Approvals needed, copied from the role when asked.
    pub approvals_required: u32,
    /// Where the request is now.
    pub state: RequestState,
    /// Why it is in this state, when that needs saying (a denial reason, a provider error).
    pub state_detail: Option<String>,
    /// When it was asked.
    pub created_at: Timestamp,
    /// When it was approved, denied, cancelled or timed out.
    pub decided_at: Option<Timestamp>,
    /// When the provider applied the grant.
    pub granted_at: Option<Timestamp>,
    /// When access ends (set at approval).
    pub expires_at: Option<Timestamp>,
    /// When access actually ended, or the request otherwise finished.
    pub ended_at: Option<Timestamp>,
    /// Why no approvers were needed, when the role's auto-approval applied.
    pub auto_approved: Option<String>,
    /// The requester's reason for approving their own request (break-glass).
    pub break_glass_reason: Option<String>,
    /// Someone must review this request afterwards (set by break-glass).
    pub review_required: bool,
    /// When a pending request times out, if its role has an approval timeout.
    pub decide_by: Option<Timestamp>,
    /// For an extension request: the request whose access it extends.
    pub extends: Option<RequestId>,
}

/// What one approver decided. The stored names (`approve`, `deny`,
/// `break_glass`) are a contract with the database and auditors' queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// An approver said yes.
    Approve,
    /// An approver said no.
    Deny,
    /// The requester approved their own request in an emergency.
    BreakGlass,
}

impl Decision {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Deny => "deny",
            Self::BreakGlass => "break_glass",
        }
    }

    /// Reads a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "approve" => Some(Self::Approve),
            "deny" => Some(Self::Deny),
            "break_glass" => Some(Self::BreakGlass),
            _ => None,
        }
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One approver's decision on a request, as recorded: what the cards, DMs
/// and lists show under "approved by" and "denied by".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// Approver workspace.
    pub team_id: String,
    /// Approver user.
    pub approver_id: String,
    /// What they decided.
    pub decision: Decision,
    /// Optional comment.
    pub comment: Option<String>,
    /// When (milliseconds since the epoch).
    pub created_at: i64,
}
