//! The one integration-test binary: the real app on port 0, a manual clock,
//! a real webhook receiver, and a fresh database per test: a temp SQLite
//! file, or (for tests that run on both backends, and the replica tests) a
//! new database on the PostgreSQL server named by `JITBOT_TEST_DATABASE_URL`;
//! for the providers, a real PostgreSQL target (a fresh database and
//! prefixed roles per test) and the scripts in `tests/scripts/`.

mod support;

mod audit_trail;
mod cli;
mod concurrency;
mod crash;
mod credentials_page;
mod expiry;
mod forms;
mod housekeeping;
mod http_limits;
mod job_series;
mod kill_switch;
mod lanes;
mod lifecycle;
mod migrations;
mod oidc;
mod overview;
mod postgres;
mod providers_aws;
mod providers_command;
mod providers_ldap;
mod providers_pg;
mod replicas;
mod report;
mod scheduler;
mod scim;
mod slack_contract;
mod slack_http;
mod slack_pacing;
mod slack_revocation;
mod socket_mode;
mod workflow;
