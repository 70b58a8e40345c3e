//! The one integration-test binary: the real app on port 0, a manual clock,
//! a real webhook receiver, and a fresh database per test: a temp SQLite
//! file, or (for tests that run on both backends, and the replica tests) a
//! new database on the PostgreSQL server named by `JITBOT_TEST_DATABASE_URL`.

mod fake_slack;
mod idp_support;
mod slack_support;
mod support;

mod audit_trail;
mod cli;
mod concurrency;
mod crash;
mod job_series;
mod lifecycle;
mod oidc;
mod postgres;
mod replicas;
mod scheduler;
mod scim;
mod slack_contract;
mod slack_http;
mod socket_mode;
