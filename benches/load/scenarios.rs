//! The scenarios and what they report. Every figure comes from outside
//! jitbot: answers to signed requests, calls arriving at the fake Slack and
//! the webhook receiver, and `/proc` for CPU and memory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::Args;
use crate::client::{Answer, SlackClient};
use crate::fake_slack::FakeSlack;
use crate::hook::{WebhookReceiver, now_ms};
use crate::process::{
    self, APPROVE_ROLE, ConfigSpec, Databases, DbKind, Jitbot, ROLES, approver, auto_role, requester, ticks_per_second,
};
use crate::stats::{self, ms, percentile, secs, sorted, spread};

/// How long the bench waits for the next revocation, once every grant has
/// expired, before it stops waiting: a jitbot whose revocations queue behind
/// thousands of notices goes minutes without one.
const REVOKE_STALL: Duration = Duration::from_secs(600);

/// One line of the table.
struct Row {
    scenario: &'static str,
    figure: String,
    value: String,
}

/// Everything a scenario needs.
struct Bench {
    args: Args,
    bin: PathBuf,
    dir: tempfile::TempDir,
    dbs: Databases,
    slack: FakeSlack,
    hook: WebhookReceiver,
    port: u16,
    /// People linked in the template: requesters.
    users: usize,
    rows: Vec<Row>,
    notes: Vec<String>,
}

/// One scenario's jitbot, on its own database.
struct Run {
    jitbot: Option<Jitbot>,
    client: SlackClient,
    config: PathBuf,
    log: PathBuf,
    db_url: String,
}

impl Run {
    fn jitbot(&self) -> anyhow::Result<&Jitbot> {
        self.jitbot.as_ref().context("jitbot is not running")
    }

    async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(j) = self.jitbot.take() {
            j.kill().await?;
        }
        Ok(())
    }
}

/// A request the bench made and jitbot acknowledged.
#[derive(Debug, Clone, Copy)]
struct Issued {
    id: i64,
    sent_ms: i64,
    answered_ms: i64,
    /// The requested duration, in seconds.
    duration_s: i64,
}

/// How a batch of requests went.
struct Setup {
    issued: Vec<Issued>,
    elapsed: Duration,
    refused: BTreeMap<String, usize>,
}

impl Bench {
    fn row(&mut self, scenario: &'static str, figure: impl Into<String>, value: impl Into<String>) {
        let (figure, value) = (figure.into(), value.into());
        eprintln!("  {scenario}: {figure}: {value}");
        self.rows.push(Row { scenario, figure, value });
    }

    fn note(&mut self, text: String) {
        eprintln!("  note: {text}");
        self.notes.push(text);
    }

    /// A fresh database and jitbot for `label`.
    async fn boot(&mut self, label: &str) -> anyhow::Result<Run> {
        let db_url = self.dbs.fresh(label).await?;
        let config = self.dir.path().join(format!("{label}.toml"));
        std::fs::write(&config, self.config_for(&db_url))?;
        self.slack.reset();
        self.slack.rate_limit_every("chat.postMessage", 0);
        self.slack.enforce_rate_limits(false);
        self.hook.reset();
        let log = self.dir.path().join(format!("{label}.log"));
        let j = Jitbot::start(&self.bin, &config, self.port, &log).await?;
        let client = SlackClient::new(&j.base, &self.slack.base)?;
        Ok(Run { jitbot: Some(j), client, config, log, db_url })
    }

    fn config_for(&self, db_url: &str) -> String {
        process::config_text(&ConfigSpec {
            port: self.port,
            db_url,
            slack_api: &self.slack.api_url(),
            hook_url: &self.hook.url,
            max_connections: self.args.max_connections,
        })
    }

    /// Requester and role of auto-approved pair `p` (consecutive pairs are
    /// different people, so no one person is asked for everything at once).
    fn pair(&self, p: usize) -> (String, String) {
        (requester(p % self.users), auto_role(p / self.users))
    }

