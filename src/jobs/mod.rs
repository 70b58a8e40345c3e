//! The durable jobs: everything that must happen later, or that talks to
//! another system, is a row in `jobs` written by the transaction that
//! decided it, and is run from here.
//!
//! - [`scheduler`]: claims due jobs with fenced leases, renews them, backs
//!   off, runs the loop and housekeeping. It knows no job kinds: it hands
//!   each claimed job to a [`JobHandler`].
//! - [`handlers`]: what each kind does ([`JobHandlers`]): load, call the
//!   provider or notifier, and hand the result to a service use case, which
//!   records it.
//!
//! The kinds and their payloads live in [`crate::job_kinds`], below both
//! the service and this module; they are re-exported here.

use std::time::Duration;

use crate::metrics::Metrics;

pub mod handlers;
pub mod scheduler;

pub use crate::job_kinds::{
    CheckpointPayload, ExpiryPayload, JobFence, JobKind, JobOutcome, PersonPayload, REVOKE_OVERDUE_AFTER,
};
pub use handlers::{GRANT_ATTEMPTS, JobHandlers, LinkRefresher, NOTIFY_ATTEMPTS, REVOKE_ALERT_AFTER, WAIT_FOR_GRANT};
pub use scheduler::{
    BACKOFF_BASE, BACKOFF_CAP, HOUSEKEEPING_EVERY, IDLE_RECHECK, JobError, JobHandler, Scheduler, backoff,
};

#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Jobs run at once by this replica. Capped at half the database pool
    /// (each running job holds at most one connection at a time), so a burst
    /// of expiries never leaves Slack requests waiting for a connection.
    pub concurrency: usize,
    /// How long a claim lasts without renewal. Longer than any provider
    /// timeout, so a healthy slow call is never taken over.
    pub lease: Duration,
    /// How often a running job's lease is renewed (real time).
    pub renew_every: Duration,
    /// Names this replica in the `worker` column.
    pub worker_id: String,
    /// Where the scheduler counts what operators alert on (served on `/metrics`).
    pub metrics: Metrics,
    /// How often the audit checkpoint job looks at the head (`audit.checkpoint_interval`).
    pub audit_checkpoint_interval: Duration,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            concurrency: 16,
            lease: Duration::from_secs(60),
            renew_every: Duration::from_secs(15),
            worker_id: format!("jitbot-{}", std::process::id()),
            metrics: Metrics::default(),
            audit_checkpoint_interval: Duration::from_secs(3600),
        }
    }
}
