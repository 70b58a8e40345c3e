//! The `postgres` provider: hands out membership in existing database roles,
//! either to the requester's own login (named by a template over their
//! identity) or to a login created for one request only.
//!
//! It connects with an admin URL whose role needs `CREATEROLE` (PostgreSQL
//! 15: that alone may grant and revoke membership in any non-superuser
//! role; 16 and later also need `ADMIN OPTION` on each handed-out role) and
//! membership in `pg_signal_backend` (to end sessions), never superuser.
//!
//! - grant: `GRANT "role" TO "login"`, or for an ephemeral login `CREATE ROLE
//!   "jit_12_alice" LOGIN VALID UNTIL '<expiry>' IN ROLE "role"` marked with a
//!   comment naming the request (so jitbot only ever drops its own logins).
//! - revoke: `REVOKE`, then (by default) `pg_terminate_backend` on the
//!   login's sessions, since a session that ran `SET ROLE` keeps the role
//!   otherwise; an ephemeral login is disabled, its sessions ended and it is
//!   dropped.
//! - verify: after each change the catalog is read back; a grant or
//!   revocation that did not take is a failure and is retried.
//!
//! Statement logging is off on these connections, and errors carry
//! PostgreSQL's message, never the admin URL.

mod ident;
pub mod scram;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

pub use ident::{LoginName, LoginTemplate, MAX_NAME_BYTES, PgRoleName, check_role_name, quote_ident, quote_literal};

use super::spec::{GrantSpec, PostgresGrantSpec};
use super::{ApprovedGrant, GrantTarget, Presence, Provider, ProviderError, ProviderReport};
use crate::config::PostgresProviderConfig;
use crate::domain::{RequestId, Timestamp};

/// How long `pg_terminate_backend` waits for a session to actually end.
const TERMINATE_WAIT_MS: i64 = 5000;

/// The comment jitbot puts on a login it created, and checks before
/// changing or dropping one: a role with that name but another comment is
/// someone else's.
pub fn ephemeral_marker(provider: &str, id: RequestId) -> String {
    format!("jitbot provider {provider}: login for request {}", id.get())
}

/// Grants and revokes PostgreSQL role memberships.
///
/// Each call opens its own connection rather than keeping a pool: calls are
/// rare, a connection error is then reported as it is (not as a pool
/// timeout), and nothing stale survives a target restart.
pub struct PostgresRoleProvider {
    name: String,
    options: PgConnectOptions,
    timeout: Duration,
}

impl PostgresRoleProvider {
    /// Builds the provider; nothing is connected until the first call.
    pub fn new(name: &str, config: &PostgresProviderConfig) -> anyhow::Result<Self> {
        let timeout = config.timeout;
        let options = PgConnectOptions::from_str(config.url.expose())
            .map_err(|_| anyhow::anyhow!("providers.{name}.url is not a valid postgres:// URL"))?
            .application_name("jitbot")
            .options([
                ("statement_timeout", format!("{}", timeout.as_millis())),
                ("lock_timeout", format!("{}", timeout.as_millis())),
            ])
            // Statements can carry password verifiers: never log them.
            .disable_statement_logging();
        Ok(Self { name: name.to_owned(), options, timeout })
    }

    async fn conn(&self) -> Result<PgConnection, ProviderError> {
        match tokio::time::timeout(self.timeout, self.options.connect()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(db_error("connecting", e)),
            Err(_) => Err(ProviderError::retryable("connecting: timed out connecting to the target database")),
        }
    }

    /// Runs `op` within the provider's time limit (statements also carry a
    /// server-side `statement_timeout`; this bounds the whole call).
    async fn bounded<T>(
        &self,
        what: &str,
        op: impl std::future::Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        match tokio::time::timeout(self.timeout.saturating_mul(3), op).await {
            Ok(r) => r,
            Err(_) => Err(ProviderError::retryable(format!("{what} timed out on the target database"))),
        }
    }

