//! The load benchmark: runs the real `jitbot serve` as a child process and
//! drives it only from outside, as Slack and a target system would, over
//! signed HTTP (slash commands, button clicks) against a local fake Slack
//! Web API and a local webhook receiver; prints a Markdown table.
//!
//! Run it with `scripts/bench` (see the README, "Performance"). Each
//! scenario gets a fresh database cloned from a template that already holds
//! the people (linked with `jitbot link add`), and a fresh jitbot:
//!
//! - `ack`: `/jit request` acknowledgment latency at fixed open-loop rates;
//! - `lifecycle`: request → grant → revoke throughput, Slack calls per lifecycle;
//! - `expiry`: revocation lateness for N grants expiring within one minute,
//!   while Slack answers 429 to half of the `chat.postMessage` calls;
//! - `catchup`: N revocations overdue when jitbot starts;
//! - `idle`: CPU and memory with N grants waiting and nothing due;
//! - `approve`: 50 people requesting and 50 approvers approving at once;
//! - `crash`: `kill -9` and restart, again and again, while grants expire.
//!
//! Not a timed test: CI compiles it (clippy `--all-targets`) so it cannot
//! rot, and never runs it.

mod client;
mod fake_slack;
mod hook;
mod process;
mod scenarios;
mod stats;

use std::path::PathBuf;

use clap::Parser;

/// Options; `scripts/bench --help` lists them.
#[derive(Debug, Parser)]
#[command(name = "bench", about = "Load benchmark: drives a real jitbot over signed HTTP and prints a table")]
pub struct Args {
    /// Database: sqlite (a temp file) or postgres (a fresh database on --pg-url's server).
    #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "postgres"])]
    pub db: String,
    /// Grants for expiry, catchup and idle.
    #[arg(long, default_value_t = 10_000)]
    pub n: usize,
    /// Scenarios to run, in this order.
    #[arg(long, value_delimiter = ',', default_value = "ack,lifecycle,expiry,catchup,idle,approve,crash")]
    pub scenarios: Vec<String>,
    /// A PostgreSQL server where the bench may create and drop databases.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pub pg_url: String,
    /// The jitbot binary to measure (default: the one built beside the bench).
    #[arg(long)]
    pub jitbot: Option<PathBuf>,
    /// Open-loop arrival rates for `ack`, per second.
    #[arg(long, value_delimiter = ',', default_value = "100,300,600")]
    pub rates: Vec<u32>,
    /// How long each `ack` rate runs, in seconds.
    #[arg(long, default_value_t = 10)]
    pub rate_secs: u64,
    /// Lifecycles in `lifecycle` and grants in `crash`.
    #[arg(long, default_value_t = 2_000)]
    pub lifecycles: usize,
    /// `kill -9` cycles in `crash`.
    #[arg(long, default_value_t = 10)]
    pub crash_cycles: usize,
    /// Grants per second jitbot is assumed to apply while the grants are set
    /// up: the expiry window is placed after that, so that every grant is in
    /// place before it opens. Lower it for a slow jitbot (the bench says so).
    #[arg(long, default_value_t = 200.0)]
    pub setup_rate: f64,
    /// Requests in flight while setting up grants.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// What the fake Slack does to `chat.postMessage` in `expiry`: `half`
    /// (429 to every second call), `tiers` (Slack's documented rate limits
    /// for every method) or `off`.
    #[arg(long, default_value = "half", value_parser = ["half", "tiers", "off"])]
    pub slack_limits: String,
    /// `database.max_connections` in jitbot's config (jitbot's default).
    #[arg(long, default_value_t = 20)]
    pub max_connections: u32,
    /// Keep the temp directory (configs, jitbot logs, SQLite files).
    #[arg(long)]
    pub keep: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    pub bench: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    process::raise_open_files();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start a runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(scenarios::run(args)) {
        Ok(table) => {
            println!("{table}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
