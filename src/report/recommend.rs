//! Recommendations: what the figures suggest changing, each with the
//! numbers behind it, so a person can check the reasoning before acting.
//!
//! The thresholds are constants here, chosen to stay quiet on thin
//! evidence: a ratio over fewer than [`MIN_SAMPLE`] cases says nothing.
//! Recommendations come most urgent first (see [`RecommendationKind`]),
//! then by role and person, so the order is stable.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Figures, Holding, percent};
use crate::domain::AccessDuration;

/// The fewest cases a ratio-based recommendation is made on.
pub const MIN_SAMPLE: u64 = 5;
/// A role whose finished grants ended early this often (percent) ...
pub const EARLY_END_PERCENT: u64 = 60;
/// ... gets a shorter `default_duration`: the median use rounded up to
/// this step (and never below it), when that is shorter than the median
/// granted.
pub const DURATION_STEP: Duration = Duration::from_secs(15 * 60);
/// A role whose decisions by people were approvals this often (percent)
/// is an auto-approval candidate.
pub const AUTO_APPROVE_PERCENT: u64 = 95;
/// A role whose decisions by people were denials this often (percent) is
/// nearly always denied.
pub const MOSTLY_DENIED_PERCENT: u64 = 80;
/// A person denied a role this many times in the period may need another role.
pub const REPEATED_DENIALS: u64 = 3;
/// A person holding a role on this share of working days (percent) has
/// standing access in disguise ...
pub const STANDING_PERCENT: u64 = 60;
/// ... when the period has at least this many working days.
pub const STANDING_MIN_WORKING_DAYS: u32 = 5;

/// What a recommendation is about, in order of urgency (the most urgent
/// first): risks that exist now, then sizing and convenience.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecommendationKind {
    /// Break-glass requests nobody reviewed.
    UnreviewedBreakGlass,
    /// Revocations that needed retries: a target that fails to remove access.
    RevocationRetries,
    /// A person holds a role most working days.
    StandingAccess,
    /// One person approved every approved request of a role.
    SinglePointOfFailure,
    /// A role nearly always denied.
    MostlyDenied,
    /// A person repeatedly denied a role.
    DifferentRole,
    /// Grants mostly ended early: a shorter default would do.
    ShorterDefault,
    /// A role nearly always approved.
    AutoApprovalCandidate,
}

/// One thing to change, with the numbers behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recommendation {
    /// What kind of change.
    pub kind: RecommendationKind,
    /// The role it is about.
    pub role: String,
    /// The person it is about, if any.
    pub person: Option<String>,
    /// The advice, in a sentence that quotes the numbers.
    pub advice: String,
    /// The numbers behind it, by name (durations in milliseconds).
    pub numbers: BTreeMap<String, i64>,
}

/// What recommendations are made from.
pub(super) struct Inputs<'a> {
    pub roles: &'a [Figures],
    pub people: &'a [Holding],
    /// Per (person, role): (requests, denied).
    pub denials: &'a BTreeMap<(String, String), (u64, u64)>,
    /// Per role: unreviewed break-glass request numbers, oldest first.
    pub unreviewed: &'a BTreeMap<String, Vec<i64>>,
    /// Per role: its configured `default_duration` in milliseconds.
    pub defaults: &'a BTreeMap<String, i64>,
    pub working_days: u32,
}

fn numbers<const N: usize>(pairs: [(&str, i64); N]) -> BTreeMap<String, i64> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A duration in the form config files use (`30m`, `2h`, `1h 30m`).
pub fn human(ms: i64) -> String {
    if ms < 60_000 {
        return format!("{}s", ms.max(0) / 1000);
    }
    AccessDuration::from_millis(ms).to_string()
}

/// `ms` rounded up to [`DURATION_STEP`], at least one step.
pub fn round_up_to_step(ms: i64) -> i64 {
    let step = i64::try_from(DURATION_STEP.as_millis()).unwrap_or(i64::MAX);
    (ms.max(1) + step - 1) / step * step
}

