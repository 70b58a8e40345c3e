//! jitbot: just-in-time access approval in Slack, on top of identity federation.
//!
//! # A short tour
//!
//! Arrows point down: transports call the service, the service calls the
//! store and writes jobs, jobs call providers and report to the service.
//! Each line says what the module may touch.
//!
//! - [`domain`]: pure types and rules (ids, durations, the request state
//!   machine, policy, decisions, login names and templates). Touches nothing:
//!   no I/O, no clock.
//! - [`config`]: `jitbot.toml` as plain validated data, `${VAR}` secrets; one
//!   file per section; templates, durations, URLs and each role's policy parsed
//!   once, at load. Touches [`domain`] only.
//! - [`store`]: sqlx on SQLite (default) and PostgreSQL; one SQL text for
//!   both. Touches [`domain`] (and fills [`report`]'s facts); only
//!   [`service`] (and the wiring) uses it.
//! - [`service`]: the use cases and read models: request, approve, deny,
//!   break-glass, cancel, revoke, extend, the kill switch, links, sign-in,
//!   SCIM provisioning, the credentials page, reconcile, job outcomes, the
//!   access report. One transaction per transition with its audit event
//!   and jobs. Touches [`store`], [`domain`], [`job_kinds`], [`providers`]
//!   (grant specs), [`audit`], [`report`]; the only door to the store.
//! - [`report`]: access insights as a pure computation: the facts
//!   [`store`] reads for a period, the figures, percentiles and
//!   recommendations computed from them, and their text and HTML forms (the
//!   JSON is the [`report::Report`] itself). Touches [`domain`] only: no
//!   I/O, no clock; [`store`] fills its facts, [`service`] computes it.
//! - [`job_kinds`]: the kinds of jobs, their payloads, and the lane and
//!   series each kind is written in, below both [`service`] (which writes
//!   jobs) and [`jobs`] (which runs them). Pure data.
//! - [`jobs`]: the durable scheduler (lanes claimed apart, fenced leases,
//!   heartbeats, capped backoff; knows no job kinds) and the handlers that
//!   grant, revoke and notify after commit.
//!   Touches [`service`] (to record outcomes), [`providers`], [`notify`];
//!   [`service`] never uses it.
//! - [`providers`]: adapters that apply and remove access: webhook,
//!   PostgreSQL roles, commands (and one-shot actions), AWS IAM Identity
//!   Center account assignments. Touches [`domain`],
//!   [`config`] and the target systems.
//! - [`notify`]: what people are told, behind a trait the transports
//!   implement. Touches [`domain`].
//! - [`slack`]: Slack as a transport: one dispatcher for commands, buttons,
//!   modals and the App Home tab behind two edges (signed HTTP requests and
//!   Socket Mode websockets); Block Kit templates, Web API, the notifier.
//!   Touches [`service`], never [`store`].
//! - [`idp`]: OIDC linking and sign-in (discovery, code flow with PKCE, ID
//!   token checks, refresh) and the `/oidc/*` pages. Touches [`service`],
//!   never [`store`].
//! - [`scim`]: the SCIM 2.0 service provider (`/scim/v2` Users and Groups)
//!   that deprovisions. Touches [`service`], never [`store`].
//! - [`credentials`]: the one-time page that sets and shows a password for
//!   a login jitbot created. Touches [`service`], never [`store`].
//! - [`insights`]: the access report over HTTP (the `/report` page with
//!   SVG charts, `/report.json`, `/report.csv`) for signed-in auditors and
//!   administrators or a bearer token. Touches [`service`], never [`store`]. (The weekly digest is a
//!   job: `report_digest` in [`jobs`].)
//! - [`reconcile`]: compares what the database says is granted with what
//!   targets report. Touches [`service`] and [`providers`].
//! - [`audit`]: the hash-chained audit trail (keyed with `audit.key`), signed
//!   checkpoints of its head, verify and export. Touches [`store`] rows.
//! - [`http`]: the axum router, its bounds (request timeout, requests in
//!   flight) and the one HTML page helper. Touches the transports' routers.
//! - [`app`]: wiring and `run_until`. Touches everything, to build it.
//! - [`cli`]: the binary's commands. Touches [`app`] (to open the service)
//!   and [`service`], never [`store`].
//! - [`metrics`]: counters served on `/metrics`; [`clock`]: the only reader
//!   of the wall clock. Leaves.

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
pub mod insights;
pub mod job_kinds;
pub mod jobs;
pub mod metrics;
pub mod notify;
pub mod providers;
pub mod reconcile;
pub mod report;
pub mod scim;
pub mod service;
pub mod slack;
pub mod store;

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    /// The `.rs` files at `path` (a file, or a directory walked deeply).
    fn rust_files(path: &Path) -> Vec<PathBuf> {
        if path.is_file() {
            return vec![path.to_owned()];
        }
        let mut out = Vec::new();
        for entry in std::fs::read_dir(path).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                out.extend(rust_files(&p));
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
        out
    }

    /// The one door: transports, the job handlers, reconcile and the
    /// command line ask the service; none of them names the store. (Comment
    /// lines may link to it; the needle is split so this file does not
    /// match itself.)
    #[test]
    fn only_the_service_and_the_wiring_import_the_store() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let needle = concat!("crate::", "store");
        let mut offenders = Vec::new();
        for part in
            ["slack", "idp", "scim", "credentials.rs", "cli.rs", "reconcile.rs", "jobs/handlers.rs", "providers"]
        {
            for file in rust_files(&src.join(part)) {
                let text = std::fs::read_to_string(&file).unwrap();
                let code = text.lines().filter(|l| !l.trim_start().starts_with("//"));
                if code.into_iter().any(|l| l.contains(needle)) {
                    offenders.push(file.display().to_string());
                }
            }
        }
        assert_eq!(offenders, Vec::<String>::new(), "these name {needle}");
    }
}
