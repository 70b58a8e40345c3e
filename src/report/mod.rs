//! Access insights: what the recorded history says about how access is
//! really used, computed as a pure function of facts read from the
//! database (never from logs).
//!
//! What lives here: the facts the store reads ([`ReportFacts`]), the
//! [`Report`] computed from them ([`compute`]), the recommendations with
//! the numbers behind them ([`recommend`]) and the text and HTML renderings
//! of one report ([`render`]). The JSON form is the [`Report`] itself, so
//! every format shows the same figures. What does not: reading the
//! database (`store::report`) and choosing the period (the service's
//! `report` read model and the CLI). No I/O and no clock here: `until` is
//! an argument like every `now`.
//!
//! # How the figures are counted
//!
//! - A request belongs to the period when it was *created* in
//!   `[since, until]` (`until` included, so a request made the moment a
//!   report up to now is asked for is in it); extensions are counted apart (under `extensions`),
//!   never as requests.
//! - `approved` counts every request that was let through: by its
//!   approvers, by auto-approval or by break-glass. "Decided by people"
//!   means approved by approvers or denied.
//! - Approval time is from the request to its last needed approval, for
//!   requests approved by people.
//! - Durations: *requested* is what was asked for (extensions taken off),
//!   *granted* is what was approved (extensions included), *used* is from
//!   the grant to the earliest of: the requester's "I'm done" or another
//!   early revoke (`revoke.requested` in the audit trail), the revocation
//!   itself, or the expiry. A grant is *ended early* when that end came
//!   before its expiry.
//! - Revocation lateness is from when access should have ended (the
//!   expiry, or the early revoke's request) to when the provider confirmed
//!   the removal. Failed attempts are the `revoke.attempt_failed` rows of
//!   the audit trail (each was retried: a revocation is never abandoned).
//! - Percentiles are nearest-rank: the smallest recorded value with at
//!   least p% of the values at or below it, so every figure shown is a
//!   real observation.
//! - "Who approves most": approvers ordered by approvals given, most first;
//!   ties are broken alphabetically by the approver's email, so the order
//!   is the same on every run and both databases.
//! - Holding a role: the UTC working days (Monday to Friday) of the period
//!   on which the person had a live grant of the role for any part of the
//!   day, over the working days of the period.

pub mod recommend;
pub mod render;
mod stats;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::domain::{Decision, RequestState, Timestamp};

pub use recommend::{Recommendation, RecommendationKind};
pub use stats::{Lateness, Spread, nearest_rank, working_days};

/// One request (or extension) as the report reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFact {
    /// The request number.
    pub id: i64,
    /// The role asked for.
    pub role: String,
    /// Who asked: the email stored on the request, lower-cased, so that a
    /// person with two Slack accounts counts once.
    pub requester: String,
    /// Where the request is now.
    pub state: RequestState,
    /// When it was asked for (epoch milliseconds, like every instant here).
    pub created_at: i64,
    /// When it was let through, denied, cancelled or timed out.
    pub decided_at: Option<i64>,
    /// When the provider applied the access.
    pub granted_at: Option<i64>,
    /// When the access ends (or ended), extensions included.
    pub expires_at: Option<i64>,
    /// When the request ended: for a grant, when the revocation succeeded.
    pub ended_at: Option<i64>,
    /// The approved length in milliseconds, extensions included.
    pub duration_ms: i64,
    /// Let through by the role's auto-approval rule.
    pub auto_approved: bool,
    /// Let through by the requester's break-glass.
    pub break_glass: bool,
    /// A break-glass request nobody has reviewed yet.
    pub review_required: bool,
    /// For an extension: the request it extends.
    pub extends: Option<i64>,
}

/// One approver's decision on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalFact {
    /// The request decided on.
    pub request_id: i64,
    /// Who decided: their email, lower-cased (their Slack id when the row
    /// predates emails on approvals).
    pub approver: String,
    /// What they decided.
    pub decision: Decision,
}

/// The audit-trail events the report reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrailEvent {
    /// Someone ended access before its expiry (`revoke.requested`).
    RevokeRequested,
    /// A revocation attempt failed and was retried (`revoke.attempt_failed`).
    RevokeAttemptFailed,
}

