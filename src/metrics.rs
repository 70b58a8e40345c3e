//! What an operator alerts on and graphs, served as Prometheus text on
//! `/metrics`: counters, labelled counters, gauges and histograms.
//!
//! A few dozen series do not need a metrics library: they are plain atomics
//! and one small map owned by the app (no process-wide registry, so tests
//! that run several apps in one process do not see each other's numbers)
//! and rendered in the text exposition format by hand.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

/// The metrics; cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Metrics(Arc<Inner>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Inner {
    grants_applied: AtomicU64,
    grant_attempts_failed: AtomicU64,
    revocations_applied: AtomicU64,
    revoke_attempts_failed: AtomicU64,
    revocations_overdue: AtomicU64,
    actions_run: AtomicU64,
    /// Labelled series, keyed by metric and label values. A mutex is fine:
    /// each update holds it for a few nanoseconds, far from any hot loop.
    labelled: Mutex<BTreeMap<SeriesKey, Series>>,
    /// Computes gauges that are read from elsewhere (the job queue) at
    /// scrape time, so nothing polls while nobody looks.
    collectors: Mutex<Vec<Arc<dyn Collector>>>,
}

/// A labelled series: which metric, and its label pairs in a fixed order.
type SeriesKey = (&'static str, Vec<(&'static str, String)>);

enum Series {
    Counter(u64),
    Gauge(f64),
    Histogram(HistogramState),
}

/// Cumulative buckets (seconds), wide enough for a 1 ms Slack ack and a
/// revocation minutes late.
const BUCKETS: [f64; 16] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

#[derive(Default)]
struct HistogramState {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Which plain counter.
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

/// Which labelled counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelledCounter {
    /// Slack Web API calls made, by `method`.
    SlackApiCalls,
    /// Slack Web API calls answered 429 (rate limited), by `method`.
    SlackRateLimited,
}

impl LabelledCounter {
    fn name_and_help(self) -> (&'static str, &'static str) {
        match self {
            Self::SlackApiCalls => ("jitbot_slack_api_calls_total", "Slack Web API calls made, by method."),
            Self::SlackRateLimited => {
                ("jitbot_slack_api_rate_limited_total", "Slack Web API calls answered 429, by method.")
            }
        }
    }
}

/// Which gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gauge {
    /// Jobs due now and not yet claimed, by `lane`.
    JobsDue,
    /// Age in seconds of the oldest due, unclaimed job, by `lane` (0 when none).
    OldestDueJobSeconds,
}

impl Gauge {
    fn name_and_help(self) -> (&'static str, &'static str) {
        match self {
            Self::JobsDue => ("jitbot_jobs_due", "Jobs due and not yet claimed, by lane."),
            Self::OldestDueJobSeconds => {
                ("jitbot_oldest_due_job_seconds", "How long the oldest due, unclaimed job has waited, by lane.")
            }
        }
    }
}

/// Which histogram (all in seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Histogram {
    /// From a Slack delivery's arrival to its acknowledgment, by `transport`.
    SlackAck,
    /// How late access ended: revocation applied − `expires_at`.
    RevocationLateness,
    /// How long one provider call took, by `provider` and `op`.
    ProviderCall,
}

impl Histogram {
    fn name_and_help(self) -> (&'static str, &'static str) {
        match self {
            Self::SlackAck => (
                "jitbot_slack_ack_seconds",
                "Time from a Slack delivery's arrival to its acknowledgment, by transport.",
            ),
            Self::RevocationLateness => (
                "jitbot_revocation_lateness_seconds",
                "How long after expires_at a revocation was applied (0 for early revocations).",
            ),
            Self::ProviderCall => ("jitbot_provider_call_seconds", "Duration of provider calls, by provider and op."),
        }
    }
}

/// Sets gauges whose values live elsewhere, when `/metrics` is scraped.
#[async_trait::async_trait]
pub trait Collector: Send + Sync + 'static {
    /// Reads the current values and sets them on `metrics`.
    async fn collect(&self, metrics: &Metrics);
}

