//! Policy evaluation: who may request a role, for how long, with which
//! ticket, who may approve it, when it is granted without approvers
//! (auto-approval) and when the requester may approve it alone
//! (break-glass). Pure functions over a role's policy and the identities the
//! identity provider vouched for; the service calls them when a request is
//! made and again at every decision, because group membership changes.

use super::ids::{RoleName, SlackUser};
use super::time::{AccessDuration, Timestamp};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

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
    /// The IdP claims kept at the last sign-in: only those a login template
    /// names (`{claims.NAME}`), so nothing else personal is stored.
    pub claims: BTreeMap<String, String>,
}

impl Identity {
    /// Whether this identity and `other` are the same person: the same
    /// Slack account, the same IdP identity behind two Slack accounts, or
    /// the same email (case-insensitively: `Alice@Example.com` typed into a
    /// hand-made link is the `alice@example.com` an OIDC sign-in verified).
    pub fn same_person(&self, other: &Identity) -> bool {
        self.slack == other.slack
            || (self.issuer == other.issuer && self.subject == other.subject)
            || (!self.email.trim().is_empty() && self.email.trim().eq_ignore_ascii_case(other.email.trim()))
    }

    fn in_any(&self, groups: &BTreeSet<String>) -> bool {
        self.groups.iter().any(|g| groups.contains(g))
    }
}

/// The shape a ticket id must have (`ticket_pattern`), matched against the
/// whole ticket so `INC-[0-9]+` does not accept `xINC-1y`.
#[derive(Clone)]
pub struct TicketPattern {
    source: String,
    regex: regex::Regex,
}

impl TicketPattern {
    /// Compiles a pattern; the error names what is wrong with it.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if pattern.trim().is_empty() {
            return Err("the ticket pattern is empty".to_owned());
        }
        let regex = regex::Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|e| format!("{pattern:?} is not a valid regular expression: {e}"))?;
        Ok(Self { source: pattern.to_owned(), regex })
    }

    /// The pattern as configured.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `ticket` is a ticket id of this shape.
    pub fn matches(&self, ticket: &str) -> bool {
        self.regex.is_match(ticket)
    }

    /// The first word of `text` that is a ticket id, ignoring punctuation
    /// around it, so `/jit request db 30m fixing INC-42, urgent` finds `INC-42`.
    pub fn find_in(&self, text: &str) -> Option<String> {
        text.split_whitespace()
            .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
            .find(|w| !w.is_empty() && self.matches(w))
            .map(str::to_owned)
    }
}

impl fmt::Debug for TicketPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TicketPattern({:?})", self.source)
    }
}

impl PartialEq for TicketPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for TicketPattern {}

/// "Members of these groups get up to this long without approval."
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoApproveRule {
    /// IdP groups whose members are auto-approved.
    pub groups: BTreeSet<String>,
    /// The longest auto-approved access; longer asks go to approvers.
    pub max_duration: AccessDuration,
}

/// Why a request needs no approvers; shown on the card and in the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoApproval {
    /// The group that qualified the requester.
    pub group: String,
    /// The rule's limit the duration is within.
    pub limit: AccessDuration,
}

impl fmt::Display for AutoApproval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "member of {}, up to {} without approval", self.group, self.limit)
    }
}

