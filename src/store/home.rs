//! What keeps Slack calls few: who opened their App Home tab, whether a
//! redraw of it is already queued, and the revocation lines of the audit
//! channel, counted per minute so a burst becomes one digest line.

use crate::domain::{RequestId, SlackUser, Timestamp};

use super::{Db, StoreResult, Tx, on_conn};

impl Tx {
    /// Remembers that `user` opened their App Home tab at `now`.
    pub async fn record_home_opened(&mut self, user: &SlackUser, now: Timestamp) -> StoreResult<()> {
        on_conn!(tx self, |c| {
            sqlx::query(
                "INSERT INTO home_tabs (team_id, user_id, opened_at) VALUES ($1, $2, $3)
                 ON CONFLICT (team_id, user_id) DO UPDATE SET opened_at = excluded.opened_at",
            )
            .bind(user.team_id())
            .bind(user.user_id())
            .bind(now.millis())
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// Whether a redraw of the App Home tab named by `payload` is queued
    /// (not yet running): it will draw the latest state. The kind is
    /// spelled out so the partial index on these jobs serves the lookup.
    pub async fn redraw_home_queued(&mut self, payload: &str) -> StoreResult<bool> {
        let n: i64 = on_conn!(tx self, |c| {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM jobs WHERE kind = 'redraw_home' AND payload = $1 AND state IN ('queued', 'waiting')",
            )
                .bind(payload)
                .fetch_one(c)
                .await?
        });
        Ok(n > 0)
    }

    /// Makes the queued redraw named by `payload` due at `now` at the
    /// latest; `false` when none is queued.
    pub async fn redraw_home_due(&mut self, payload: &str, now: Timestamp) -> StoreResult<bool> {
        let n = on_conn!(tx self, |c| {
            sqlx::query(
                "UPDATE jobs SET due_at = CASE WHEN due_at > $2 THEN $2 ELSE due_at END
                 WHERE kind = 'redraw_home' AND payload = $1 AND state IN ('queued', 'waiting')",
            )
            .bind(payload)
            .bind(now.millis())
            .execute(c)
            .await?
            .rows_affected()
        });
        Ok(n > 0)
    }

    /// Whether the audit digest named by `payload` is queued.
    pub async fn audit_digest_queued(&mut self, payload: &str) -> StoreResult<bool> {
        let n: i64 = on_conn!(tx self, |c| {
            sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'audit_digest' AND payload = $1 AND state = 'queued'")
                .bind(payload)
                .fetch_one(c)
                .await?
        });
        Ok(n > 0)
    }

    /// The audit channel's decision for request `id`'s revocation line:
    /// `Some(held)` when it was already taken (a retried notice keeps it).
    pub async fn revocation_line(&mut self, id: RequestId) -> StoreResult<Option<bool>> {
        let held: Option<i64> = on_conn!(tx self, |c| {
            sqlx::query_scalar("SELECT held FROM audit_revocation_lines WHERE request_id = $1")
                .bind(id.get())
                .fetch_optional(c)
                .await?
        });
        Ok(held.map(|h| h != 0))
    }

    /// How many revocation lines `minute` (epoch minutes) has so far.
    pub async fn revocation_lines_in(&mut self, minute: i64) -> StoreResult<i64> {
        Ok(on_conn!(tx self, |c| {
            sqlx::query_scalar("SELECT COUNT(*) FROM audit_revocation_lines WHERE minute = $1")
                .bind(minute)
                .fetch_one(c)
                .await?
        }))
    }

    /// Records request `id`'s revocation line in `minute`, posted on its
    /// own or `held` for the minute's digest.
    pub async fn insert_revocation_line(&mut self, id: RequestId, minute: i64, held: bool) -> StoreResult<()> {
        on_conn!(tx self, |c| {
            sqlx::query(
                "INSERT INTO audit_revocation_lines (request_id, minute, held) VALUES ($1, $2, $3)
                 ON CONFLICT (request_id) DO NOTHING",
            )
            .bind(id.get())
            .bind(minute)
            .bind(i64::from(held))
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// Marks the held lines of `ids` as posted in a digest.
    pub async fn mark_revocation_lines_posted(&mut self, ids: &[RequestId], now: Timestamp) -> StoreResult<()> {
        for id in ids {
            on_conn!(tx self, |c| {
                sqlx::query("UPDATE audit_revocation_lines SET posted_at = $2 WHERE request_id = $1")
                    .bind(id.get())
                    .bind(now.millis())
                    .execute(c)
                    .await?;
            });
        }
        Ok(())
    }
}

impl Db {
    /// Whether `user` ever opened their App Home tab (a read, so the many
    /// people who never did cost no write transaction).
    pub async fn home_ever_opened(&self, user: &SlackUser) -> StoreResult<bool> {
        let n: i64 = on_conn!(db self, |c| {
            sqlx::query_scalar("SELECT COUNT(*) FROM home_tabs WHERE team_id = $1 AND user_id = $2")
                .bind(user.team_id())
                .bind(user.user_id())
                .fetch_one(c)
                .await?
        });
        Ok(n > 0)
    }

    /// Whether notice job `job_id` already sent `step`.
    pub async fn notice_step_done(&self, job_id: i64, step: &str) -> StoreResult<bool> {
        let n: i64 = on_conn!(db self, |c| {
            sqlx::query_scalar("SELECT COUNT(*) FROM notice_steps WHERE job_id = $1 AND step = $2")
                .bind(job_id)
                .bind(step)
                .fetch_one(c)
                .await?
        });
        Ok(n > 0)
    }

    /// Remembers that notice job `job_id` sent `step`.
    pub async fn record_notice_step(&self, job_id: i64, step: &str, now: Timestamp) -> StoreResult<()> {
        on_conn!(write self, |c| {
            sqlx::query(
                "INSERT INTO notice_steps (job_id, step, done_at) VALUES ($1, $2, $3)
                 ON CONFLICT (job_id, step) DO NOTHING",
            )
            .bind(job_id)
            .bind(step)
            .bind(now.millis())
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// The requests whose revocation lines in `minute` are held and not yet
    /// posted, oldest first; and how many lines the minute has in all.
    pub async fn held_revocation_lines(&self, minute: i64) -> StoreResult<(Vec<RequestId>, i64)> {
        let (ids, total) = on_conn!(db self, |c| {
            let ids: Vec<i64> = sqlx::query_scalar(
                "SELECT request_id FROM audit_revocation_lines
                 WHERE minute = $1 AND held = 1 AND posted_at IS NULL ORDER BY request_id",
            )
            .bind(minute)
            .fetch_all(c)
            .await?;
            let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_revocation_lines WHERE minute = $1")
                .bind(minute)
                .fetch_one(c)
                .await?;
            (ids, total)
        });
        Ok((ids.into_iter().map(RequestId::new).collect(), total))
    }
}