    /// Sends `count` auto-approved requests starting at pair `first`, as
    /// fast as jitbot answers with `concurrency` in flight; `duration(i)`
    /// gives request `i`'s duration in seconds at the moment it is sent.
    async fn request_grants(
        &self,
        run: &Run,
        first: usize,
        count: usize,
        duration: impl Fn(usize) -> i64 + Send + Sync + 'static,
    ) -> anyhow::Result<Setup> {
        let sem = Arc::new(tokio::sync::Semaphore::new(self.args.concurrency));
        let duration = Arc::new(duration);
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..count {
            let permit = sem.clone().acquire_owned().await?;
            let (user, role) = self.pair(first + i);
            let (client, duration) = (run.client.clone(), duration.clone());
            tasks.spawn(async move {
                let _permit = permit;
                let d = duration(i);
                let a = client.command(&user, &format!("request {role} {d}s bench load {i}")).await;
                (a, d)
            });
        }
        let mut issued = Vec::with_capacity(count);
        let mut refused = BTreeMap::new();
        while let Some(r) = tasks.join_next().await {
            let (a, d) = r?;
            match a.request_id() {
                Some(id) if a.status == Some(200) => {
                    issued.push(Issued { id, sent_ms: a.sent_ms, answered_ms: a.answered_ms, duration_s: d })
                }
                _ => *refused.entry(answer_kind(&a)).or_insert(0) += 1,
            }
        }
        Ok(Setup { issued, elapsed: start.elapsed(), refused })
    }

