//! The kill switch's state: one row that `revoke-all` engages and an
//! administrator releases.
//!
//! The row is also the lock that keeps a decision from slipping past the
//! kill switch. Every transaction that lets a request through reads it with
//! [`Tx::kill_switch_for_decision`] (`FOR SHARE` on PostgreSQL; SQLite's
//! `BEGIN IMMEDIATE` already serialises writers), and the kill switch
//! engages it with an `UPDATE` before it reads which requests are live. So
//! a decision either commits first, and the kill switch then sees and
//! revokes it, or waits, and then sees the switch engaged and refuses.

use crate::domain::{RequestId, Timestamp};

use super::{Db, StoreResult, Tx, TxConn, on_conn, placeholders};

/// Who engaged the kill switch, when and why.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct KillSwitchRow {
    /// When it was engaged (epoch milliseconds).
    pub engaged_at: i64,
    /// The actor, as the audit trail names it.
    pub engaged_by: String,
    /// What they said.
    pub reason: String,
}

impl KillSwitchRow {
    /// When it was engaged.
    pub fn at(&self) -> Timestamp {
        Timestamp::from_millis(self.engaged_at)
    }
}

const ENGAGED: &str = "SELECT engaged_at, engaged_by, reason FROM kill_switch WHERE id = 1 AND engaged = 1";

impl Tx {
    /// The ids of requests in any of `states`, read inside the transaction.
    pub async fn request_ids_in_states(
        &mut self,
        states: &[crate::domain::RequestState],
    ) -> StoreResult<Vec<RequestId>> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        let sql =
            format!("SELECT id FROM access_requests WHERE state IN ({}) ORDER BY id", placeholders(1, states.len()));
        let ids: Vec<i64> = on_conn!(tx self, |c| {
            let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.clone()));
            for s in states {
                q = q.bind(s.as_str());
            }
            q.fetch_all(c).await?
        });
        Ok(ids.into_iter().map(RequestId::new).collect())
    }

    /// Engages the kill switch (again, if it already was: the newest reason
    /// wins). Waits for decisions in flight to commit first.
    pub async fn engage_kill_switch(&mut self, by: &str, reason: &str, now: Timestamp) -> StoreResult<()> {
        on_conn!(tx self, |c| {
            sqlx::query("UPDATE kill_switch SET engaged = 1, engaged_at = $1, engaged_by = $2, reason = $3 WHERE id = 1")
                .bind(now.millis())
                .bind(by)
                .bind(reason)
                .execute(c)
                .await?
                .rows_affected()
        });
        Ok(())
    }

    /// Releases the kill switch; `None` when it was not engaged.
    pub async fn release_kill_switch(&mut self) -> StoreResult<Option<KillSwitchRow>> {
        let was = on_conn!(tx self, |c| {
            sqlx::query_as::<_, KillSwitchRow>(
                "UPDATE kill_switch SET engaged = 0 WHERE id = 1 AND engaged = 1
                 RETURNING engaged_at, engaged_by, reason",
            )
            .fetch_optional(c)
            .await?
        });
        Ok(was)
    }

    /// The engaged kill switch, read under a shared lock that the kill
    /// switch's own `UPDATE` must wait for: see the module docs.
    pub async fn kill_switch_for_decision(&mut self) -> StoreResult<Option<KillSwitchRow>> {
        Ok(match &mut self.conn {
            TxConn::Sqlite(t) => sqlx::query_as::<_, KillSwitchRow>(ENGAGED).fetch_optional(&mut **t).await?,
            TxConn::Postgres(t) => {
                // Locks the row whether or not it is engaged.
                let row = sqlx::query_as::<_, (i64, Option<i64>, Option<String>, Option<String>)>(
                    "SELECT engaged::BIGINT, engaged_at, engaged_by, reason FROM kill_switch WHERE id = 1 FOR SHARE",
                )
                .fetch_optional(&mut **t)
                .await?;
                match row {
                    Some((1, Some(engaged_at), by, reason)) => Some(KillSwitchRow {
                        engaged_at,
                        engaged_by: by.unwrap_or_default(),
                        reason: reason.unwrap_or_default(),
                    }),
                    _ => None,
                }
            }
        })
    }
}

impl Db {
    /// The engaged kill switch, if it is (for status answers).
    pub async fn kill_switch(&self) -> StoreResult<Option<KillSwitchRow>> {
        Ok(on_conn!(db self, |c| sqlx::query_as::<_, KillSwitchRow>(ENGAGED).fetch_optional(c).await?))
    }
}