    async fn grant_membership(
        &self,
        c: &mut PgConnection,
        spec: &PostgresGrantSpec,
    ) -> Result<ProviderReport, ProviderError> {
        require_role(&mut *c, spec.pg_role.as_str(), "database role").await?;
        if !role_exists(&mut *c, spec.login.as_str()).await? {
            return Err(ProviderError::permanent(format!(
                "login {} does not exist in the target database: create it first (jitbot grants roles to existing logins), or use ephemeral_login = true",
                spec.login
            )));
        }
        execute(&mut *c, &format!("GRANT {} TO {}", spec.pg_role.quoted(), spec.login.quoted()), "GRANT").await?;
        if !is_member(&mut *c, spec.pg_role.as_str(), spec.login.as_str()).await? {
            return Err(ProviderError::retryable(format!(
                "verification failed: after GRANT, {} is not a member of {}",
                spec.login, spec.pg_role
            )));
        }
        Ok(ProviderReport::note(format!("granted {} to {}", spec.pg_role, spec.login)))
    }

    async fn create_login(
        &self,
        c: &mut PgConnection,
        id: RequestId,
        spec: &PostgresGrantSpec,
        expires_at: Timestamp,
    ) -> Result<ProviderReport, ProviderError> {
        let marker = ephemeral_marker(&self.name, id);
        let valid_until = literal(&expires_at.to_string())?;
        require_role(&mut *c, spec.pg_role.as_str(), "database role").await?;
        let mut tx = c.begin().await.map_err(|e| db_error("BEGIN", e))?;
        let note = match marker_of(&mut tx, spec.login.as_str()).await? {
            Some(m) if m.as_deref() != Some(marker.as_str()) => {
                return Err(ProviderError::permanent(format!(
                    "a role named {} already exists and jitbot did not create it for request {}; nothing was changed",
                    spec.login,
                    id.get()
                )));
            }
            Some(_) => {
                // An earlier attempt created it: bring it to the wanted state.
                let login = spec.login.quoted();
                execute(&mut tx, &format!("ALTER ROLE {login} LOGIN VALID UNTIL {valid_until}"), "ALTER ROLE").await?;
                execute(&mut tx, &format!("GRANT {} TO {login}", spec.pg_role.quoted()), "GRANT").await?;
                format!("login {} (created earlier) in role {} valid until {expires_at}", spec.login, spec.pg_role)
            }
            None => {
                let login = spec.login.quoted();
                execute(
                    &mut tx,
                    &format!("CREATE ROLE {login} LOGIN VALID UNTIL {valid_until} IN ROLE {}", spec.pg_role.quoted()),
                    "CREATE ROLE",
                )
                .await?;
                execute(&mut tx, &format!("COMMENT ON ROLE {login} IS {}", literal(&marker)?), "COMMENT ON ROLE")
                    .await?;
                format!("created login {} in role {} valid until {expires_at}", spec.login, spec.pg_role)
            }
        };
        tx.commit().await.map_err(|e| db_error("COMMIT", e))?;
        if self.ephemeral_presence(c, id, spec).await? != Presence::Present {
            return Err(ProviderError::retryable(format!(
                "verification failed: login {} is not usable in role {} after creating it",
                spec.login, spec.pg_role
            )));
        }
        Ok(ProviderReport::note(note))
    }

