//! Grant specs and leases on shared target access.
//!
//! When two requests map to the same access in a target (two roles that
//! both grant `readonly` to alice's login), each holds a lease on one
//! `target_access` row. The access is removed in the target only when the
//! last lease is released, and never when it existed before jitbot first
//! granted it (`preexisting`). Every decision first upserts that row, which
//! serialises decisions about one access on both backends (SQLite's write
//! lock; the row lock on PostgreSQL), and is made in the same transaction as
//! the request's own state change.

use crate::domain::{RequestId, Timestamp};

use super::{Db, StoreResult, Tx, on_conn};

/// What [`Tx::start_lease`] decided for a grant about to call its provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseStart {
    /// This request holds the access. `preexisting` is `None` until someone
    /// has looked at the target (then call [`Tx::record_presence`] first).
    Held {
        /// Whether the access existed before jitbot granted it, if known.
        preexisting: Option<bool>,
    },
    /// The revocation of another request holding the same access is running:
    /// granting now could be undone by it, so try again shortly.
    Wait {
        /// The request being revoked.
        releasing: RequestId,
    },
    /// This request's lease was already released: its revocation started.
    Released,
}

/// What [`Tx::begin_release`] decided for a revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseRelease {
    /// The request never reached its grant call: nothing to remove.
    NotGranted,
    /// Other requests still hold the access: it stays.
    Kept {
        /// Those requests.
        holders: Vec<RequestId>,
    },
    /// The access existed before jitbot granted it: it stays.
    Preexisting,
    /// Released earlier (an earlier attempt finished).
    AlreadyReleased,
    /// This was the last holder: remove the access in the target, then
    /// [`Tx::finish_release`].
    Release,
}

impl LeaseRelease {
    /// Whether the provider must be called to remove the access.
    pub fn removes_access(&self) -> bool {
        matches!(self, LeaseRelease::Release)
    }
}

/// A lease as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LeaseRow {
    /// The request holding it.
    pub request_id: i64,
    /// The access.
    pub access_key: String,
    /// `held`, `releasing` or `released`.
    pub state: String,
    /// What the release did (`revoked`, `kept_shared`, `kept_preexisting`, `not_granted`).
    pub outcome: Option<String>,
}

impl Tx {
    /// Stores the grant spec of a new request (JSON).
    pub async fn set_grant_spec(&mut self, id: RequestId, spec: &str) -> StoreResult<()> {
        on_conn!(tx self, |c| {
            sqlx::query("UPDATE access_requests SET grant_spec = $2 WHERE id = $1")
                .bind(id.get())
                .bind(spec)
                .execute(c)
                .await?;
        });
        Ok(())
    }

    /// The stored grant spec of a request, read inside the transaction.
    pub async fn grant_spec(&mut self, id: RequestId) -> StoreResult<Option<String>> {
        Ok(on_conn!(tx self, |c| {
            sqlx::query_scalar::<_, Option<String>>("SELECT grant_spec FROM access_requests WHERE id = $1")
                .bind(id.get())
                .fetch_optional(c)
                .await?
                .flatten()
        }))
    }

    /// Upserts the access row (taking its lock) and returns `preexisting`.
    async fn lock_access(&mut self, key: &str, provider: &str, now: Timestamp) -> StoreResult<Option<bool>> {
        let p: Option<i64> = on_conn!(tx self, |c| {
            sqlx::query_scalar(
                "INSERT INTO target_access (access_key, provider, preexisting, updated_at) VALUES ($1, $2, NULL, $3)
                 ON CONFLICT (access_key) DO UPDATE SET updated_at = excluded.updated_at
                 RETURNING preexisting",
            )
            .bind(key)
            .bind(provider)
            .bind(now.millis())
            .fetch_one(c)
            .await?
        });
        Ok(p.map(|v| v != 0))
    }

    async fn own_lease(&mut self, id: RequestId) -> StoreResult<Option<LeaseRow>> {
        Ok(on_conn!(tx self, |c| {
            sqlx::query_as::<_, LeaseRow>(
                "SELECT request_id, access_key, state, outcome FROM grant_leases WHERE request_id = $1",
            )
            .bind(id.get())
            .fetch_optional(c)
            .await?
        }))
    }

