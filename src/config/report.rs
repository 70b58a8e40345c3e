//! `[report]`: access insights over HTTP (`/report.json`, `/report.csv`)
//! and the weekly digest to the audit channel.

use serde::Deserialize;

use crate::domain::Timestamp;

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
    /// When the weekly digest is posted to `slack.audit_channel`, like
    /// `"mon 09:00"` (a weekday and a 24-hour time in `time_zone`).
    pub digest: Option<String>,
    /// The IANA time zone of `digest` (`"Europe/Berlin"`); UTC by default.
    pub time_zone: Option<String>,
}

/// When the weekly digest is due: a weekday and a time of day in a zone.
#[derive(Debug, Clone)]
pub struct DigestSchedule {
    weekday: jiff::civil::Weekday,
    hour: i8,
    minute: i8,
    zone: jiff::tz::TimeZone,
}

impl DigestSchedule {
    /// Parses `"mon 09:00"` in the zone named `zone` (`None`: UTC).
    pub fn parse(when: &str, zone: Option<&str>) -> Result<Self, String> {
        use jiff::civil::Weekday::*;
        let bad = || format!("{when:?} is not a weekday and a time like \"mon 09:00\"");
        let (day, time) = when.trim().split_once(' ').ok_or_else(bad)?;
        let weekday = match day.trim().to_ascii_lowercase().as_str() {
            "mon" | "monday" => Monday,
            "tue" | "tuesday" => Tuesday,
            "wed" | "wednesday" => Wednesday,
            "thu" | "thursday" => Thursday,
            "fri" | "friday" => Friday,
            "sat" | "saturday" => Saturday,
            "sun" | "sunday" => Sunday,
            _ => return Err(bad()),
        };
        let (h, m) = time.trim().split_once(':').ok_or_else(bad)?;
        let hour: i8 = h.parse().ok().filter(|h| (0..24).contains(h)).ok_or_else(bad)?;
        let minute: i8 = m.parse().ok().filter(|m| (0..60).contains(m)).ok_or_else(bad)?;
        let zone = match zone {
            None => jiff::tz::TimeZone::UTC,
            Some(name) => jiff::tz::TimeZone::get(name).map_err(|_| format!("{name:?} is not a known time zone"))?,
        };
        Ok(Self { weekday, hour, minute, zone })
    }

    /// The first time the digest is due strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Timestamp {
        let Ok(now) = jiff::Timestamp::from_millisecond(after.millis()) else { return after };
        let mut date = now.to_zoned(self.zone.clone()).date();
        for _ in 0..9 {
            if date.weekday() == self.weekday
                && let Ok(at) = date.at(self.hour, self.minute, 0, 0).to_zoned(self.zone.clone())
                && at.timestamp() > now
            {
                return Timestamp::from_millis(at.timestamp().as_millisecond());
            }
            match date.tomorrow() {
                Ok(next) => date = next,
                Err(_) => break,
            }
        }
        after.plus(std::time::Duration::from_secs(7 * 86_400))
    }
}

impl ReportConfig {
    /// The digest's schedule, if `digest` is set (checked at load).
    pub fn digest_schedule(&self) -> Option<DigestSchedule> {
        DigestSchedule::parse(self.digest.as_deref()?, self.time_zone.as_deref()).ok()
    }

    /// A token long enough (never echoed), a digest that parses.
    pub(super) fn validate(&self, at: &At) -> Result<(), String> {
        if let Some(when) = &self.digest {
            DigestSchedule::parse(when, self.time_zone.as_deref())
                .map_err(|e| format!("{}report.digest: {e}", at("report", Some("digest"))))?;
        } else if let Some(zone) = &self.time_zone {
            jiff::tz::TimeZone::get(zone).map_err(|_| {
                format!("{}report.time_zone: {zone:?} is not a known time zone", at("report", Some("time_zone")))
            })?;
        }
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
    use super::DigestSchedule;
    use crate::config::tests::{GOOD, parse};
    use crate::domain::Timestamp;

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

    #[test]
    fn the_digest_is_a_weekday_and_a_time_in_a_zone() {
        let c = parse(&format!("{GOOD}\n[report]\ndigest = \"mon 09:00\"\ntime_zone = \"Europe/Berlin\"\n")).unwrap();
        let s = c.report.digest_schedule().unwrap();
        let at = |t: &str| Timestamp::parse_rfc3339(t).unwrap();
        // Thursday 1 January 2026 -> Monday 5 January, 09:00 in Berlin (08:00 UTC).
        assert_eq!(s.next_after(at("2026-01-01T00:00:00Z")), at("2026-01-05T08:00:00Z"));
        // At the very moment it is due, the next one is a week later.
        assert_eq!(s.next_after(at("2026-01-05T08:00:00Z")), at("2026-01-12T08:00:00Z"));
        // Summer time: 09:00 in Berlin is 07:00 UTC.
        assert_eq!(s.next_after(at("2026-07-01T00:00:00Z")), at("2026-07-06T07:00:00Z"));
        let utc = DigestSchedule::parse("thu 09:30", None).unwrap();
        assert_eq!(utc.next_after(at("2026-01-01T00:00:00Z")), at("2026-01-01T09:30:00Z"));
        for bad in ["monday", "mon 25:00", "someday 09:00", "mon 9"] {
            let e = parse(&format!("{GOOD}\n[report]\ndigest = \"{bad}\"\n")).unwrap_err().to_string();
            assert!(e.contains("report.digest"), "{bad}: {e}");
        }
        let e = parse(&format!("{GOOD}\n[report]\ndigest = \"mon 09:00\"\ntime_zone = \"Mars/Olympus\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a known time zone"), "{e}");
    }
}
