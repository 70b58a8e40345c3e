//! The access-request state machine.
//!
//! ```text
//!  pending ─┬─ approved ─ granting ─ active ─ revoking ─ revoked
//!           ├─ denied          ├─ grant_failed    └─ revoke_failed (retried)
//!           ├─ cancelled       ├─ completed      (one-shot action ran)
//!           ├─ timed_out       └─ action_failed  (one-shot action failed)
//!           └─ extended   (an extension request, once its request's expiry moved)
//! ```
//!
//! One-shot actions (a `command` role with `one_shot = true`) have nothing
//! to revoke: their grant job runs the action once and the request ends in
//! `completed` or `action_failed`, both terminal, without a revocation job.
//!
//! An extension of active access is asked for like a request (it has a
//! card, approvals and a timeout of its own) but grants nothing: when it is
//! approved the request it extends gets a later expiry and the extension
//! ends in `extended`.
//!
//! The store enforces each transition with a conditional update
//! (`... WHERE state IN (<allowed sources>)`); this module is the single list
//! of which sources are allowed, so the SQL and the rules cannot drift apart.

use std::fmt;

/// Where an access request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestState {
    /// Waiting for approvals.
    Pending,
    /// Approved; the grant has not been scheduled yet (transient, inside the
    /// approving transaction).
    Approved,
    /// The grant job is scheduled or running; the revocation job already exists.
    Granting,
    /// The provider applied the access; it ends at `expires_at`.
    Active,
    /// The revocation is being applied.
    Revoking,
    /// An extension request whose extension was applied. Terminal.
    Extended,
    /// Access removed. Terminal.
    Revoked,
    /// An approver said no. Terminal.
    Denied,
    /// The requester withdrew the ask. Terminal.
    Cancelled,
    /// Nobody decided in time. Terminal.
    TimedOut,
    /// The provider could not apply the grant after its retries. The
    /// revocation still runs, to clean up anything half-applied.
    GrantFailed,
    /// Revocation keeps failing; it is retried and administrators are alerted.
    RevokeFailed,
    /// A one-shot action ran successfully. Terminal; nothing to revoke.
    Completed,
    /// A one-shot action failed (it is never run twice). Terminal.
    ActionFailed,
}

impl RequestState {
    /// Every state, for parsing and exhaustive tests.
    pub const ALL: [RequestState; 14] = [
        Self::Pending,
        Self::Approved,
        Self::Granting,
        Self::Active,
        Self::Revoking,
        Self::Revoked,
        Self::Denied,
        Self::Cancelled,
        Self::TimedOut,
        Self::GrantFailed,
        Self::RevokeFailed,
        Self::Completed,
        Self::ActionFailed,
        Self::Extended,
    ];

    /// States in which a person holds (or may soon hold) the role: a second
    /// request for the same role is refused while one of these exists.
    pub const OPEN: [RequestState; 6] =
        [Self::Pending, Self::Approved, Self::Granting, Self::Active, Self::Revoking, Self::RevokeFailed];

    /// States in which access may exist in the target system and a
    /// revocation is still owed.
    pub const MAY_HOLD_ACCESS: [RequestState; 5] =
        [Self::Granting, Self::Active, Self::Revoking, Self::RevokeFailed, Self::GrantFailed];

    /// The name stored in the database and shown in audit rows.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Granting => "granting",
            Self::Active => "active",
            Self::Revoking => "revoking",
            Self::Revoked => "revoked",
            Self::Denied => "denied",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed_out",
            Self::GrantFailed => "grant_failed",
            Self::RevokeFailed => "revoke_failed",
            Self::Completed => "completed",
            Self::ActionFailed => "action_failed",
            Self::Extended => "extended",
        }
    }

    /// Parses a stored state name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the request can still change.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Revoked
                | Self::Denied
                | Self::Cancelled
                | Self::TimedOut
                | Self::Completed
                | Self::ActionFailed
                | Self::Extended
        )
    }

    /// The states a request may move into `self` from. The store turns this
    /// into the `WHERE state IN (...)` of the conditional update.
    pub fn allowed_sources(self) -> &'static [RequestState] {
        match self {
            Self::Pending => &[],
            Self::Approved | Self::Denied | Self::Cancelled | Self::TimedOut | Self::Extended => &[Self::Pending],
            Self::Granting => &[Self::Pending, Self::Approved],
            Self::Active => &[Self::Granting],
            Self::GrantFailed | Self::Completed | Self::ActionFailed => &[Self::Granting],
            Self::Revoking => &[Self::Granting, Self::Active, Self::GrantFailed, Self::RevokeFailed],
            Self::RevokeFailed => &[Self::Revoking],
            Self::Revoked => &[Self::Revoking, Self::RevokeFailed],
        }
    }

    /// Whether `from -> self` is a legal transition.
    pub fn can_come_from(self, from: RequestState) -> bool {
        self.allowed_sources().contains(&from)
    }

    /// A few words for people: "waiting for approval", "active", ...
    pub fn describe(self) -> &'static str {
        match self {
            Self::Pending => "waiting for approval",
            Self::Approved => "approved",
            Self::Granting => "being granted",
            Self::Active => "active",
            Self::Revoking => "being revoked",
            Self::Revoked => "revoked",
            Self::Denied => "denied",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed out",
            Self::GrantFailed => "grant failed",
            Self::RevokeFailed => "revocation failing (retrying)",
            Self::Completed => "completed",
            Self::ActionFailed => "action failed",
            Self::Extended => "extension applied",
        }
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in RequestState::ALL {
            assert_eq!(RequestState::parse(s.as_str()), Some(s));
        }
        assert_eq!(RequestState::parse("nope"), None);
    }

    #[test]
    fn terminal_states_never_move() {
        for to in RequestState::ALL {
            for from in RequestState::ALL.into_iter().filter(|s| s.is_terminal()) {
                assert!(!to.can_come_from(from), "{from} -> {to} must be impossible");
            }
        }
    }

    #[test]
    fn only_pending_requests_are_decided() {
        assert!(RequestState::Granting.can_come_from(RequestState::Pending));
        assert!(!RequestState::Granting.can_come_from(RequestState::Active));
        assert!(!RequestState::Denied.can_come_from(RequestState::Granting));
        assert!(RequestState::Revoking.can_come_from(RequestState::GrantFailed));
        assert!(RequestState::Extended.can_come_from(RequestState::Pending));
        assert!(RequestState::Extended.is_terminal());
        assert!(!RequestState::MAY_HOLD_ACCESS.contains(&RequestState::Extended));
    }

    #[test]
    fn one_shot_actions_end_without_a_revocation() {
        for end in [RequestState::Completed, RequestState::ActionFailed] {
            assert!(end.is_terminal());
            assert_eq!(end.allowed_sources(), &[RequestState::Granting]);
            assert!(!RequestState::MAY_HOLD_ACCESS.contains(&end));
            assert!(!RequestState::Revoking.can_come_from(end));
        }
    }
}
