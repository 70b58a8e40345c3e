//! The access report as a read model: the store reads the period's facts,
//! [`crate::report`] computes the figures. Nothing here writes.

use std::collections::BTreeMap;

use super::{Service, ServiceResult};
use crate::domain::Timestamp;
use crate::report::{self, Period, Report};

impl Service {
    /// The access report of `[since, until)`, of `role` only when given.
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
}