    /// Waits until `done()` holds, or `deadline` passes; whether it held.
    async fn wait_until(&self, deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
        loop {
            if done() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `n` grants arrived at the target or progress stalls for
    /// `stall` (or `deadline` passes); returns when the last one arrived.
    async fn wait_grants(&self, n: u64, stall: Duration, deadline: Instant) -> (u64, Instant) {
        let mut last = (self.hook.counts().grants, Instant::now());
        loop {
            let now = self.hook.counts().grants;
            if now != last.0 {
                last = (now, Instant::now());
            }
            if now >= n || last.1.elapsed() > stall || Instant::now() >= deadline {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until no Slack call arrived for `quiet` (at most until `deadline`).
    async fn wait_slack_quiet(&self, quiet: Duration, deadline: Instant) -> bool {
        self.wait_until(deadline, || self.slack.last_call().is_none_or(|t| t.elapsed() >= quiet)).await
    }

    fn note_refusals(&mut self, scenario: &str, setup: &Setup) {
        for (kind, n) in &setup.refused {
            self.note(format!("{scenario}: {n} request(s) not accepted: {kind}"));
        }
    }

    fn note_log(&mut self, run: &Run, scenario: &str) {
        let bad = self.hook.counts().bad_signatures;
        if bad > 0 {
            self.note(format!("{scenario}: {bad} webhook call(s) with a bad signature"));
        }
        let log = std::fs::read_to_string(&run.log).unwrap_or_default();
        // The bench has no audit channel (its notices would add to the
        // Slack calls of every lifecycle); jitbot warns about that at start.
        let lines: Vec<&str> = log.lines().filter(|l| !l.contains("audit_channel is not set")).collect();
        let errors = lines.iter().filter(|l| l.contains("ERROR")).count();
        let warnings = lines.iter().filter(|l| l.contains("WARN")).count();
        if errors + warnings > 0 {
            let first = lines
                .iter()
                .find(|l| l.contains("ERROR"))
                .or_else(|| lines.iter().find(|l| l.contains("WARN")))
                .unwrap_or(&"");
            let first: String = first.chars().take(300).collect();
            self.note(format!("{scenario}: jitbot logged {errors} error(s), {warnings} warning(s); first: {first}"));
        }
    }
}

/// What an answer that is not "Request #N" was, for the notes.
fn answer_kind(a: &Answer) -> String {
    match a.status {
        None => "no answer within 10 s".into(),
        Some(200) => {
            let t = a.text();
            let t: String = t.chars().take(120).collect();
            format!("answered {t:?}")
        }
        Some(s) => format!("HTTP {s}"),
    }
}

/// When a grant expires, in wall-clock milliseconds: the earliest it can.
/// jitbot sends `expires_at` to the second; it is `now + duration` at the
/// moment jitbot took the request, after it was sent and before it was
/// answered. The earliest moment both allow never understates lateness,
/// and overstates it by less than the acknowledgment time (jitbot reads
/// the clock as it starts on a request, and the answer mostly waits for
/// the database after that).
fn expiry_ms(i: &Issued, sent_expires_ms: Option<i64>) -> i64 {
    let (mut lo, mut hi) = (i.sent_ms + i.duration_s * 1000, i.answered_ms + i.duration_s * 1000);
    if let Some(e) = sent_expires_ms {
        lo = lo.max(e);
        hi = hi.min(e + 999);
    }
    if lo <= hi { lo } else { i.sent_ms + i.duration_s * 1000 }
}

/// Seconds of a duration that make a grant sent now expire at `target_ms`
/// (at least jitbot's one-minute minimum).
fn duration_until(target_ms: i64) -> i64 {
    ((target_ms - now_ms() + 999) / 1000).max(60)
}

pub async fn run(args: Args) -> anyhow::Result<String> {
    let bin = args.jitbot.clone().unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_jitbot")));
    if !bin.exists() {
        bail!("{} does not exist: build it with `cargo build --release --locked`", bin.display());
    }
    let kind = if args.db == "postgres" { DbKind::Postgres } else { DbKind::Sqlite };
    let dir = tempfile::Builder::new().prefix("jitbot-bench-").tempdir()?;
    let dbs = Databases::new(kind, dir.path(), &args.pg_url);
    let slack = FakeSlack::start().await?;
    let hook = WebhookReceiver::start().await?;
    let port = process::free_port()?;
    // Enough people for every scenario's grants, one per role each.
    let ack_pairs: usize = args.rates.iter().map(|r| *r as usize * args.rate_secs as usize).sum();
    let pairs = args.n.max(ack_pairs).max(args.lifecycles).max(100);
    let users = pairs.div_ceil(ROLES).max(50);
    let mut bench = Bench { args, bin, dir, dbs, slack, hook, port, users, rows: Vec::new(), notes: Vec::new() };
    let result = bench.run_all().await;
    bench.dbs.cleanup().await;
    let table = bench.table();
    if bench.args.keep {
        let kept = bench.dir.keep();
        eprintln!("kept {}", kept.display());
    }
    result?;
    Ok(table)
}

impl Bench {
    async fn run_all(&mut self) -> anyhow::Result<()> {
        let template = self.dbs.template().await?;
        let config = self.dir.path().join("template.toml");
        std::fs::write(&config, self.config_for(&template))?;
        let start = Instant::now();
        eprintln!("linking {} requesters and 50 approvers with `jitbot link add`...", self.users);
        process::link_people(&self.bin, &config, self.users, 50).await?;
        eprintln!("  linked in {}", secs(start.elapsed()));
        for scenario in self.args.scenarios.clone() {
            eprintln!("== {scenario} ({})", self.dbs.kind.name());
            match scenario.as_str() {
                "ack" => self.ack().await?,
                "lifecycle" => self.lifecycle().await?,
                "expiry" => self.expiry().await?,
                "catchup" => self.catchup().await?,
                "idle" => self.idle().await?,
                "approve" => self.approve().await?,
                "crash" => self.crash().await?,
                other => bail!("unknown scenario {other:?}"),
            }
        }
        Ok(())
    }

    fn table(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "jitbot {} · {} · N = {} · {} · {}\n\n",
            stats::commit(),
            self.dbs.kind.name(),
            self.args.n,
            stats::machine(),
            jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC")
        ));
        out.push_str("| scenario | figure | value |\n| --- | --- | --- |\n");
        for r in &self.rows {
            out.push_str(&format!("| {} | {} | {} |\n", r.scenario, r.figure, r.value));
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                out.push_str(&format!("- {n}\n"));
            }
        }
        out
    }

    /// `/jit request` acknowledgment latency at fixed open-loop arrival
    /// rates: one request every 1/rate seconds whatever the answers do.
    async fn ack(&mut self) -> anyhow::Result<()> {
        let mut run = self.boot("ack").await?;
        let tps = ticks_per_second();
        let mut next_pair = 0;
        for rate in self.args.rates.clone() {
            let count = rate as usize * self.args.rate_secs as usize;
            let cpu0 = run.jitbot()?.cpu_ticks();
            let start = tokio::time::Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..count {
                tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / f64::from(rate))).await;
                let (user, role) = self.pair(next_pair + i);
                let client = run.client.clone();
                tasks.spawn(async move { client.command(&user, &format!("request {role} 4h bench ack {i}")).await });
            }
            next_pair += count;
            let sent_for = start.elapsed();
            let mut answers = Vec::with_capacity(count);
            while let Some(a) = tasks.join_next().await {
                answers.push(a?);
            }
            let cpu = run.jitbot()?.cpu_ticks().saturating_sub(cpu0) as f64 / tps;
            let latencies = sorted(
                answers
                    .iter()
                    .map(|a| if a.status.is_some() { a.latency.as_secs_f64() * 1000.0 } else { f64::INFINITY })
                    .collect(),
            );
            let late = answers.iter().filter(|a| a.status.is_none() || a.latency > Duration::from_secs(3)).count();
            let accepted = answers.iter().filter(|a| a.status == Some(200) && a.request_id().is_some()).count();
            let mut other: BTreeMap<String, usize> = BTreeMap::new();
            for a in answers.iter().filter(|a| !(a.status == Some(200) && a.request_id().is_some())) {
                *other.entry(answer_kind(a)).or_insert(0) += 1;
            }
            self.row(
                "ack",
                format!("{rate}/s for {} s: p50 / p99", self.args.rate_secs),
                format!(
                    "{} / {}",
                    stats::opt_ms(percentile(&latencies, 50.0)),
                    stats::opt_ms(percentile(&latencies, 99.0))
                ),
            );
            // A 503 or a "busy" answer comes fast and changes nothing: the
            // latencies above include it, so say how many there were.
            let refused = count - accepted;
            self.row(
                "ack",
                format!("{rate}/s: unanswered after 3 s / answered without a request (503, busy)"),
                format!(
                    "{:.1} % ({late} of {count}) / {:.1} % ({refused})",
                    100.0 * late as f64 / count as f64,
                    100.0 * refused as f64 / count as f64
                ),
            );
            // Let the grants and notices of this rate drain before the next:
            // what they cost is part of what a request costs.
            let drained_by = Instant::now() + Duration::from_secs(120);
            let (granted, _) = self.wait_grants(next_pair as u64, Duration::from_secs(30), drained_by).await;
            let quiet = self.wait_slack_quiet(Duration::from_secs(3), drained_by).await;
            let cpu_all = run.jitbot()?.cpu_ticks().saturating_sub(cpu0) as f64 / tps;
            self.row(
                "ack",
                format!("{rate}/s: CPU per request: while sending / until its grants and notices were done"),
                format!("{} / {}", ms(cpu * 1000.0 / count as f64), ms(cpu_all * 1000.0 / count as f64)),
            );
            if granted < next_pair as u64 || !quiet {
                self.note(format!(
                    "ack at {rate}/s: {granted} of {next_pair} grants applied{} within 2 minutes after sending",
                    if quiet { "" } else { ", Slack calls still going" }
                ));
            }
            if accepted < count {
                let kinds: Vec<String> = other.iter().map(|(k, n)| format!("{n} × {k}")).collect();
                self.note(format!("ack at {rate}/s: {accepted} of {count} accepted; others: {}", kinds.join("; ")));
            }
            if sent_for > Duration::from_secs_f64(self.args.rate_secs as f64 * 1.05) {
                self.note(format!("ack at {rate}/s: the bench itself took {} to send", secs(sent_for)));
            }
        }
        self.note_log(&run, "ack");
        run.kill().await
    }