    async fn other_leases(&mut self, key: &str, id: RequestId, states: &str) -> StoreResult<Vec<RequestId>> {
        let sql = format!(
            "SELECT request_id FROM grant_leases WHERE access_key = $1 AND request_id <> $2 AND state IN ({states}) ORDER BY request_id"
        );
        let ids: Vec<i64> = on_conn!(tx self, |c| {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone())).bind(key).bind(id.get()).fetch_all(c).await?
        });
        Ok(ids.into_iter().map(RequestId::new).collect())
    }

    /// Takes (or confirms) request `id`'s lease on `key` before its grant
    /// call. Must be called in the transaction that re-checks the request is
    /// still `granting`.
    pub async fn start_lease(
        &mut self,
        id: RequestId,
        provider: &str,
        key: &str,
        now: Timestamp,
    ) -> StoreResult<LeaseStart> {
        let mut preexisting = self.lock_access(key, provider, now).await?;
        if let Some(own) = self.own_lease(id).await? {
            return Ok(if own.state == "held" { LeaseStart::Held { preexisting } } else { LeaseStart::Released });
        }
        if let Some(releasing) = self.other_leases(key, id, "'releasing'").await?.first() {
            return Ok(LeaseStart::Wait { releasing: *releasing });
        }
        if preexisting.is_some() && self.other_leases(key, id, "'held'").await?.is_empty() {
            // Left over from a lease that vanished: look at the target again.
            self.set_presence(key, None).await?;
            preexisting = None;
        }
        on_conn!(tx self, |c| {
            sqlx::query(
                "INSERT INTO grant_leases (request_id, access_key, state, created_at) VALUES ($1, $2, 'held', $3)",
            )
            .bind(id.get())
            .bind(key)
            .bind(now.millis())
            .execute(c)
            .await?;
        });
        Ok(LeaseStart::Held { preexisting })
    }

    async fn set_presence(&mut self, key: &str, preexisting: Option<bool>) -> StoreResult<()> {
        on_conn!(tx self, |c| {
            sqlx::query("UPDATE target_access SET preexisting = $2 WHERE access_key = $1")
                .bind(key)
                .bind(preexisting.map(i64::from))
                .execute(c)
                .await?;
        });
        Ok(())
    }

    /// Records what the target showed before jitbot's first grant of `key`:
    /// the first recorded observation wins (a later one may already see
    /// jitbot's own grant). Returns the effective value.
    pub async fn record_presence(&mut self, key: &str, present: bool) -> StoreResult<bool> {
        let p: Option<Option<i64>> = on_conn!(tx self, |c| {
            sqlx::query(
                "UPDATE target_access SET preexisting = $2 WHERE access_key = $1 AND preexisting IS NULL",
            )
            .bind(key)
            .bind(i64::from(present))
            .execute(&mut *c)
            .await?;
            sqlx::query_scalar("SELECT preexisting FROM target_access WHERE access_key = $1")
                .bind(key)
                .fetch_optional(c)
                .await?
        });
        Ok(p.flatten().map(|v| v != 0).unwrap_or(present))
    }

    async fn mark_released(&mut self, id: RequestId, key: &str, outcome: &str, now: Timestamp) -> StoreResult<()> {
        on_conn!(tx self, |c| {
            sqlx::query(
                "UPDATE grant_leases SET state = 'released', outcome = COALESCE(outcome, $2), released_at = $3
                 WHERE request_id = $1",
            )
            .bind(id.get())
            .bind(outcome)
            .bind(now.millis())
            .execute(&mut *c)
            .await?;
            // The last lease gone: forget what was observed, so the next
            // grant looks at the target afresh.
            sqlx::query(
                "DELETE FROM target_access WHERE access_key = $1 AND NOT EXISTS (
                     SELECT 1 FROM grant_leases WHERE access_key = $1 AND state IN ('held', 'releasing'))",
            )
            .bind(key)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// Decides, for request `id`'s revocation, whether the access must be
    /// removed in the target. Must be called in the transaction that moves
    /// the request to `revoking` (or one after it).
    pub async fn begin_release(&mut self, id: RequestId, now: Timestamp) -> StoreResult<LeaseRelease> {
        let Some(own) = self.own_lease(id).await? else { return Ok(LeaseRelease::NotGranted) };
        match own.state.as_str() {
            "released" => return Ok(LeaseRelease::AlreadyReleased),
            "releasing" => return Ok(LeaseRelease::Release),
            _ => {}
        }
        let key = own.access_key;
        let preexisting: Option<Option<i64>> = on_conn!(tx self, |c| {
            sqlx::query_scalar("UPDATE target_access SET updated_at = $2 WHERE access_key = $1 RETURNING preexisting")
                .bind(&key)
                .bind(now.millis())
                .fetch_optional(c)
                .await?
        });
        let holders = self.other_leases(&key, id, "'held'").await?;
        if !holders.is_empty() {
            self.mark_released(id, &key, "kept_shared", now).await?;
            return Ok(LeaseRelease::Kept { holders });
        }
        match preexisting.flatten() {
            Some(1) => {
                self.mark_released(id, &key, "kept_preexisting", now).await?;
                Ok(LeaseRelease::Preexisting)
            }
            None => {
                // Nobody recorded an observation, so nobody reached a grant call.
                self.mark_released(id, &key, "not_granted", now).await?;
                Ok(LeaseRelease::NotGranted)
            }
            Some(_) => {
                on_conn!(tx self, |c| {
                    sqlx::query("UPDATE grant_leases SET state = 'releasing' WHERE request_id = $1")
                        .bind(id.get())
                        .execute(c)
                        .await?;
                });
                Ok(LeaseRelease::Release)
            }
        }
    }

    /// Completes a [`LeaseRelease::Release`] after the target confirmed the removal.
    pub async fn finish_release(&mut self, id: RequestId, now: Timestamp) -> StoreResult<()> {
        if let Some(own) = self.own_lease(id).await? {
            self.mark_released(id, &own.access_key, "revoked", now).await?;
        }
        Ok(())
    }

    /// For the reconciler: re-opens the released lease of request `id` whose
    /// access jitbot removed but the target shows again, so it can be removed
    /// once more under the same rules. `false` when someone holds the access
    /// now (then it is not drift).
    pub async fn reopen_release(&mut self, id: RequestId, provider: &str, now: Timestamp) -> StoreResult<bool> {
        let Some(own) = self.own_lease(id).await? else { return Ok(false) };
        if own.outcome.as_deref() != Some("revoked") {
            return Ok(false);
        }
        if own.state == "releasing" {
            // An earlier run re-opened it and its removal failed: go on.
            return Ok(true);
        }
        self.lock_access(&own.access_key, provider, now).await?;
        if !self.other_leases(&own.access_key, id, "'held', 'releasing'").await?.is_empty() {
            return Ok(false);
        }
        self.set_presence(&own.access_key, Some(false)).await?;
        on_conn!(tx self, |c| {
            sqlx::query("UPDATE grant_leases SET state = 'releasing' WHERE request_id = $1")
                .bind(id.get())
                .execute(c)
                .await?;
        });
        Ok(true)
    }
}

impl Db {
    /// The stored grant spec of a request (JSON), if it has one.
    pub async fn grant_spec(&self, id: RequestId) -> StoreResult<Option<String>> {
        Ok(on_conn!(db self, |c| {
            sqlx::query_scalar::<_, Option<String>>("SELECT grant_spec FROM access_requests WHERE id = $1")
                .bind(id.get())
                .fetch_optional(c)
                .await?
                .flatten()
        }))
    }

    /// The lease of request `id`, if it took one.
    pub async fn lease(&self, id: RequestId) -> StoreResult<Option<LeaseRow>> {
        Ok(on_conn!(db self, |c| {
            sqlx::query_as::<_, LeaseRow>(
                "SELECT request_id, access_key, state, outcome FROM grant_leases WHERE request_id = $1",
            )
            .bind(id.get())
            .fetch_optional(c)
            .await?
        }))
    }

    /// Requests other than `except` that hold (or are releasing) a lease on `key`.
    pub async fn lease_holders(&self, key: &str, except: RequestId) -> StoreResult<Vec<RequestId>> {
        let ids: Vec<i64> = on_conn!(db self, |c| {
            sqlx::query_scalar(
                "SELECT request_id FROM grant_leases
                 WHERE access_key = $1 AND request_id <> $2 AND state IN ('held', 'releasing')
                 ORDER BY request_id",
            )
            .bind(key)
            .bind(except.get())
            .fetch_all(c)
            .await?
        });
        Ok(ids.into_iter().map(RequestId::new).collect())
    }
}