/// The standard durations offered in pickers; a role's own default and
/// maximum are always added.
const DURATION_CHOICES_MINUTES: [u64; 13] = [15, 30, 60, 120, 240, 480, 720, 1440, 2880, 4320, 10080, 20160, 43200];

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
    /// When set, a ticket id of this shape is required.
    pub ticket_pattern: Option<TicketPattern>,
    /// Who gets access without approvers, and for how long.
    pub auto_approve: Option<AutoApproveRule>,
    /// Pending requests time out after this long (a reminder goes out halfway).
    pub approval_timeout: Option<Duration>,
    /// The requester may approve their own request with a reason (announced, flagged for review).
    pub break_glass: bool,
    /// How long before expiry the holder is warned (zero: no warning).
    pub warn_before: Duration,
    /// The longest one grant may last with its extensions, if limited.
    pub max_total_duration: Option<AccessDuration>,
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
    /// The approver is the requester, on a role that offers break-glass instead.
    #[error(
        "you cannot approve your own request with Approve; {role} allows break-glass instead \
         (`/jit break-glass <id> <reason>`), which is announced and flagged for review"
    )]
    SelfApprovalUseBreakGlass { role: RoleName },
    /// The duration is above the role's maximum.
    #[error("{asked} is longer than the {max} maximum for {role}")]
    DurationTooLong { role: RoleName, asked: AccessDuration, max: AccessDuration },
    /// The reason is missing or too short.
    #[error("a reason of at least {min} characters is required (what are you doing and why?)")]
    ReasonTooShort { min: usize },
    /// The role needs a ticket id and none was given.
    #[error("{role} needs a ticket id like `{pattern}` (put it in the reason, e.g. \"fixing INC-4821\")")]
    TicketRequired { role: RoleName, pattern: String },
    /// The ticket given is not of the role's shape.
    #[error("{ticket:?} is not a ticket id of the form `{pattern}`")]
    TicketMismatch { ticket: String, pattern: String },
    /// The ticket is implausibly long.
    #[error("a ticket id may be at most {max} characters")]
    TicketTooLong { max: usize },
    /// Break-glass on a role that does not allow it.
    #[error("{role} does not allow break-glass: it needs approvers")]
    BreakGlassNotAllowed { role: RoleName },
    /// Break-glass by someone other than the requester.
    #[error("only the requester can break glass on their own request")]
    BreakGlassNotRequester,
    /// An extension would make one grant last longer than the role allows.
    #[error(
        "`{role}` allows at most {max} of access in one grant, extensions included; this extension would make it {total}. \
         Ask again with /jit request once it ends"
    )]
    TooLongInAll { role: RoleName, total: AccessDuration, max: AccessDuration },
}

/// The longest ticket id accepted (it ends up in Slack fields and URLs).
pub const TICKET_MAX_LENGTH: usize = 100;

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

    /// Checks the ticket of a request. `given` is the ticket as typed (if
    /// any); without it, a ticket id is looked for in the reason. Returns the
    /// ticket to store.
    pub fn check_ticket(&self, given: Option<&str>, reason: &str) -> Result<Option<String>, PolicyError> {
        let given = given.map(str::trim).filter(|t| !t.is_empty());
        if let Some(t) = given
            && t.chars().count() > TICKET_MAX_LENGTH
        {
            return Err(PolicyError::TicketTooLong { max: TICKET_MAX_LENGTH });
        }
        let Some(pattern) = &self.ticket_pattern else { return Ok(given.map(str::to_owned)) };
        match given {
            Some(t) if pattern.matches(t) => Ok(Some(t.to_owned())),
            Some(t) => Err(PolicyError::TicketMismatch { ticket: t.to_owned(), pattern: pattern.as_str().to_owned() }),
            None => pattern.find_in(reason).map(Some).ok_or_else(|| PolicyError::TicketRequired {
                role: self.role.clone(),
                pattern: pattern.as_str().to_owned(),
            }),
        }
    }

    /// Whether `requester` gets `duration` without approvers, and why.
    pub fn auto_approval(&self, requester: &Identity, duration: AccessDuration) -> Option<AutoApproval> {
        let rule = self.auto_approve.as_ref()?;
        if duration > rule.max_duration || self.check_requester(requester).is_err() {
            return None;
        }
        let group = requester.groups.iter().find(|g| rule.groups.contains(*g))?;
        Some(AutoApproval { group: group.clone(), limit: rule.max_duration })
    }

    /// Checks a break-glass: the requester approving their own request alone.
    pub fn check_break_glass(&self, actor: &Identity, requester: &Identity, reason: &str) -> Result<(), PolicyError> {
        if !self.break_glass {
            return Err(PolicyError::BreakGlassNotAllowed { role: self.role.clone() });
        }
        if !actor.same_person(requester) {
            return Err(PolicyError::BreakGlassNotRequester);
        }
        self.check_requester(actor)?;
        if reason.trim().chars().count() < self.reason_min_length.max(1) {
            return Err(PolicyError::ReasonTooShort { min: self.reason_min_length.max(1) });
        }
        Ok(())
    }

    /// The durations a picker offers for this role: common choices up to
    /// the maximum, plus the role's default and maximum, shortest first.
    pub fn duration_choices(&self) -> Vec<AccessDuration> {
        let mut out: Vec<AccessDuration> = DURATION_CHOICES_MINUTES
            .iter()
            .filter_map(|m| AccessDuration::try_from_std(Duration::from_secs(m * 60)).ok())
            .filter(|d| *d <= self.max_duration)
            .chain([self.default_duration, self.max_duration])
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Checks that extending access that began at `started` so that it ends
    /// at `new_expiry` stays within `max_total_duration`.
    pub fn check_total(&self, started: Timestamp, new_expiry: Timestamp) -> Result<(), PolicyError> {
        let Some(max) = self.max_total_duration else { return Ok(()) };
        let total_ms = new_expiry.millis().saturating_sub(started.millis());
        if total_ms > max.millis() {
            // Shown in whole minutes, rounded up: "8h 31m", not "8h 30m 12s".
            let total = AccessDuration::from_millis(total_ms.saturating_add(59_999) / 60_000 * 60_000);
            return Err(PolicyError::TooLongInAll { role: self.role.clone(), total, max });
        }
        Ok(())
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
            return Err(if self.break_glass {
                PolicyError::SelfApprovalUseBreakGlass { role: self.role.clone() }
            } else {
                PolicyError::SelfApproval
            });
        }
        if approver.in_any(&self.approvers) {
            Ok(())
        } else {
            Err(PolicyError::NotAnApprover { role: self.role.clone(), groups: list(&self.approvers) })
        }
    }
}

