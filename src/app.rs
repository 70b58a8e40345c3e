//! Building and running the whole service: database, scheduler and HTTP
//! server, wired from a [`Config`]. `main` only parses arguments and calls
//! this; tests build the same [`App`] on port 0 with a manual clock.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::audit;
use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, SlackMode};
use crate::domain::RequestState;
use crate::http::{self, HttpState};
use crate::idp::routes::IdpState;
use crate::idp::{IdpRefresher, Oidc, TokenCipher};
use crate::jobs::{JobHandlers, QueueGauges, Scheduler, SchedulerOptions};
use crate::notify::{LogNotifier, Notifier};
use crate::providers::Providers;
use crate::scim::ScimState;
use crate::service::Service;
use crate::slack::routes::SlackState;
use crate::slack::socket::SocketMode;
use crate::slack::{SlackApi, SlackNotifier};
use crate::store::Db;

/// The parts that tests swap out.
pub struct Deps {
    /// Where time comes from.
    pub clock: SharedClock,
    /// Where notices go; `None` means Slack when `[slack]` is configured,
    /// the log otherwise.
    pub notifier: Option<Arc<dyn Notifier>>,
    /// Providers to use instead of building them from the config.
    pub providers: Option<Providers>,
    /// Scheduler tunables.
    pub scheduler: SchedulerOptions,
}

impl Default for Deps {
    fn default() -> Self {
        Self { clock: Arc::new(SystemClock), notifier: None, providers: None, scheduler: SchedulerOptions::default() }
    }
}

/// A built, not yet running, jitbot.
pub struct App {
    listener: TcpListener,
    addr: SocketAddr,
    db: Db,
    service: Service,
    scheduler: Scheduler,
    router: axum::Router,
    socket: Option<(SlackState, crate::config::Secret, u32)>,
    /// How long a client may take to send a request's head.
    head_timeout: std::time::Duration,
}

