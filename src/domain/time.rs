//! Instants and durations. An instant is epoch milliseconds, which sorts and
//! compares exactly on every database backend.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A point in time, in milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// Wraps epoch milliseconds.
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    /// Epoch milliseconds, for storage.
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// Epoch seconds, for Slack's `<!date^...>` and webhook timestamps.
    pub const fn seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// This instant moved forward by `d` (saturating: durations are bounded by config).
    pub fn plus(self, d: Duration) -> Self {
        Self(self.0.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
    }

    /// This instant moved back by `d`.
    pub fn minus(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
    }

    /// How long from `self` until `later`; zero when `later` is not later.
    pub fn until(self, later: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(later.0.saturating_sub(self.0)).unwrap_or(0))
    }

    /// Parses an RFC 3339 instant such as `2026-01-02T03:04:05Z`.
    pub fn parse_rfc3339(s: &str) -> Result<Self, String> {
        s.parse::<jiff::Timestamp>()
            .map(|t| Self(t.as_millisecond()))
            .map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC, second precision: what auditors and logs read.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match jiff::Timestamp::from_second(self.seconds()) {
            Ok(t) => write!(f, "{t}"),
            Err(_) => write!(f, "@{}ms", self.0),
        }
    }
}

/// How long access lasts: a positive whole number of minutes or more,
/// written like `30m`, `2h` or `1h 30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccessDuration(Duration);

impl AccessDuration {
    /// The shortest access worth granting; shorter asks are almost always typos.
    pub const MIN: Duration = Duration::from_secs(60);

    /// Parses `30m`, `2h`, `1h30m`, `90min`. Bare numbers are refused because
    /// "30" is ambiguous.
    pub fn parse(s: &str) -> Result<Self, String> {
        let d = humantime::parse_duration(s.trim())
            .map_err(|_| format!("{s:?} is not a duration: write it like 30m, 2h or 1h30m"))?;
        Self::try_from_std(d)
    }

    /// Accepts a duration of at least one minute, in whole seconds.
    pub fn try_from_std(d: Duration) -> Result<Self, String> {
        if d < Self::MIN {
            return Err(format!("{} is too short: the minimum is 1m", humantime::format_duration(d)));
        }
        Ok(Self(Duration::from_secs(d.as_secs())))
    }

    /// Rebuilds a stored duration.
    pub fn from_millis(ms: i64) -> Self {
        Self(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
    }

    /// The duration as std.
    pub fn get(self) -> Duration {
        self.0
    }

    /// Milliseconds, for storage.
    pub fn millis(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
}

impl fmt::Display for AccessDuration {
    /// Compact human form: `30m`, `2h`, `1h 30m`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
        let mut parts = Vec::new();
        if d > 0 {
            parts.push(format!("{d}d"));
        }
        if h > 0 {
            parts.push(format!("{h}h"));
        }
        if m > 0 {
            parts.push(format!("{m}m"));
        }
        if s > 0 || parts.is_empty() {
            parts.push(format!("{s}s"));
        }
        f.write_str(&parts.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_display() {
        assert_eq!(AccessDuration::parse("30m").unwrap().get(), Duration::from_secs(1800));
        assert_eq!(AccessDuration::parse("2h").unwrap().to_string(), "2h");
        assert_eq!(AccessDuration::parse("1h30m").unwrap().to_string(), "1h 30m");
        assert!(AccessDuration::parse("30").is_err());
        assert!(AccessDuration::parse("10s").is_err());
        assert!(AccessDuration::parse("soon").is_err());
    }

    #[test]
    fn timestamps_format_as_rfc3339() {
        let t = Timestamp::parse_rfc3339("2026-01-02T03:04:05Z").unwrap();
        assert_eq!(t.to_string(), "2026-01-02T03:04:05Z");
        assert_eq!(t.plus(Duration::from_secs(60)).to_string(), "2026-01-02T03:05:05Z");
        assert_eq!(t.until(t.plus(Duration::from_secs(5))), Duration::from_secs(5));
        assert_eq!(t.plus(Duration::from_secs(5)).until(t), Duration::ZERO);
    }
}

#[cfg(test)]
#[path = "time_proptests.rs"]
mod proptests;
