//! Access requests and approvals.

use crate::domain::{AccessDuration, AccessRequest, RequestId, RequestState, RoleName, SlackUser, Timestamp};

use super::{Db, StoreError, StoreResult, Tx, on_conn, placeholders};

#[derive(Debug, sqlx::FromRow)]
struct RequestRow {
    id: i64,
    team_id: String,
    requester_id: String,
    requester_issuer: String,
    requester_subject: String,
    requester_email: String,
    role: String,
    provider: String,
    duration_ms: i64,
    reason: String,
    ticket: Option<String>,
    approvals_required: i64,
    state: String,
    state_detail: Option<String>,
    created_at: i64,
    decided_at: Option<i64>,
    granted_at: Option<i64>,
    expires_at: Option<i64>,
    ended_at: Option<i64>,
    auto_approved: Option<String>,
    break_glass_reason: Option<String>,
    review_required: i64,
    decide_by: Option<i64>,
    extends_id: Option<i64>,
}

impl TryFrom<RequestRow> for AccessRequest {
    type Error = StoreError;

    fn try_from(r: RequestRow) -> StoreResult<Self> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("request {}: {what}", r.id));
        Ok(AccessRequest {
            id: RequestId::new(r.id),
            requester: SlackUser::parse(&r.team_id, &r.requester_id).map_err(|e| corrupt(&e))?,
            requester_issuer: r.requester_issuer,
            requester_subject: r.requester_subject,
            requester_email: r.requester_email,
            role: RoleName::parse(&r.role).map_err(|e| corrupt(&e))?,
            provider: r.provider,
            duration: AccessDuration::from_millis(r.duration_ms),
            reason: r.reason,
            ticket: r.ticket,
            approvals_required: u32::try_from(r.approvals_required).map_err(|_| corrupt("approvals_required"))?,
            state: RequestState::parse(&r.state).ok_or_else(|| corrupt("unknown state"))?,
            state_detail: r.state_detail,
            created_at: Timestamp::from_millis(r.created_at),
            decided_at: r.decided_at.map(Timestamp::from_millis),
            granted_at: r.granted_at.map(Timestamp::from_millis),
            expires_at: r.expires_at.map(Timestamp::from_millis),
            ended_at: r.ended_at.map(Timestamp::from_millis),
            auto_approved: r.auto_approved,
            break_glass_reason: r.break_glass_reason,
            review_required: r.review_required != 0,
            decide_by: r.decide_by.map(Timestamp::from_millis),
            extends: r.extends_id.map(RequestId::new),
        })
    }
}

/// The fields of a request about to be created.
#[derive(Debug, Clone)]
pub struct NewRequest<'a> {
    /// Who asks; their IdP identity is copied from the link.
    pub requester: &'a crate::domain::Identity,
    /// The role.
    pub role: &'a RoleName,
    /// The role's provider.
    pub provider: &'a str,
    /// The checked duration.
    pub duration: AccessDuration,
    /// The reason.
    pub reason: &'a str,
    /// Optional ticket.
    pub ticket: Option<&'a str>,
    /// Approvals needed.
    pub approvals_required: u32,
    /// Idempotency key of the delivery that asked, if any.
    pub client_key: Option<&'a str>,
    /// When it times out if still pending (the role's approval timeout).
    pub decide_by: Option<Timestamp>,
    /// For an extension: the request whose access it extends.
    pub extends: Option<RequestId>,
}

/// The columns a transition may set besides the state.
#[derive(Debug, Clone, Default)]
pub struct TransitionFields {
    /// Sets `decided_at`.
    pub decided_at: Option<Timestamp>,
    /// Sets `granted_at`.
    pub granted_at: Option<Timestamp>,
    /// Sets `expires_at`.
    pub expires_at: Option<Timestamp>,
    /// Sets `ended_at`.
    pub ended_at: Option<Timestamp>,
    /// Sets `state_detail` (a reason or an error summary).
    pub detail: Option<String>,
    /// Sets `auto_approved` (why no approvers were needed).
    pub auto_approved: Option<String>,
    /// Sets `break_glass_reason` and flags the request for review.
    pub break_glass_reason: Option<String>,
}

