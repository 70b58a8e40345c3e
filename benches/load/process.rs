//! jitbot as a child process: its config, its database (a temp SQLite file
//! or a fresh PostgreSQL database, cloned from a template that already
//! holds the people), start, `kill -9`, and what `/proc` says about it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sqlx::Connection;

use crate::fake_slack::BOT_TOKEN;
use crate::hook::WEBHOOK_SECRET;

pub const SIGNING_SECRET: &str = "bench-signing-secret-abcdef";
pub const TEAM: &str = "T0BENCH";
pub const APPROVALS: &str = "C0APPROVALS";
/// Auto-approved roles: a person holds one grant per role at a time, so
/// `ROLES` roles let `users` people hold `ROLES × users` grants.
pub const ROLES: usize = 10;
/// The role that needs one approver.
pub const APPROVE_ROLE: &str = "bench-approve";

pub fn auto_role(i: usize) -> String {
    format!("bench-auto-{i:02}")
}

/// Requester number `i`.
pub fn requester(i: usize) -> String {
    format!("U1{i:07}")
}

/// Approver number `i`.
pub fn approver(i: usize) -> String {
    format!("U2{i:07}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    Postgres,
}

impl DbKind {
    pub fn name(self) -> &'static str {
        match self {
            DbKind::Sqlite => "SQLite",
            DbKind::Postgres => "PostgreSQL",
        }
    }
}

/// The databases of one run: a template with the people linked, and a
/// copy of it per scenario. PostgreSQL ones are dropped at the end.
pub struct Databases {
    pub kind: DbKind,
    dir: PathBuf,
    server: String,
    prefix: String,
    created: Vec<String>,
}

