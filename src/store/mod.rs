//! Persistence with sqlx on SQLite (the embedded default) and PostgreSQL.
//!
//! One SQL text serves both backends (sqlx accepts `$1` placeholders on
//! SQLite too); the [`on_conn!`] macro expands a query body once per backend,
//! so nothing is copy-pasted and the `Any` driver's type gaps are avoided.
//! Write transactions on SQLite start with `BEGIN IMMEDIATE` so a writer
//! waits for the lock instead of failing midway; within one process the
//! writers queue for it in arrival order (see `SqliteWriter`), and another
//! process waits in `busy_timeout`;
//! on PostgreSQL they set `lock_timeout` to the same bound. Where the two
//! backends must differ (row locking on claims, the clock that measures job
//! leases) only that fragment of the statement differs, see `jobs`.
//!
//! What lives here: connecting, migrations, and the statements. What does
//! not: deciding which transition is allowed (see [`crate::domain::state`])
//! and what a transition implies (see [`crate::service`]).

mod audit_rows;
mod credentials;
mod home;
mod jobs;
mod kill_switch;
mod leases;
mod links;
mod oidc;
mod report;
mod requests;
mod scim;
mod single_use;
mod slack_cards;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};

use crate::domain::AuditKey;

pub use audit_rows::{AuditHead, AuditRow};
pub use credentials::CredentialTokenRow;
pub use jobs::{Claim, JobRow, JobState, JobWake, LaneBacklog, NewJob};
pub use kill_switch::KillSwitchRow;
pub use leases::{LeaseRelease, LeaseRow, LeaseStart};
pub use links::LinkRow;
pub use oidc::{LinkConfirmation, LinkTokenRow, LoginRow};
pub use requests::{ApprovalRow, NewRequest, TransitionFields};
pub use scim::{DeprovisionedKey, ScimRow, ScimWrite};
pub use slack_cards::CardRow;

/// How long a request-path caller waits for a connection or a write lock
/// before answering "try again": well under Slack's 3-second deadline.
pub const DB_WAIT: Duration = Duration::from_millis(2000);

/// The page cache of SQLite's writing connection, in KiB (see `SqliteWriter`).
const WRITER_CACHE_KIB: u32 = 16 * 1024;

/// The PostgreSQL channel replicas announce new or rescheduled jobs on.
pub const JOBS_CHANNEL: &str = "jitbot_jobs";
/// The pause before listening again after the notification connection failed.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// How long start-up (`serve`, `migrate`, the CLI) waits for the database:
/// a server that is still starting, or a disk that is slow to create and
/// sync a new SQLite file, is waited for instead of failing the command.
pub const STARTUP_WAIT: Duration = Duration::from_secs(30);

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database is busy, restarting or unreachable; the caller should say
    /// "try again" and nothing was written.
    #[error("the database is busy or unreachable")]
    Unavailable(#[source] sqlx::Error),
    /// A uniqueness rule refused the write (the caller decides what that means).
    #[error("a conflicting row exists")]
    Conflict,
    /// A row held a value this version cannot read.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// Anything else; logged, never shown to users.
    #[error("database error")]
    Internal(#[source] sqlx::Error),
    /// Migrations could not be applied.
    #[error("migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
            sqlx::Error::Database(db) => {
                let code = db.code().unwrap_or_default();
                let busy = if db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() {
                    postgres_is_transient(&code)
                } else {
                    // SQLITE_BUSY (5) and its extended codes, SQLITE_LOCKED (6).
                    matches!(code.as_ref(), "5" | "6" | "261" | "517" | "262")
                };
                if busy { StoreError::Unavailable(e) } else { StoreError::Internal(e) }
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e),
            _ => StoreError::Internal(e),
        }
    }
}

/// Whether a PostgreSQL error code (SQLSTATE) means "the server cannot
/// serve us right now" rather than "this statement is wrong": the caller may
/// try again later, and the transaction it was in has been rolled back.
fn postgres_is_transient(code: &str) -> bool {
    code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources, e.g. too many connections
        || code.starts_with("57P") // shutting down, starting up, terminated by an administrator
        || matches!(
            code,
            "55000" // the database is not accepting connections (ALLOW_CONNECTIONS false)
                | "55P03" // lock not available
                | "40001" // serialization failure
                | "40P01" // deadlock detected
        )
}

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;

