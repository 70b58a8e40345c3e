//! The computation on hand-made facts whose answers are known.

use std::collections::BTreeMap;

use super::*;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
/// 2026-01-05T00:00:00Z, a Monday.
const MON: i64 = 20_458 * DAY;

fn request(id: i64, role: &str, who: &str, state: RequestState, created: i64) -> RequestFact {
    RequestFact {
        id,
        role: role.into(),
        requester: who.into(),
        state,
        created_at: created,
        decided_at: None,
        granted_at: None,
        expires_at: None,
        ended_at: None,
        duration_ms: HOUR,
        auto_approved: false,
        break_glass: false,
        review_required: false,
        extends: None,
    }
}

/// A grant approved `wait` after it was asked for, for `len`, that ended at `ended`.
fn grant(id: i64, role: &str, who: &str, created: i64, wait: i64, len: i64, ended: Option<i64>) -> RequestFact {
    let decided = created + wait;
    RequestFact {
        decided_at: Some(decided),
        granted_at: Some(decided),
        expires_at: Some(decided + len),
        ended_at: ended,
        duration_ms: len,
        ..request(id, role, who, if ended.is_some() { RequestState::Revoked } else { RequestState::Active }, created)
    }
}

fn approve(id: i64, who: &str) -> ApprovalFact {
    ApprovalFact { request_id: id, approver: who.into(), decision: Decision::Approve }
}

fn period(days: i64) -> Period {
    Period { since: Timestamp::from_millis(MON), until: Timestamp::from_millis(MON + days * DAY), role: None }
}

fn kinds(report: &Report) -> Vec<(RecommendationKind, String, Option<String>)> {
    report.recommendations.iter().map(|r| (r.kind, r.role.clone(), r.person.clone())).collect()
}

#[test]
fn an_empty_period_has_zeroes_and_no_recommendations() {
    let report = compute(&ReportFacts::default(), &period(7), &BTreeMap::new());
    assert_eq!(report.overall, Figures::default());
    assert!(report.roles.is_empty() && report.people.is_empty() && report.recommendations.is_empty());
    assert_eq!(report.working_days, 5);
    assert_eq!(report.since, "2026-01-05T00:00:00Z");
    let text = render::text(&report);
    assert!(text.contains("requests       0:") && text.contains("p50 -, p90 - (n=0)"), "{text}");
    assert!(text.contains("Recommendations\n  none"), "{text}");
}

#[test]
fn outcomes_approval_times_and_approver_ties() {
    let mut facts = ReportFacts::default();
    // Approved by people after 10, 20, 30 and 40 minutes.
    for (i, wait) in [10, 20, 30, 40].into_iter().enumerate() {
        let id = i as i64 + 1;
        facts.requests.push(grant(id, "db", "alice", MON + HOUR, wait * MIN, HOUR, Some(MON + 3 * HOUR)));
    }
    // carol and bob approved two each: a tie, broken alphabetically.
    facts.approvals.extend([approve(1, "carol"), approve(2, "carol"), approve(3, "bob"), approve(4, "bob")]);
    let mut auto = grant(5, "db", "dave", MON + HOUR, 0, HOUR, Some(MON + 3 * HOUR));
    auto.auto_approved = true;
    let mut glass = grant(6, "db", "dave", MON + HOUR, 0, HOUR, Some(MON + 3 * HOUR));
    glass.break_glass = true;
    glass.review_required = true;
    facts.requests.extend([auto, glass]);
    facts
        .requests
        .push(RequestFact { decided_at: Some(MON + 2 * HOUR), ..request(7, "db", "eve", RequestState::Denied, MON) });
    facts.requests.push(request(8, "db", "eve", RequestState::Pending, MON));
    facts.requests.push(request(9, "db", "eve", RequestState::TimedOut, MON));
    facts.requests.push(request(10, "web", "eve", RequestState::Cancelled, MON));
    // Outside the period: not counted.
    facts.requests.push(request(11, "db", "eve", RequestState::Denied, MON - DAY));

    let report = compute(&facts, &period(7), &BTreeMap::new());
    let all = &report.overall;
    assert_eq!(
        (all.requests, all.approved, all.approved_by_people, all.denied, all.timed_out, all.cancelled, all.pending),
        (10, 6, 4, 1, 1, 1, 1)
    );
    assert_eq!((all.auto_approved, all.auto_approved_percent), (1, 10));
    assert_eq!((all.break_glass, all.break_glass_unreviewed), (1, 1));
    assert_eq!(all.approval_time, Spread { count: 4, p50_ms: Some(20 * MIN), p90_ms: Some(40 * MIN) });
    let approvers: Vec<(&str, u64)> = all.approvers.iter().map(|a| (a.approver.as_str(), a.approvals)).collect();
    assert_eq!(approvers, vec![("bob", 2), ("carol", 2)]);
    assert_eq!(report.roles.iter().map(|f| f.role.clone().unwrap()).collect::<Vec<_>>(), vec!["db", "web"]);
    assert_eq!(report.roles[1].requests, 1);
    assert_eq!(
        kinds(&report),
        vec![(RecommendationKind::UnreviewedBreakGlass, "db".into(), None)],
        "{:#?}",
        report.recommendations
    );
    assert_eq!(report.recommendations[0].numbers["oldest_request"], 6);

    let only_web = compute(&facts, &Period { role: Some("web".into()), ..period(7) }, &BTreeMap::new());
    assert_eq!((only_web.overall.requests, only_web.roles.len()), (1, 1));
}

