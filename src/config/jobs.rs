//! `[jobs]`: how many jobs a replica runs at once, per lane.

use serde::Deserialize;

use super::At;

/// `[jobs]`. Jobs that change access and jobs that tell people things wait
/// in lanes of their own, each with its own slots, so notices stuck on a
/// slow Slack never hold up a revocation. Together they never take more
/// than half of `database.max_connections` (the rest stays for requests).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsConfig {
    /// Grants, revocations, extensions at the target and overdue checks run
    /// at once by one replica.
    #[serde(default = "default_access_concurrency")]
    pub access_concurrency: usize,
    /// Notices, DMs, reminders and announcements run at once by one replica.
    #[serde(default = "default_notice_concurrency")]
    pub notice_concurrency: usize,
}

fn default_access_concurrency() -> usize {
    16
}

fn default_notice_concurrency() -> usize {
    4
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self { access_concurrency: default_access_concurrency(), notice_concurrency: default_notice_concurrency() }
    }
}

impl JobsConfig {
    /// At least one slot per lane: a lane without slots would never run.
    pub(super) fn validate(&self, at: &At) -> Result<(), String> {
        for (key, value) in
            [("access_concurrency", self.access_concurrency), ("notice_concurrency", self.notice_concurrency)]
        {
            if value == 0 {
                return Err(format!("{}jobs.{key} must be at least 1", at("jobs", Some(key))));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    #[test]
    fn lanes_have_defaults_and_refuse_zero_slots() {
        let c = Config::parse(Path::new("j.toml"), "").unwrap();
        assert_eq!((c.jobs.access_concurrency, c.jobs.notice_concurrency), (16, 4));
        let c = Config::parse(Path::new("j.toml"), "[jobs]\nnotice_concurrency = 2\n").unwrap();
        assert_eq!((c.jobs.access_concurrency, c.jobs.notice_concurrency), (16, 2));
        let e = Config::parse(Path::new("j.toml"), "[jobs]\naccess_concurrency = 0\n").unwrap_err().to_string();
        assert!(e.contains("line 2: jobs.access_concurrency must be at least 1"), "{e}");
        let e = Config::parse(Path::new("j.toml"), "[jobs]\nslots = 3\n").unwrap_err().to_string();
        assert!(e.contains("slots"), "{e}");
    }
}
