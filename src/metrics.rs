//! Counters an operator alerts on, served as Prometheus text on `/metrics`.
//!
//! A handful of monotonic counters do not need a metrics library: they are
//! plain atomics owned by the app (no process-wide registry, so tests that
//! run several apps in one process do not see each other's numbers) and
//! rendered in the text exposition format by hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

/// The counters; cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Metrics(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    grants_applied: AtomicU64,
    grant_attempts_failed: AtomicU64,
    revocations_applied: AtomicU64,
    revoke_attempts_failed: AtomicU64,
    revocations_overdue: AtomicU64,
    actions_run: AtomicU64,
}

/// Which counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Grants a provider applied.
    GrantsApplied,
    /// Grant attempts that failed (retried or not).
    GrantAttemptsFailed,
    /// Revocations a provider confirmed.
    RevocationsApplied,
    /// Revocation attempts that failed (always retried).
    RevokeAttemptsFailed,
    /// Revocations still not done a minute after expiry: page someone.
    RevocationsOverdue,
    /// One-shot actions run (successfully or not).
    ActionsRun,
}

impl Counter {
    const ALL: [Counter; 6] = [
        Counter::GrantsApplied,
        Counter::GrantAttemptsFailed,
        Counter::RevocationsApplied,
        Counter::RevokeAttemptsFailed,
        Counter::RevocationsOverdue,
        Counter::ActionsRun,
    ];

    fn name_and_help(self) -> (&'static str, &'static str) {
        match self {
            Counter::GrantsApplied => ("jitbot_grants_applied_total", "Grants a provider applied."),
            Counter::GrantAttemptsFailed => ("jitbot_grant_attempts_failed_total", "Grant attempts that failed."),
            Counter::RevocationsApplied => ("jitbot_revocations_applied_total", "Revocations a provider confirmed."),
            Counter::RevokeAttemptsFailed => {
                ("jitbot_revoke_attempts_failed_total", "Revocation attempts that failed (they are retried).")
            }
            Counter::RevocationsOverdue => {
                ("jitbot_revocations_overdue_total", "Revocations not done 60 seconds after the access expired.")
            }
            Counter::ActionsRun => ("jitbot_actions_run_total", "One-shot actions run."),
        }
    }
}

impl Metrics {
    fn cell(&self, c: Counter) -> &AtomicU64 {
        match c {
            Counter::GrantsApplied => &self.0.grants_applied,
            Counter::GrantAttemptsFailed => &self.0.grant_attempts_failed,
            Counter::RevocationsApplied => &self.0.revocations_applied,
            Counter::RevokeAttemptsFailed => &self.0.revoke_attempts_failed,
            Counter::RevocationsOverdue => &self.0.revocations_overdue,
            Counter::ActionsRun => &self.0.actions_run,
        }
    }

    /// Adds one.
    pub fn inc(&self, c: Counter) {
        self.cell(c).fetch_add(1, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self, c: Counter) -> u64 {
        self.cell(c).load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in Counter::ALL {
            let (name, help) = c.name_and_help();
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n", self.get(c)));
        }
        out
    }
}

/// `GET /metrics`.
pub fn router(metrics: Metrics) -> Router {
    Router::new().route("/metrics", get(render)).with_state(metrics)
}

async fn render(State(metrics): State<Metrics>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_in_the_text_format() {
        let m = Metrics::default();
        m.inc(Counter::RevocationsOverdue);
        m.inc(Counter::RevocationsOverdue);
        let text = m.render();
        assert!(text.contains("# TYPE jitbot_revocations_overdue_total counter\njitbot_revocations_overdue_total 2\n"));
        assert!(text.contains("jitbot_grants_applied_total 0\n"));
    }
}
