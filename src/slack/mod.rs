//! Slack as a transport: signature checks, slash commands, button clicks,
//! Block Kit views, the Web API client and the Slack notifier.
//!
//! This layer parses Slack's payloads into service calls and renders
//! results; it holds no workflow rules of its own, so any other transport
//! shares every line of behaviour.

pub mod api;
pub mod error_summary;
pub mod forms;
pub mod home;
pub mod modals;
pub mod notifier;
pub mod payloads;
pub mod routes;
pub mod signature;
pub mod socket;
pub mod summaries;
pub mod views;

pub use api::SlackApi;
pub use notifier::SlackNotifier;
