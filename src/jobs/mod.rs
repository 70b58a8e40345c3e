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
    CheckpointPayload, ExpiryPayload, JobFence, JobKind, JobLane, JobOutcome, PersonPayload, REVOKE_OVERDUE_AFTER,
};
pub use handlers::{GRANT_ATTEMPTS, JobHandlers, LinkRefresher, NOTIFY_ATTEMPTS, REVOKE_ALERT_AFTER, WAIT_FOR_GRANT};
pub use scheduler::{
    BACKOFF_BASE, BACKOFF_CAP, HOUSEKEEPING_EVERY, IDLE_RECHECK, JobError, JobHandler, JobRow, QueueGauges, Scheduler,
    backoff, record_with_retry,
};

/// How one replica runs jobs. Jobs run in two lanes (see
/// [`crate::job_kinds::JobLane`]), each claimed on its own with slots of its
/// own, so notices waiting on a slow Slack never hold up a revocation.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Access-lane jobs (grants, revocations, extensions, overdue checks)
    /// run at once by this replica.
    pub concurrency: usize,
    /// Notice-lane jobs (notices, DMs, reminders, announcements) run at
    /// once by this replica, beside the access lane's slots.
    pub notice_concurrency: usize,
    /// How long a claim lasts without renewal. Longer than any provider
    /// timeout, so a healthy slow call is never taken over.
    pub lease: Duration,
    /// How often a running job's lease is renewed (real time).
    pub renew_every: Duration,
    /// Names this scheduler in the `worker` column and the `workers` table:
    /// unique per process start, so a restarted process is never mistaken
    /// for the one that died.
    pub worker_id: String,
    /// Names the process (see [`process_token`]): at start-up on SQLite,
    /// running jobs of schedulers of other processes are reclaimed at once.
    pub process: String,
    /// How often this scheduler writes its heartbeat (PostgreSQL).
    pub heartbeat_every: Duration,
    /// After how long without a heartbeat another replica's running jobs
    /// are taken over, before their lease ends (PostgreSQL). Well above
    /// `heartbeat_every`, so one slow write does not look like a death.
    pub heartbeat_timeout: Duration,
    /// Where the scheduler counts what operators alert on (served on `/metrics`).
    pub metrics: Metrics,
    /// How often the audit checkpoint job looks at the head (`audit.checkpoint_interval`).
    pub audit_checkpoint_interval: Duration,
}

/// A name for this process start, the same for every scheduler in it and
/// different after a restart (the pid alone repeats: in a container it is
/// always 1).
pub fn process_token() -> &'static str {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| format!("{}-{:08x}", std::process::id(), rand::random::<u32>()))
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            concurrency: 16,
            notice_concurrency: 4,
            lease: Duration::from_secs(60),
            renew_every: Duration::from_secs(15),
            worker_id: format!("jitbot-{}-{:06x}", process_token(), rand::random::<u32>() & 0xff_ffff),
            process: process_token().to_owned(),
            heartbeat_every: Duration::from_secs(3),
            heartbeat_timeout: Duration::from_secs(10),
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
            JobKind::RedrawHome,
            JobKind::AuditDigest,
            JobKind::ReportDigest,
        ];
        for kind in kinds {
            let stored = format!("\"{}\"", kind.name());
            assert!(!scheduler.contains(&stored), "the scheduler names the job kind {stored}");
        }
    }

    /// The handlers read and record through the service: a store call here
    /// would be a second door, one no use case's checks guard.
    #[test]
    fn the_handlers_make_no_store_calls() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let handlers = code_of(&src.join("jobs/handlers.rs"));
        for word in ["crate::store", "store::", "self.db", ".db."] {
            assert!(!handlers.contains(word), "the job handlers use {word}");
        }
        let names_db =
            handlers.split(|c: char| !c.is_alphanumeric() && c != '_').any(|token| token == "Db" || token == "db");
        assert!(!names_db, "the job handlers hold a database handle");
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
