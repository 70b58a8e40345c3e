//! The one integration-test binary: the real app on port 0, a manual clock,
//! a real webhook receiver, a temp SQLite file per test; for the providers,
//! a real PostgreSQL (a fresh database and prefixed roles per test) and the
//! scripts in `tests/scripts/`.

mod fake_slack;
mod pg_support;
mod provider_support;
mod slack_support;
mod support;

mod audit_trail;
mod cli;
mod concurrency;
mod crash;
mod credentials_page;
mod lifecycle;
mod providers_command;
mod providers_pg;
mod scheduler;
mod slack_contract;
mod slack_http;
mod slack_revocation;
