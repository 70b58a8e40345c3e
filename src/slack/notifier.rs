//! The Slack [`Notifier`]: posts the approval card when a request is made,
//! updates it in place on every later notice, DMs the requester and writes
//! to the audit channel. Runs only inside notify jobs, so every failure is
//! retried (after Slack's `Retry-After` on 429) and never undoes a transition.

use std::sync::Arc;

use async_trait::async_trait;

use super::api::SlackApi;
use super::views;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::notify::{Notice, NoticeKind, Notifier, NotifyError};
use crate::service::{PostedCard, Service, ServiceError};

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
        let existing = self.service.posted_card(r.id).await.map_err(service_err)?;
        match existing {
            Some(card) => self.api.update_message(&card.channel, &card.ts, &msg).await?,
            // The first notice of a request posts its card; an auto-approved
            // request's first notice is its approval.
            None if matches!(notice.kind, NoticeKind::RequestCreated | NoticeKind::AutoApproved) => {
                let Some(channel) = self.channel_for(r.role.as_str()) else { return Ok(()) };
                let ts = self.api.post_message(&channel, &msg).await?;
                self.service
                    .remember_card(r.id, &PostedCard { channel, ts }, self.clock.now())
                    .await
                    .map_err(service_err)?;
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
        let r = &notice.request;
        match notice.kind {
            NoticeKind::Reminder => return self.remind(notice).await,
            NoticeKind::ExpiryWarning => return self.warn(notice).await,
            _ => {}
        }
        self.card(notice).await?;
        if let Some(dm) = (views::RequesterDm { kind: notice.kind, request: r, approvals: &notice.approvals }).render()
        {
            self.api.post_message(r.requester.user_id(), &dm).await?;
        }
        if notice.kind == NoticeKind::Granted {
            // A login jitbot created: the DM carries a one-time link, never the password.
            let now = self.clock.now();
            if let Some(link) = self
                .service
                .issue_credentials_link(r, self.config.server.public_base(), now)
                .await
                .map_err(service_err)?
            {
                let dm = views::CredentialsDm { request: r, login: &link.login, url: &link.url }.render();
                self.api.post_message(r.requester.user_id(), &dm).await?;
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
                self.api.post_message(&channel, &line).await?;
            }
        }
        // Last, and best effort: the requester's tab follows their request,
        // and the notice counts as delivered either way.
        let now = self.clock.now();
        if let Err(e) = super::home::publish(&self.api, &self.service, &self.config, now, &r.requester).await {
            tracing::warn!(request_id = r.id.get(), error = %e, "home tab not refreshed");
        }
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
