//! `[report]`: access insights over HTTP (`/report.json`, `/report.csv`).

use serde::Deserialize;

use super::{At, Secret};

/// The shortest bearer token accepted: long enough that guessing is hopeless.
pub const MIN_REPORT_TOKEN_LEN: usize = 32;

/// `[report]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// A bearer token that reads `/report.json` and `/report.csv` without
    /// a browser sign-in, for a BI tool (normally `"${JITBOT_REPORT_TOKEN}"`,
    /// at least 32 characters). Without it only signed-in members of
    /// `policy.auditor_groups` and `policy.admin_groups` read the report.
    pub token: Option<Secret>,
}

impl ReportConfig {
    /// A token long enough (never echoed).
    pub(super) fn validate(&self, at: &At) -> Result<(), String> {
        if let Some(token) = &self.token
            && token.expose().chars().count() < MIN_REPORT_TOKEN_LEN
        {
            return Err(format!(
                "{}report.token must be at least {MIN_REPORT_TOKEN_LEN} characters",
                at("report", Some("token"))
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{GOOD, parse};

    #[test]
    fn the_report_token_is_a_long_enough_secret() {
        assert!(parse(GOOD).unwrap().report.token.is_none());
        let e = parse(&format!("{GOOD}\n[report]\ntoken = \"short\"\n")).unwrap_err().to_string();
        assert!(e.contains("report.token must be at least 32 characters"), "{e}");
        assert!(!e.contains("short"), "the token is never echoed: {e}");
        let c = parse(&format!("{GOOD}\n[report]\ntoken = \"{}\"\n", "t".repeat(40))).unwrap();
        assert_eq!(c.report.token.as_ref().map(|t| t.expose().len()), Some(40));
        assert!(!format!("{c:?}").contains("tttt"), "the token is a secret");
    }
}