impl App {
    /// Connects and migrates the database, refuses a config that would
    /// orphan live grants, builds providers and binds the listener.
    pub async fn build(config: Config, deps: Deps) -> anyhow::Result<Self> {
        let db = open_database(&config).await?;
        if let Some(warning) = audit_key_warning(&config) {
            tracing::warn!("{warning}");
        }
        let orphans = grants_orphaned_by(&config, &db).await.context("cannot read live grants")?;
        if !orphans.is_empty() {
            anyhow::bail!(orphan_message(&orphans));
        }
        let providers = match deps.providers {
            Some(p) => p,
            None => Providers::from_config(&config).context("cannot build providers")?,
        };
        let config = Arc::new(config);
        let metrics = deps.scheduler.metrics.clone();
        let wake = Arc::new(Notify::new());
        let service = Service::new(db.clone(), config.clone(), wake.clone()).with_providers(providers.clone());
        // Who is at the browser: an IdP sign-in session with [idp]; without
        // one nobody can be, and the pages that need to know refuse.
        let browser: Arc<dyn crate::credentials::BrowserIdentity> = match &config.idp {
            Some(_) => Arc::new(crate::idp::OidcBrowserIdentity {
                service: service.clone(),
                clock: deps.clock.clone(),
                public_url: config.server.public_url.clone(),
            }),
            None => Arc::new(crate::credentials::SignInNotWired),
        };
        let credentials = crate::credentials::CredentialsPage {
            service: service.clone(),
            clock: deps.clock.clone(),
            providers: providers.clone(),
            identity: browser.clone(),
            public_url: config.server.public_url.clone(),
        };
        let insights = crate::insights::InsightsState {
            service: service.clone(),
            clock: deps.clock.clone(),
            identity: browser,
            token: config.report.token.as_ref().map(|t| secrecy::SecretString::from(t.expose().to_owned())),
        };
        match audit::head_seal_valid(&db).await.context("cannot read the audit head")? {
            Some(false) => tracing::error!(
                "the audit head's MAC does not verify with audit.key: the trail was tampered with, or the key \
                 is not the one it was written with; run `jitbot audit verify`"
            ),
            Some(true) => {}
            None => {
                service.seal_audit_trail(deps.clock.now()).await.context("cannot seal the audit trail")?;
            }
        }
        let slack_api = match &config.slack {
            Some(slack) => Some(
                SlackApi::new(slack, deps.clock.clone(), metrics.clone()).context("cannot build the Slack client")?,
            ),
            None => None,
        };
        let notifier: Arc<dyn Notifier> = match (deps.notifier, &slack_api) {
            (Some(n), _) => n,
            (None, Some(api)) => {
                Arc::new(SlackNotifier::new(api.clone(), service.clone(), config.clone(), deps.clock.clone()))
            }
            (None, None) => Arc::new(LogNotifier),
        };
        let mut idp_state = None;
        let mut refresher: Option<Arc<dyn crate::jobs::LinkRefresher>> = None;
        if let (Some(idp), Some(api)) = (&config.idp, &slack_api) {
            let oidc =
                Arc::new(Oidc::new(idp, config.server.public_base(), &config.login_claims(), deps.clock.clone())?);
            // A failed discovery is not fatal: linking reports it and retries,
            // everything else keeps working.
            if let Err(e) = oidc.discover().await {
                tracing::error!(issuer = %idp.issuer, error = ?e, "OIDC discovery failed; /jit link will retry");
            }
            let cipher = match &idp.token_encryption_key {
                Some(key) => Some(TokenCipher::from_base64(key.expose()).map_err(anyhow::Error::msg)?),
                None => None,
            };
            refresher =
                Some(Arc::new(IdpRefresher { oidc: oidc.clone(), cipher: cipher.clone(), service: service.clone() }));
            idp_state = Some(IdpState {
                oidc,
                service: service.clone(),
                clock: deps.clock.clone(),
                config: config.clone(),
                slack: api.clone(),
                cipher,
                sign_in_sealer: crate::idp::login_state::SignInSealer::from_client_secret(idp.client_secret.expose()),
            });
        }
        let mut scheduler_options = deps.scheduler;
        scheduler_options.audit_checkpoint_interval = config.audit.checkpoint_interval;
        scheduler_options.concurrency = config.jobs.access_concurrency;
        scheduler_options.notice_concurrency = config.jobs.notice_concurrency;
        let handlers =
            JobHandlers::new(service.clone(), deps.clock.clone(), providers, notifier, refresher, &scheduler_options);
        let scheduler = Scheduler::new(db.clone(), deps.clock.clone(), wake, scheduler_options, Arc::new(handlers));
        // Queue depth and the oldest due job per lane, read when scraped.
        metrics.add_collector(Arc::new(QueueGauges::new(db.clone(), deps.clock.clone())));
        if checkpoints_wanted(&config) {
            service.ensure_audit_checkpoints(deps.clock.now()).await.context("cannot schedule audit checkpoints")?;
        }
        // A Slack delivery holds at most one connection at a time: more in
        // flight than the pool has would only queue for connections.
        let admission = Arc::new(tokio::sync::Semaphore::new(config.database.max_connections.max(1) as usize));
        if config.report.digest.is_some() {
            service.ensure_report_digest(deps.clock.now()).await.context("cannot schedule the report digest")?;
        }
        let slack_state = slack_api.map(|api| SlackState {
            service: service.clone(),
            clock: deps.clock.clone(),
            config: config.clone(),
            api,
            metrics: metrics.clone(),
            admission,
        });
        let listener = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("cannot listen on server.listen = {}", config.server.listen))?;
        let addr = listener.local_addr()?;
        // HTTP mode mounts /slack/*; Socket Mode connects when the app runs.
        let mut socket = None;
        let slack_routes = match (&config.slack, slack_state) {
            (Some(slack), Some(state)) if slack.mode == SlackMode::Socket => {
                // Validated at load: Socket Mode always has an app-level token.
                if let Some(token) = slack.app_token.clone() {
                    socket = Some((state, token, slack.socket_connections));
                }
                None
            }
            (_, state) => state,
        };
        let small_forms = axum::extract::DefaultBodyLimit::max(http::SMALL_FORM_LIMIT);
        let mut router = http::router(HttpState { db: db.clone() }, slack_routes)
            .merge(crate::credentials::router(credentials).layer(small_forms))
            .merge(crate::metrics::router(metrics))
            .merge(crate::insights::router(insights));
        if let Some(idp_state) = idp_state {
            router = router.merge(crate::idp::routes::router(idp_state));
        }
        if let Some(scim_state) = ScimState::new(service.clone(), deps.clock.clone(), config.clone()) {
            let scim_limit = axum::extract::DefaultBodyLimit::max(http::SCIM_BODY_LIMIT);
            router = router.merge(crate::scim::router(scim_state).layer(scim_limit));
        }
        let router = http::bounded(
            router,
            http::Bounds {
                request_timeout: config.server.request_timeout,
                max_concurrent_requests: config.server.max_concurrent_requests,
                overload_answer: Some(crate::slack::routes::overload_answer),
            },
        );
        let head_timeout = config.server.idle_timeout;
        Ok(Self { listener, addr, db, service, scheduler, router, socket, head_timeout })
    }

    /// The port actually bound (tests bind port 0).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The use cases.
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// The scheduler (tests drain it directly).
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Serves HTTP and runs the scheduler until `shutdown` resolves, then
    /// lets running jobs finish and closes the pool.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let scheduler = self.scheduler.clone();
        let mut sched_rx = stop_rx.clone();
        let sched = tokio::spawn(async move {
            scheduler.run(async move { while sched_rx.changed().await.is_ok() && !*sched_rx.borrow() {} }).await;
        });
        let mut http_rx = stop_rx;
        tracing::info!(addr = %self.addr, "jitbot listening");
        let head_timeout = self.head_timeout;
        let server = tokio::spawn(http::serve(self.listener, self.router, head_timeout, async move {
            while http_rx.changed().await.is_ok() && !*http_rx.borrow() {}
        }));
        let socket = match self.socket {
            Some((state, token, connections)) => {
                let socket = SocketMode::connect(state, &token, connections).await?;
                tracing::info!(connections, "Slack Socket Mode connected");
                Some(socket)
            }
            None => None,
        };
        shutdown.await;
        tracing::info!("shutting down");
        if let Some(socket) = socket {
            socket.shutdown().await;
        }
        let _ = stop_tx.send(true);
        server.await.context("http server task")?;
        sched.await.context("scheduler task")?;
        self.db.close().await;
        Ok(())
    }
}