/// The database: a connection pool, and the audit chain's key if one is
/// configured.
///
/// The key travels with the handle because every transaction that appends
/// to the audit trail (some forty call sites, in the service, the jobs, the
/// sign-in and the command line) is begun from a clone of this one handle:
/// [`Db::begin`] hands the key to the [`Tx`], and [`crate::audit::append`]
/// takes it from there. So the key is set once where the handle is made
/// ([`Db::with_audit_key`] in start-up and the CLI), `append` keeps its
/// signature, and no global is involved (tests run keyed and unkeyed
/// databases side by side). The key is only ever held here, never written.
#[derive(Debug, Clone)]
pub struct Db {
    pool: Pool,
    audit_key: Option<AuditKey>,
    /// SQLite only: how this process writes (see [`SqliteWriter`]).
    writer: Option<SqliteWriter>,
}

/// SQLite's writing side: one writer at a time, on one connection.
#[derive(Debug, Clone)]
struct SqliteWriter {
    /// The one writer at a time, queued here in arrival order. SQLite lets
    /// one connection write; without this, every other writer waits in
    /// SQLite's busy handler, which polls with sleeps that grow to 100 ms,
    /// so under load the lock sits idle while the waiters sleep and a
    /// revocation's record can lose the race again and again. Queued on a
    /// fair async lock instead, the next writer starts the moment the last
    /// one commits. (Another process, the CLI, still meets `busy_timeout`.)
    gate: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// The one connection every write goes through, taken while holding
    /// `gate` (so never waited for). A connection keeps its page cache
    /// across transactions only while no *other* connection wrote the file;
    /// with writes spread over the pool, each write transaction began on a
    /// connection whose cache the previous writer had just invalidated and
    /// read its pages again from the file (a fifth of the CPU time of a
    /// revocation catch-up, in `pread`). One writer keeps its pages hot.
    pool: SqlitePool,
}

/// A held turn at writing (SQLite; nothing on PostgreSQL).
pub(crate) type WriteTurn = Option<tokio::sync::OwnedMutexGuard<()>>;

/// A connection pool on one of the two backends.
#[derive(Debug, Clone)]
pub enum Pool {
    /// The embedded default.
    Sqlite(SqlitePool),
    /// The production backend.
    Postgres(PgPool),
}

/// An open write transaction on one of the two backends, carrying the audit
/// key of the [`Db`] it was begun from.
pub struct Tx {
    conn: TxConn,
    audit_key: Option<AuditKey>,
    /// Released after the commit or rollback (fields drop after `conn` is
    /// consumed), so the next writer never meets this one's lock.
    _turn: WriteTurn,
}

