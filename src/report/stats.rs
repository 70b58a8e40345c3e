//! Percentiles and calendar arithmetic for the report: nearest-rank
//! percentiles (every figure is a real observation) and UTC working days.

use serde::{Deserialize, Serialize};

const DAY_MS: i64 = 86_400_000;

/// The nearest-rank `p`th percentile of `sorted` (ascending): the smallest
/// value with at least `p`% of the values at or below it. `None` when
/// there are no values.
pub fn nearest_rank(sorted: &[i64], p: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    // ceil(p * n / 100), at least 1.
    let rank = (usize::try_from(p).unwrap_or(100) * n).div_ceil(100).max(1);
    sorted.get(rank.min(n) - 1).copied()
}

/// A count with its median and 90th percentile, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spread {
    /// How many values.
    pub count: u64,
    /// The median (nearest rank), `None` without values.
    pub p50_ms: Option<i64>,
    /// The 90th percentile (nearest rank), `None` without values.
    pub p90_ms: Option<i64>,
}

impl Spread {
    /// The spread of `values`.
    pub fn of(mut values: Vec<i64>) -> Self {
        values.sort_unstable();
        Self { count: values.len() as u64, p50_ms: nearest_rank(&values, 50), p90_ms: nearest_rank(&values, 90) }
    }
}

/// Revocation lateness: median, 99th percentile and worst, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lateness {
    /// How many revocations were measured.
    pub count: u64,
    /// The median (nearest rank).
    pub p50_ms: Option<i64>,
    /// The 99th percentile (nearest rank).
    pub p99_ms: Option<i64>,
    /// The latest.
    pub max_ms: Option<i64>,
}

impl Lateness {
    /// The lateness figures of `values`.
    pub fn of(mut values: Vec<i64>) -> Self {
        values.sort_unstable();
        Self {
            count: values.len() as u64,
            p50_ms: nearest_rank(&values, 50),
            p99_ms: nearest_rank(&values, 99),
            max_ms: values.last().copied(),
        }
    }
}

/// The UTC day (days since the epoch) of an instant.
fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// Monday to Friday? (1970-01-01, day 0, was a Thursday.)
fn is_working_day(day: i64) -> bool {
    (day + 3).rem_euclid(7) < 5
}

/// The working days (as UTC day numbers) that `[start, end)` touches.
pub(super) fn working_days_touched(start: i64, end: i64) -> impl Iterator<Item = i64> {
    let last = if end > start { day_of(end - 1) } else { day_of(start) - 1 };
    (day_of(start)..=last).filter(|d| is_working_day(*d))
}

/// How many working days (Monday to Friday, UTC) `[since, until)` touches;
/// a partial day counts.
pub fn working_days(since: i64, until: i64) -> u32 {
    u32::try_from(working_days_touched(since, until).count()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_picks_real_observations() {
        assert_eq!(nearest_rank(&[], 50), None);
        assert_eq!(nearest_rank(&[7], 50), Some(7));
        assert_eq!(nearest_rank(&[7], 99), Some(7));
        assert_eq!(nearest_rank(&[1, 2, 3, 4], 50), Some(2));
        assert_eq!(nearest_rank(&[1, 2, 3, 4], 90), Some(4));
        assert_eq!(nearest_rank(&[1, 2, 3, 4, 5], 50), Some(3));
        let hundred: Vec<i64> = (1..=100).collect();
        assert_eq!(nearest_rank(&hundred, 90), Some(90));
        assert_eq!(nearest_rank(&hundred, 99), Some(99));
        assert_eq!(nearest_rank(&hundred, 100), Some(100));
        assert_eq!(nearest_rank(&hundred, 0), Some(1));
    }

    #[test]
    fn spreads_sort_their_values() {
        let s = Spread::of(vec![30, 10, 20]);
        assert_eq!(s, Spread { count: 3, p50_ms: Some(20), p90_ms: Some(30) });
        let l = Lateness::of(vec![5, 1, 9, 3]);
        assert_eq!(l, Lateness { count: 4, p50_ms: Some(3), p99_ms: Some(9), max_ms: Some(9) });
        assert_eq!(Lateness::of(vec![]), Lateness::default());
    }

    #[test]
    fn working_days_are_monday_to_friday_utc() {
        // 2026-01-01 is a Thursday.
        let thu = 20_454 * DAY_MS;
        assert!(is_working_day(day_of(thu)));
        assert!(!is_working_day(day_of(thu + 2 * DAY_MS)), "Saturday");
        assert!(!is_working_day(day_of(thu + 3 * DAY_MS)), "Sunday");
        assert_eq!(working_days(thu, thu + 7 * DAY_MS), 5);
        // A partial day counts; an empty period has none.
        assert_eq!(working_days(thu + 1, thu + 2), 1);
        assert_eq!(working_days(thu, thu), 0);
        // Thursday noon to Monday 01:00: Thursday, Friday, Monday.
        assert_eq!(working_days(thu + DAY_MS / 2, thu + 4 * DAY_MS + 3_600_000), 3);
    }
}
