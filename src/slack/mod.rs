//! Slack as a transport: signature checks, slash commands, button clicks,
//! Block Kit views, the Web API client and the Slack notifier.
//!
//! This layer parses Slack's payloads into service calls and renders
//! results; it holds no workflow rules of its own, so any other transport
//! shares every line of behaviour. Nothing here touches the store: every
//! read and write goes through [`crate::service`] (its use cases and read
//! models), the one door to the database.
//!
//! The files:
//! - `routes.rs`: the HTTP edge (`/slack/commands`, `/slack/interactions`,
//!   `/slack/events`), the shared [`routes::SlackState`], and the handlers of
//!   slash commands and button clicks both transports run.
//! - `socket.rs`: the Socket Mode edge; moves envelopes between Slack's
//!   websocket and the dispatcher.
//! - `dispatch.rs`: the one dispatcher both edges hand what arrived to.
//! - `signature.rs` (and `signature_proptests.rs`): the request signature check.
//! - `payloads.rs`: Slack's inbound payloads, parsed into the fields used.
//! - `forms.rs`: opening modals and handling their submissions.
//! - `modals.rs`: the modal views as templates.
//! - `views.rs`: one message as a template (cards, DMs, audit lines).
//! - `summaries.rs`: many requests at once (`/jit list`, `/jit pending`, App Home).
//! - `home.rs`: building and publishing the App Home tab.
//! - `notifier.rs`: the [`crate::notify::Notifier`] that posts and updates
//!   cards, DMs and audit lines from notify jobs.
//! - `api.rs`: the Web API client; `pacer.rs`: its pacing by Slack's rate
//!   limit tiers.

use crate::config::Config;

pub mod api;
pub(crate) mod dispatch;
pub mod forms;
pub mod home;
pub mod modals;
pub mod notifier;
pub mod pacer;
pub mod payloads;
pub mod routes;
pub mod signature;
pub mod socket;
pub mod summaries;
pub mod views;

pub use api::SlackApi;
pub use notifier::SlackNotifier;

/// The channel where `role`'s approval cards (and their reminders) go: the
/// role's own `approvals_channel`, else `[slack].approvals_channel`; `None`
/// without `[slack]`. Every Slack answer that names the channel asks this.
pub(crate) fn approvals_channel(config: &Config, role: &str) -> Option<String> {
    let slack = config.slack.as_ref()?;
    Some(
        config
            .roles
            .get(role)
            .and_then(|r| r.approvals_channel.clone())
            .unwrap_or_else(|| slack.approvals_channel.clone()),
    )
}

#[cfg(test)]
mod tests {
    /// The one door: no Slack file reaches the database except through the
    /// service. (The needles are split so this file does not match itself.)
    #[test]
    fn nothing_in_slack_touches_the_store() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/slack");
        let needles = [concat!("crate::", "store"), concat!(".db", "()"), concat!("store", "::")];
        let mut offenders = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for needle in needles {
                if text.contains(needle) {
                    offenders.push(format!("{} names {needle}", path.display()));
                }
            }
        }
        assert_eq!(offenders, Vec::<String>::new());
    }
}
