//! What keeps people's Slack quiet but current: who opened their overview
//! (the App Home tab) so that only they get it redrawn, one coalesced
//! redraw per person however many changes come, and the audit channel's
//! revocation lines, which a burst turns into one digest line a minute.

use std::time::Duration;

use super::{Service, ServiceResult};
use crate::domain::{AccessRequest, RequestId, SlackUser, Timestamp};
use crate::job_kinds::{DigestPayload, JobFence, JobKind, JobOutcome, PersonPayload};
use crate::store::StoreError;

/// How long after a change a person's overview is redrawn: changes that
/// come together (approved, granted) are drawn once.
pub const HOME_REDRAW_DELAY: Duration = Duration::from_secs(3);

/// Revocation lines the audit channel gets one by one in a minute; the
/// rest of that minute's revocations share one digest line at its end.
pub const REVOCATION_LINES_PER_MINUTE: i64 = 5;

const MINUTE_MS: i64 = 60_000;

/// What becomes of one revocation's audit line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationLine {
    /// Post it now.
    Post,
    /// Held for the minute's digest (its job is scheduled).
    Held,
}

impl Service {
    /// Remembers that `user` opened their overview, so later changes to
    /// their requests redraw it.
    pub async fn home_opened(&self, user: &SlackUser, now: Timestamp) -> ServiceResult<()> {
        let mut tx = self.db.begin().await?;
        tx.record_home_opened(user, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Schedules a redraw of `user`'s overview [`HOME_REDRAW_DELAY`] from
    /// now, unless they never opened it or a redraw is already queued (it
    /// draws when it runs, so it will show this change too). `true` when a
    /// redraw was scheduled.
    pub async fn schedule_home_redraw(&self, user: &SlackUser, now: Timestamp) -> ServiceResult<bool> {
        if !self.db.home_ever_opened(user).await? {
            return Ok(false);
        }
        let payload = PersonPayload::json(user, None);
        let mut tx = self.db.begin().await?;
        if tx.redraw_home_queued(&payload).await? {
            return Ok(false);
        }
        super::outbox::insert_job(&mut tx, JobKind::RedrawHome, None, &payload, now.plus(HOME_REDRAW_DELAY), now)
            .await?;
        self.commit_and_wake(tx).await?;
        Ok(true)
    }

    /// Redraws `user`'s overview as soon as possible (they acted in it, and
    /// the redrawn tab is the answer), through the same one-at-a-time job
    /// as every other redraw, so it can never be overtaken by an older one.
    pub async fn redraw_home_now(&self, user: &SlackUser, now: Timestamp) -> ServiceResult<()> {
        let payload = PersonPayload::json(user, None);
        let mut tx = self.db.begin().await?;
        tx.record_home_opened(user, now).await?;
        if !tx.redraw_home_due(&payload, now).await? {
            super::outbox::insert_job(&mut tx, JobKind::RedrawHome, None, &payload, now, now).await?;
        }
        self.commit_and_wake(tx).await?;
        Ok(())
    }

    /// Decides whether request `id`'s revocation line is posted now or held
    /// for the digest of the current minute (scheduling that digest). A
    /// retried notice gets the decision made the first time.
    ///
    /// The minute is the one the access ended in (`ended`), not the one the
    /// notice happens to run in: a burst of revocations whose notices queue
    /// behind each other is still one burst.
    pub async fn revocation_line(
        &self,
        id: RequestId,
        ended: Timestamp,
        now: Timestamp,
    ) -> ServiceResult<RevocationLine> {
        let mut tx = self.db.begin().await?;
        if let Some(held) = tx.revocation_line(id).await? {
            return Ok(if held { RevocationLine::Held } else { RevocationLine::Post });
        }
        let minute = ended.millis().div_euclid(MINUTE_MS);
        let held = tx.revocation_lines_in(minute).await? >= REVOCATION_LINES_PER_MINUTE;
        tx.insert_revocation_line(id, minute, held).await?;
        if !held {
            tx.commit().await?;
            return Ok(RevocationLine::Post);
        }
        let payload = serde_json::to_string(&DigestPayload { minute }).unwrap_or_default();
        if !tx.audit_digest_queued(&payload).await? {
            let due = Timestamp::from_millis((minute + 1) * MINUTE_MS);
            super::outbox::insert_job(&mut tx, JobKind::AuditDigest, None, &payload, due, now).await?;
        }
        self.commit_and_wake(tx).await?;
        Ok(RevocationLine::Held)
    }

    /// The revocations of `minute` held for its digest and not posted yet,
    /// with how many revocation lines the minute had in all.
    pub async fn held_revocations(&self, minute: i64) -> Result<(Vec<AccessRequest>, i64), StoreError> {
        let (ids, total) = self.db.held_revocation_lines(minute).await?;
        let mut requests = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = self.db.request(id).await? {
                requests.push(r);
            }
        }
        Ok((requests, total))
    }

    /// Whether notice job `job_id` already sent its message `step` (an
    /// earlier attempt did, before a later message had to wait).
    pub async fn notice_step_done(&self, job_id: i64, step: &str) -> ServiceResult<bool> {
        Ok(self.db.notice_step_done(job_id, step).await?)
    }

    /// Remembers that notice job `job_id` sent its message `step`.
    pub async fn record_notice_step(&self, job_id: i64, step: &str, now: Timestamp) -> ServiceResult<()> {
        Ok(self.db.record_notice_step(job_id, step, now).await?)
    }

    /// Completes a digest job and marks the lines it posted, together.
    pub async fn record_digest_posted(
        &self,
        job: JobFence,
        posted: &[RequestId],
        now: Timestamp,
    ) -> Result<JobOutcome, StoreError> {
        let mut tx = self.db.begin().await?;
        if !tx.complete_job(job.id, job.attempt, now).await? {
            return Ok(JobOutcome::LostLease);
        }
        tx.mark_revocation_lines_posted(posted, now).await?;
        tx.commit().await?;
        Ok(JobOutcome::Done)
    }
}
