//! The facts the access report is computed from: requests created in a
//! period or live during it, their decisions, and the audit events that
//! say when early revokes were asked for and which revocation attempts
//! failed. Read-only, three statements, one SQL text for both backends;
//! every figure is computed in [`crate::report`], not here.

use crate::domain::{Decision, RequestState};
use crate::report::{ApprovalFact, EventFact, ReportFacts, RequestFact, TrailEvent};

use super::{Db, StoreError, StoreResult, on_conn};

/// Which requests a report reads: created at or before `$2` and either created
/// at or after `$1` or not ended before it (so grants live during the
/// period count towards who held what); of role `$3` when given.
const IN_PERIOD: &str = "r.created_at <= $2 AND (r.created_at >= $1 OR r.ended_at IS NULL OR r.ended_at >= $1)
     AND ($3 IS NULL OR r.role = $3)";

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    role: String,
    requester_email: String,
    state: String,
    created_at: i64,
    decided_at: Option<i64>,
    granted_at: Option<i64>,
    expires_at: Option<i64>,
    ended_at: Option<i64>,
    duration_ms: i64,
    auto_approved: i64,
    break_glass: i64,
    review_required: i64,
    extends_id: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct ApprovalRow {
    request_id: i64,
    approver: String,
    decision: String,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    request_id: i64,
    action: String,
    at: i64,
}

impl Db {
    /// The facts of the period `[since_ms, until_ms]`, of `role` only when given.
    pub async fn report_facts(&self, since_ms: i64, until_ms: i64, role: Option<&str>) -> StoreResult<ReportFacts> {
        let requests_sql = format!(
            "SELECT r.id, r.role, r.requester_email, r.state, r.created_at, r.decided_at, r.granted_at,
                    r.expires_at, r.ended_at, r.duration_ms,
                    CAST(CASE WHEN r.auto_approved IS NULL THEN 0 ELSE 1 END AS BIGINT) AS auto_approved,
                    CAST(CASE WHEN r.break_glass_reason IS NULL THEN 0 ELSE 1 END AS BIGINT) AS break_glass,
                    CAST(r.review_required AS BIGINT) AS review_required, r.extends_id
             FROM access_requests r WHERE {IN_PERIOD} ORDER BY r.id"
        );
        let approvals_sql = format!(
            "SELECT a.request_id, COALESCE(a.approver_email, a.team_id || '/' || a.approver_id) AS approver, a.decision
             FROM approvals a JOIN access_requests r ON r.id = a.request_id
             WHERE {IN_PERIOD} ORDER BY a.request_id, a.created_at, a.approver_id"
        );
        let events_sql = format!(
            "SELECT e.request_id, e.action, e.at
             FROM audit_events e JOIN access_requests r ON r.id = e.request_id
             WHERE e.action IN ('revoke.requested', 'revoke.attempt_failed') AND {IN_PERIOD}
             ORDER BY e.seq"
        );
        let (rows, approvals, events) = on_conn!(db self, |c| {
            let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(requests_sql))
                .bind(since_ms)
                .bind(until_ms)
                .bind(role)
                .fetch_all(c)
                .await?;
            let approvals: Vec<ApprovalRow> = sqlx::query_as(sqlx::AssertSqlSafe(approvals_sql))
                .bind(since_ms)
                .bind(until_ms)
                .bind(role)
                .fetch_all(c)
                .await?;
            let events: Vec<EventRow> = sqlx::query_as(sqlx::AssertSqlSafe(events_sql))
                .bind(since_ms)
                .bind(until_ms)
                .bind(role)
                .fetch_all(c)
                .await?;
            (rows, approvals, events)
        });
        let requests = rows
            .into_iter()
            .map(|r| {
                let state = RequestState::parse(&r.state)
                    .ok_or_else(|| StoreError::Corrupt(format!("request {}: unknown state {:?}", r.id, r.state)))?;
                Ok(RequestFact {
                    id: r.id,
                    role: r.role,
                    requester: r.requester_email.to_lowercase(),
                    state,
                    created_at: r.created_at,
                    decided_at: r.decided_at,
                    granted_at: r.granted_at,
                    expires_at: r.expires_at,
                    ended_at: r.ended_at,
                    duration_ms: r.duration_ms,
                    auto_approved: r.auto_approved != 0,
                    break_glass: r.break_glass != 0,
                    review_required: r.review_required != 0,
                    extends: r.extends_id,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let approvals = approvals
            .into_iter()
            .map(|a| {
                let decision = Decision::parse(&a.decision)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown decision {:?}", a.decision)))?;
                Ok(ApprovalFact { request_id: a.request_id, approver: a.approver.to_lowercase(), decision })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let events = events
            .into_iter()
            .filter_map(|e| {
                let event = match e.action.as_str() {
                    "revoke.requested" => TrailEvent::RevokeRequested,
                    "revoke.attempt_failed" => TrailEvent::RevokeAttemptFailed,
                    _ => return None,
                };
                Some(EventFact { request_id: e.request_id, event, at: e.at })
            })
            .collect();
        Ok(ReportFacts { requests, approvals, events })
    }
}