/// One audit-trail event of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventFact {
    /// The request it is about.
    pub request_id: i64,
    /// What happened.
    pub event: TrailEvent,
    /// When.
    pub at: i64,
}

/// Everything the report is computed from: the requests created in the
/// period or live during it, their decisions and their revocation events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportFacts {
    /// Requests and extensions.
    pub requests: Vec<RequestFact>,
    /// Decisions on them.
    pub approvals: Vec<ApprovalFact>,
    /// Their revocation events.
    pub events: Vec<EventFact>,
}

/// What to report on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// The first instant of the period.
    pub since: Timestamp,
    /// The end of the period (included): "now" for a report up to date.
    pub until: Timestamp,
    /// Only this role, if given.
    pub role: Option<String>,
}

/// The whole report: the one source every format renders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The period's first instant, RFC 3339.
    pub since: String,
    /// The period's end (included), RFC 3339.
    pub until: String,
    /// The role filter, if any.
    pub role_filter: Option<String>,
    /// Monday-to-Friday UTC days in the period (partial days count).
    pub working_days: u32,
    /// Every role together.
    pub overall: Figures,
    /// Each role with requests in the period, by name.
    pub roles: Vec<Figures>,
    /// Who held which role on how many working days, most first.
    pub people: Vec<Holding>,
    /// What to change, most urgent first.
    pub recommendations: Vec<Recommendation>,
    /// The series the page draws.
    pub charts: Charts,
}

/// The series behind the page's charts (all roles of the report together).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charts {
    /// Requests per UTC day of the period (every day, oldest first), by how they ended.
    pub per_day: Vec<DayOutcomes>,
    /// Approval times (approved by people), counted per [`APPROVAL_BUCKETS`].
    pub approval_time: Vec<Bucket>,
    /// Revocation lateness, counted per [`LATENESS_BUCKETS`].
    pub lateness: Vec<Bucket>,
}

/// The requests made on one day, by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayOutcomes {
    /// The UTC date, `2026-01-01`.
    pub day: String,
    /// Let through.
    pub approved: u64,
    /// Denied.
    pub denied: u64,
    /// Timed out.
    pub timed_out: u64,
    /// Cancelled.
    pub cancelled: u64,
    /// Still pending.
    pub pending: u64,
}

/// How many values fell at or below `upto_ms` (and above the previous
/// bucket); the last bucket has no bound.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Shown under the bar: `≤ 5m`, `> 4h`.
    pub label: String,
    /// The values in it.
    pub count: u64,
}

/// Upper bounds of the approval-time buckets (and one open bucket above).
pub const APPROVAL_BUCKETS: [i64; 4] = [5 * 60_000, 15 * 60_000, 3_600_000, 4 * 3_600_000];
/// Upper bounds of the revocation-lateness buckets (and one open bucket above).
pub const LATENESS_BUCKETS: [i64; 4] = [60_000, 5 * 60_000, 15 * 60_000, 3_600_000];

fn buckets(bounds: &[i64], values: &[i64]) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = bounds
        .iter()
        .map(|b| Bucket { label: format!("≤ {}", recommend::human(*b)), count: 0 })
        .chain(std::iter::once(Bucket {
            label: format!("> {}", bounds.last().map_or_else(String::new, |b| recommend::human(*b))),
            count: 0,
        }))
        .collect();
    for v in values {
        let i = bounds.iter().position(|b| v <= b).unwrap_or(bounds.len());
        if let Some(b) = out.get_mut(i) {
            b.count += 1;
        }
    }
    out
}