/// Opens and migrates the configured database, with the audit key: every
/// process that appends audit rows (the server, the command line) appends
/// keyed ones.
async fn open_database(config: &Config) -> anyhow::Result<Db> {
    let db = Db::connect(config.database.url.expose(), config.database.max_connections)
        .await
        .context("cannot open database.url")?
        .with_audit_key(config.audit_key());
    db.migrate().await.context("cannot migrate the database")?;
    Ok(db)
}

/// The service over the configured database, opened for one command of
/// the command line, which then exits. The command line asks the service
/// like every other transport; this keeps the database handle, which only
/// the wiring may hold, for what a short-lived process needs besides: run
/// the jobs it wrote, tell serving replicas about them, close the pool.
pub struct Backend {
    db: Db,
    service: Service,
    config: Arc<Config>,
}

impl Backend {
    /// Connects and migrates (the CLI's `migrate` is exactly this).
    pub async fn open(config: Config) -> anyhow::Result<Self> {
        let db = open_database(&config).await?;
        let config = Arc::new(config);
        let service = Service::new(db.clone(), config.clone(), Arc::new(Notify::new()));
        Ok(Self { db, service, config })
    }

    /// The use cases and read models.
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// See [`run_due_jobs`].
    pub async fn run_due_jobs(&self) -> anyhow::Result<usize> {
        run_due_jobs(self.config.clone(), &self.db).await
    }

    /// Tells serving replicas, now, that jobs were written (PostgreSQL), so
    /// they run them before their next look at the queue; a spawned
    /// announcement would die with this process.
    pub async fn announce_jobs_now(&self) {
        self.db.announce_jobs_now().await;
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.db.close().await;
    }
}