/// The backend half of a [`Tx`].
enum TxConn {
    /// SQLite, begun with `BEGIN IMMEDIATE`.
    Sqlite(Transaction<'static, Sqlite>),
    /// PostgreSQL, read committed.
    Postgres(Transaction<'static, Postgres>),
}

/// Runs `$body` with `$c` bound to the backend's connection (or pool), once
/// per backend. The body is the same text for both: that is the point.
macro_rules! on_conn {
    (tx $tx:expr, |$c:ident| $body:expr) => {
        match &mut $tx.conn {
            $crate::store::TxConn::Sqlite(t) => {
                let $c = &mut **t;
                $body
            }
            $crate::store::TxConn::Postgres(t) => {
                let $c = &mut **t;
                $body
            }
        }
    };
    (write $db:expr, |$c:ident| $body:expr) => {{
        let _turn = $db.write_turn().await?;
        match &$db.writer {
            Some(w) => {
                let $c = &w.pool;
                $body
            }
            None => $crate::store::on_conn!(db $db, |$c| $body),
        }
    }};
    (db $db:expr, |$c:ident| $body:expr) => {
        match &$db.pool {
            $crate::store::Pool::Sqlite(p) => {
                let $c = p;
                $body
            }
            $crate::store::Pool::Postgres(p) => {
                let $c = p;
                $body
            }
        }
    };
}
pub(crate) use on_conn;

/// Opens and closes one connection, patiently: the pool's own wait
/// ([`DB_WAIT`]) is sized for the request path, while the first connection
/// may meet a server that is still starting (refused connections are retried)
/// or create a SQLite file and switch it to WAL on a busy disk. Errors that
/// waiting cannot fix (a wrong password, a missing database) return at once.
async fn first_connection<O>(opts: &O) -> StoreResult<()>
where
    O: sqlx::ConnectOptions,
    O::Connection: Sized,
{
    const RETRY: Duration = Duration::from_millis(500);
    let deadline = tokio::time::Instant::now() + STARTUP_WAIT;
    let mut warned = false;
    loop {
        let error = match tokio::time::timeout_at(deadline, opts.connect()).await {
            Ok(Ok(conn)) => {
                // Closing is a courtesy to the server; the pool opens its own.
                let _ = sqlx::Connection::close(conn).await;
                return Ok(());
            }
            Err(_) => return Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut)),
            // Refused or reset: the server may still be starting.
            Ok(Err(e @ sqlx::Error::Io(_))) => e,
            // "The database system is starting up" and the like.
            Ok(Err(sqlx::Error::Database(db))) if postgres_is_transient(&db.code().unwrap_or_default()) => {
                sqlx::Error::Database(db)
            }
            Ok(Err(e)) => return Err(e.into()),
        };
        if tokio::time::Instant::now() + RETRY >= deadline {
            return Err(error.into());
        }
        if !warned {
            tracing::warn!(%error, wait_secs = STARTUP_WAIT.as_secs(), "database not reachable yet, retrying");
            warned = true;
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Whether a PostgreSQL connection that is going back to the pool is
/// outside any transaction; the pool closes it otherwise (which rolls the
/// transaction back on the server).
///
/// Why: a future dropped while its `BEGIN` was on the wire leaves the
/// session inside a transaction that sqlx does not know of (sqlx 0.9.0,
/// fixed in 0.9.1; this check stays as a guard). The next caller's writes
/// would then be reported done but never committed, and its locks held.
///
/// How: sqlx does not expose the server's transaction status, and
/// counting on its own transaction depth is exactly what failed. The
/// server's clocks tell for certain, in one round trip: a statement outside
/// a transaction block is its own transaction, so it starts when its
/// transaction does (`statement_timestamp() = transaction_timestamp()`, as
/// PostgreSQL documents for the first command of a transaction); inside a
/// block the transaction began with an earlier `BEGIN`, a round trip ago.
/// A failed transaction refuses the statement (SQLSTATE 25P02): also
/// inside. Run when a connection is released (off the request path), with
/// no notices and no errors in the server's log on a clean session.
async fn outside_any_transaction(conn: &mut sqlx::PgConnection) -> Result<bool, sqlx::Error> {
    // The simple query protocol: one message, one statement start. (Over
    // the extended protocol the statement's start moves on with each of
    // its messages, and the two clocks differ even outside a block.)
    let probe = sqlx::raw_sql("SELECT statement_timestamp() = transaction_timestamp()").fetch_one(&mut *conn).await;
    let outside = match probe {
        Ok(row) => sqlx::Row::try_get::<bool, _>(&row, 0)?,
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("25P02") => {
            tracing::warn!("a pooled connection was left inside a failed transaction; closing it");
            return Ok(false);
        }
        Err(e) => return Err(e),
    };
    if !outside {
        tracing::warn!("a pooled connection was left inside a transaction (a cancelled request); closing it");
    }
    Ok(outside)
}

impl Db {
    /// Connects to `url` (`sqlite://...` or `postgres://...`). A SQLite file
    /// is created if missing and put in WAL mode.
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(StoreError::Internal)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(DB_WAIT)
                .foreign_keys(true);
            first_connection(&opts).await?;
            // A file connection cannot hang up: no ping before each use
            // (sqlx's default, a round trip to the connection's thread).
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(DB_WAIT)
                .test_before_acquire(false)
                .connect_with(opts.clone())
                .await?;
            // Larger than the default 2 MiB: the writer is the one
            // connection whose cache survives between transactions.
            let writer = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(DB_WAIT)
                .test_before_acquire(false)
                .connect_with(opts.pragma("cache_size", format!("-{}", WRITER_CACHE_KIB)))
                .await?;
            let writer = SqliteWriter { gate: std::sync::Arc::new(tokio::sync::Mutex::new(())), pool: writer };
            Ok(Db { pool: Pool::Sqlite(pool), audit_key: None, writer: Some(writer) })
        } else {
            let opts = PgConnectOptions::from_str(url).map_err(StoreError::Internal)?;
            first_connection(&opts).await?;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(DB_WAIT)
                // sqlx pings each connection before handing it out: after a
                // server restart or failover, a connection the server cut
                // is replaced then, instead of failing its next caller.
                .after_release(|conn, _| Box::pin(outside_any_transaction(conn)))
                .connect_with(opts)
                .await?;
            Ok(Db { pool: Pool::Postgres(pool), audit_key: None, writer: None })
        }
    }

    /// Applies the embedded migrations of this backend.
    pub async fn migrate(&self) -> StoreResult<()> {
        match &self.pool {
            Pool::Sqlite(p) => sqlx::migrate!("migrations/sqlite").run(p).await.map_err(StoreError::Migrate),
            Pool::Postgres(p) => sqlx::migrate!("migrations/postgres").run(p).await.map_err(StoreError::Migrate),
        }
    }

    /// Begins a write transaction. Waiting for another writer's locks is
    /// bounded by [`DB_WAIT`] on both backends (SQLite's `busy_timeout`,
    /// PostgreSQL's `lock_timeout` for this transaction), after which the
    /// caller gets [`StoreError::Unavailable`] and can say "try again".
    pub async fn begin(&self) -> StoreResult<Tx> {
        let turn = self.write_turn().await?;
        let conn = match (&self.writer, &self.pool) {
            (Some(w), _) => TxConn::Sqlite(w.pool.begin_with("BEGIN IMMEDIATE").await?),
            (None, Pool::Sqlite(p)) => TxConn::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            (None, Pool::Postgres(p)) => {
                // One round trip: both statements go as one simple query.
                let begin = format!("BEGIN; SET LOCAL lock_timeout = {}", DB_WAIT.as_millis());
                TxConn::Postgres(p.begin_with(sqlx::AssertSqlSafe(begin)).await?)
            }
        };
        Ok(Tx { conn, audit_key: self.audit_key.clone(), _turn: turn })
    }

    /// Waits for this process's turn to write (SQLite), at most [`DB_WAIT`]
    /// like any other wait for the database: past it the caller answers
    /// "busy, try again" with nothing written. See [`SqliteWriter::gate`].
    pub(crate) async fn write_turn(&self) -> StoreResult<WriteTurn> {
        let Some(SqliteWriter { gate, .. }) = &self.writer else { return Ok(None) };
        match tokio::time::timeout(DB_WAIT, gate.clone().lock_owned()).await {
            Ok(turn) => Ok(Some(turn)),
            Err(_) => Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut)),
        }
    }

    /// This handle with `key` as the audit chain's key (see [`Db`]): every
    /// transaction begun from it, or from its clones, appends keyed rows.
    pub fn with_audit_key(mut self, key: Option<AuditKey>) -> Self {
        self.audit_key = key;
        self
    }

    /// The audit chain's key, if configured.
    pub fn audit_key(&self) -> Option<&AuditKey> {
        self.audit_key.as_ref()
    }

    /// The pool, for statements outside the store's API (tests, tampering drills).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// A cheap round trip, for `/readyz`.
    pub async fn ping(&self) -> StoreResult<()> {
        on_conn!(db self, |c| {
            sqlx::query("SELECT 1").execute(c).await?;
        });
        Ok(())
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        if let Some(w) = &self.writer {
            w.pool.close().await;
        }
        match &self.pool {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }

    /// Tells the other replicas that jobs were written or made due, with a
    /// PostgreSQL `NOTIFY` after the commit, from a task of its own so the
    /// caller's answer does not wait; nothing on SQLite (one process).
    ///
    /// Only the use cases announce (a click, a SCIM push, the CLI): the
    /// follow-up jobs a job writes are run by the replica that wrote them.
    /// A trigger on the jobs table would also notify from every job's own
    /// commit, and PostgreSQL serializes the commits of notifying
    /// transactions on one lock; keeping `NOTIFY` out of the transaction and
    /// off the job path leaves job throughput alone.
    pub fn announce_jobs(&self) {
        if self.is_postgres() {
            let db = self.clone();
            tokio::spawn(async move { db.announce_jobs_now().await });
        }
    }

    /// [`Db::announce_jobs`], awaited: for a short-lived process (the CLI),
    /// whose spawned tasks would die with it.
    pub async fn announce_jobs_now(&self) {
        let Pool::Postgres(pool) = &self.pool else { return };
        if let Err(e) = sqlx::query("SELECT pg_notify($1, '')").bind(JOBS_CHANNEL).execute(pool).await {
            // The others still look at the queue every 30 s.
            tracing::debug!(error = %e, "could not tell the other replicas about new jobs");
        }
    }

    /// On PostgreSQL, listens for [`Db::announce_jobs`] from every replica
    /// and wakes `wake` on each; `None` on SQLite. The listener has a connection of its own, outside the pool,
    /// so it never takes a slot from requests or jobs. After a lost
    /// connection it reconnects and wakes too, since notifications sent
    /// meanwhile are lost.
    pub fn listen_for_jobs(&self, wake: std::sync::Arc<tokio::sync::Notify>) -> Option<tokio::task::JoinHandle<()>> {
        let Pool::Postgres(pool) = &self.pool else { return None };
        let own = PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_lazy_with((*pool.connect_options()).clone());
        Some(tokio::spawn(async move {
            let mut listener = loop {
                match sqlx::postgres::PgListener::connect_with(&own).await {
                    Ok(mut l) => match l.listen(JOBS_CHANNEL).await {
                        Ok(()) => break l,
                        Err(e) => tracing::debug!(error = %e, "cannot listen for jobs; retrying"),
                    },
                    Err(e) => tracing::debug!(error = %e, "cannot connect to listen for jobs; retrying"),
                }
                tokio::time::sleep(LISTEN_RETRY).await;
            };
            listener.ignore_pool_close_event(true);
            // Anything sent before this moment was missed.
            wake.notify_one();
            loop {
                match listener.try_recv().await {
                    Ok(Some(_)) => wake.notify_one(),
                    // The connection dropped; the next call reconnects and
                    // listens again, and what was sent meanwhile is lost.
                    Ok(None) => wake.notify_one(),
                    // Reconnecting failed (the database is down): the
                    // scheduler has its own backoff, so no wake here.
                    Err(e) => {
                        tracing::debug!(error = %e, "job notifications interrupted; reconnecting");
                        tokio::time::sleep(LISTEN_RETRY).await;
                    }
                }
            }
        }))
    }

    /// Whether this is PostgreSQL (some statements add row locking there).
    pub fn is_postgres(&self) -> bool {
        matches!(self.pool, Pool::Postgres(_))
    }

    /// The pool's size: how many statements this process can have in
    /// flight at once. The scheduler sizes itself from it so that jobs never
    /// take every connection from the request path.
    pub fn max_connections(&self) -> u32 {
        match &self.pool {
            Pool::Sqlite(p) => p.options().get_max_connections(),
            Pool::Postgres(p) => p.options().get_max_connections(),
        }
    }
}