    async fn revoke_membership(
        &self,
        c: &mut PgConnection,
        spec: &PostgresGrantSpec,
    ) -> Result<ProviderReport, ProviderError> {
        let mut report = ProviderReport::default();
        let login_exists = role_exists(&mut *c, spec.login.as_str()).await?;
        if login_exists && is_member(&mut *c, spec.pg_role.as_str(), spec.login.as_str()).await? {
            execute(&mut *c, &format!("REVOKE {} FROM {}", spec.pg_role.quoted(), spec.login.quoted()), "REVOKE")
                .await?;
            report.notes.push(format!("revoked {} from {}", spec.pg_role, spec.login));
        } else {
            report.notes.push(format!("{} was not a member of {}", spec.login, spec.pg_role));
        }
        if spec.terminate_sessions && login_exists {
            let n = terminate_sessions(&mut *c, spec.login.as_str()).await?;
            report.notes.push(format!("ended {n} session(s) of {}", spec.login));
        }
        // Read it back: a REVOKE that did not take (say, the membership was
        // granted by another role on PostgreSQL 16+) must not pass as done.
        if is_member(&mut *c, spec.pg_role.as_str(), spec.login.as_str()).await? {
            return Err(ProviderError::retryable(format!(
                "verification failed: after REVOKE, {} is still a member of {} (granted by another role?)",
                spec.login, spec.pg_role
            )));
        }
        if spec.terminate_sessions {
            let left = sessions(&mut *c, spec.login.as_str()).await?;
            if left > 0 {
                return Err(ProviderError::retryable(format!(
                    "verification failed: {left} session(s) of {} are still open after pg_terminate_backend",
                    spec.login
                )));
            }
        }
        Ok(report)
    }

    async fn drop_login(
        &self,
        c: &mut PgConnection,
        id: RequestId,
        spec: &PostgresGrantSpec,
    ) -> Result<ProviderReport, ProviderError> {
        let marker = ephemeral_marker(&self.name, id);
        let login = spec.login.quoted();
        let mut report = ProviderReport::default();
        match marker_of(&mut *c, spec.login.as_str()).await? {
            None => report.notes.push(format!("login {} was already gone", spec.login)),
            Some(m) if m.as_deref() != Some(marker.as_str()) => {
                tracing::warn!(login = %spec.login, request_id = id.get(), "a role with this request's login name exists but is not jitbot's; left alone");
                return Ok(ProviderReport::note(format!(
                    "a role named {} exists but jitbot did not create it for this request; left alone",
                    spec.login
                )));
            }
            Some(_) => {
                // Close the door first, so that even if DROP fails below
                // (objects owned by the login) nobody gets in again.
                execute(&mut *c, &format!("ALTER ROLE {login} NOLOGIN"), "ALTER ROLE").await?;
                if is_member(&mut *c, spec.pg_role.as_str(), spec.login.as_str()).await? {
                    execute(&mut *c, &format!("REVOKE {} FROM {login}", spec.pg_role.quoted()), "REVOKE").await?;
                }
                let n = terminate_sessions(&mut *c, spec.login.as_str()).await?;
                execute(&mut *c, &format!("DROP ROLE IF EXISTS {login}"), "DROP ROLE").await?;
                report.notes.push(format!("ended {n} session(s) of {} and dropped it", spec.login));
            }
        }
        if marker_of(&mut *c, spec.login.as_str()).await?.is_some_and(|m| m.as_deref() == Some(marker.as_str())) {
            return Err(ProviderError::retryable(format!(
                "verification failed: login {} still exists after DROP ROLE",
                spec.login
            )));
        }
        let left = sessions(&mut *c, spec.login.as_str()).await?;
        if left > 0 {
            return Err(ProviderError::retryable(format!(
                "verification failed: {left} session(s) of {} are still open",
                spec.login
            )));
        }
        Ok(report)
    }

    async fn ephemeral_presence(
        &self,
        c: &mut PgConnection,
        id: RequestId,
        spec: &PostgresGrantSpec,
    ) -> Result<Presence, ProviderError> {
        let marker = ephemeral_marker(&self.name, id);
        let row: Option<(bool, Option<String>)> =
            sqlx::query_as("SELECT rolcanlogin, shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1")
                .bind(spec.login.as_str())
                .fetch_optional(&mut *c)
                .await
                .map_err(|e| db_error("reading pg_roles", e))?;
        let ours_and_open = row.is_some_and(|(login, m)| login && m.as_deref() == Some(marker.as_str()));
        if ours_and_open && is_member(c, spec.pg_role.as_str(), spec.login.as_str()).await? {
            Ok(Presence::Present)
        } else {
            Ok(Presence::Absent)
        }
    }
}

