//! The Slack [`Notifier`]: posts the approval card when a request is made,
//! updates it in place when a later notice changes what it shows, DMs the
//! requester and writes to the audit channel. Runs only inside notify jobs,
//! so every failure is retried (after Slack's `Retry-After` on 429) and
//! never undoes a transition.
//!
//! Calls are kept few: a card whose rendering did not change is not
//! updated (a hash of the last drawn card is kept with it), the requester's
//! App Home tab is redrawn by a coalesced `redraw_home` job and only if
//! they ever opened it, and a burst of revocations reaches the audit
//! channel as one digest line a minute (see [`crate::service::RevocationLine`]).

use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::api::SlackApi;
use super::views;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::domain::{AccessRequest, SlackUser, Timestamp};
use crate::notify::{Notice, NoticeKind, Notifier, NotifyError};
use crate::service::{PostedCard, RevocationLine, Service, ServiceError};

/// A hash of a rendered message: equal hashes mean Slack would show the
/// same thing, so the update can be skipped.
fn rendered_hash(msg: &views::Message) -> String {
    let mut h = Sha256::new();
    h.update(msg.text.as_bytes());
    h.update([0]);
    h.update(serde_json::Value::Array(msg.blocks.clone()).to_string().as_bytes());
    hex::encode(h.finalize())
}

/// Delivers notices to Slack.
pub struct SlackNotifier {
    api: SlackApi,
    config: Arc<Config>,
    clock: SharedClock,
    /// Remembers posted cards, issues credentials links and reads what the
    /// requester's App Home tab shows.
    service: Service,
}

impl SlackNotifier {
    /// Builds the notifier.
    pub fn new(api: SlackApi, service: Service, config: Arc<Config>, clock: SharedClock) -> Self {
        Self { api, config, clock, service }
    }

    fn channel_for(&self, role: &str) -> Option<String> {
        super::approvals_channel(&self.config, role)
    }

    async fn card(&self, notice: &Notice) -> Result<(), NotifyError> {
        let r = &notice.request;
        let role = self.config.roles.get(r.role.as_str());
        let msg = views::ApprovalCard {
            request: r,
            approvals: &notice.approvals,
            description: role.map(|c| c.description.as_str()).unwrap_or(""),
            ticket_url: role.and_then(|c| c.ticket_url.as_deref()),
            break_glass: role.is_some_and(|c| c.break_glass),
        }
        .render();
        let hash = rendered_hash(&msg);
        let existing = self.service.posted_card(r.id).await.map_err(service_err)?;
        match existing {
            // Already shows this (say, the grant finished before the
            // approval's notice drew the card): nothing to send.
            Some(card) if card.rendered_hash.as_deref() == Some(hash.as_str()) => {}
            Some(card) => {
                self.api.update_message(&card.channel, &card.ts, &msg).await?;
                self.service.remember_card_drawn(r.id, &hash).await.map_err(service_err)?;
            }
            // The first notice of a request posts its card; an auto-approved
            // request's first notice is its approval.
            None if matches!(notice.kind, NoticeKind::RequestCreated | NoticeKind::AutoApproved) => {
                let Some(channel) = self.channel_for(r.role.as_str()) else { return Ok(()) };
                let ts = self.api.post_message(&channel, &msg).await?;
                let card = PostedCard { channel, ts, rendered_hash: Some(hash) };
                self.service.remember_card(r.id, &card, self.clock.now()).await.map_err(service_err)?;
            }
            // No card to update (it was never posted): the DM and audit line still go out.
            None => {}
        }
        Ok(())
    }
}

impl SlackNotifier {
    /// DMs the holder that their access ends soon, with the extensions the
    /// role allows and an "I'm done" button.
    async fn warn(&self, notice: &Notice) -> Result<(), NotifyError> {
        let r = &notice.request;
        let choices = self.config.role_policy(&r.role).map(|p| p.duration_choices()).unwrap_or_default();
        let msg = views::ExpiryWarningDm { request: r, choices: &choices }.render();
        self.api.post_message(r.requester.user_id(), &msg).await?;
        Ok(())
    }

    /// Posts the reminder under the card, also shown in the channel so it
    /// is seen (a thread reply alone is easy to miss).
    async fn remind(&self, notice: &Notice) -> Result<(), NotifyError> {
        let r = &notice.request;
        let msg = views::ReminderLine { request: r, approvals: &notice.approvals }.render();
        match self.service.posted_card(r.id).await.map_err(service_err)? {
            Some(card) => {
                self.api.post_reply(&card.channel, &card.ts, &msg, true).await?;
            }
            None => {
                let Some(channel) = self.channel_for(r.role.as_str()) else { return Ok(()) };
                self.api.post_message(&channel, &msg).await?;
            }
        }
        Ok(())
    }
}

