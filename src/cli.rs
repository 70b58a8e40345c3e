//! The `jitbot` command line: `serve`, `migrate`, `check-config`, `audit`,
//! `link`, `reconcile`, `retry-revoke` and `report`. Each subcommand is a thin call into the library; errors are
//! printed for an operator and turned into a non-zero exit.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::app::{self, App, Backend, Deps};
use crate::audit::{self, Actor};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::domain::{Identity, SlackUser, Timestamp};
use crate::service::Service;

/// jitbot: just-in-time access approval in Slack.
#[derive(Debug, Parser)]
#[command(name = "jitbot", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The config file option shared by subcommands.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Path of jitbot.toml.
    #[arg(long, short, env = "JITBOT_CONFIG", default_value = "jitbot.toml")]
    pub config: PathBuf,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the bot: HTTP server and job scheduler (migrates the database first).
    Serve(ConfigArg),
    /// Apply database migrations and exit.
    Migrate(ConfigArg),
    /// Validate a config file (and, if its database exists, that no live grant depends on a removed role or provider).
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Inspect the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Manage identity links by hand (bootstrap; every change is audited).
    #[command(subcommand)]
    Link(LinkCommand),
    /// Compare what jitbot says is granted with what each target reports;
    /// exit 1 if a difference remains.
    Reconcile {
        #[command(flatten)]
        config: ConfigArg,
        /// Revoke again access that should be gone (otherwise only report).
        #[arg(long)]
        fix: bool,
        /// Check revoked requests that ended within this long (e.g. 7d, 12h).
        #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
        since: std::time::Duration,
    },
    /// Follow up break-glass requests: each stays flagged until reviewed.
    #[command(subcommand)]
    Review(ReviewCommand),
    /// Try a failing revocation again now (after fixing its cause). A running
    /// jitbot picks it up at once on PostgreSQL, within 30 seconds on SQLite.
    RetryRevoke {
        #[command(flatten)]
        config: ConfigArg,
        /// The request number (12 or #12).
        id: String,
    },
    /// Release the kill switch that `revoke-all` engaged, so approvals grant
    /// again (audited; the audit channel is told).
    Unfreeze {
        #[command(flatten)]
        config: ConfigArg,
        /// Why granting may resume; recorded in the audit trail and announced.
        #[arg(long)]
        reason: String,
    },
    /// Kill switch for incidents: revoke every grant and cancel every pending
    /// request now, and grant nothing until `jitbot unfreeze` (audited; the
    /// audit channel is told).
    RevokeAll {
        #[command(flatten)]
        config: ConfigArg,
        /// Why; recorded in the audit trail and announced.
        #[arg(long)]
        reason: String,
    },
    /// Access insights: requests, decisions, durations, revocations and
    /// who holds what over a period, with recommendations (read-only).
    Report(ReportArgs),
}

/// `jitbot report ...`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The period: how far back from now (30d, 12h) or an RFC 3339 start
    /// (2026-01-01T00:00:00Z); it ends now.
    #[arg(long, default_value = "30d")]
    since: String,
    /// Only this role.
    #[arg(long)]
    role: Option<String>,
    /// text for a terminal, json (the source of every other format), or
    /// html (a static page with charts and tables, no scripts).
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    format: ReportFormat,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

/// The forms `jitbot report` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Plain text.
    Text,
    /// JSON.
    Json,
    /// A static HTML page.
    Html,
}

/// `jitbot review ...`.
#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// List break-glass requests not yet reviewed.
    List(ConfigArg),
    /// Mark a break-glass request reviewed, with what was checked (audited).
    Done {
        #[command(flatten)]
        config: ConfigArg,
        /// The request number (12 or #12).
        id: String,
        /// What was checked and found.
        #[arg(long)]
        note: String,
    },
}