/// For `jitbot check-config`: when the configured database already exists,
/// the live grants that `config` would orphan (see [`grants_orphaned_by`]).
/// Nothing is created or migrated.
pub async fn grants_orphaned_in_database(config: &Config) -> anyhow::Result<Vec<String>> {
    let db = Db::connect(config.database.url.expose(), 1).await?;
    let orphans = grants_orphaned_by(config, &db).await;
    db.close().await;
    orphans
}

/// Runs every job that is due now, once, with the providers and notifier
/// the config describes, then returns: how `jitbot revoke-all` applies the
/// kill switch at once, even when no jitbot is serving. A serving jitbot
/// may run the same jobs concurrently; their fenced leases keep each run
/// single.
async fn run_due_jobs(config: Arc<Config>, db: &Db) -> anyhow::Result<usize> {
    let clock: SharedClock = Arc::new(SystemClock);
    let providers = Providers::from_config(&config).context("cannot build providers")?;
    let wake = Arc::new(Notify::new());
    let service = Service::new(db.clone(), config.clone(), wake.clone());
    let notifier: Arc<dyn Notifier> = match &config.slack {
        Some(slack) => Arc::new(SlackNotifier::new(
            SlackApi::new(slack, clock.clone(), Default::default()).context("cannot build the Slack client")?,
            service.clone(),
            config.clone(),
            clock.clone(),
        )),
        None => Arc::new(LogNotifier),
    };
    let options = SchedulerOptions {
        worker_id: format!("jitbot-cli-{}", crate::jobs::process_token()),
        audit_checkpoint_interval: config.audit.checkpoint_interval,
        concurrency: config.jobs.access_concurrency,
        notice_concurrency: config.jobs.notice_concurrency,
        ..Default::default()
    };
    let handlers = JobHandlers::new(service, clock.clone(), providers, notifier, None, &options);
    let scheduler = Scheduler::new(db.clone(), clock, wake, options, Arc::new(handlers));
    Ok(scheduler.drain().await?)
}

/// Whether the audit checkpoint job runs: it needs the key to sign and an
/// audit channel to post to.
fn checkpoints_wanted(config: &Config) -> bool {
    config.audit_key().is_some() && config.slack.as_ref().is_some_and(|s| s.audit_channel.is_some())
}

/// What an operator must hear at start-up (and from `check-config`) about
/// the audit trail's protection, if anything.
pub fn audit_key_warning(config: &Config) -> Option<String> {
    if config.audit_key().is_none() {
        return Some(
            "audit.key is not set: the audit trail is a plain SHA-256 chain that whoever owns the database \
             can rewrite or truncate unnoticed; set [audit] key = \"${JITBOT_AUDIT_KEY}\" (see the README's security notes)"
                .to_owned(),
        );
    }
    if !checkpoints_wanted(config) {
        return Some(
            "slack.audit_channel is not set: audit checkpoints are not posted, so deleting the newest audit rows \
             together with a restored head row is not detected"
                .to_owned(),
        );
    }
    None
}

/// Requests that may still hold access in a target but whose role or
/// provider is no longer configured: removing them from the config would
/// leave nobody able to revoke.
pub async fn grants_orphaned_by(config: &Config, db: &Db) -> anyhow::Result<Vec<String>> {
    let live = db.requests_in_states(&RequestState::MAY_HOLD_ACCESS).await?;
    Ok(live
        .into_iter()
        .filter_map(|r| {
            let role_gone = !config.roles.contains_key(r.role.as_str());
            let provider_gone = !config.providers.contains_key(&r.provider);
            (role_gone || provider_gone).then(|| {
                let what = if provider_gone {
                    format!("provider {:?}", r.provider)
                } else {
                    format!("role {:?}", r.role.as_str())
                };
                format!("request {} ({}, {}) still needs {what}", r.id, r.role, r.state)
            })
        })
        .collect())
}

/// The operator-facing refusal for [`grants_orphaned_by`].
pub fn orphan_message(orphans: &[String]) -> String {
    format!(
        "the config removes roles or providers that live grants still depend on; \
         revoke them first (or restore the config entries):\n  {}",
        orphans.join("\n  ")
    )
}
