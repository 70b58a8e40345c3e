//! The access report as a read model: the store reads the period's facts,
//! [`crate::report`] computes the figures. Nothing here writes.

use std::collections::{BTreeMap, BTreeSet};

use super::{Service, ServiceResult};
use crate::domain::Timestamp;
use crate::job_kinds::{JobFence, JobKind, JobOutcome};
use crate::report::{self, Period, Report, RequestFact};
use crate::store::StoreError;

impl Service {
    /// The access report of `[since, until]`, of `role` only when given.
    /// The configured roles' default durations go along so a suggestion
    /// can say what it would change.
    pub async fn report(&self, since: Timestamp, until: Timestamp, role: Option<&str>) -> ServiceResult<Report> {
        let facts = self.db.report_facts(since.millis(), until.millis(), role).await?;
        let defaults: BTreeMap<String, i64> = self
            .config
            .roles
            .iter()
            .map(|(name, role)| (name.as_str().to_owned(), role.default_duration.millis()))
            .collect();
        let period = Period { since, until, role: role.map(str::to_owned) };
        Ok(report::compute(&facts, &period, &defaults))
    }

    /// The requests (and extensions) created in `[since, until]`, of
    /// `role` only when given, oldest first: the rows behind the report,
    /// for a spreadsheet.
    pub async fn report_requests(
        &self,
        since: Timestamp,
        until: Timestamp,
        role: Option<&str>,
    ) -> ServiceResult<Vec<RequestFact>> {
        let facts = self.db.report_facts(since.millis(), until.millis(), role).await?;
        let (since, until) = (since.millis(), until.millis());
        Ok(facts.requests.into_iter().filter(|r| r.created_at >= since && r.created_at <= until).collect())
    }

    /// Whether the person signed in at the IdP as `issuer`/`subject` may
    /// read the access report: one of their links is in
    /// `policy.auditor_groups` or `policy.admin_groups`. Reading changes
    /// nothing, so the groups last confirmed by the IdP (at the sign-in
    /// that made the browser session, or since) are enough.
    pub async fn may_read_report(&self, issuer: &str, subject: &str) -> ServiceResult<bool> {
        let policy = &self.config.policy;
        let readers: BTreeSet<&String> = policy.auditor_groups.iter().chain(&policy.admin_groups).collect();
        for link in self.db.links_of_identity(issuer, subject).await? {
            if link.groups()?.iter().any(|g| readers.contains(g)) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Makes sure the weekly digest job exists when `report.digest` is set
    /// (at start-up), due at the next scheduled time. A unique index keeps
    /// it single across replicas and restarts; the job schedules its
    /// successor when it completes, so no week is skipped.
    pub async fn ensure_report_digest(&self, now: Timestamp) -> Result<bool, StoreError> {
        let Some(schedule) = self.config.report.digest_schedule() else { return Ok(false) };
        self.ensure_recurring_job(JobKind::ReportDigest, "{}", schedule.next_after(now), now).await
    }

    /// Completes this digest job and schedules the next at `due`, in one
    /// transaction (fenced: a run whose lease was taken over writes nothing).
    pub async fn next_report_digest(
        &self,
        job: JobFence,
        due: Timestamp,
        now: Timestamp,
    ) -> Result<JobOutcome, StoreError> {
        self.complete_recurring_job(job, JobKind::ReportDigest, "{}", due, now).await
    }
}