/// The recommendations, most urgent first.
pub(super) fn recommend(inputs: &Inputs<'_>) -> Vec<Recommendation> {
    let mut out = Vec::new();
    for (role, ids) in inputs.unreviewed {
        let oldest = ids.first().copied().unwrap_or_default();
        out.push(Recommendation {
            kind: RecommendationKind::UnreviewedBreakGlass,
            role: role.clone(),
            person: None,
            advice: format!(
                "`{role}`: {} break-glass request(s) not reviewed (oldest #{oldest}): review them with `jitbot review list`",
                ids.len()
            ),
            numbers: numbers([("unreviewed", int(ids.len() as u64)), ("oldest_request", oldest)]),
        });
    }
    for f in inputs.roles {
        let role = f.role.clone().unwrap_or_default();
        role_recommendations(&role, f, inputs.defaults.get(&role).copied(), &mut out);
    }
    if inputs.working_days >= STANDING_MIN_WORKING_DAYS {
        for h in inputs.people.iter().filter(|h| h.percent >= STANDING_PERCENT) {
            out.push(Recommendation {
                kind: RecommendationKind::StandingAccess,
                role: h.role.clone(),
                person: Some(h.person.clone()),
                advice: format!(
                    "{} held `{}` on {} of {} working days ({}%): standing access in disguise; \
                     consider a standing grant reviewed periodically, or why they need it so often",
                    h.person, h.role, h.days, h.working_days, h.percent
                ),
                numbers: numbers([
                    ("days", i64::from(h.days)),
                    ("working_days", i64::from(h.working_days)),
                    ("percent", int(h.percent)),
                ]),
            });
        }
    }
    for ((person, role), &(asked, denied)) in inputs.denials {
        if denied >= REPEATED_DENIALS {
            out.push(Recommendation {
                kind: RecommendationKind::DifferentRole,
                role: role.clone(),
                person: Some(person.clone()),
                advice: format!(
                    "{person} was denied `{role}` {denied} time(s) in {asked} request(s): they may need a different role"
                ),
                numbers: numbers([("requests", int(asked)), ("denied", int(denied))]),
            });
        }
    }
    out.sort_by(|a, b| (a.kind, &a.role, &a.person).cmp(&(b.kind, &b.role, &b.person)));
    out
}

fn role_recommendations(role: &str, f: &Figures, default_ms: Option<i64>, out: &mut Vec<Recommendation>) {
    let r = &f.revocations;
    if r.retried > 0 {
        let worst = r.lateness.max_ms.unwrap_or(0);
        out.push(Recommendation {
            kind: RecommendationKind::RevocationRetries,
            role: role.to_owned(),
            person: None,
            advice: format!(
                "`{role}`: {} revocation(s) needed retries ({} failed attempt(s), worst lateness {}): \
                 check the provider's target",
                r.retried,
                r.failed_attempts,
                human(worst)
            ),
            numbers: numbers([
                ("retried", int(r.retried)),
                ("failed_attempts", int(r.failed_attempts)),
                ("max_lateness_ms", worst),
            ]),
        });
    }

    let by_people = f.approved_by_people;
    if let Some(top) = f.approvers.first()
        && by_people >= MIN_SAMPLE
        && top.approvals >= by_people
    {
        out.push(Recommendation {
            kind: RecommendationKind::SinglePointOfFailure,
            role: role.to_owned(),
            person: Some(top.approver.clone()),
            advice: format!(
                "`{role}`: {} approved all {by_people} request(s) approved by people: a single point of failure; \
                 make sure others in the approver groups decide too",
                top.approver
            ),
            numbers: numbers([("approved_by_people", int(by_people)), ("by_this_approver", int(top.approvals))]),
        });
    }

    let decided = by_people + f.denied;
    if decided >= MIN_SAMPLE {
        let approved_pct = percent(by_people, decided);
        let denied_pct = percent(f.denied, decided);
        if approved_pct >= AUTO_APPROVE_PERCENT {
            out.push(Recommendation {
                kind: RecommendationKind::AutoApprovalCandidate,
                role: role.to_owned(),
                person: None,
                advice: format!(
                    "`{role}`: {by_people} of {decided} decisions by people were approvals ({approved_pct}%): \
                     a candidate for `auto_approve` for a group"
                ),
                numbers: numbers([
                    ("decided", int(decided)),
                    ("approved", int(by_people)),
                    ("percent", int(approved_pct)),
                ]),
            });
        }
        if denied_pct >= MOSTLY_DENIED_PERCENT {
            out.push(Recommendation {
                kind: RecommendationKind::MostlyDenied,
                role: role.to_owned(),
                person: None,
                advice: format!(
                    "`{role}`: {} of {decided} decisions were denials ({denied_pct}%): \
                     the role may be offered to the wrong groups, or be the wrong shape",
                    f.denied
                ),
                numbers: numbers([("decided", int(decided)), ("denied", int(f.denied)), ("percent", int(denied_pct))]),
            });
        }
    }

    let d = &f.durations;
    if let (Some(used), Some(granted)) = (d.used.p50_ms, d.granted.p50_ms)
        && d.finished >= MIN_SAMPLE
        && percent(d.ended_early, d.finished) >= EARLY_END_PERCENT
    {
        let suggested = round_up_to_step(used);
        if suggested < granted && default_ms.is_none_or(|now| suggested < now) {
            let now = default_ms.map(|ms| format!(" (now {})", human(ms))).unwrap_or_default();
            out.push(Recommendation {
                kind: RecommendationKind::ShorterDefault,
                role: role.to_owned(),
                person: None,
                advice: format!(
                    "`{role}`: {} of {} grants ended early; median use {} of {} granted → default_duration {}{now}",
                    d.ended_early,
                    d.finished,
                    human(used),
                    human(granted),
                    human(suggested)
                ),
                numbers: numbers([
                    ("finished", int(d.finished)),
                    ("ended_early", int(d.ended_early)),
                    ("median_used_ms", used),
                    ("median_granted_ms", granted),
                    ("suggested_default_ms", suggested),
                ]),
            });
        }
    }
}