#[test]
fn durations_extensions_and_early_ends() {
    let mut facts = ReportFacts::default();
    // Five 2h grants; four ended by "I'm done" after 20m, one ran out.
    for id in 1..=5 {
        let mut g = grant(id, "db", "alice", MON + id * DAY / 10, 0, 2 * HOUR, None);
        let start = g.granted_at.unwrap();
        if id == 5 {
            g.ended_at = Some(start + 2 * HOUR + 30_000);
        } else {
            facts.events.push(EventFact { request_id: id, event: TrailEvent::RevokeRequested, at: start + 20 * MIN });
            g.ended_at = Some(start + 21 * MIN);
        }
        g.state = RequestState::Revoked;
        facts.requests.push(g);
    }
    // Request 5 was asked for 1h and extended by 1h; another extension was denied.
    facts.requests[4].duration_ms = 2 * HOUR;
    let mut ext = request(6, "db", "alice", RequestState::Extended, MON + DAY / 2 + 30 * MIN);
    ext.extends = Some(5);
    let mut denied = request(7, "db", "alice", RequestState::Denied, MON + DAY / 2 + 40 * MIN);
    denied.extends = Some(5);
    facts.requests.extend([ext, denied]);
    for id in 1..=5 {
        facts.approvals.push(approve(id, "bob"));
    }

    let mut defaults = BTreeMap::new();
    defaults.insert("db".to_owned(), 2 * HOUR);
    let report = compute(&facts, &period(7), &defaults);
    let d = &report.overall.durations;
    assert_eq!(d.requested, Spread { count: 5, p50_ms: Some(2 * HOUR), p90_ms: Some(2 * HOUR) });
    assert_eq!(d.granted.p50_ms, Some(2 * HOUR));
    assert_eq!(d.used, Spread { count: 5, p50_ms: Some(20 * MIN), p90_ms: Some(2 * HOUR) });
    assert_eq!((d.finished, d.ended_early), (5, 4));
    assert_eq!(report.overall.extensions, Extensions { asked: 2, applied: 1 });
    assert_eq!(report.overall.requests, 5, "extensions are not requests");
    // Lateness: four 1m after "I'm done", one 30s after expiry.
    assert_eq!(
        report.overall.revocations.lateness,
        Lateness { count: 5, p50_ms: Some(MIN), p99_ms: Some(MIN), max_ms: Some(MIN) }
    );

    let shorter = report.recommendations.iter().find(|r| r.kind == RecommendationKind::ShorterDefault).unwrap();
    assert_eq!(
        shorter.advice,
        "`db`: 4 of 5 grants ended early; median use 20m of 2h granted → default_duration 30m (now 2h)"
    );
    assert_eq!(shorter.numbers["suggested_default_ms"], 30 * MIN);
    // bob approved all five: a single point of failure, and all were approved.
    assert_eq!(
        kinds(&report),
        vec![
            (RecommendationKind::SinglePointOfFailure, "db".into(), Some("bob".into())),
            (RecommendationKind::ShorterDefault, "db".into(), None),
            (RecommendationKind::AutoApprovalCandidate, "db".into(), None),
        ]
    );
}