    /// Lifecycles with the shortest grant (one minute): throughput and
    /// Slack calls per lifecycle.
    async fn lifecycle(&mut self) -> anyhow::Result<()> {
        let m = self.args.lifecycles;
        let mut run = self.boot("lifecycle").await?;
        let t0 = Instant::now();
        let setup = self.request_grants(&run, 0, m, |_| 60).await?;
        let acked = setup.issued.len() as u64;
        self.note_refusals("lifecycle", &setup);
        let cap = Instant::now() + Duration::from_secs(900);
        let (granted, granted_at) = self.wait_grants(acked, Duration::from_secs(90), cap).await;
        let all_revoked = self.wait_until(cap, || self.hook.counts().revokes >= granted).await;
        let revoked = self.hook.counts().revokes;
        self.wait_slack_quiet(Duration::from_secs(5), cap).await;
        let end = self.slack.last_call().unwrap_or(t0).max(t0);
        let busy = end.duration_since(t0).saturating_sub(Duration::from_secs(60));
        self.row(
            "lifecycle",
            format!("{m} requests acknowledged"),
            format!("{:.0} per second", rate(acked, setup.elapsed)),
        );
        self.row(
            "lifecycle",
            "grants applied",
            format!(
                "{granted} of {acked} in {} ({:.0} per second)",
                secs(granted_at - t0),
                rate(granted, granted_at - t0)
            ),
        );
        self.row(
            "lifecycle",
            "lifecycles per second (1-minute grants; the minute not counted)",
            format!(
                "{:.1} ({revoked} revoked, last Slack call {} after the first request)",
                rate(revoked, busy),
                secs(end - t0)
            ),
        );
        if !all_revoked {
            self.note(format!("lifecycle: only {revoked} of {granted} grants were revoked within the wait"));
        }
        let counts = self.slack.counts();
        let total: u64 = counts.values().map(|c| c.calls).sum();
        let per = |n: u64| n as f64 / m.max(1) as f64;
        let by_method: Vec<String> =
            counts.iter().map(|(method, c)| format!("{:.2} `{method}`", per(c.calls))).collect();
        self.row("lifecycle", "Slack calls per lifecycle", format!("{:.2} ({})", per(total), by_method.join(", ")));
        self.note_log(&run, "lifecycle");
        run.kill().await
    }