/// What a person is told when their IdP sent no groups claim: at link
/// time and in `/jit whoami`.
pub fn missing_groups_note(claim: &str) -> String {
    format!(
        "none: your identity provider sent no `{claim}` claim, so jitbot cannot see your groups. \
         An admin must make the IdP send it (e.g. add `\"groups\"` to `[idp] scopes`, or map the claim; \
         see jitbot's README), then run /jit link again"
    )
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
            claims: Default::default(),
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
            ticket_pattern: None,
            auto_approve: None,
            approval_timeout: None,
            break_glass: false,
            warn_before: Duration::from_secs(600),
            max_total_duration: None,
        }
    }

    fn d(s: &str) -> AccessDuration {
        AccessDuration::parse(s).unwrap()
    }

    #[test]
    fn extensions_stay_within_the_total_of_one_grant() {
        let start = Timestamp::from_millis(1_000_000);
        let at = |m: u64| start.plus(Duration::from_secs(m * 60));
        let unlimited = policy();
        assert_eq!(unlimited.check_total(start, at(10_000)), Ok(()));
        let capped = RolePolicy { max_total_duration: Some(d("8h")), ..policy() };
        for (ends, ok) in [(60, true), (480, true), (481, false), (2000, false)] {
            assert_eq!(capped.check_total(start, at(ends)).is_ok(), ok, "ends after {ends}m");
        }
        let e = capped.check_total(start, at(510)).unwrap_err().to_string();
        assert!(e.contains("at most 8h") && e.contains("would make it 8h 30m"), "{e}");
        // Seconds are rounded up to the minute in the message.
        let e = capped.check_total(start, at(480).plus(Duration::from_secs(1))).unwrap_err().to_string();
        assert!(e.contains("would make it 8h 1m"), "{e}");
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

    #[test]
    fn a_hand_made_link_with_the_same_email_in_other_case_is_the_same_person() {
        let p = policy();
        let alice = identity("U0ALICE", "alice", &["engineering"]);
        // `jitbot link add --email Alice@Example.com` on a second Slack account:
        // another issuer and subject, but the same person.
        let manual = Identity {
            issuer: "manual".into(),
            subject: "Alice@Example.com".into(),
            email: "Alice@Example.com".into(),
            ..identity("U0ALICE2", "x", &["sre-leads"])
        };
        assert_eq!(p.check_approver(&manual, &alice), Err(PolicyError::SelfApproval));
    }

    #[test]
    fn request_eligibility_and_bounds_table() {
        let p = policy();
        // (who, groups, duration, reason, expected)
        type Case<'a> = (&'a str, &'a [&'a str], Option<&'a str>, &'a str, Result<&'a str, &'a str>);
        let cases: &[Case] = &[
            ("default duration", &["engineering"], None, "debugging", Ok("30m")),
            ("at the maximum", &["engineering"], Some("4h"), "debugging", Ok("4h")),
            ("above the maximum", &["engineering"], Some("4h 1m"), "debugging", Err("longer than the 4h maximum")),
            ("one of several groups", &["sales", "engineering"], None, "debugging", Ok("30m")),
            ("outside the requester groups", &["sales"], None, "debugging", Err("you may not request prod-db")),
            ("no groups at all", &[], None, "debugging", Err("you may not request prod-db")),
            ("reason too short", &["engineering"], None, "fix", Err("at least 5 characters")),
            ("reason only spaces", &["engineering"], None, "          ", Err("at least 5 characters")),
            ("approver group does not help", &["sre-leads"], None, "debugging", Err("you may not request")),
        ];
        for (what, groups, duration, reason, expected) in cases {
            let who = identity("U0X", "x", groups);
            let got = p.check_request(&who, duration.map(d), reason).map(|d| d.to_string()).map_err(|e| e.to_string());
            match (expected, &got) {
                (Ok(want), Ok(have)) => assert_eq!(want, have, "{what}"),
                (Err(want), Err(have)) => assert!(have.contains(want), "{what}: {have}"),
                _ => panic!("{what}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn tickets_table() {
        let mut p = policy();
        // Without a pattern a ticket is optional and kept as given.
        assert_eq!(p.check_ticket(None, "debugging INC-1"), Ok(None));
        assert_eq!(p.check_ticket(Some(" OPS-7 "), "x"), Ok(Some("OPS-7".into())));
        assert_eq!(p.check_ticket(Some(&"x".repeat(101)), "x"), Err(PolicyError::TicketTooLong { max: 100 }));
        p.ticket_pattern = Some(TicketPattern::parse("INC-[0-9]+").unwrap());
        type Case<'a> = (Option<&'a str>, &'a str, Result<Option<&'a str>, &'a str>);
        let cases: &[Case] = &[
            (Some("INC-42"), "debugging", Ok(Some("INC-42"))),
            (Some("INC-"), "debugging", Err("not a ticket id of the form `INC-[0-9]+`")),
            (Some("xINC-42"), "debugging", Err("not a ticket id")),
            (Some("INC-42 and more"), "debugging", Err("not a ticket id")),
            (None, "fixing INC-4821, urgent", Ok(Some("INC-4821"))),
            (None, "(INC-7) replication lag", Ok(Some("INC-7"))),
            (None, "fixing the thing", Err("needs a ticket id like `INC-[0-9]+`")),
            (Some("  "), "see INC-9", Ok(Some("INC-9"))),
        ];
        for (given, reason, expected) in cases {
            let got = p.check_ticket(*given, reason).map_err(|e| e.to_string());
            match (expected, &got) {
                (Ok(want), Ok(have)) => assert_eq!(want.map(str::to_owned), *have, "{given:?} {reason:?}"),
                (Err(want), Err(have)) => assert!(have.contains(want), "{given:?}: {have}"),
                _ => panic!("{given:?} {reason:?}: expected {expected:?}, got {got:?}"),
            }
        }
        assert!(TicketPattern::parse("INC-[").is_err());
        assert!(TicketPattern::parse(" ").is_err());
    }

    #[test]
    fn auto_approval_table() {
        let mut p = policy();
        let oncall = identity("U0ON", "on", &["engineering", "oncall"]);
        assert_eq!(p.auto_approval(&oncall, d("30m")), None, "no rule, no auto-approval");
        p.auto_approve = Some(AutoApproveRule { groups: ["oncall".to_string()].into(), max_duration: d("1h") });
        // (groups, duration, auto-approved?)
        let cases: &[(&[&str], &str, bool)] = &[
            (&["engineering", "oncall"], "30m", true),
            (&["engineering", "oncall"], "1h", true),
            (&["engineering", "oncall"], "1h 1m", false),
            (&["engineering"], "30m", false),
            // In the auto-approve group but no longer a requester: never.
            (&["oncall"], "30m", false),
        ];
        for (groups, duration, expected) in cases {
            let who = identity("U0X", "x", groups);
            let got = p.auto_approval(&who, d(duration));
            assert_eq!(got.is_some(), *expected, "{groups:?} {duration}");
        }
        let why = p.auto_approval(&oncall, d("30m")).unwrap();
        assert_eq!(why.to_string(), "member of oncall, up to 1h without approval");
    }

    #[test]
    fn break_glass_table() {
        let mut p = policy();
        let alice = identity("U0ALICE", "alice", &["engineering"]);
        let alice_other_account = identity("U0ALICE2", "alice", &["engineering"]);
        let bob = identity("U0BOB", "bob", &["engineering", "sre-leads"]);
        let reason = "primary is down, nobody answers";
        assert!(matches!(p.check_break_glass(&alice, &alice, reason), Err(PolicyError::BreakGlassNotAllowed { .. })));
        p.break_glass = true;
        let former = identity("U0ALICE", "alice", &["sales"]);
        let cases: Vec<(&str, &Identity, &str, Result<(), &str>)> = vec![
            ("the requester", &alice, reason, Ok(())),
            ("the requester from a second account", &alice_other_account, reason, Ok(())),
            ("someone else", &bob, reason, Err("only the requester")),
            ("no reason", &alice, "  ", Err("at least 5 characters")),
            ("left the requester groups since", &former, reason, Err("you may not request")),
        ];
        for (what, actor, reason, expected) in cases {
            let got = p.check_break_glass(actor, &alice, reason).map_err(|e| e.to_string());
            match (expected, &got) {
                (Ok(()), Ok(())) => {}
                (Err(want), Err(have)) => assert!(have.contains(want), "{what}: {have}"),
                _ => panic!("{what}: expected {expected:?}, got {got:?}"),
            }
        }
        // Approve stays refused for the requester, pointing at break-glass.
        assert!(matches!(p.check_approver(&alice, &alice), Err(PolicyError::SelfApprovalUseBreakGlass { .. })));
    }

    #[test]
    fn decisions_are_rechecked_against_current_groups_table() {
        // The same request, decided by people whose groups changed since.
        let p = policy();
        let requester = identity("U0ALICE", "alice", &["engineering"]);
        let cases: &[(&str, &[&str], bool)] = &[
            ("approver still in sre-leads", &["sre-leads"], true),
            ("approver left sre-leads", &["engineering"], false),
            ("approver in an unrelated group", &["security"], false),
        ];
        for (what, groups, ok) in cases {
            let approver = identity("U0BOB", "bob", groups);
            assert_eq!(p.check_approver(&approver, &requester).is_ok(), *ok, "{what}");
        }
        // And the requester is re-checked too: one who left the group cannot be approved.
        let left = identity("U0ALICE", "alice", &["sales"]);
        assert!(p.check_requester(&left).is_err());
        assert!(p.check_requester(&requester).is_ok());
    }

    #[test]
    fn duration_choices_are_bounded_by_the_role() {
        let mut p = policy();
        let shown: Vec<String> = p.duration_choices().iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["15m", "30m", "1h", "2h", "4h"]);
        p.default_duration = d("45m");
        p.max_duration = d("90m");
        let shown: Vec<String> = p.duration_choices().iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["15m", "30m", "45m", "1h", "1h 30m"]);
    }
}