#[test]
fn failed_revocations_holdings_and_repeated_denials() {
    let mut facts = ReportFacts::default();
    // alice holds `db` every working day of two weeks (one grant per day).
    for day in 0..14 {
        let start = MON + day * DAY + 9 * HOUR;
        facts.requests.push(grant(100 + day, "db", "alice", start, 0, HOUR, Some(start + HOUR)));
    }
    // One revocation failed twice, then succeeded 7m late.
    let g = facts.requests.iter_mut().find(|r| r.id == 101).unwrap();
    g.ended_at = Some(g.expires_at.unwrap() + 7 * MIN);
    facts.events.extend([
        EventFact { request_id: 101, event: TrailEvent::RevokeAttemptFailed, at: 0 },
        EventFact { request_id: 101, event: TrailEvent::RevokeAttemptFailed, at: 0 },
    ]);
    // A grant whose revocation is failing right now: held to the period's end.
    let mut failing = grant(200, "web", "bob", MON + 9 * DAY, 0, HOUR, None);
    failing.state = RequestState::RevokeFailed;
    facts.requests.push(failing);
    facts.events.push(EventFact { request_id: 200, event: TrailEvent::RevokeAttemptFailed, at: 0 });
    // eve asked for `web` four times, denied three.
    for id in 300..303 {
        facts.requests.push(request(id, "web", "eve", RequestState::Denied, MON + HOUR));
    }
    facts.requests.push(request(303, "web", "eve", RequestState::Cancelled, MON + HOUR));

    let report = compute(&facts, &period(14), &BTreeMap::new());
    assert_eq!(report.working_days, 10);
    let db = &report.roles[0].revocations;
    assert_eq!((db.revoked, db.retried, db.failed_attempts, db.failing_now), (14, 1, 2, 0));
    assert_eq!(db.lateness.max_ms, Some(7 * MIN));
    assert_eq!(db.lateness.p50_ms, Some(0));
    let web = &report.roles[1].revocations;
    assert_eq!((web.revoked, web.retried, web.failed_attempts, web.failing_now), (0, 1, 1, 1));

    let people: Vec<(&str, &str, u32, u64)> =
        report.people.iter().map(|h| (h.person.as_str(), h.role.as_str(), h.days, h.percent)).collect();
    // bob's failing grant counts from Wednesday of week two to the end: 3 days.
    assert_eq!(people, vec![("alice", "db", 10, 100), ("bob", "web", 3, 30)]);

    assert_eq!(
        kinds(&report),
        vec![
            (RecommendationKind::RevocationRetries, "db".into(), None),
            (RecommendationKind::RevocationRetries, "web".into(), None),
            (RecommendationKind::StandingAccess, "db".into(), Some("alice".into())),
            (RecommendationKind::DifferentRole, "web".into(), Some("eve".into())),
            (RecommendationKind::AutoApprovalCandidate, "db".into(), None),
        ],
        "{:#?}",
        report.recommendations
    );
    let retries = &report.recommendations[0];
    assert_eq!(
        retries.advice,
        "`db`: 1 revocation(s) needed retries (2 failed attempt(s), worst lateness 7m): check the provider's target"
    );

    // The same numbers in the text as in the struct.
    let text = render::text(&report);
    assert!(
        text.contains(
            "14 revoked; lateness p50 0s, p99 7m, max 7m (n=14); 1 retried (2 failed attempts), 0 failing now"
        ),
        "{text}"
    );
    assert!(text.contains("alice db: 10 of 10 days (100%)"), "{text}");
    let html = render::html(&report);
    assert!(html.contains("alice") && html.contains("10 of 10") && !html.contains("<script"), "{html}");
}

#[test]
fn percentages_round_half_up() {
    assert_eq!(percent(0, 0), 0);
    assert_eq!(percent(1, 8), 13);
    assert_eq!(percent(1, 3), 33);
    assert_eq!(percent(2, 3), 67);
    assert_eq!(percent(1, 200), 1);
    assert_eq!(recommend::round_up_to_step(22 * MIN), 30 * MIN);
    assert_eq!(recommend::round_up_to_step(1), 15 * MIN);
    assert_eq!(recommend::round_up_to_step(30 * MIN), 30 * MIN);
}

/// The report is a pure computation (no database, no clock, no runtime),
/// and its HTTP transport asks the service, never the store.
#[test]
fn the_report_is_pure_and_its_transport_never_names_the_store() {
    let files = [
        ("mod.rs", include_str!("mod.rs")),
        ("stats.rs", include_str!("stats.rs")),
        ("recommend.rs", include_str!("recommend.rs")),
        ("render.rs", include_str!("render.rs")),
    ];
    for (file, text) in files {
        for word in ["crate::store", "crate::service", "crate::clock", "sqlx", "tokio", "std::fs", "SystemTime"] {
            assert!(!text.contains(word), "report/{file} names {word}");
        }
    }
    let transport = include_str!("../insights.rs");
    assert!(!transport.contains("crate::store"), "insights.rs names the store");
}