    /// Places N grants' expiries evenly over one minute that opens `lead`
    /// after now; returns the window's start and the setup.
    async fn grants_expiring(&mut self, run: &Run, n: usize, window: Duration) -> anyhow::Result<(i64, Setup)> {
        let lead = Duration::from_secs_f64(60.0 + 1.2 * n as f64 / self.args.setup_rate);
        let opens = now_ms() + lead.as_millis() as i64;
        let width = window.as_millis() as i64;
        let setup =
            self.request_grants(run, 0, n, move |i| duration_until(opens + width * i as i64 / n as i64)).await?;
        Ok((opens, setup))
    }

    /// N grants expiring within one minute: how late each revocation
    /// reaches the target.
    async fn expiry(&mut self) -> anyhow::Result<()> {
        let n = self.args.n;
        let mut run = self.boot("expiry").await?;
        let t0 = Instant::now();
        let (opens, setup) = self.grants_expiring(&run, n, Duration::from_secs(60)).await?;
        self.note_refusals("expiry", &setup);
        let acked = setup.issued.len() as u64;
        let until_open = Duration::from_millis(u64::try_from(opens - now_ms()).unwrap_or(0));
        let (granted, granted_at) =
            self.wait_grants(acked, until_open + Duration::from_secs(3600), Instant::now() + until_open).await;
        self.row(
            "expiry",
            format!("setup: {n} grants"),
            format!(
                "acknowledged at {:.0}/s; {granted} applied in {} ({:.0}/s)",
                rate(acked, setup.elapsed),
                secs(granted_at - t0),
                rate(granted, granted_at - t0)
            ),
        );
        if granted < acked {
            self.note(format!(
                "expiry: only {granted} of {acked} grants were applied before the window opened; \
                 lower --setup-rate (observed {:.0}/s) to give the setup more time",
                rate(granted, granted_at - t0)
            ));
        }
        // Quiet the setup's notices before the window, as far as there is time.
        let before_open = Instant::now() + Duration::from_millis(u64::try_from(opens - now_ms() - 2000).unwrap_or(0));
        self.wait_slack_quiet(Duration::from_secs(3), before_open).await;
        match self.args.slack_limits.as_str() {
            "half" => self.slack.rate_limit_every("chat.postMessage", 2),
            "tiers" => self.slack.enforce_rate_limits(true),
            _ => {}
        }
        let granted_ids: Vec<Issued> =
            setup.issued.iter().copied().filter(|i| self.hook.arrivals(i.id).grant_ms.is_some()).collect();
        let cap = Instant::now() + until_open + Duration::from_secs(60 + 1800);
        let (done, last) = self.wait_revokes(&granted_ids, REVOKE_STALL, cap).await;
        let lateness: Vec<f64> = granted_ids
            .iter()
            .filter_map(|i| {
                let a = self.hook.arrivals(i.id);
                Some((a.revoke_ms? - expiry_ms(i, a.expires_ms)) as f64)
            })
            .collect();
        let limits = match self.args.slack_limits.as_str() {
            "half" => ", Slack answering 429 to half of chat.postMessage",
            "tiers" => ", Slack enforcing its rate limits",
            _ => "",
        };
        self.row(
            "expiry",
            format!("{} grants expiring within one minute{limits}: lateness p50 / p99 / max", granted_ids.len()),
            spread(lateness),
        );
        self.row(
            "expiry",
            "last revocation after the window opened",
            match done {
                0 => format!("none of {} revoked", granted_ids.len()),
                _ => format!("{} ({done} of {} revoked)", ms((last - opens) as f64), granted_ids.len()),
            },
        );
        let limited = self.slack.rate_limited("chat.postMessage");
        if limited > 0 {
            self.row("expiry", "chat.postMessage answered 429", limited.to_string());
        }
        self.note_log(&run, "expiry");
        run.kill().await
    }

