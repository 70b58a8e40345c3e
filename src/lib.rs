//! jitbot: just-in-time access approval in Slack, on top of identity federation.
//!
//! # A short tour
//!
//! - [`domain`]: pure types and rules (ids, durations, the request state
//!   machine, policy). No I/O, no clock.
//! - [`config`]: `jitbot.toml`, typed and validated, `${VAR}` secrets; one
//!   file per section. Touches [`domain`] only: templates, durations and each
//!   role's policy are parsed once, at load.
//! - [`store`]: sqlx on SQLite (default) and PostgreSQL; one SQL text for both.
//! - [`service`]: the use cases (request, approve, deny, break-glass, cancel,
//!   revoke, extend, the kill switch, link, sign-in, SCIM provisioning, the
//!   credentials page, reconcile). One transaction per transition, with its
//!   audit event and jobs; read models for the transports. The only door to
//!   [`store`]: `idp`, `scim`, `credentials` and `reconcile` ask it.
//! - [`job_kinds`]: the kinds of jobs and their payloads, below both
//!   `service` (which writes jobs) and `jobs` (which runs them). Pure data.
//! - [`jobs`]: the durable scheduler (fenced leases, capped backoff; knows no
//!   job kinds) and the handlers that grant, revoke and notify after commit,
//!   reporting each outcome to a `service` use case. May use `service`;
//!   `service` never uses `jobs`.
//! - [`providers`]: adapters that apply and remove access: webhook,
//!   PostgreSQL roles, commands (and one-shot actions).
//! - [`credentials`]: the one-time page that sets and shows a password for
//!   a login jitbot created.
//! - [`reconcile`]: compares what the database says is granted with what
//!   targets report.
//! - [`metrics`]: counters served on `/metrics`.
//! - [`notify`]: what people are told, behind a trait the transports implement.
//! - [`slack`]: Slack as a transport: one dispatcher for commands, buttons,
//!   modals and the App Home tab, behind two edges (signed HTTP requests and
//!   Socket Mode websockets); Block Kit templates, Web API. Reaches the
//!   database only through [`service`], never [`store`].
//! - [`audit`]: the hash-chained audit trail (keyed with `audit.key`), signed
//!   checkpoints of its head, verify and export.
//! - [`http`]: the axum router and its bounds (request timeout, requests in
//!   flight); [`app`]: wiring and `run_until`; [`cli`]: the binary's commands.
//! - [`clock`]: the only reader of the wall clock.

#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod app;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod domain;
pub mod http;
pub mod idp;
pub mod job_kinds;
pub mod jobs;
pub mod metrics;
pub mod notify;
pub mod providers;
pub mod reconcile;
pub mod scim;
pub mod service;
pub mod slack;
pub mod store;