/// One approver's decision; the type lives in the domain so the transports
/// render it without naming the store.
pub use crate::domain::Approval as ApprovalRow;

/// An `approvals` row as read (the domain type carries no sqlx derive).
#[derive(sqlx::FromRow)]
struct ApprovalFields {
    team_id: String,
    approver_id: String,
    decision: String,
    comment: Option<String>,
    created_at: i64,
}

impl TryFrom<ApprovalFields> for ApprovalRow {
    type Error = StoreError;

    fn try_from(f: ApprovalFields) -> Result<Self, StoreError> {
        let decision = crate::domain::Decision::parse(&f.decision)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown decision {:?}", f.decision)))?;
        Ok(Self {
            team_id: f.team_id,
            approver_id: f.approver_id,
            decision,
            comment: f.comment,
            created_at: f.created_at,
        })
    }
}

fn open_slot(user: &SlackUser, role: &RoleName) -> String {
    format!("{}/{}/{}", user.team_id(), user.user_id(), role.as_str())
}

/// One pending extension per request at a time: its own slot, so it does
/// not collide with the request it extends (which holds the role's slot).
fn extension_slot(extends: RequestId) -> String {
    format!("extends/{}", extends.get())
}

impl Tx {
    /// Inserts a pending request. `Err(Conflict)` means the person already has
    /// an open request for this role, or this client key was already used.
    pub async fn insert_request(&mut self, new: &NewRequest<'_>, now: Timestamp) -> StoreResult<RequestId> {
        let slot = match new.extends {
            Some(parent) => extension_slot(parent),
            None => open_slot(&new.requester.slack, new.role),
        };
        let id: i64 = on_conn!(tx self, |c| {
            sqlx::query_scalar(
                "INSERT INTO access_requests
                   (team_id, requester_id, requester_issuer, requester_subject, requester_email,
                    role, provider, duration_ms, reason, ticket, approvals_required, state,
                    open_slot, client_key, created_at, updated_at, decide_by, extends_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15, $16, $17)
                 RETURNING id",
            )
            .bind(new.requester.slack.team_id())
            .bind(new.requester.slack.user_id())
            .bind(&new.requester.issuer)
            .bind(&new.requester.subject)
            .bind(&new.requester.email)
            .bind(new.role.as_str())
            .bind(new.provider)
            .bind(new.duration.millis())
            .bind(new.reason)
            .bind(new.ticket)
            .bind(i64::from(new.approvals_required))
            .bind(RequestState::Pending.as_str())
            .bind(&slot)
            .bind(new.client_key)
            .bind(now.millis())
            .bind(new.decide_by.map(Timestamp::millis))
            .bind(new.extends.map(RequestId::get))
            .fetch_one(c)
            .await?
        });
        Ok(RequestId::new(id))
    }

    /// Reads a request inside the transaction.
    pub async fn request(&mut self, id: RequestId) -> StoreResult<Option<AccessRequest>> {
        let row = on_conn!(tx self, |c| {
            sqlx::query_as::<_, RequestRow>("SELECT * FROM access_requests WHERE id = $1")
                .bind(id.get())
                .fetch_optional(c)
                .await?
        });
        row.map(AccessRequest::try_from).transpose()
    }