/// The figures of one role, or of all roles together (`role` is `None`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// The role, or `None` for the overall figures.
    pub role: Option<String>,
    /// Requests created in the period (extensions not included).
    pub requests: u64,
    /// Of those, still waiting for a decision.
    pub pending: u64,
    /// Let through (by approvers, auto-approval or break-glass).
    pub approved: u64,
    /// Of `approved`, let through by approvers (not auto, not break-glass).
    pub approved_by_people: u64,
    /// Denied by an approver.
    pub denied: u64,
    /// Nobody decided in time.
    pub timed_out: u64,
    /// Withdrawn, or cancelled by jitbot (lost link, kill switch).
    pub cancelled: u64,
    /// Let through by auto-approval.
    pub auto_approved: u64,
    /// `auto_approved` as a whole percentage of `requests` (rounded).
    pub auto_approved_percent: u64,
    /// Let through by break-glass.
    pub break_glass: u64,
    /// Of those, not reviewed yet.
    pub break_glass_unreviewed: u64,
    /// From request to approval, for requests approved by people.
    pub approval_time: Spread,
    /// Approvals given per approver, most first, ties alphabetical.
    pub approvers: Vec<ApproverCount>,
    /// Requested, granted and used durations.
    pub durations: Durations,
    /// Extensions asked for and applied.
    pub extensions: Extensions,
    /// How revocations went.
    pub revocations: Revocations,
}

/// How many approvals one person gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApproverCount {
    /// The approver's email.
    pub approver: String,
    /// Requests they approved.
    pub approvals: u64,
}

/// Requested vs granted vs used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Durations {
    /// What was asked for, over all requests.
    pub requested: Spread,
    /// What was approved (extensions included), over grants.
    pub granted: Spread,
    /// What was used, over grants that ended (or expired).
    pub used: Spread,
    /// Grants that ended (or expired) in the period's view.
    pub finished: u64,
    /// Of those, ended before their expiry.
    pub ended_early: u64,
}

/// Extensions of the period's requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extensions {
    /// Asked for.
    pub asked: u64,
    /// Applied (the expiry moved).
    pub applied: u64,
}

/// How revocations went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocations {
    /// Grants whose access was removed.
    pub revoked: u64,
    /// From when access should have ended to the confirmed removal.
    pub lateness: Lateness,
    /// Revocations that needed at least one retry.
    pub retried: u64,
    /// Failed attempts in all (each one was retried).
    pub failed_attempts: u64,
    /// Revocations failing right now (`revoke_failed`).
    pub failing_now: u64,
}

/// How often one person held one role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    /// The person's email.
    pub person: String,
    /// The role.
    pub role: String,
    /// Working days with a live grant of the role.
    pub days: u32,
    /// Working days in the period.
    pub working_days: u32,
    /// `days` as a whole percentage of `working_days` (rounded).
    pub percent: u64,
}

/// The start of a period ending `now`, as people write it: a duration
/// back from now (`30d`, `12h`) or an RFC 3339 instant. Shared by the
/// command line and the HTTP endpoints so both read `since` alike.
pub fn parse_since(s: &str, now: Timestamp) -> Result<Timestamp, String> {
    let s = s.trim();
    let since = match humantime::parse_duration(s) {
        Ok(back) => now.minus(back),
        Err(_) => Timestamp::parse_rfc3339(s)
            .map_err(|_| format!("{s:?} is neither a duration (30d, 12h) nor an RFC 3339 time"))?,
    };
    if since >= now {
        return Err(format!("{s:?} is not in the past"));
    }
    Ok(since)
}

/// `part` as a whole percentage of `whole`, rounded half up; 0 of nothing.
pub fn percent(part: u64, whole: u64) -> u64 {
    if whole == 0 { 0 } else { (part * 200 + whole) / (2 * whole) }
}

/// States a request reaches only after it was let through.
fn was_let_through(state: RequestState) -> bool {
    matches!(
        state,
        RequestState::Approved
            | RequestState::Granting
            | RequestState::Active
            | RequestState::Revoking
            | RequestState::Revoked
            | RequestState::GrantFailed
            | RequestState::RevokeFailed
            | RequestState::Completed
            | RequestState::ActionFailed
    )
}

/// What the trail says about one request's revocation.
#[derive(Debug, Default, Clone, Copy)]
struct RevokeTrail {
    /// The first early revoke's instant.
    requested_at: Option<i64>,
    /// Failed attempts.
    failed: u64,
}

/// The facts indexed for one computation.
struct Index<'a> {
    period: &'a Period,
    trail: BTreeMap<i64, RevokeTrail>,
    /// Sum of applied extensions per extended request.
    extended_ms: BTreeMap<i64, i64>,
}