/// `server` (a PostgreSQL URL) with its database name replaced by `name`.
pub fn with_database(server: &str, name: &str) -> String {
    let (base, query) = server.split_once('?').map_or((server, None), |(b, q)| (b, Some(q)));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority..].find('/') {
        Some(i) => &base[..authority + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

impl Databases {
    pub fn new(kind: DbKind, dir: &Path, server: &str) -> Self {
        let prefix = format!("jitbot_bench_{:08x}", rand::random::<u32>());
        Self { kind, dir: dir.to_owned(), server: server.to_owned(), prefix, created: Vec::new() }
    }

    async fn admin(&self, sql: String) -> anyhow::Result<()> {
        let mut admin = sqlx::PgConnection::connect(&self.server)
            .await
            .with_context(|| format!("cannot connect to PostgreSQL at {}", self.server))?;
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await?;
        admin.close().await?;
        Ok(())
    }

    fn sqlite_path(&self, label: &str) -> PathBuf {
        self.dir.join(format!("{label}.db"))
    }

    /// The URL of the (empty) template database.
    pub async fn template(&mut self) -> anyhow::Result<String> {
        match self.kind {
            DbKind::Sqlite => Ok(format!("sqlite://{}", self.sqlite_path("template").display())),
            DbKind::Postgres => {
                let name = format!("{}_template", self.prefix);
                self.admin(format!("CREATE DATABASE {name}")).await?;
                self.created.push(name.clone());
                Ok(with_database(&self.server, &name))
            }
        }
    }

    /// A copy of the template for one scenario; returns its URL.
    pub async fn fresh(&mut self, label: &str) -> anyhow::Result<String> {
        match self.kind {
            DbKind::Sqlite => {
                let to = self.sqlite_path(label);
                for suffix in ["", "-wal", "-shm"] {
                    let from = PathBuf::from(format!("{}{suffix}", self.sqlite_path("template").display()));
                    if from.exists() {
                        std::fs::copy(&from, format!("{}{suffix}", to.display()))?;
                    }
                }
                Ok(format!("sqlite://{}", to.display()))
            }
            DbKind::Postgres => {
                let name = format!("{}_{label}", self.prefix);
                self.admin(format!("CREATE DATABASE {name} TEMPLATE {}_template", self.prefix)).await?;
                self.created.push(name.clone());
                Ok(with_database(&self.server, &name))
            }
        }
    }

    /// Transactions committed in a PostgreSQL database so far (how much
    /// jitbot talks to it), and the pids of the server processes serving it.
    pub async fn pg_activity(&self, url: &str) -> Option<(i64, Vec<u32>)> {
        let mut c = sqlx::PgConnection::connect(url).await.ok()?;
        let commits: i64 =
            sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
                .fetch_one(&mut c)
                .await
                .ok()?;
        let pids: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_all(&mut c)
        .await
        .ok()?;
        c.close().await.ok()?;
        Some((commits, pids.into_iter().filter_map(|p| u32::try_from(p).ok()).collect()))
    }

    /// Marks every queued notice (cards, DMs, App Home redraws, digests) as
    /// delivered, for the `idle` window only: at Slack's documented pace
    /// (one message a second per channel, a few hundred a minute in all)
    /// N grants' notices take hours, and what `idle` measures is jitbot
    /// with nothing due. Recurring jobs (checkpoints, the weekly digest)
    /// stay. Returns how many were cleared.
    pub async fn clear_notice_backlog(&self, url: &str) -> anyhow::Result<u64> {
        const SQL: &str = "UPDATE jobs SET state = 'done', worker = NULL, lease_until = NULL \
                           WHERE lane = 'notice' AND state IN ('queued', 'running', 'waiting') \
                           AND kind IN ('notify', 'redraw_home', 'audit_digest', 'direct_message')";
        Ok(match self.kind {
            DbKind::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(url).await?;
                sqlx::query(SQL).execute(&mut c).await?.rows_affected()
            }
            DbKind::Postgres => {
                let mut c = sqlx::PgConnection::connect(url).await?;
                sqlx::query(SQL).execute(&mut c).await?.rows_affected()
            }
        })
    }

    /// Drops what was created on PostgreSQL.
    pub async fn cleanup(&mut self) {
        for name in std::mem::take(&mut self.created).into_iter().rev() {
            if let Err(e) = self.admin(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await {
                eprintln!("note: could not drop database {name}: {e}");
            }
        }
    }
}

/// What the generated config contains.
pub struct ConfigSpec<'a> {
    pub port: u16,
    pub db_url: &'a str,
    pub slack_api: &'a str,
    pub hook_url: &'a str,
    pub max_connections: u32,
}

/// A valid jitbot.toml for the bench: HTTP transport, the local fake
/// Slack, the local webhook target, `ROLES` auto-approved roles and one
/// that needs one approver.
pub fn config_text(spec: &ConfigSpec) -> String {
    let ConfigSpec { port, db_url, slack_api, hook_url, max_connections } = spec;
    let mut text = format!(
        r#"# Generated by benches/load.
[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"

[database]
url = "{db_url}"
max_connections = {max_connections}

[slack]
mode = "http"
bot_token = "{BOT_TOKEN}"
signing_secret = "{SIGNING_SECRET}"
api_url = "{slack_api}"
team_id = "{TEAM}"
approvals_channel = "{APPROVALS}"

[audit]
key = "bench-audit-key-0123456789abcdef0123456789abcdef"

[policy]
admin_groups = ["bench-admins"]

[providers.bench-hook]
kind = "webhook"
url = "{hook_url}"
secret = "{WEBHOOK_SECRET}"
key_id = "bench"
timeout = "10s"

[roles.{APPROVE_ROLE}]
description = "Bench role with one approver"
provider = "bench-hook"
requesters = ["bench-requesters"]
approvers = ["bench-approvers"]
approvals_required = 1
default_duration = "4h"
max_duration = "8h"
"#
    );
    for i in 0..ROLES {
        text.push_str(&format!(
            r#"
[roles.{}]
description = "Bench role {i}, auto-approved"
provider = "bench-hook"
requesters = ["bench-requesters"]
approvers = ["bench-approvers"]
default_duration = "4h"
max_duration = "8h"
auto_approve = {{ groups = ["bench-requesters"], max_duration = "8h" }}
"#,
            auto_role(i)
        ));
    }
    text
}

/// Links `requesters` requesters and `approvers` approvers with
/// `jitbot link add`, a few at a time (the command line is the stable way
/// in: the bench runs against any version of jitbot).
pub async fn link_people(bin: &Path, config: &Path, requesters: usize, approvers: usize) -> anyhow::Result<()> {
    let migrate = tokio::process::Command::new(bin).arg("migrate").arg("--config").arg(config).output().await?;
    if !migrate.status.success() {
        bail!("jitbot migrate failed: {}", String::from_utf8_lossy(&migrate.stderr));
    }
    let people: Vec<(String, &str)> = (0..requesters)
        .map(|i| (requester(i), "bench-requesters"))
        .chain((0..approvers).map(|i| (approver(i), "bench-approvers")))
        .collect();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(4));
    let mut tasks = tokio::task::JoinSet::new();
    for (user, group) in people {
        let permit = sem.clone().acquire_owned().await?;
        let (bin, config) = (bin.to_owned(), config.to_owned());
        tasks.spawn(async move {
            let _permit = permit;
            let out = tokio::process::Command::new(&bin)
                .args(["link", "add", "--team", TEAM, "--user", &user, "--groups", group])
                .arg("--email")
                .arg(format!("{}@bench.example", user.to_lowercase()))
                .arg("--config")
                .arg(&config)
                .env_remove("JITBOT_DATABASE_URL")
                .output()
                .await?;
            if !out.status.success() {
                bail!("jitbot link add {user} failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

/// A running `jitbot serve`.
pub struct Jitbot {
    child: tokio::process::Child,
    pub pid: u32,
    pub base: String,
    /// When the process was started.
    pub started: Instant,
    /// When `/readyz` first answered.
    pub ready: Instant,
}

impl Jitbot {
    /// Starts `bin serve --config config` and waits until `/readyz` answers.
    pub async fn start(bin: &Path, config: &Path, port: u16, log: &Path) -> anyhow::Result<Self> {
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let started = Instant::now();
        let child = tokio::process::Command::new(bin)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env_remove("JITBOT_DATABASE_URL")
            // Warnings and errors only: the log is read for the notes.
            .env("JITBOT_LOG", std::env::var("JITBOT_BENCH_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let pid = child.id().context("jitbot exited at once")?;
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let mut j = Self { child, pid, base, started, ready: started };
        loop {
            if let Ok(r) = http.get(format!("{}/readyz", j.base)).send().await
                && r.status().is_success()
            {
                j.ready = Instant::now();
                return Ok(j);
            }
            if let Some(status) = j.child.try_wait()? {
                bail!("jitbot exited before it was ready ({status}); see {}", log.display());
            }
            if started.elapsed() > Duration::from_secs(120) {
                bail!("jitbot was not ready within 120 s; see {}", log.display());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `kill -9`: no shutdown, jobs in flight stay claimed.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }

    pub fn cpu_ticks(&self) -> u64 {
        cpu_ticks(self.pid).unwrap_or(0)
    }

    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Clock ticks per second.
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// Raises this process's open-file limit to its hard limit (jitbot, its
/// child, inherits it): an open-loop client at 600 requests per second
/// holds more connections than the usual soft limit of 1,024.
pub fn raise_open_files() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
