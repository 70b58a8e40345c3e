//! The one integration-test binary: the real app on port 0, a manual clock,
//! a real webhook receiver, a temp SQLite file per test.

mod fake_slack;
mod idp_support;
mod slack_support;
mod support;

mod audit_trail;
mod cli;
mod concurrency;
mod crash;
mod expiry;
mod forms;
mod kill_switch;
mod lifecycle;
mod oidc;
mod overview;
mod scheduler;
mod slack_contract;
mod slack_http;
mod workflow;