/// `jitbot audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain (with audit.key, if set) and check it against
    /// checkpoints posted to the audit channel; exit 1 naming the first
    /// broken or missing row.
    Verify {
        #[command(flatten)]
        config: ConfigArg,
        /// A checkpoint line from the audit channel
        /// (`jitbot audit checkpoint seq=... head=... at=... mac=...`); repeat for several.
        #[arg(long, value_name = "LINE")]
        checkpoint: Vec<String>,
        /// A file of checkpoint lines pasted from the audit channel (other lines are ignored).
        #[arg(long, value_name = "FILE")]
        checkpoint_file: Option<PathBuf>,
    },
    /// Write audit events as JSON lines.
    Export {
        #[command(flatten)]
        config: ConfigArg,
        /// Only events at or after this RFC 3339 time (e.g. 2026-01-01T00:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

/// `jitbot link ...`.
#[derive(Debug, Subcommand)]
pub enum LinkCommand {
    /// Tie a Slack user to an identity, with groups.
    Add {
        #[command(flatten)]
        config: ConfigArg,
        /// Slack workspace id (T...).
        #[arg(long)]
        team: String,
        /// Slack user id (U...).
        #[arg(long)]
        user: String,
        /// Email of the identity.
        #[arg(long)]
        email: String,
        /// IdP subject (`sub`). Required when the config has an `[idp]`
        /// (the link then belongs to the IdP's issuer, so it is the same
        /// identity an OIDC sign-in would give); defaults to the email
        /// without one.
        #[arg(long)]
        subject: Option<String>,
        /// IdP issuer the subject belongs to: `idp.issuer` when the config
        /// has an `[idp]` (another value is refused), `manual` otherwise.
        #[arg(long)]
        issuer: Option<String>,
        /// Comma-separated IdP groups.
        #[arg(long, value_delimiter = ',', default_value = "")]
        groups: Vec<String>,
        /// A claim for login templates (`{claims.NAME}`), as `NAME=VALUE`;
        /// repeat for several.
        #[arg(long = "claim", value_name = "NAME=VALUE")]
        claims: Vec<String>,
    },
    /// List links.
    List(ConfigArg),
    /// Remove a link.
    Remove {
        #[command(flatten)]
        config: ConfigArg,
        /// Slack workspace id (T...).
        #[arg(long)]
        team: String,
        /// Slack user id (U...).
        #[arg(long)]
        user: String,
    },
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> ExitCode {
    match dispatch(cli.command).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn cli_actor() -> Actor {
    Actor::Cli(cli_user())
}

/// The OS user running the command, as the audit trail names operators.
fn cli_user() -> String {
    std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into())
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(c) => {
            let shutdown = shutdown_signal();
            let config = Config::load(&c.config)?;
            for warning in config.warnings() {
                tracing::warn!("{}: {warning}", c.config.display());
            }
            let app = App::build(config, Deps::default()).await?;
            app.run_until(shutdown).await?;
        }
        Command::Migrate(c) => {
            Backend::open(Config::load(&c.config)?).await?.close().await;
            println!("database is up to date");
        }
        Command::CheckConfig { file } => return check_config(&file).await,
        Command::Audit(AuditCommand::Verify { config, checkpoint, checkpoint_file }) => {
            let config = Config::load(&config.config)?;
            let mut checkpoints = checkpoint
                .iter()
                .map(|l| audit::Checkpoint::parse(l).map_err(|e| anyhow::anyhow!("--checkpoint: {e}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            if let Some(path) = checkpoint_file {
                let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
                let found = audit::Checkpoint::parse_all(&text)
                    .map_err(|e| anyhow::anyhow!("--checkpoint-file {}: {e}", path.display()))?;
                if found.is_empty() {
                    anyhow::bail!(
                        "--checkpoint-file {}: no line contains {:?}",
                        path.display(),
                        audit::Checkpoint::PREFIX
                    );
                }
                checkpoints.extend(found);
            }
            let backend = Backend::open(config).await?;
            match backend.service().verify_audit_trail(&checkpoints).await {
                Ok(report) => println!("audit chain intact: {report}"),
                Err(e) => {
                    eprintln!("audit chain BROKEN: {e}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        Command::Audit(AuditCommand::Export { config, since, output }) => {
            let config = Config::load(&config.config)?;
            let since =
                since.map(|s| Timestamp::parse_rfc3339(&s).map_err(|e| anyhow::anyhow!("--since: {e}"))).transpose()?;
            let backend = Backend::open(config).await?;
            let mut out: Box<dyn Write> = match output {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(&p).with_context(|| format!("cannot create {}", p.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let n = backend.service().export_audit_trail(since, &mut out).await?;
            eprintln!("exported {n} events");
        }
        Command::Link(LinkCommand::Add { config, team, user, email, subject, issuer, groups, claims }) => {
            let config = Config::load(&config.config)?;
            let slack = SlackUser::parse(&team, &user).map_err(anyhow::Error::msg)?;
            if !email.contains('@') {
                anyhow::bail!("--email: {email:?} is not an email address");
            }
            let groups: BTreeSet<String> =
                groups.into_iter().map(|g| g.trim().to_owned()).filter(|g| !g.is_empty()).collect();
            let claims = claims
                .iter()
                .map(|c| match c.split_once('=') {
                    Some((name, value)) if !name.trim().is_empty() => Ok((name.trim().to_owned(), value.to_owned())),
                    _ => Err(anyhow::anyhow!("--claim: {c:?} is not NAME=VALUE")),
                })
                .collect::<anyhow::Result<_>>()?;
            // With an IdP, a hand-made link is the IdP identity itself, so it
            // and a later OIDC sign-in are one person, not two.
            let (issuer, subject) = match &config.idp {
                Some(idp) => {
                    if let Some(i) = issuer.filter(|i| i != idp.issuer.as_str()) {
                        anyhow::bail!(
                            "--issuer: {i:?} is not the configured idp.issuer {:?}; with an [idp] table links belong to it",
                            idp.issuer
                        );
                    }
                    let Some(subject) = subject.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()) else {
                        anyhow::bail!(
                            "--subject is required with an [idp] table: pass the person's IdP subject (the `sub` claim), \
                             so this link and their OIDC sign-in are the same identity"
                        );
                    };
                    (idp.issuer.as_str().to_owned(), subject)
                }
                None => (issuer.unwrap_or_else(|| "manual".to_owned()), subject.unwrap_or_else(|| email.clone())),
            };
            let identity = Identity { slack, issuer, subject, email, groups, claims };
            Backend::open(config).await?.service().add_link(&identity, &cli_actor(), SystemClock.now()).await?;
            println!(
                "linked {} to {} (groups: {})",
                identity.slack,
                identity.email,
                identity.groups.iter().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        Command::Unfreeze { config, reason } => {
            let backend = Backend::open(Config::load(&config.config)?).await?;
            let operator = match cli_actor() {
                Actor::Cli(name) => name,
                other => other.to_string(),
            };
            match backend.service().release_kill_switch_as_operator(&operator, &reason, SystemClock.now()).await? {
                Some(was) => {
                    println!(
                        "kill switch released (engaged by {}: {}); approvals grant access again",
                        was.engaged_by, was.reason
                    );
                    backend.run_due_jobs().await.context("announcing the release")?;
                }
                None => println!("the kill switch is not engaged; nothing to do"),
            }
        }
        Command::RevokeAll { config, reason } => {
            let backend = Backend::open(Config::load(&config.config)?).await?;
            let operator = match cli_actor() {
                Actor::Cli(name) => name,
                other => other.to_string(),
            };
            let done = backend.service().revoke_all_as_operator(&operator, &reason, SystemClock.now()).await?;
            println!(
                "revoking {} grant(s), cancelled {} pending request(s); applying the revocations now; nothing is granted until `jitbot unfreeze`",
                done.revoking.len(),
                done.cancelled.len()
            );
            backend.run_due_jobs().await.context("running the revocations")?;
            let mut pending = Vec::new();
            for id in &done.revoking {
                match backend.service().find_request(*id).await?.map(|r| r.state) {
                    Some(crate::domain::RequestState::Revoked) => {}
                    Some(state) => pending.push(format!("{id} ({state})")),
                    None => {}
                }
            }
            if pending.is_empty() {
                println!("all access revoked");
            } else {
                eprintln!(
                    "not revoked yet: {}; a serving jitbot keeps retrying them (or run this command again)",
                    pending.join(", ")
                );
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Report(args) => report(args).await?,
        Command::Link(LinkCommand::List(c)) => {
            let links = Backend::open(Config::load(&c.config)?).await?.service().all_links().await?;
            if links.is_empty() {
                println!("no identity links");
            }
            for l in links {
                let s = &l.summary;
                let claims: Vec<String> = s.claims.iter().map(|(k, v)| format!("\tclaims.{k}={v}")).collect();
                println!(
                    "{}/{}\t{}\t{}\tissuer={}\t{}\tgroups={}\tconfirmed={}{}",
                    l.slack.team_id(),
                    l.slack.user_id(),
                    s.email,
                    s.subject,
                    s.issuer,
                    l.source,
                    s.groups.join(","),
                    s.confirmed_at,
                    claims.concat()
                );
            }
        }
        Command::Reconcile { config, fix, since } => {
            let config = Config::load(&config.config)?;
            let providers = crate::providers::Providers::from_config(&config).context("cannot build providers")?;
            let opts = crate::reconcile::ReconcileOptions { fix, since };
            let backend = Backend::open(config).await?;
            let report =
                crate::reconcile::reconcile(backend.service(), &providers, &cli_actor(), SystemClock.now(), opts)
                    .await?;
            for d in &report.differences {
                println!("{}", d.describe());
            }
            let unresolved = report.differences.iter().filter(|d| d.unresolved()).count();
            println!(
                "checked {} request(s) against their targets ({} on providers that cannot report state); {} difference(s), {} unresolved",
                report.checked,
                report.blind,
                report.differences.len(),
                unresolved
            );
            if !report.is_clean() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Review(ReviewCommand::List(c)) => {
            let config = Config::load(&c.config)?;
            let flagged = Backend::open(config).await?.service().awaiting_review().await?;
            if flagged.is_empty() {
                println!("no break-glass requests waiting for review");
            }
            for r in flagged {
                println!(
                    "{}\t{}\t{}\t{}\tcreated={}\treason={:?}\tbreak_glass={:?}",
                    r.id,
                    r.role,
                    r.requester,
                    r.state,
                    r.created_at,
                    r.reason,
                    r.break_glass_reason.as_deref().unwrap_or("")
                );
            }
        }
        Command::Review(ReviewCommand::Done { config, id, note }) => {
            let config = Config::load(&config.config)?;
            let id = crate::domain::RequestId::parse(&id)
                .ok_or_else(|| anyhow::anyhow!("{id:?} is not a request number (like 12 or #12)"))?;
            Backend::open(config).await?.service().mark_reviewed(id, &cli_actor(), &note, SystemClock.now()).await?;
            println!("request {id} marked reviewed");
        }
        Command::RetryRevoke { config, id } => {
            let config = Config::load(&config.config)?;
            let id = crate::domain::RequestId::parse(&id)
                .ok_or_else(|| anyhow::anyhow!("{id:?} is not a request number (like 12 or #12)"))?;
            let backend = Backend::open(config).await?;
            let r = backend.service().retry_revoke(id, &Service::operator(&cli_user()), SystemClock.now()).await?;
            // Serving replicas pick it up at once (PostgreSQL) before this process ends.
            backend.announce_jobs_now().await;
            println!("request {} ({}, {}): revocation will be tried again now", r.id, r.role, r.state);
        }
        Command::Link(LinkCommand::Remove { config, team, user }) => {
            let config = Config::load(&config.config)?;
            let slack = SlackUser::parse(&team, &user).map_err(anyhow::Error::msg)?;
            let backend = Backend::open(config).await?;
            match backend.service().remove_link(&slack, &cli_actor(), SystemClock.now()).await? {
                Some(ended) => {
                    println!("removed the link of {slack}");
                    if ended.is_empty() {
                        println!("no live access or pending request to end");
                    }
                    for r in &ended {
                        println!("ended request {} ({}): {}", r.id, r.role, r.state.describe());
                    }
                    // Serving replicas run the revocations at once (PostgreSQL).
                    backend.announce_jobs_now().await;
                }
                None => {
                    eprintln!("{slack} has no link");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `jitbot report`: reads the period's history through the service and
/// writes it in the chosen form.
async fn report(args: ReportArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config.config)?;
    let now = SystemClock.now();
    let since = crate::report::parse_since(&args.since, now).map_err(|e| anyhow::anyhow!("--since: {e}"))?;
    let backend = Backend::open(config).await?;
    let report = backend.service().report(since, now, args.role.as_deref()).await;
    backend.close().await;
    let report = report?;
    let body = match args.format {
        ReportFormat::Text => crate::report::render::text(&report),
        ReportFormat::Json => format!("{}\n", serde_json::to_string_pretty(&report)?),
        ReportFormat::Html => crate::report::render::html(&report),
    };
    match args.output {
        Some(path) => std::fs::write(&path, body).with_context(|| format!("cannot write {}", path.display()))?,
        None => std::io::stdout().lock().write_all(body.as_bytes())?,
    }
    Ok(())
}

/// Validates the file; then, if the database it names already exists,
/// refuses removals that would orphan live grants.
async fn check_config(file: &Path) -> anyhow::Result<ExitCode> {
    let config = match Config::load(file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let url = config.database.url.expose().to_owned();
    let exists = match sqlite_file(&url) {
        Some(path) => path.exists(),
        None => true,
    };
    if exists {
        match app::grants_orphaned_in_database(&config).await {
            Ok(orphans) if !orphans.is_empty() => {
                eprintln!("{}: {}", file.display(), app::orphan_message(&orphans));
                return Ok(ExitCode::FAILURE);
            }
            Ok(_) => {}
            Err(e) => eprintln!("note: could not check live grants in the database: {e:#}"),
        }
    }
    for warning in config.warnings() {
        eprintln!("{}: warning: {warning}", file.display());
    }
    println!("{}: ok ({} roles, {} providers)", file.display(), config.roles.len(), config.providers.len());
    if let Some(warning) = app::audit_key_warning(&config) {
        eprintln!("warning: {warning}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The file behind a `sqlite:` URL, or `None` for other backends.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && !path.contains(":memory:")).then(|| PathBuf::from(path))
}

/// Installs the SIGTERM/Ctrl-C handlers now (so a signal that arrives
/// while the app starts is not lost to the default action) and returns a
/// future that resolves on the first of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let ctrl_c = tokio::spawn(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    async move {
        #[cfg(unix)]
        let term = async move {
            match term {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {},
            _ = term => {},
        }
    }
}