fn owned_labels(labels: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
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

    fn series<R>(&self, f: impl FnOnce(&mut BTreeMap<SeriesKey, Series>) -> R) -> R {
        // A poisoned lock only means a panic elsewhere mid-update of a
        // number; the map itself is still usable.
        let mut map = self.0.labelled.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut map)
    }

    /// Adds one.
    pub fn inc(&self, c: Counter) {
        self.cell(c).fetch_add(1, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self, c: Counter) -> u64 {
        self.cell(c).load(Ordering::Relaxed)
    }

    /// Adds one to a labelled counter.
    pub fn inc_labelled(&self, c: LabelledCounter, labels: &[(&'static str, &str)]) {
        let key = (c.name_and_help().0, owned_labels(labels));
        self.series(|m| {
            if let Series::Counter(n) = m.entry(key).or_insert(Series::Counter(0)) {
                *n += 1;
            }
        });
    }

    /// The current value of a labelled counter (0 when never touched).
    pub fn get_labelled(&self, c: LabelledCounter, labels: &[(&'static str, &str)]) -> u64 {
        let key = (c.name_and_help().0, owned_labels(labels));
        self.series(|m| match m.get(&key) {
            Some(Series::Counter(n)) => *n,
            _ => 0,
        })
    }

    /// Sets a gauge.
    pub fn set_gauge(&self, g: Gauge, labels: &[(&'static str, &str)], value: f64) {
        let key = (g.name_and_help().0, owned_labels(labels));
        self.series(|m| {
            m.insert(key, Series::Gauge(value));
        });
    }

    /// Records one observation, in seconds.
    pub fn observe(&self, h: Histogram, labels: &[(&'static str, &str)], seconds: f64) {
        let key = (h.name_and_help().0, owned_labels(labels));
        self.series(|m| {
            if let Series::Histogram(state) = m.entry(key).or_insert_with(|| Series::Histogram(Default::default())) {
                for (i, bound) in BUCKETS.iter().enumerate() {
                    if seconds <= *bound {
                        state.counts[i] += 1;
                    }
                }
                state.count += 1;
                state.sum += seconds;
            }
        });
    }

    /// Records one observation of a duration.
    pub fn observe_duration(&self, h: Histogram, labels: &[(&'static str, &str)], d: Duration) {
        self.observe(h, labels, d.as_secs_f64());
    }

    /// How many observations a histogram series holds (tests, benchmarks).
    pub fn histogram_count(&self, h: Histogram, labels: &[(&'static str, &str)]) -> u64 {
        let key = (h.name_and_help().0, owned_labels(labels));
        self.series(|m| match m.get(&key) {
            Some(Series::Histogram(s)) => s.count,
            _ => 0,
        })
    }

    /// Adds a collector run before each scrape.
    pub fn add_collector(&self, collector: Arc<dyn Collector>) {
        self.0.collectors.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(collector);
    }

    /// Runs the collectors, then renders.
    pub async fn scrape(&self) -> String {
        let collectors = self.0.collectors.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        for c in collectors {
            c.collect(self).await;
        }
        self.render()
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for c in Counter::ALL {
            let (name, help) = c.name_and_help();
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n", self.get(c));
        }
        let helps: BTreeMap<&'static str, (&'static str, &'static str)> =
            [LabelledCounter::SlackApiCalls.name_and_help(), LabelledCounter::SlackRateLimited.name_and_help()]
                .into_iter()
                .map(|(n, h)| (n, (h, "counter")))
                .chain([Gauge::JobsDue, Gauge::OldestDueJobSeconds].into_iter().map(|g| {
                    let (n, h) = g.name_and_help();
                    (n, (h, "gauge"))
                }))
                .chain([Histogram::SlackAck, Histogram::RevocationLateness, Histogram::ProviderCall].into_iter().map(
                    |g| {
                        let (n, h) = g.name_and_help();
                        (n, (h, "histogram"))
                    },
                ))
                .collect();
        self.series(|m| {
            let mut last = "";
            for ((name, labels), series) in m.iter() {
                if *name != last {
                    let (help, kind) = helps.get(name).copied().unwrap_or(("", "untyped"));
                    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
                    last = name;
                }
                let label_text = |extra: Option<(&str, String)>| {
                    let mut parts: Vec<String> =
                        labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
                    if let Some((k, v)) = extra {
                        parts.push(format!("{k}=\"{v}\""));
                    }
                    if parts.is_empty() { String::new() } else { format!("{{{}}}", parts.join(",")) }
                };
                match series {
                    Series::Counter(n) => {
                        let _ = writeln!(out, "{name}{} {n}", label_text(None));
                    }
                    Series::Gauge(v) => {
                        let _ = writeln!(out, "{name}{} {v}", label_text(None));
                    }
                    Series::Histogram(s) => {
                        for (i, bound) in BUCKETS.iter().enumerate() {
                            let _ = writeln!(
                                out,
                                "{name}_bucket{} {}",
                                label_text(Some(("le", bound.to_string()))),
                                s.counts[i]
                            );
                        }
                        let _ = writeln!(out, "{name}_bucket{} {}", label_text(Some(("le", "+Inf".into()))), s.count);
                        let _ = writeln!(out, "{name}_sum{} {}", label_text(None), s.sum);
                        let _ = writeln!(out, "{name}_count{} {}", label_text(None), s.count);
                    }
                }
            }
        });
        out
    }
}

/// Escapes a label value for the text format.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// `GET /metrics`.
pub fn router(metrics: Metrics) -> Router {
    Router::new().route("/metrics", get(render)).with_state(metrics)
}

async fn render(State(metrics): State<Metrics>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics.scrape().await)
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

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let m = Metrics::default();
        m.observe(Histogram::SlackAck, &[("transport", "http")], 0.003);
        m.observe(Histogram::SlackAck, &[("transport", "http")], 0.2);
        m.observe(Histogram::SlackAck, &[("transport", "socket_mode")], 0.0005);
        let text = m.render();
        assert!(text.contains("# TYPE jitbot_slack_ack_seconds histogram\n"), "{text}");
        assert!(text.contains("jitbot_slack_ack_seconds_bucket{transport=\"http\",le=\"0.001\"} 0\n"), "{text}");
        assert!(text.contains("jitbot_slack_ack_seconds_bucket{transport=\"http\",le=\"0.005\"} 1\n"), "{text}");
        assert!(text.contains("jitbot_slack_ack_seconds_bucket{transport=\"http\",le=\"0.25\"} 2\n"), "{text}");
        assert!(text.contains("jitbot_slack_ack_seconds_bucket{transport=\"http\",le=\"+Inf\"} 2\n"), "{text}");
        assert!(text.contains("jitbot_slack_ack_seconds_count{transport=\"http\"} 2\n"), "{text}");
        assert!(text.contains("jitbot_slack_ack_seconds_count{transport=\"socket_mode\"} 1\n"), "{text}");
        assert_eq!(text.matches("# TYPE jitbot_slack_ack_seconds").count(), 1);
    }

    #[test]
    fn labelled_counters_and_gauges_render_with_escaped_labels() {
        let m = Metrics::default();
        m.inc_labelled(LabelledCounter::SlackRateLimited, &[("method", "chat.postMessage")]);
        m.set_gauge(Gauge::JobsDue, &[("lane", "access")], 3.0);
        m.set_gauge(Gauge::JobsDue, &[("lane", "a\"b")], 1.0);
        let text = m.render();
        assert!(text.contains("jitbot_slack_api_rate_limited_total{method=\"chat.postMessage\"} 1\n"), "{text}");
        assert!(text.contains("# TYPE jitbot_jobs_due gauge\njitbot_jobs_due{lane=\"a\\\"b\"} 1\n"), "{text}");
        assert!(text.contains("jitbot_jobs_due{lane=\"access\"} 3\n"), "{text}");
        assert_eq!(m.get_labelled(LabelledCounter::SlackRateLimited, &[("method", "chat.postMessage")]), 1);
    }
}