impl<'a> Index<'a> {
    fn new(facts: &ReportFacts, period: &'a Period) -> Self {
        let mut trail: BTreeMap<i64, RevokeTrail> = BTreeMap::new();
        for e in &facts.events {
            let t = trail.entry(e.request_id).or_default();
            match e.event {
                TrailEvent::RevokeRequested => {
                    t.requested_at = Some(t.requested_at.map_or(e.at, |r| r.min(e.at)));
                }
                TrailEvent::RevokeAttemptFailed => t.failed += 1,
            }
        }
        let mut extended_ms = BTreeMap::new();
        for r in &facts.requests {
            if let (Some(parent), RequestState::Extended) = (r.extends, r.state) {
                *extended_ms.entry(parent).or_insert(0) += r.duration_ms;
            }
        }
        Self { period, trail, extended_ms }
    }

    fn in_period(&self, r: &RequestFact) -> bool {
        r.created_at >= self.period.since.millis() && r.created_at <= self.period.until.millis()
    }

    /// When the grant's use ended, if it has by `until`.
    fn used_end(&self, r: &RequestFact) -> Option<i64> {
        r.granted_at?;
        let requested = self.trail.get(&r.id).and_then(|t| t.requested_at);
        let end = [r.expires_at, r.ended_at, requested].into_iter().flatten().min()?;
        (end <= self.period.until.millis()).then_some(end)
    }
}

/// Computes the report of `period` from `facts`. `defaults` maps each
/// configured role to its `default_duration` in milliseconds, so a
/// suggestion can say what it would change.
pub fn compute(facts: &ReportFacts, period: &Period, defaults: &BTreeMap<String, i64>) -> Report {
    let index = Index::new(facts, period);
    let wanted = |r: &RequestFact| period.role.as_deref().is_none_or(|role| r.role == role);
    let requests: Vec<&RequestFact> =
        facts.requests.iter().filter(|r| wanted(r) && r.extends.is_none() && index.in_period(r)).collect();
    let extensions: Vec<&RequestFact> =
        facts.requests.iter().filter(|r| wanted(r) && r.extends.is_some() && index.in_period(r)).collect();
    let approvals: BTreeMap<i64, Vec<&ApprovalFact>> = facts.approvals.iter().fold(BTreeMap::new(), |mut m, a| {
        m.entry(a.request_id).or_insert_with(Vec::new).push(a);
        m
    });

    let roles: BTreeSet<&str> = requests.iter().chain(&extensions).map(|r| r.role.as_str()).collect();
    let figures_of = |role: Option<&str>| {
        let mine = |r: &&&RequestFact| role.is_none_or(|x| r.role == x);
        let reqs: Vec<&RequestFact> = requests.iter().filter(mine).copied().collect();
        let exts: Vec<&RequestFact> = extensions.iter().filter(mine).copied().collect();
        figures(role, &reqs, &exts, &approvals, &index)
    };
    let overall = figures_of(None);
    let per_role: Vec<Figures> = roles.iter().map(|role| figures_of(Some(role))).collect();

    let working = working_days(period.since.millis(), period.until.millis());
    let held: Vec<&RequestFact> = facts.requests.iter().filter(|r| wanted(r) && r.extends.is_none()).collect();
    let people = holdings(&held, period, working);
    let denials = denials_by_person(&requests);
    let recommendations = recommend::recommend(&recommend::Inputs {
        roles: &per_role,
        people: &people,
        denials: &denials,
        unreviewed: &unreviewed_by_role(&requests),
        defaults,
        working_days: working,
    });
    Report {
        since: period.since.to_string(),
        until: period.until.to_string(),
        role_filter: period.role.clone(),
        working_days: working,
        overall,
        roles: per_role,
        people,
        recommendations,
        charts: charts(&requests, period, &index),
    }
}

/// A request approved by people: the ones whose approval time means something.
fn by_people(r: &RequestFact) -> bool {
    was_let_through(r.state) && !r.auto_approved && !r.break_glass
}

