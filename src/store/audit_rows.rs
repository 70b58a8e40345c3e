//! Storage of the hash-chained audit log. The chain rules live in
//! [`crate::audit`]; this file only reads and writes rows.

use super::{Db, StoreResult, Tx, on_conn};

/// One stored audit event.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct AuditRow {
    /// Position in the chain, from 1, without gaps.
    pub seq: i64,
    /// When, epoch milliseconds.
    pub at: i64,
    /// Who (`slack:T/U`, `cli:NAME`, `system`).
    pub actor: String,
    /// What (`request.created`, `grant.applied`, ...).
    pub action: String,
    /// The request concerned, if any.
    pub request_id: Option<i64>,
    /// Details as JSON text.
    pub detail: String,
    /// Hash of the previous row.
    pub prev_hash: String,
    /// Hash of this row: plain SHA-256 or an HMAC, as `scheme` says.
    pub hash: String,
    /// How `hash` was made: `sha256` (rows written before an `audit.key`
    /// was configured) or `hmac-sha256` (keyed).
    pub scheme: String,
}

/// The chain's head: the newest sequence number and hash.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditHead {
    /// Newest sequence number (0 when empty).
    pub seq: i64,
    /// Newest hash (the genesis hash when empty).
    pub hash: String,
    /// HMAC of `(seq, hash)` with the audit key, when the newest row was
    /// appended with one: moving the head without the key is detected.
    pub mac: Option<String>,
}

impl Tx {
    /// Takes the next sequence number and locks the head row until commit;
    /// returns the new number and the previous hash. Concurrent appenders
    /// queue here, which is what keeps the chain linear.
    pub async fn lock_audit_head(&mut self) -> StoreResult<AuditHead> {
        Ok(on_conn!(tx self, |c| {
            sqlx::query_as::<_, AuditHead>("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash, mac")
                .fetch_one(c)
                .await?
        }))
    }

    /// The head, locked until commit (PostgreSQL; SQLite's write
    /// transaction already excludes other writers), without moving it.
    pub async fn audit_head_for_update(&mut self) -> StoreResult<AuditHead> {
        let sql = if self.is_postgres() {
            "SELECT seq, hash, mac FROM audit_head WHERE id = 1 FOR UPDATE"
        } else {
            "SELECT seq, hash, mac FROM audit_head WHERE id = 1"
        };
        Ok(on_conn!(tx self, |c| sqlx::query_as::<_, AuditHead>(sql).fetch_one(c).await?))
    }

    /// The `scheme` of row `seq`, if it exists.
    pub async fn audit_row_scheme(&mut self, seq: i64) -> StoreResult<Option<String>> {
        Ok(on_conn!(tx self, |c| {
            sqlx::query_scalar("SELECT scheme FROM audit_events WHERE seq = $1")
                .bind(seq)
                .fetch_optional(c)
                .await?
        }))
    }

    /// Writes a row and moves the head's hash (and the head's MAC, `None`
    /// without a key) to it.
    pub async fn insert_audit_row(&mut self, row: &AuditRow, head_mac: Option<&str>) -> StoreResult<()> {
        on_conn!(tx self, |c| {
            sqlx::query(
                "INSERT INTO audit_events (seq, at, actor, action, request_id, detail, prev_hash, hash, scheme)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(row.seq)
            .bind(row.at)
            .bind(&row.actor)
            .bind(&row.action)
            .bind(row.request_id)
            .bind(&row.detail)
            .bind(&row.prev_hash)
            .bind(&row.hash)
            .bind(&row.scheme)
            .execute(&mut *c)
            .await?;
            sqlx::query("UPDATE audit_head SET hash = $1, mac = $2 WHERE id = 1")
                .bind(&row.hash)
                .bind(head_mac)
                .execute(c)
                .await?;
        });
        Ok(())
    }
}

impl Db {
    /// Up to `limit` rows with `seq > after`, in order.
    pub async fn audit_rows_after(&self, after: i64, limit: i64) -> StoreResult<Vec<AuditRow>> {
        Ok(on_conn!(db self, |c| {
            sqlx::query_as::<_, AuditRow>("SELECT * FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2")
                .bind(after)
                .bind(limit)
                .fetch_all(c)
                .await?
        }))
    }

    /// Rows of one request, in order (what a card or an auditor shows).
    pub async fn audit_rows_for_request(&self, request_id: i64) -> StoreResult<Vec<AuditRow>> {
        Ok(on_conn!(db self, |c| {
            sqlx::query_as::<_, AuditRow>("SELECT * FROM audit_events WHERE request_id = $1 ORDER BY seq")
                .bind(request_id)
                .fetch_all(c)
                .await?
        }))
    }

    /// The first row at or after instant `at_ms`, to start an export there.
    pub async fn audit_seq_at(&self, at_ms: i64) -> StoreResult<Option<i64>> {
        Ok(on_conn!(db self, |c| {
            sqlx::query_scalar("SELECT MIN(seq) FROM audit_events WHERE at >= $1")
                .bind(at_ms)
                .fetch_one(c)
                .await?
        }))
    }

    /// The row at `seq`, if it exists.
    pub async fn audit_row(&self, seq: i64) -> StoreResult<Option<AuditRow>> {
        Ok(on_conn!(db self, |c| {
            sqlx::query_as::<_, AuditRow>("SELECT * FROM audit_events WHERE seq = $1")
                .bind(seq)
                .fetch_optional(c)
                .await?
        }))
    }

    /// The current head.
    pub async fn audit_head(&self) -> StoreResult<AuditHead> {
        Ok(on_conn!(db self, |c| {
            sqlx::query_as::<_, AuditHead>("SELECT seq, hash, mac FROM audit_head WHERE id = 1")
                .fetch_one(c)
                .await?
        }))
    }
}

impl Tx {
    /// Whether a grant call for request `id` was recorded as made and never
    /// answered (no `grant.attempt_failed` for it): the process died while
    /// it was in flight, so the target may hold the access.
    pub async fn grant_was_attempted(&mut self, id: crate::domain::RequestId) -> StoreResult<bool> {
        let (attempted, answered): (i64, i64) = on_conn!(tx self, |c| {
            sqlx::query_as(
                "SELECT COALESCE(SUM(CASE WHEN action = 'grant.attempted' THEN 1 ELSE 0 END), 0),
                        COALESCE(SUM(CASE WHEN action = 'grant.attempt_failed' THEN 1 ELSE 0 END), 0)
                 FROM audit_events WHERE request_id = $1",
            )
            .bind(id.get())
            .fetch_one(c)
            .await?
        });
        Ok(attempted > answered)
    }
}
