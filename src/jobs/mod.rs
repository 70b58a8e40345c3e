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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::job_kinds::JobKind;
    use crate::notify::NoticeKind;

    /// The code of a source file without its comment lines: doc links may
    /// point anywhere, code may not.
    fn code_of(path: &Path) -> String {
        let text = std::fs::read_to_string(path).unwrap();
        text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
    }

    /// The scheduler runs any job through its handler: naming a kind there
    /// would tie claiming and leasing to what jobs do.
    #[test]
    fn the_scheduler_names_no_job_kind() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let scheduler = code_of(&src.join("jobs/scheduler.rs"));
        for word in ["JobKind", "handlers", "providers::", "notify::", "NoticeKind", "Service"] {
            assert!(!scheduler.contains(word), "the scheduler names {word}");
        }
        let kinds = [
            JobKind::Grant,
            JobKind::Revoke,
            JobKind::Notify(NoticeKind::Granted),
            JobKind::DirectMessage,
            JobKind::RefreshLink,
            JobKind::OverdueCheck,
            JobKind::TimeOut,
            JobKind::Remind,
            JobKind::WarnExpiry,
            JobKind::ExtendGrant,
            JobKind::Announce,
            JobKind::AuditCheckpoint,
            JobKind::ReportDigest,
        ];
        for kind in kinds {
            let stored = format!("\"{}\"", kind.name());
            assert!(!scheduler.contains(&stored), "the scheduler names the job kind {stored}");
        }
    }

    /// `jobs` records outcomes through `service`; the other way round would
    /// make a cycle.
    #[test]
    fn the_service_does_not_use_jobs() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![src.join("service.rs")];
        let dir = src.join("service");
        if dir.is_dir() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        for file in files {
            let code = code_of(&file);
            assert!(!code.contains("crate::jobs"), "{} uses crate::jobs", file.display());
        }
    }
}