fn spec_of(target: &GrantTarget) -> Result<&PostgresGrantSpec, ProviderError> {
    match &target.spec {
        Some(GrantSpec::Postgres(s)) => Ok(s),
        _ => Err(ProviderError::permanent(format!(
            "request {} has no postgres grant spec (its role was not on a postgres provider when it was made)",
            target.request_id.get()
        ))),
    }
}

fn literal(value: &str) -> Result<String, ProviderError> {
    quote_literal(value).map_err(ProviderError::permanent)
}

/// Maps a driver error to a message safe to show (PostgreSQL's own message
/// and SQLSTATE, never connection details). Privilege and "no such object"
/// errors are a setup problem: retrying a grant will not fix them.
fn db_error(what: &str, e: sqlx::Error) -> ProviderError {
    match &e {
        sqlx::Error::Database(d) => {
            let code = d.code().map(|c| c.into_owned()).unwrap_or_default();
            ProviderError {
                message: format!("{what}: the target database refused: {} (SQLSTATE {code})", d.message()),
                retryable: !code.starts_with("42"),
                output: None,
            }
        }
        sqlx::Error::PoolTimedOut => {
            ProviderError::retryable(format!("{what}: timed out connecting to the target database"))
        }
        sqlx::Error::Io(io) => ProviderError::retryable(format!("{what}: cannot reach the target database: {io}")),
        sqlx::Error::Tls(_) => ProviderError::retryable(format!("{what}: TLS to the target database failed")),
        sqlx::Error::Protocol(_) | sqlx::Error::Configuration(_) => {
            ProviderError::retryable(format!("{what}: cannot talk to the target database (check providers URL)"))
        }
        _ => ProviderError::retryable(format!("{what}: target database error")),
    }
}

async fn execute(c: &mut PgConnection, sql: &str, what: &str) -> Result<(), ProviderError> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(c).await.map_err(|e| db_error(what, e))?;
    Ok(())
}

async fn role_exists(c: &mut PgConnection, name: &str) -> Result<bool, ProviderError> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_roles WHERE rolname = $1")
        .bind(name)
        .fetch_one(c)
        .await
        .map_err(|e| db_error("reading pg_roles", e))?;
    Ok(n > 0)
}

async fn require_role(c: &mut PgConnection, name: &str, what: &str) -> Result<(), ProviderError> {
    if role_exists(c, name).await? {
        Ok(())
    } else {
        Err(ProviderError::permanent(format!("{what} {name} does not exist in the target database")))
    }
}

/// Whether `login` is a direct member of `role` (what `GRANT` creates and
/// `REVOKE` removes; membership through other roles is not jitbot's).
async fn is_member(c: &mut PgConnection, role: &str, login: &str) -> Result<bool, ProviderError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_auth_members m
           JOIN pg_roles r ON r.oid = m.roleid
           JOIN pg_roles u ON u.oid = m.member
         WHERE r.rolname = $1 AND u.rolname = $2",
    )
    .bind(role)
    .bind(login)
    .fetch_one(c)
    .await
    .map_err(|e| db_error("reading pg_auth_members", e))?;
    Ok(n > 0)
}

/// `None`: no such role; `Some(comment)`: the role and its comment.
async fn marker_of(c: &mut PgConnection, login: &str) -> Result<Option<Option<String>>, ProviderError> {
    sqlx::query_scalar::<_, Option<String>>(
        "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
    )
    .bind(login)
    .fetch_optional(c)
    .await
    .map_err(|e| db_error("reading pg_roles", e))
}

async fn sessions(c: &mut PgConnection, login: &str) -> Result<i64, ProviderError> {
    sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()")
        .bind(login)
        .fetch_one(c)
        .await
        .map_err(|e| db_error("reading pg_stat_activity", e))
}