    /// Clears the review flag of request `id`; `false` when it was not
    /// flagged (never, or already reviewed).
    pub async fn mark_reviewed(&mut self, id: RequestId) -> StoreResult<bool> {
        let n = on_conn!(tx self, |c| {
            sqlx::query("UPDATE access_requests SET review_required = 0 WHERE id = $1 AND review_required = 1")
                .bind(id.get())
                .execute(c)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    /// Moves request `id` to `to` if it is currently in one of `to`'s allowed
    /// source states. Returns `false` (and changes nothing) otherwise: the
    /// caller lost a race or the request already moved on.
    pub async fn transition(
        &mut self,
        id: RequestId,
        to: RequestState,
        fields: &TransitionFields,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let from = to.allowed_sources();
        if from.is_empty() {
            return Ok(false);
        }
        // The open slot is released when the request ends, so the person may ask again.
        let slot = if to.is_terminal() { "open_slot = NULL," } else { "" };
        let sql = format!(
            "UPDATE access_requests SET state = $1, {slot}
               decided_at = COALESCE($2, decided_at),
               granted_at = COALESCE($3, granted_at),
               expires_at = COALESCE($4, expires_at),
               ended_at = COALESCE($5, ended_at),
               state_detail = COALESCE($6, state_detail),
               updated_at = $7,
               auto_approved = COALESCE($9, auto_approved),
               break_glass_reason = COALESCE($10, break_glass_reason),
               review_required = CASE WHEN $10 IS NULL THEN review_required ELSE 1 END
             WHERE id = $8 AND state IN ({})",
            placeholders(11, from.len())
        );
        let n = on_conn!(tx self, |c| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(to.as_str())
                .bind(fields.decided_at.map(Timestamp::millis))
                .bind(fields.granted_at.map(Timestamp::millis))
                .bind(fields.expires_at.map(Timestamp::millis))
                .bind(fields.ended_at.map(Timestamp::millis))
                .bind(fields.detail.as_deref())
                .bind(now.millis())
                .bind(id.get())
                .bind(fields.auto_approved.as_deref())
                .bind(fields.break_glass_reason.as_deref());
            for s in from {
                q = q.bind(s.as_str());
            }
            q.execute(c).await?.rows_affected()
        });
        Ok(n == 1)
    }

    /// Locks request `id` for the rest of the transaction, if it is in
    /// `state` (any state when `None`). Concurrent deciders and jobs queue on
    /// this row lock, so whoever comes second sees what the first committed.
    pub async fn lock_request(
        &mut self,
        id: RequestId,
        state: Option<RequestState>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let n = on_conn!(tx self, |c| {
            sqlx::query("UPDATE access_requests SET updated_at = $2 WHERE id = $1 AND ($3 IS NULL OR state = $3)")
                .bind(id.get())
                .bind(now.millis())
                .bind(state.map(RequestState::as_str))
                .execute(c)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    /// Records one approver's decision. `Err(Conflict)` means this approver
    /// already decided on this request.
    pub async fn insert_approval(
        &mut self,
        id: RequestId,
        approver: &crate::domain::Identity,
        decision: crate::domain::Decision,
        comment: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<()> {
        on_conn!(tx self, |c| {
            sqlx::query(
                "INSERT INTO approvals
                   (request_id, team_id, approver_id, approver_subject, decision, comment, created_at, approver_email)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(id.get())
            .bind(approver.slack.team_id())
            .bind(approver.slack.user_id())
            .bind(&approver.subject)
            .bind(decision.as_str())
            .bind(comment)
            .bind(now.millis())
            .bind(approver.email.to_lowercase())
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// Moves the expiry of request `id` from `from` to `to` and adds the
    /// difference to its duration, if it still holds (or is being granted)
    /// access that ends at `from`, later than `now`. `false` when the
    /// request moved on: the extension then extends nothing.
    pub async fn extend_expiry(
        &mut self,
        id: RequestId,
        from: Timestamp,
        to: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let n = on_conn!(tx self, |c| {
            sqlx::query(
                "UPDATE access_requests SET expires_at = $3, duration_ms = duration_ms + ($3 - $2), updated_at = $4
                 WHERE id = $1 AND expires_at = $2 AND expires_at > $4 AND state IN ($5, $6)",
            )
            .bind(id.get())
            .bind(from.millis())
            .bind(to.millis())
            .bind(now.millis())
            .bind(RequestState::Granting.as_str())
            .bind(RequestState::Active.as_str())
            .execute(c)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// The pending extension of request `id`, if one is waiting.
    pub async fn pending_extension(&mut self, id: RequestId) -> StoreResult<Option<RequestId>> {
        let found: Option<i64> = on_conn!(tx self, |c| {
            sqlx::query_scalar("SELECT id FROM access_requests WHERE open_slot = $1")
                .bind(extension_slot(id))
                .fetch_optional(c)
                .await?
        });
        Ok(found.map(RequestId::new))
    }

    /// Whether the person with IdP subject `subject` or email `email`
    /// (case-insensitively) already decided on request `id`, from any of
    /// their Slack accounts.
    pub async fn person_decided(&mut self, id: RequestId, subject: &str, email: &str) -> StoreResult<bool> {
        let email = email.to_lowercase();
        let n: i64 = on_conn!(tx self, |c| {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM approvals
                 WHERE request_id = $1 AND (approver_subject = $2 OR (approver_email IS NOT NULL AND approver_email = $3))",
            )
            .bind(id.get())
            .bind(subject)
            .bind(&email)
            .fetch_one(c)
            .await?
        });
        Ok(n > 0)
    }

    /// How many distinct people approved request `id`: two Slack accounts
    /// linked to one IdP identity count once.
    pub async fn count_approvals(&mut self, id: RequestId) -> StoreResult<u32> {
        let n: i64 = on_conn!(tx self, |c| {
            // Distinct IdP identities: one person with two Slack accounts counts once.
            sqlx::query_scalar(
                "SELECT COUNT(DISTINCT approver_subject) FROM approvals WHERE request_id = $1 AND decision = 'approve'",
            )
                .bind(id.get())
                .fetch_one(c)
                .await?
        });
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }
}

impl Db {
    /// Reads a request.
    pub async fn request(&self, id: RequestId) -> StoreResult<Option<AccessRequest>> {
        let row = on_conn!(db self, |c| {
            sqlx::query_as::<_, RequestRow>("SELECT * FROM access_requests WHERE id = $1")
                .bind(id.get())
                .fetch_optional(c)
                .await?
        });
        row.map(AccessRequest::try_from).transpose()
    }

    /// The open request of `user` for `role`, if any.
    pub async fn open_request(&self, user: &SlackUser, role: &RoleName) -> StoreResult<Option<AccessRequest>> {
        let row = on_conn!(db self, |c| {
            sqlx::query_as::<_, RequestRow>("SELECT * FROM access_requests WHERE open_slot = $1")
                .bind(open_slot(user, role))
                .fetch_optional(c)
                .await?
        });
        row.map(AccessRequest::try_from).transpose()
    }

    /// The open requests of `user` (pending or holding access), oldest first.
    pub async fn open_requests_of(&self, user: &SlackUser) -> StoreResult<Vec<AccessRequest>> {
        let rows = on_conn!(db self, |c| {
            sqlx::query_as::<_, RequestRow>(
                "SELECT * FROM access_requests
                 WHERE team_id = $1 AND requester_id = $2 AND open_slot IS NOT NULL ORDER BY id",
            )
            .bind(user.team_id())
            .bind(user.user_id())
            .fetch_all(c)
            .await?
        });
        rows.into_iter().map(AccessRequest::try_from).collect()
    }

    /// Open requests (pending, or holding access) made by the identity with
    /// IdP subject `subject` or email `email` (case-insensitively), as stored
    /// on each request when it was made: found even after the requester's
    /// link is gone.
    pub async fn open_requests_by_identity(
        &self,
        subject: Option<&str>,
        email: Option<&str>,
    ) -> StoreResult<Vec<AccessRequest>> {
        let email = email.map(str::to_lowercase);
        let rows = on_conn!(db self, |c| {
            sqlx::query_as::<_, RequestRow>(
                "SELECT * FROM access_requests
                 WHERE open_slot IS NOT NULL AND (requester_subject = $1 OR lower(requester_email) = $2) ORDER BY id",
            )
            .bind(subject)
            .bind(email.as_deref())
            .fetch_all(c)
            .await?
        });
        rows.into_iter().map(AccessRequest::try_from).collect()
    }

    /// The pending extension of request `id`, if one is waiting.
    pub async fn open_extension(&self, id: RequestId) -> StoreResult<Option<AccessRequest>> {
        let row = on_conn!(db self, |c| {
            sqlx::query_as::<_, RequestRow>("SELECT * FROM access_requests WHERE open_slot = $1")
                .bind(extension_slot(id))
                .fetch_optional(c)
                .await?
        });
        row.map(AccessRequest::try_from).transpose()
    }

    /// Up to `limit` requests of `user` that ended (or were decided without
    /// access), newest first.
    pub async fn ended_requests_of(&self, user: &SlackUser, limit: i64) -> StoreResult<Vec<AccessRequest>> {
        let rows = on_conn!(db self, |c| {
            sqlx::query_as::<_, RequestRow>(
                "SELECT * FROM access_requests
                 WHERE team_id = $1 AND requester_id = $2 AND open_slot IS NULL
                 ORDER BY id DESC LIMIT $3",
            )
            .bind(user.team_id())
            .bind(user.user_id())
            .bind(limit)
            .fetch_all(c)
            .await?
        });
        rows.into_iter().map(AccessRequest::try_from).collect()
    }

    /// The request created by the delivery with this idempotency key.
    pub async fn request_by_client_key(&self, key: &str) -> StoreResult<Option<AccessRequest>> {
        let row = on_conn!(db self, |c| {
            sqlx::query_as::<_, RequestRow>("SELECT * FROM access_requests WHERE client_key = $1")
                .bind(key)
                .fetch_optional(c)
                .await?
        });
        row.map(AccessRequest::try_from).transpose()
    }

    /// Requests flagged for review (break-glass) and not yet reviewed,
    /// oldest first.
    pub async fn requests_for_review(&self) -> StoreResult<Vec<AccessRequest>> {
        let rows = on_conn!(db self, |c| {
            sqlx::query_as::<_, RequestRow>("SELECT * FROM access_requests WHERE review_required = 1 ORDER BY id")
                .fetch_all(c)
                .await?
        });
        rows.into_iter().map(AccessRequest::try_from).collect()
    }

    /// Requests in any of `states`, oldest first.
    pub async fn requests_in_states(&self, states: &[RequestState]) -> StoreResult<Vec<AccessRequest>> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        let sql =
            format!("SELECT * FROM access_requests WHERE state IN ({}) ORDER BY id", placeholders(1, states.len()));
        let rows = on_conn!(db self, |c| {
            let mut q = sqlx::query_as::<_, RequestRow>(sqlx::AssertSqlSafe(sql.clone()));
            for s in states {
                q = q.bind(s.as_str());
            }
            q.fetch_all(c).await?
        });
        rows.into_iter().map(AccessRequest::try_from).collect()
    }

    /// The decisions on request `id`, in order.
    pub async fn approvals(&self, id: RequestId) -> StoreResult<Vec<ApprovalRow>> {
        on_conn!(db self, |c| {
            sqlx::query_as::<_, ApprovalFields>(
                "SELECT team_id, approver_id, decision, comment, created_at
                 FROM approvals WHERE request_id = $1 ORDER BY created_at, approver_id",
            )
            .bind(id.get())
            .fetch_all(c)
            .await?
        })
        .into_iter()
        .map(ApprovalRow::try_from)
        .collect()
    }
}

impl Db {
    /// Pending requests of `roles` that `approver` has not decided yet and
    /// did not make (by Slack user or IdP identity), oldest first, at most
    /// `limit`: what waits for their decision, filtered in the database so
    /// drawing it costs one indexed query however long the backlog.
    pub async fn pending_for_approver(
        &self,
        roles: &[&str],
        approver: &SlackUser,
        issuer: &str,
        subject: &str,
        limit: i64,
    ) -> StoreResult<Vec<AccessRequest>> {
        if roles.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT r.* FROM access_requests r
             WHERE r.state = 'pending' AND r.role IN ({})
               AND NOT (r.team_id = $1 AND r.requester_id = $2)
               AND NOT (r.requester_issuer = $3 AND r.requester_subject = $4)
               AND NOT EXISTS (SELECT 1 FROM approvals a WHERE a.request_id = r.id AND a.approver_id = $2)
             ORDER BY r.id LIMIT $5",
            placeholders(6, roles.len())
        );
        let rows = on_conn!(db self, |c| {
            let mut q = sqlx::query_as::<_, RequestRow>(sqlx::AssertSqlSafe(sql.clone()))
                .bind(approver.team_id())
                .bind(approver.user_id())
                .bind(issuer)
                .bind(subject)
                .bind(limit);
            for role in roles {
                q = q.bind(*role);
            }
            q.fetch_all(c).await?
        });
        rows.into_iter().map(AccessRequest::try_from).collect()
    }
}
