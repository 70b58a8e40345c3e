//! Percentiles, durations for people, and the machine the figures came from.

use std::time::Duration;

/// Nearest-rank percentile (`p` in 0..=100) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

pub fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// Milliseconds as people read them: `8 ms`, `1.25 s`, `3.4 min`, `∞` for no answer.
pub fn ms(v: f64) -> String {
    if !v.is_finite() {
        "no answer".into()
    } else if v.abs() < 10.0 {
        format!("{v:.1} ms")
    } else if v.abs() < 1000.0 {
        format!("{v:.0} ms")
    } else if v.abs() < 120_000.0 {
        format!("{:.2} s", v / 1000.0)
    } else {
        format!("{:.1} min", v / 60_000.0)
    }
}

pub fn opt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), ms)
}

pub fn secs(d: Duration) -> String {
    ms(d.as_secs_f64() * 1000.0)
}

/// p50 / p99 / max of values in milliseconds.
pub fn spread(values: Vec<f64>) -> String {
    let s = sorted(values);
    format!("{} / {} / {}", opt_ms(percentile(&s, 50.0)), opt_ms(percentile(&s, 99.0)), opt_ms(s.last().copied()))
}

/// `nproc`, the CPU model and the memory of this machine.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|r| r.trim_start_matches([' ', '\t', ':']).to_owned()))
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    format!("{cpus} CPUs ({model}), {:.1} GiB RAM", mem_kib as f64 / 1024.0 / 1024.0)
}

/// The commit of the checkout the bench was built from (`-dirty` with local changes).
pub fn commit() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let head = git(&["rev-parse", "--short=10", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty { format!("{head}-dirty") } else { head }
}

#[test]
fn percentiles_use_the_nearest_rank() {
    let s = sorted((1..=100).map(f64::from).collect());
    assert_eq!(percentile(&s, 50.0), Some(50.0));
    assert_eq!(percentile(&s, 99.0), Some(99.0));
    assert_eq!(percentile(&s, 100.0), Some(100.0));
    assert_eq!(percentile(&[], 50.0), None);
}
