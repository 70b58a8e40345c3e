//! Policy evaluation: who may request a role, for how long, and who may
//! approve it. Pure functions over a role's policy and the identities the
//! identity provider vouched for.

use super::ids::{RoleName, SlackUser};
use super::time::AccessDuration;
use std::collections::BTreeSet;

/// What jitbot knows about a person when deciding: their Slack user and the
/// IdP identity it is linked to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The Slack account acting.
    pub slack: SlackUser,
    /// The IdP issuer of the link.
    pub issuer: String,
    /// The IdP subject (`sub`) of the link.
    pub subject: String,
    /// The verified email of the link.
    pub email: String,
    /// The IdP groups confirmed at the last sign-in.
    pub groups: BTreeSet<String>,
}

impl Identity {
    /// Whether this identity and `other` are the same person: either the same
    /// Slack account or the same IdP identity behind two Slack accounts.
    pub fn same_person(&self, other: &Identity) -> bool {
        self.slack == other.slack || (self.issuer == other.issuer && self.subject == other.subject)
    }

    fn in_any(&self, groups: &BTreeSet<String>) -> bool {
        self.groups.iter().any(|g| groups.contains(g))
    }
}

/// The rules of one role, taken from `[roles.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolePolicy {
    /// The role these rules belong to.
    pub role: RoleName,
    /// IdP groups whose members may ask for the role.
    pub requesters: BTreeSet<String>,
    /// IdP groups whose members may approve it.
    pub approvers: BTreeSet<String>,
    /// Distinct approvals needed; the requester never counts.
    pub approvals_required: u32,
    /// Duration used when the requester does not name one.
    pub default_duration: AccessDuration,
    /// The longest access that may be asked for.
    pub max_duration: AccessDuration,
    /// Minimum length of the reason, in characters (at least 1: a reason is always required).
    pub reason_min_length: usize,
}

/// Why a policy said no. Each message is written for the person who asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The requester is in none of the role's requester groups.
    #[error("you may not request {role}: it is for members of {groups}")]
    NotARequester { role: RoleName, groups: String },
    /// The approver is in none of the role's approver groups.
    #[error("you may not approve {role}: approvers are members of {groups}")]
    NotAnApprover { role: RoleName, groups: String },
    /// The approver is the requester.
    #[error("you cannot approve your own request")]
    SelfApproval,
    /// The duration is above the role's maximum.
    #[error("{asked} is longer than the {max} maximum for {role}")]
    DurationTooLong { role: RoleName, asked: AccessDuration, max: AccessDuration },
    /// The reason is missing or too short.
    #[error("a reason of at least {min} characters is required (what are you doing and why?)")]
    ReasonTooShort { min: usize },
}

fn list(groups: &BTreeSet<String>) -> String {
    groups.iter().cloned().collect::<Vec<_>>().join(", ")
}

impl RolePolicy {
    /// Checks a new request and returns the duration it will run for.
    pub fn check_request(
        &self,
        requester: &Identity,
        duration: Option<AccessDuration>,
        reason: &str,
    ) -> Result<AccessDuration, PolicyError> {
        self.check_requester(requester)?;
        let duration = duration.unwrap_or(self.default_duration);
        if duration > self.max_duration {
            return Err(PolicyError::DurationTooLong {
                role: self.role.clone(),
                asked: duration,
                max: self.max_duration,
            });
        }
        if reason.trim().chars().count() < self.reason_min_length.max(1) {
            return Err(PolicyError::ReasonTooShort { min: self.reason_min_length.max(1) });
        }
        Ok(duration)
    }

    /// Checks that the requester is (still) allowed to hold the role.
    pub fn check_requester(&self, requester: &Identity) -> Result<(), PolicyError> {
        if requester.in_any(&self.requesters) {
            Ok(())
        } else {
            Err(PolicyError::NotARequester { role: self.role.clone(), groups: list(&self.requesters) })
        }
    }

    /// Checks that `approver` may decide (approve or deny) `requester`'s request.
    pub fn check_approver(&self, approver: &Identity, requester: &Identity) -> Result<(), PolicyError> {
        if approver.same_person(requester) {
            return Err(PolicyError::SelfApproval);
        }
        if approver.in_any(&self.approvers) {
            Ok(())
        } else {
            Err(PolicyError::NotAnApprover { role: self.role.clone(), groups: list(&self.approvers) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(user: &str, sub: &str, groups: &[&str]) -> Identity {
        Identity {
            slack: SlackUser::parse("T0WORK", user).unwrap(),
            issuer: "https://idp.example".into(),
            subject: sub.into(),
            email: format!("{sub}@example.com"),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn policy() -> RolePolicy {
        RolePolicy {
            role: RoleName::parse("prod-db").unwrap(),
            requesters: ["engineering".to_string()].into(),
            approvers: ["sre-leads".to_string()].into(),
            approvals_required: 1,
            default_duration: AccessDuration::parse("30m").unwrap(),
            max_duration: AccessDuration::parse("4h").unwrap(),
            reason_min_length: 5,
        }
    }

    #[test]
    fn requesters_need_a_requester_group_and_a_reason() {
        let p = policy();
        let alice = identity("U0ALICE", "alice", &["engineering"]);
        assert_eq!(p.check_request(&alice, None, "debug INC-1").unwrap(), p.default_duration);
        let long = AccessDuration::parse("5h").unwrap();
        assert!(matches!(p.check_request(&alice, Some(long), "debugging"), Err(PolicyError::DurationTooLong { .. })));
        assert!(matches!(p.check_request(&alice, None, "  x "), Err(PolicyError::ReasonTooShort { min: 5 })));
        let mallory = identity("U0MAL", "mallory", &["sales"]);
        assert!(matches!(p.check_request(&mallory, None, "debugging"), Err(PolicyError::NotARequester { .. })));
    }

    #[test]
    fn nobody_approves_their_own_request() {
        let p = policy();
        let alice = identity("U0ALICE", "alice", &["engineering", "sre-leads"]);
        assert_eq!(p.check_approver(&alice, &alice), Err(PolicyError::SelfApproval));
        // The same IdP identity behind a second Slack account is still the same person.
        let alice2 = identity("U0ALICE2", "alice", &["sre-leads"]);
        assert_eq!(p.check_approver(&alice2, &alice), Err(PolicyError::SelfApproval));
        let bob = identity("U0BOB", "bob", &["sre-leads"]);
        assert_eq!(p.check_approver(&bob, &alice), Ok(()));
        let carol = identity("U0CAROL", "carol", &["engineering"]);
        assert!(matches!(p.check_approver(&carol, &alice), Err(PolicyError::NotAnApprover { .. })));
    }
}