/// Ends every session of `login` and waits (up to 5 s each) until they are
/// gone; returns how many there were.
async fn terminate_sessions(c: &mut PgConnection, login: &str) -> Result<usize, ProviderError> {
    let pids: Vec<i32> =
        sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()")
            .bind(login)
            .fetch_all(&mut *c)
            .await
            .map_err(|e| db_error("reading pg_stat_activity", e))?;
    for pid in &pids {
        sqlx::query_scalar::<_, Option<bool>>("SELECT pg_terminate_backend($1, $2)")
            .bind(pid)
            .bind(TERMINATE_WAIT_MS)
            .fetch_one(&mut *c)
            .await
            .map_err(|e| db_error("pg_terminate_backend", e))?;
    }
    Ok(pids.len())
}

#[async_trait]
impl Provider for PostgresRoleProvider {
    async fn grant(&self, grant: &ApprovedGrant, _now: Timestamp) -> Result<ProviderReport, ProviderError> {
        let target = grant.target();
        let spec = spec_of(target)?;
        self.bounded("the grant", async {
            let mut c = self.conn().await?;
            let result = if spec.ephemeral {
                self.create_login(&mut c, target.request_id, spec, target.expires_at).await
            } else {
                self.grant_membership(&mut c, spec).await
            };
            let _ = c.close().await;
            result
        })
        .await
    }

    async fn revoke(&self, target: &GrantTarget, _now: Timestamp) -> Result<ProviderReport, ProviderError> {
        let spec = spec_of(target)?;
        self.bounded("the revocation", async {
            let mut c = self.conn().await?;
            let result = if spec.ephemeral {
                self.drop_login(&mut c, target.request_id, spec).await
            } else {
                self.revoke_membership(&mut c, spec).await
            };
            let _ = c.close().await;
            result
        })
        .await
    }

    fn access_key(&self, target: &GrantTarget) -> Option<String> {
        // Ephemeral logins are unique to their request: nothing to share.
        match &target.spec {
            Some(GrantSpec::Postgres(s)) if !s.ephemeral => {
                Some(format!("postgres/{}/{}/{}", self.name, s.login, s.pg_role))
            }
            _ => None,
        }
    }

    async fn inspect(&self, target: &GrantTarget) -> Result<Presence, ProviderError> {
        let spec = spec_of(target)?;
        self.bounded("reading the target's state", async {
            let mut c = self.conn().await?;
            let result = if spec.ephemeral {
                self.ephemeral_presence(&mut c, target.request_id, spec).await
            } else {
                is_member(&mut c, spec.pg_role.as_str(), spec.login.as_str())
                    .await
                    .map(|m| if m { Presence::Present } else { Presence::Absent })
            };
            let _ = c.close().await;
            result
        })
        .await
    }

    async fn set_password(&self, target: &GrantTarget, scram_verifier: &str) -> Result<(), ProviderError> {
        let spec = spec_of(target)?;
        if !spec.ephemeral {
            return Err(ProviderError::permanent("only logins jitbot created get passwords from jitbot"));
        }
        if !scram_verifier.starts_with("SCRAM-SHA-256$") {
            return Err(ProviderError::permanent("refusing to send anything but a SCRAM-SHA-256 verifier"));
        }
        self.bounded("setting the password", async {
            let mut c = self.conn().await?;
            let result = match self.ephemeral_presence(&mut c, target.request_id, spec).await {
                Ok(Presence::Present) => match literal(scram_verifier) {
                    Ok(verifier) => {
                        let sql = format!("ALTER ROLE {} PASSWORD {verifier}", spec.login.quoted());
                        execute(&mut c, &sql, "ALTER ROLE").await
                    }
                    Err(e) => Err(e),
                },
                Ok(_) => Err(ProviderError::permanent(format!("login {} no longer exists", spec.login))),
                Err(e) => Err(e),
            };
            let _ = c.close().await;
            result
        })
        .await
    }
}