/// How late the revocation of `r` was, when it was revoked and the due
/// moment is known.
fn lateness_of(r: &RequestFact, index: &Index<'_>) -> Option<i64> {
    if r.state != RequestState::Revoked || r.granted_at.is_none() {
        return None;
    }
    let requested = index.trail.get(&r.id).and_then(|t| t.requested_at);
    let due = [r.expires_at, requested].into_iter().flatten().min()?;
    let ended = r.ended_at?;
    (ended >= due).then_some(ended - due)
}

fn charts(requests: &[&RequestFact], period: &Period, index: &Index<'_>) -> Charts {
    const DAY_MS: i64 = 86_400_000;
    let first = period.since.millis().div_euclid(DAY_MS);
    let last = period.until.millis().div_euclid(DAY_MS);
    let mut per_day: Vec<DayOutcomes> = (first..=last)
        .map(|d| DayOutcomes {
            day: Timestamp::from_millis(d * DAY_MS).to_string().chars().take(10).collect(),
            ..Default::default()
        })
        .collect();
    for r in requests {
        let Some(day) = usize::try_from(r.created_at.div_euclid(DAY_MS) - first).ok().and_then(|i| per_day.get_mut(i))
        else {
            continue;
        };
        match r.state {
            RequestState::Pending => day.pending += 1,
            RequestState::Denied => day.denied += 1,
            RequestState::TimedOut => day.timed_out += 1,
            RequestState::Cancelled => day.cancelled += 1,
            s if was_let_through(s) => day.approved += 1,
            _ => {}
        }
    }
    let approval: Vec<i64> =
        requests.iter().filter(|r| by_people(r)).filter_map(|r| Some(r.decided_at? - r.created_at)).collect();
    let late: Vec<i64> = requests.iter().filter_map(|r| lateness_of(r, index)).collect();
    Charts {
        per_day,
        approval_time: buckets(&APPROVAL_BUCKETS, &approval),
        lateness: buckets(&LATENESS_BUCKETS, &late),
    }
}

fn figures(
    role: Option<&str>,
    requests: &[&RequestFact],
    extensions: &[&RequestFact],
    approvals: &BTreeMap<i64, Vec<&ApprovalFact>>,
    index: &Index<'_>,
) -> Figures {
    let count = |f: &dyn Fn(&RequestFact) -> bool| requests.iter().filter(|r| f(r)).count() as u64;
    let approved = count(&|r| was_let_through(r.state));
    let auto_approved = count(&|r| r.auto_approved && was_let_through(r.state));

    let approval_times: Vec<i64> =
        requests.iter().filter(|r| by_people(r)).filter_map(|r| Some(r.decided_at? - r.created_at)).collect();

    let mut per_approver: BTreeMap<&str, u64> = BTreeMap::new();
    for r in requests.iter().filter(|r| by_people(r)) {
        let said_yes: BTreeSet<&str> = approvals
            .get(&r.id)
            .into_iter()
            .flatten()
            .filter(|a| a.decision == Decision::Approve)
            .map(|a| a.approver.as_str())
            .collect();
        for a in said_yes {
            *per_approver.entry(a).or_insert(0) += 1;
        }
    }
    let mut approvers: Vec<ApproverCount> =
        per_approver.into_iter().map(|(a, n)| ApproverCount { approver: a.to_owned(), approvals: n }).collect();
    // Most approvals first; equal counts alphabetically (the map's order, kept by a stable sort).
    approvers.sort_by_key(|a| std::cmp::Reverse(a.approvals));

    let requested: Vec<i64> =
        requests.iter().map(|r| r.duration_ms - index.extended_ms.get(&r.id).copied().unwrap_or(0)).collect();
    let grants: Vec<&RequestFact> = requests.iter().filter(|r| r.granted_at.is_some()).copied().collect();
    let granted: Vec<i64> = grants.iter().map(|r| r.duration_ms).collect();
    let mut used = Vec::new();
    let mut ended_early = 0;
    for r in &grants {
        let (Some(end), Some(start)) = (index.used_end(r), r.granted_at) else { continue };
        used.push((end - start).max(0));
        if r.expires_at.is_some_and(|x| end < x) {
            ended_early += 1;
        }
    }

    let mut lateness = Vec::new();
    let (mut revoked, mut retried, mut failed_attempts) = (0, 0, 0);
    for r in &grants {
        let trail = index.trail.get(&r.id).copied().unwrap_or_default();
        if trail.failed > 0 {
            retried += 1;
            failed_attempts += trail.failed;
        }
        if r.state != RequestState::Revoked {
            continue;
        }
        revoked += 1;
        let due = [r.expires_at, trail.requested_at].into_iter().flatten().min();
        if let (Some(due), Some(ended)) = (due, r.ended_at)
            && ended >= due
        {
            lateness.push(ended - due);
        }
    }

    let requests_n = requests.len() as u64;
    Figures {
        role: role.map(str::to_owned),
        requests: requests_n,
        pending: count(&|r| r.state == RequestState::Pending),
        approved,
        approved_by_people: count(&|r| by_people(r)),
        denied: count(&|r| r.state == RequestState::Denied),
        timed_out: count(&|r| r.state == RequestState::TimedOut),
        cancelled: count(&|r| r.state == RequestState::Cancelled),
        auto_approved,
        auto_approved_percent: percent(auto_approved, requests_n),
        break_glass: count(&|r| r.break_glass),
        break_glass_unreviewed: count(&|r| r.break_glass && r.review_required),
        approval_time: Spread::of(approval_times),
        approvers,
        durations: Durations {
            requested: Spread::of(requested),
            granted: Spread::of(granted),
            finished: used.len() as u64,
            used: Spread::of(used),
            ended_early,
        },
        extensions: Extensions {
            asked: extensions.len() as u64,
            applied: extensions.iter().filter(|e| e.state == RequestState::Extended).count() as u64,
        },
        revocations: Revocations {
            revoked,
            lateness: Lateness::of(lateness),
            retried,
            failed_attempts,
            failing_now: grants.iter().filter(|r| r.state == RequestState::RevokeFailed).count() as u64,
        },
    }
}