impl SlackNotifier {
    /// Delivers a notice: the card, the requester's DMs, the audit line.
    /// The steps that post messages are pushed on `sent` as they succeed.
    async fn deliver(&self, notice: &Notice, sent: &mut Vec<&'static str>) -> Result<(), NotifyError> {
        let r = &notice.request;
        // First, so a notice retried after a 429 still gets it: the
        // requester's open tab is redrawn a few seconds from now, from the
        // state as it is then (at most one redraw waits per person).
        self.service.schedule_home_redraw(&r.requester, self.clock.now()).await.map_err(service_err)?;
        // Idempotent: an unchanged card is not sent again.
        self.card(notice).await?;
        if let Some(dm) = (views::RequesterDm { kind: notice.kind, request: r, approvals: &notice.approvals }).render()
        {
            self.post_once(notice, "requester_dm", r.requester.user_id(), &dm, sent).await?;
        }
        if notice.kind == NoticeKind::Granted && !self.already_sent(notice, "credentials_dm").await? {
            // A login jitbot created: the DM carries a one-time link, never the password.
            let now = self.clock.now();
            if let Some(link) = self
                .service
                .issue_credentials_link(r, self.config.server.public_base(), now)
                .await
                .map_err(service_err)?
            {
                let dm = views::CredentialsDm { request: r, login: &link.login, url: &link.url }.render();
                self.post_once(notice, "credentials_dm", r.requester.user_id(), &dm, sent).await?;
            }
        }
        if let Some(slack) = &self.config.slack {
            let alert_channel = slack.audit_channel.clone().or_else(|| {
                // A failing revocation must reach people even without an audit channel.
                matches!(notice.kind, NoticeKind::RevokeFailing | NoticeKind::RevokeOverdue)
                    .then(|| self.channel_for(r.role.as_str()))
                    .flatten()
            });
            let line = views::AuditLine { kind: notice.kind, request: r, approvals: &notice.approvals }.render();
            if let (Some(channel), Some(line)) = (alert_channel, line) {
                // Past a handful in one minute, revocations share a digest line.
                let held = notice.kind == NoticeKind::Revoked
                    && self
                        .service
                        .revocation_line(r.id, r.ended_at.unwrap_or_else(|| self.clock.now()), self.clock.now())
                        .await
                        .map_err(service_err)?
                        == RevocationLine::Held;
                if !held {
                    self.post_once(notice, "audit_line", &channel, &line, sent).await?;
                }
            }
        }
        Ok(())
    }

    /// Whether an earlier attempt of this notice's job sent `step` (only
    /// asked on retries: a first attempt has sent nothing).
    async fn already_sent(&self, notice: &Notice, step: &str) -> Result<bool, NotifyError> {
        match notice.job_id {
            Some(job_id) if notice.attempt > 1 => {
                self.service.notice_step_done(job_id, step).await.map_err(service_err)
            }
            _ => Ok(false),
        }
    }

    /// Posts `msg` as `step` of the notice, unless an earlier attempt did.
    async fn post_once(
        &self,
        notice: &Notice,
        step: &'static str,
        channel: &str,
        msg: &views::Message,
        sent: &mut Vec<&'static str>,
    ) -> Result<(), NotifyError> {
        if self.already_sent(notice, step).await? {
            return Ok(());
        }
        self.api.post_message(channel, msg).await?;
        sent.push(step);
        Ok(())
    }
}

/// A failed read or write of the bookkeeping; the job retries the notice.
fn service_err(e: ServiceError) -> NotifyError {
    let message = match e {
        ServiceError::Internal(cause) => format!("database: {cause}"),
        other => format!("database: {other}"),
    };
    NotifyError { message, retry_after: None }
}

#[async_trait]
impl Notifier for SlackNotifier {
    async fn notify(&self, notice: &Notice) -> Result<(), NotifyError> {
        match notice.kind {
            NoticeKind::Reminder => return self.remind(notice).await,
            NoticeKind::ExpiryWarning => return self.warn(notice).await,
            _ => {}
        }
        let mut sent = Vec::new();
        let result = self.deliver(notice, &mut sent).await;
        // Some messages went out before one had to wait: remember them, so
        // the retry sends only the rest.
        if let (Err(_), Some(job_id)) = (&result, notice.job_id) {
            for step in sent {
                if let Err(e) = self.service.record_notice_step(job_id, step, self.clock.now()).await {
                    tracing::warn!(job_id, step, error = %e, "could not remember a sent message; a retry may repeat it");
                }
            }
        }
        result
    }

    async fn redraw_home(&self, user: &SlackUser) -> Result<(), NotifyError> {
        let now = self.clock.now();
        super::home::publish(&self.api, &self.service, &self.config, now, user).await?;
        Ok(())
    }

    async fn revocation_digest(
        &self,
        minute: Timestamp,
        held: &[AccessRequest],
        total: i64,
    ) -> Result<(), NotifyError> {
        let Some(channel) = self.config.slack.as_ref().and_then(|s| s.audit_channel.clone()) else { return Ok(()) };
        let line = views::RevocationDigestLine { minute, held, total }.render();
        self.api.post_message(&channel, &line).await?;
        Ok(())
    }

    async fn announce(&self, announcement: &crate::notify::Announcement) -> Result<(), NotifyError> {
        let Some(slack) = &self.config.slack else { return Ok(()) };
        // Without an audit channel, the default approvals channel must hear it.
        let channel = slack.audit_channel.clone().unwrap_or_else(|| slack.approvals_channel.clone());
        self.api.post_message(&channel, &views::AnnouncementLine { announcement }.render()).await?;
        Ok(())
    }

    async fn direct_message(&self, user: &crate::domain::SlackUser, text: &str) -> Result<(), NotifyError> {
        let msg = views::Message { text: text.to_owned(), blocks: Vec::new() };
        self.api.post_message(user.user_id(), &msg).await?;
        Ok(())
    }
}