    /// Waits until every one of `ids` was revoked, or no revocation arrived
    /// for `stall`; returns how many were revoked and when the last arrived.
    async fn wait_revokes(&self, ids: &[Issued], stall: Duration, deadline: Instant) -> (usize, i64) {
        let mut seen = (0, Instant::now());
        loop {
            let revoked = ids.iter().filter(|i| self.hook.arrivals(i.id).revoke_ms.is_some()).count();
            if revoked != seen.0 {
                seen = (revoked, Instant::now());
            }
            let expired = ids.iter().all(|i| now_ms() > expiry_ms(i, None));
            if revoked >= ids.len() || (expired && seen.1.elapsed() > stall) || Instant::now() >= deadline {
                let last = ids.iter().filter_map(|i| self.hook.arrivals(i.id).revoke_ms).max().unwrap_or(0);
                return (revoked, last);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// N revocations overdue when jitbot starts: how soon the first and
    /// the last reach the target.
    async fn catchup(&mut self) -> anyhow::Result<()> {
        let n = self.args.n;
        let mut run = self.boot("catchup").await?;
        let (opens, setup) = self.grants_expiring(&run, n, Duration::from_secs(10)).await?;
        self.note_refusals("catchup", &setup);
        let until_open = Duration::from_millis(u64::try_from(opens - now_ms() - 3000).unwrap_or(0));
        let (granted, _) = self.wait_grants(setup.issued.len() as u64, until_open, Instant::now() + until_open).await;
        if granted < setup.issued.len() as u64 {
            self.note(format!("catchup: only {granted} of {} grants were applied before the stop", setup.issued.len()));
        }
        let granted_ids: Vec<Issued> =
            setup.issued.iter().copied().filter(|i| self.hook.arrivals(i.id).grant_ms.is_some()).collect();
        run.kill().await?;
        let revoked_before = self.hook.counts().revokes;
        // Every grant overdue: the window (10 s) closed a few seconds ago.
        let overdue_at = opens + 15_000;
        tokio::time::sleep(Duration::from_millis(u64::try_from(overdue_at - now_ms()).unwrap_or(0))).await;
        let j = Jitbot::start(&self.bin, &run.config, self.port, &run.log).await?;
        let started_ms = now_ms() - j.started.elapsed().as_millis() as i64;
        run.jitbot = Some(j);
        let cap = Instant::now() + Duration::from_secs(1800);
        let (done, last) = self.wait_revokes(&granted_ids, REVOKE_STALL, cap).await;
        let first = granted_ids.iter().filter_map(|i| self.hook.arrivals(i.id).revoke_ms).min().unwrap_or(0);
        self.row(
            "catchup",
            format!("{} revocations overdue at start: first / all applied after start", granted_ids.len()),
            match done {
                0 => "none revoked".to_owned(),
                _ => format!(
                    "{} / {} ({done} of {} revoked, {:.0} per second)",
                    ms((first - started_ms) as f64),
                    ms((last - started_ms) as f64),
                    granted_ids.len(),
                    done as f64 / ((last - started_ms).max(1) as f64 / 1000.0)
                ),
            },
        );
        if revoked_before > 0 {
            self.note(format!("catchup: {revoked_before} revocations arrived before the stop (not counted)"));
        }
        self.note_log(&run, "catchup");
        run.kill().await
    }

    /// N grants waiting, nothing due: what jitbot (and PostgreSQL) use.
    async fn idle(&mut self) -> anyhow::Result<()> {
        let n = self.args.n;
        let mut run = self.boot("idle").await?;
        let t0 = Instant::now();
        let setup = self.request_grants(&run, 0, n, |_| 4 * 3600).await?;
        self.note_refusals("idle", &setup);
        let cap = Instant::now() + Duration::from_secs(1800);
        let (granted, granted_at) = self.wait_grants(setup.issued.len() as u64, Duration::from_secs(120), cap).await;
        // At Slack's pace the grants' notices take hours: stop jitbot, mark
        // them delivered, start it again (a restart with N grants waiting is
        // part of what idle means), and measure once it has settled.
        let calls_during_setup = self.slack.total_calls();
        run.kill().await?;
        let cleared = self.dbs.clear_notice_backlog(&run.db_url).await?;
        let j = Jitbot::start(&self.bin, &run.config, self.port, &run.log).await?;
        run.jitbot = Some(j);
        self.row(
            "idle",
            format!("setup: {n} grants"),
            format!(
                "acknowledged at {:.0}/s; {granted} applied in {} ({:.0}/s); {calls_during_setup} Slack calls meanwhile, \
                 {cleared} notices still queued at Slack's pace were cleared before the window",
                rate(setup.issued.len() as u64, setup.elapsed),
                secs(granted_at - t0),
                rate(granted, granted_at - t0),
            ),
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
        let window = Duration::from_secs(30);
        let j = run.jitbot()?;
        let cpu0 = j.cpu_ticks();
        let pg0 = self.pg_sample(&run.db_url).await;
        let calls0 = self.slack.total_calls();
        tokio::time::sleep(window).await;
        let j = run.jitbot()?;
        let cpu = j.cpu_ticks().saturating_sub(cpu0) as f64 / ticks_per_second();
        let rss = j.rss_kib();
        let pg1 = self.pg_sample(&run.db_url).await;
        let calls = self.slack.total_calls() - calls0;
        self.row(
            "idle",
            format!("{granted} grants waiting, 30 s: jitbot CPU / RSS"),
            format!("{:.2} % of a core / {:.1} MiB", 100.0 * cpu / window.as_secs_f64(), rss as f64 / 1024.0),
        );
        if let (Some((c0, pids, t0)), Some((c1, _, _))) = (pg0, pg1) {
            let ticks: u64 = pids.iter().filter_map(|p| process::cpu_ticks(*p)).sum::<u64>().saturating_sub(t0);
            self.row(
                "idle",
                "PostgreSQL in those 30 s: transactions / CPU of jitbot's connections",
                format!(
                    "{} ({:.1} per second) / {:.2} % of a core",
                    c1 - c0,
                    (c1 - c0) as f64 / window.as_secs_f64(),
                    100.0 * ticks as f64 / ticks_per_second() / window.as_secs_f64()
                ),
            );
        }
        if calls > 0 {
            self.note(format!("idle: {calls} Slack calls during the idle window"));
        }
        self.note_log(&run, "idle");
        run.kill().await
    }

    /// Transactions committed, the server pids serving jitbot, and their CPU ticks.
    async fn pg_sample(&self, url: &str) -> Option<(i64, Vec<u32>, u64)> {
        if self.dbs.kind != DbKind::Postgres {
            return None;
        }
        let (commits, pids) = self.dbs.pg_activity(url).await?;
        let ticks = pids.iter().filter_map(|p| process::cpu_ticks(*p)).sum();
        Some((commits, pids, ticks))
    }

    /// 50 people request a role that needs one approver, then 50 approvers
    /// click Approve at once: click → grant at the target.
    async fn approve(&mut self) -> anyhow::Result<()> {
        const PEOPLE: usize = 50;
        let mut run = self.boot("approve").await?;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..PEOPLE {
            let client = run.client.clone();
            tasks.spawn(async move {
                client.command(&requester(i), &format!("request {APPROVE_ROLE} 4h bench approve {i}")).await
            });
        }
        let mut ids = Vec::new();
        let mut refused: BTreeMap<String, usize> = BTreeMap::new();
        while let Some(a) = tasks.join_next().await {
            let a = a?;
            match a.request_id() {
                Some(id) => ids.push(id),
                None => *refused.entry(answer_kind(&a)).or_insert(0) += 1,
            }
        }
        for (kind, n) in refused {
            self.note(format!("approve: {n} request(s) not accepted: {kind}"));
        }
        let mut clicks = tokio::task::JoinSet::new();
        for (i, id) in ids.iter().copied().enumerate() {
            let client = run.client.clone();
            clicks.spawn(async move { (id, client.click(&approver(i), "approve", id).await) });
        }
        let mut clicked = Vec::new();
        while let Some(c) = clicks.join_next().await {
            clicked.push(c?);
        }
        let cap = Instant::now() + Duration::from_secs(120);
        self.wait_grants(ids.len() as u64, Duration::from_secs(60), cap).await;
        let acks: Vec<f64> = clicked.iter().map(|(_, a)| a.latency.as_secs_f64() * 1000.0).collect();
        let to_grant: Vec<f64> =
            clicked.iter().filter_map(|(id, a)| Some((self.hook.arrivals(*id).grant_ms? - a.sent_ms) as f64)).collect();
        self.row("approve", format!("{} clicks: acknowledgment p50 / p99 / max", clicked.len()), spread(acks));
        self.row(
            "approve",
            format!("approval → grant at the target ({} granted): p50 / p99 / max", to_grant.len()),
            spread(to_grant),
        );
        self.note_log(&run, "approve");
        run.kill().await
    }

    /// Grants expiring over a minute while jitbot is killed with `kill -9`
    /// and restarted, again and again: lateness beyond the time it was down.
    async fn crash(&mut self) -> anyhow::Result<()> {
        let m = self.args.lifecycles.min(self.args.n);
        let cycles = self.args.crash_cycles;
        let mut run = self.boot("crash").await?;
        let (opens, setup) = self.grants_expiring(&run, m, Duration::from_secs(60)).await?;
        self.note_refusals("crash", &setup);
        let until_open = Duration::from_millis(u64::try_from(opens - now_ms()).unwrap_or(0));
        self.wait_grants(setup.issued.len() as u64, until_open, Instant::now() + until_open).await;
        let granted_ids: Vec<Issued> =
            setup.issued.iter().copied().filter(|i| self.hook.arrivals(i.id).grant_ms.is_some()).collect();
        tokio::time::sleep(Duration::from_millis(u64::try_from(opens - now_ms()).unwrap_or(0))).await;
        // Over the minute and a bit: up a few seconds, killed, down two.
        let up = Duration::from_millis(70_000 / cycles.max(1) as u64).saturating_sub(Duration::from_secs(2));
        let mut down: Vec<(i64, i64)> = Vec::new();
        for _ in 0..cycles {
            tokio::time::sleep(up).await;
            let killed = now_ms();
            run.kill().await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let j = Jitbot::start(&self.bin, &run.config, self.port, &run.log).await?;
            down.push((killed, now_ms() - j.started.elapsed().as_millis() as i64));
            run.jitbot = Some(j);
        }
        let cap = Instant::now() + Duration::from_secs(1800);
        let (done, _) = self.wait_revokes(&granted_ids, REVOKE_STALL, cap).await;
        let excess: Vec<f64> = granted_ids
            .iter()
            .filter_map(|i| {
                let a = self.hook.arrivals(i.id);
                let (exp, at) = (expiry_ms(i, a.expires_ms), a.revoke_ms?);
                let overlap: i64 = down.iter().map(|(s, e)| (at.min(*e) - exp.max(*s)).max(0)).sum();
                Some((at - exp - overlap) as f64)
            })
            .collect();
        let downtime: i64 = down.iter().map(|(s, e)| e - s).sum();
        self.row(
            "crash",
            format!("{} grants expiring over a minute, {cycles} × kill -9 (down {} in all): lateness beyond downtime p50 / p99 / max", granted_ids.len(), ms(downtime as f64)),
            spread(excess),
        );
        self.row(
            "crash",
            "revoked / repeated calls at the target",
            format!("{done} of {} / {}", granted_ids.len(), self.hook.counts().repeats),
        );
        self.note_log(&run, "crash");
        run.kill().await
    }
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(0.001)
}