impl Tx {
    /// Whether this is a PostgreSQL transaction.
    pub fn is_postgres(&self) -> bool {
        matches!(self.conn, TxConn::Postgres(_))
    }

    /// The audit chain's key of the [`Db`] this transaction was begun from.
    pub fn audit_key(&self) -> Option<&AuditKey> {
        self.audit_key.as_ref()
    }

    /// Commits the transaction. A commit the server refused (a
    /// serialization failure, a busy database) rolled back and is
    /// [`StoreError::Unavailable`]: "nothing was changed" holds. A commit
    /// whose connection failed on the way may or may not have happened, so
    /// it is never reported as unavailable, only as an internal error.
    pub async fn commit(self) -> StoreResult<()> {
        let done = match self.conn {
            TxConn::Sqlite(t) => t.commit().await,
            TxConn::Postgres(t) => t.commit().await,
        };
        match done {
            Ok(()) => Ok(()),
            Err(e @ sqlx::Error::Database(_)) => Err(e.into()),
            Err(e) => Err(StoreError::Internal(e)),
        }
    }

    /// Rolls the transaction back (dropping it does too; this says so explicitly).
    pub async fn rollback(self) -> StoreResult<()> {
        match self.conn {
            TxConn::Sqlite(t) => t.rollback().await?,
            TxConn::Postgres(t) => t.rollback().await?,
        }
        Ok(())
    }
}

/// Builds `$first, $first+1, ...` for `n` values, for `IN (...)` lists whose
/// values are bound rather than spliced.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}