/// Working days with a live grant, per person and role.
fn holdings(requests: &[&RequestFact], period: &Period, working: u32) -> Vec<Holding> {
    let (since, until) = (period.since.millis(), period.until.millis());
    let mut days: BTreeMap<(&str, &str), BTreeSet<i64>> = BTreeMap::new();
    for r in requests {
        let Some(start) = r.granted_at else { continue };
        // Still live (or its revocation still owed): held up to the period's end.
        let end = r.ended_at.unwrap_or(until).min(until);
        let start = start.max(since);
        if end <= start {
            continue;
        }
        let set = days.entry((r.requester.as_str(), r.role.as_str())).or_default();
        set.extend(stats::working_days_touched(start, end));
    }
    let mut out: Vec<Holding> = days
        .into_iter()
        .map(|((person, role), d)| {
            let n = u32::try_from(d.len()).unwrap_or(u32::MAX);
            Holding {
                person: person.to_owned(),
                role: role.to_owned(),
                days: n,
                working_days: working,
                percent: percent(u64::from(n), u64::from(working)),
            }
        })
        .filter(|h| h.days > 0)
        .collect();
    // Most days first; then by person and role (the map's order, kept by a stable sort).
    out.sort_by_key(|h| std::cmp::Reverse(h.days));
    out
}

/// Per (person, role): (requests, denied).
fn denials_by_person(requests: &[&RequestFact]) -> BTreeMap<(String, String), (u64, u64)> {
    let mut out: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for r in requests {
        let e = out.entry((r.requester.clone(), r.role.clone())).or_default();
        e.0 += 1;
        if r.state == RequestState::Denied {
            e.1 += 1;
        }
    }
    out
}

/// Per role: the unreviewed break-glass requests, oldest first.
fn unreviewed_by_role(requests: &[&RequestFact]) -> BTreeMap<String, Vec<i64>> {
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in requests.iter().filter(|r| r.break_glass && r.review_required) {
        out.entry(r.role.clone()).or_default().push(r.id);
    }
    for ids in out.values_mut() {
        ids.sort_unstable();
    }
    out
}

#[cfg(test)]
mod tests;
