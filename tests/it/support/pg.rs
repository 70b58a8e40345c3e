//! A target PostgreSQL for provider tests: per test a fresh database and
//! roles whose names start with a random prefix (role names are
//! cluster-wide), created on the server at `JITBOT_TEST_DATABASE_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`, trust auth) and
//! dropped again when the fixture is dropped, even if the test panicked.
//!
//! If the server is unreachable the tests print a notice and pass, except
//! with `CI=true`, where that is a failure.
//!
//! [`ScramCluster`] starts a throwaway cluster with `scram-sha-256`
//! authentication, for what only password logins show (`VALID UNTIL`, the
//! passwords set through the credentials page).

use std::path::PathBuf;
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use rand::Rng;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

pub fn server_url() -> String {
    std::env::var("JITBOT_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips (or, in CI, fails) when `what` is unavailable.
pub fn unavailable(what: &str) {
    if in_ci() {
        panic!("{what} (CI=true: PostgreSQL tests must run)");
    }
    eprintln!("NOTICE: skipping a PostgreSQL provider test: {what}");
}

fn with(url: &str, user: &str, password: Option<&str>, database: &str) -> String {
    let mut u = reqwest::Url::parse(url).unwrap();
    u.set_username(user).unwrap();
    u.set_password(password).unwrap();
    u.set_path(&format!("/{database}"));
    u.to_string()
}

async fn connect(url: &str) -> Result<PgConnection, sqlx::Error> {
    PgConnectOptions::from_str(url)?.disable_statement_logging().connect().await
}

async fn exec(c: &mut PgConnection, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut *c).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A fresh target: database `<prefix>db` with table `secrets`, roles
/// `<prefix>readonly` (may read it), `<prefix>writer`, logins
/// `<prefix>alice`, `<prefix>dave`, and the admin `<prefix>admin` with
/// CREATEROLE and pg_signal_backend only.
pub struct PgTarget {
    pub prefix: String,
    pub db: String,
    server: String,
}

impl PgTarget {
    /// `None` when the server is unreachable (outside CI).
    pub async fn create() -> Option<Self> {
        Self::create_on(&server_url()).await
    }

    pub async fn create_on(server: &str) -> Option<Self> {
        let mut su = match tokio::time::timeout(Duration::from_secs(5), connect(server)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                unavailable(&format!("cannot connect to {server}: {e}"));
                return None;
            }
            Err(_) => {
                unavailable(&format!("timed out connecting to {server}"));
                return None;
            }
        };
        let prefix = format!("jt{:08x}_", rand::rng().random::<u32>());
        let t = Self { db: format!("{prefix}db"), prefix, server: server.to_owned() };
        let p = &t.prefix;
        exec(&mut su, &format!("CREATE DATABASE \"{}\"", t.db)).await;
        exec(
            &mut su,
            &format!(
                "CREATE ROLE \"{p}admin\" LOGIN CREATEROLE NOSUPERUSER;
                 GRANT pg_signal_backend TO \"{p}admin\";
                 CREATE ROLE \"{p}readonly\" NOLOGIN;
                 CREATE ROLE \"{p}writer\" NOLOGIN;
                 CREATE ROLE \"{p}alice\" LOGIN;
                 CREATE ROLE \"{p}dave\" LOGIN;"
            ),
        )
        .await;
        let mut db = t.superuser().await;
        exec(
            &mut db,
            &format!(
                "CREATE TABLE secrets (v text);
                 INSERT INTO secrets VALUES ('the secret');
                 GRANT SELECT ON secrets TO \"{p}readonly\";
                 GRANT SELECT, INSERT ON secrets TO \"{p}writer\";"
            ),
        )
        .await;
        Some(t)
    }

    /// A second fresh database on the same server, for jitbot's own store
    /// (dropped with the fixture).
    pub async fn store_url(&self) -> String {
        let name = format!("{}store", self.prefix);
        let mut su = connect(&self.server).await.unwrap();
        exec(&mut su, &format!("CREATE DATABASE \"{name}\"")).await;
        let mut u = reqwest::Url::parse(&self.server).unwrap();
        u.set_path(&format!("/{name}"));
        u.to_string()
    }

    pub fn role(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The admin URL jitbot gets (no superuser).
    pub fn admin_url(&self) -> String {
        with(&self.server, &self.role("admin"), None, &self.db)
    }

    /// The admin URL with a password (for password-authenticated clusters).
    pub fn admin_url_with(&self, password: &str) -> String {
        with(&self.server, &self.role("admin"), Some(password), &self.db)
    }

    pub fn url_as(&self, user: &str) -> String {
        with(&self.server, user, None, &self.db)
    }

    pub fn url_with(&self, user: &str, password: &str) -> String {
        with(&self.server, user, Some(password), &self.db)
    }

    pub async fn connect_as(&self, user: &str) -> Result<PgConnection, sqlx::Error> {
        connect(&self.url_as(user)).await
    }

    pub async fn superuser(&self) -> PgConnection {
        let u = reqwest::Url::parse(&self.server).unwrap();
        let mut url = u.clone();
        url.set_path(&format!("/{}", self.db));
        connect(url.as_str()).await.unwrap()
    }

    pub async fn sql(&self, sql: &str) {
        exec(&mut self.superuser().await, sql).await;
    }

    /// Whether `login` is a direct member of `role`.
    pub async fn is_member(&self, role: &str, login: &str) -> bool {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
             JOIN pg_roles u ON u.oid = m.member WHERE r.rolname = $1 AND u.rolname = $2",
        )
        .bind(role)
        .bind(login)
        .fetch_one(&mut self.superuser().await)
        .await
        .unwrap();
        n > 0
    }

    pub async fn role_exists(&self, name: &str) -> bool {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_roles WHERE rolname = $1")
            .bind(name)
            .fetch_one(&mut self.superuser().await)
            .await
            .unwrap();
        n > 0
    }

    /// Roles whose names start with this test's prefix.
    pub async fn roles(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE starts_with(rolname, $1) ORDER BY 1")
            .bind(&self.prefix)
            .fetch_all(&mut self.superuser().await)
            .await
            .unwrap()
    }

    /// Whether `user` can read the table, in a new session.
    pub async fn can_read(&self, user: &str) -> bool {
        let Ok(mut c) = self.connect_as(user).await else { return false };
        sqlx::query_scalar::<_, String>("SELECT v FROM secrets").fetch_one(&mut c).await.is_ok()
    }

    /// Waits (up to 10 s) until `user` can read the granted table: a grant
    /// made by a job lands a moment after the click.
    pub async fn becomes_readable_by(&self, user: &str) -> bool {
        for _ in 0..400 {
            if self.can_read(user).await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }

    async fn drop_everything(server: String, prefix: String, db: String) {
        let Ok(mut su) = connect(&server).await else { return };
        let dbs: Vec<String> =
            sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE starts_with(datname, $1) OR datname = $2")
                .bind(&prefix)
                .bind(&db)
                .fetch_all(&mut su)
                .await
                .unwrap_or_default();
        for d in dbs {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{d}\" WITH (FORCE)")))
                .execute(&mut su)
                .await;
        }
        let roles: Vec<String> =
            sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE starts_with(rolname, $1)")
                .bind(&prefix)
                .fetch_all(&mut su)
                .await
                .unwrap_or_default();
        for r in roles {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP ROLE IF EXISTS \"{r}\""))).execute(&mut su).await;
        }
        let _ = su.close().await;
    }
}

impl Drop for PgTarget {
    fn drop(&mut self) {
        let (server, prefix, db) = (self.server.clone(), self.prefix.clone(), self.db.clone());
        // Drop may run inside the test's runtime: clean up on a thread of its own.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                rt.block_on(Self::drop_everything(server, prefix, db));
            }
        })
        .join();
    }
}

/// A throwaway PostgreSQL cluster with `scram-sha-256` authentication on a
/// free port, run as the `postgres` OS user when the tests run as root.
pub struct ScramCluster {
    pub dir: PathBuf,
    pub port: u16,
    pub superuser_password: String,
    pub log: PathBuf,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn as_postgres(program: &str, args: &[&str]) -> Command {
    let bin = format!("{PG_BIN}/{program}");
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &bin]).args(args);
        c
    } else {
        let mut c = Command::new(bin);
        c.args(args);
        c
    }
}

/// As root, PostgreSQL's binaries must run as the `postgres` OS user.
fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl ScramCluster {
    /// `None` when the binaries are missing (outside CI).
    pub fn start() -> Option<Self> {
        if !std::path::Path::new(PG_BIN).join("initdb").exists() {
            unavailable(&format!("no initdb in {PG_BIN}"));
            return None;
        }
        let root = is_root();
        let made = if root {
            Command::new("runuser").args(["-u", "postgres", "--", "mktemp", "-d", "/tmp/jitbot-scram-XXXXXX"]).output()
        } else {
            Command::new("mktemp").args(["-d", "/tmp/jitbot-scram-XXXXXX"]).output()
        };
        let dir = PathBuf::from(String::from_utf8_lossy(&made.ok()?.stdout).trim());
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let password: String = rand::rng().sample_iter(rand::distr::Alphanumeric).take(24).map(char::from).collect();
        let pwfile = dir.join("pw");
        let data = dir.join("data");
        let log = dir.join("server.log");
        let write_pw = format!("umask 077; printf '%s' '{password}' > '{}'", pwfile.display());
        let status = if root {
            Command::new("runuser").args(["-u", "postgres", "--", "sh", "-c", &write_pw]).status()
        } else {
            Command::new("sh").args(["-c", &write_pw]).status()
        };
        assert!(status.is_ok_and(|s| s.success()), "cannot write the password file");
        let out = as_postgres(
            "initdb",
            &[
                "-D",
                data.to_str()?,
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                &format!("--pwfile={}", pwfile.display()),
                "--no-sync",
                "-E",
                "UTF8",
            ],
        )
        .output()
        .ok()?;
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let opts = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c log_statement=all -c fsync=off",
            dir.display()
        );
        let out = as_postgres("pg_ctl", &["-D", data.to_str()?, "-l", log.to_str()?, "-o", &opts, "-w", "start"])
            .output()
            .ok()?;
        assert!(out.status.success(), "pg_ctl start: {}", String::from_utf8_lossy(&out.stderr));
        Some(Self { dir, port, superuser_password: password, log })
    }

    pub fn superuser_url(&self) -> String {
        format!("postgres://postgres:{}@127.0.0.1:{}/postgres", self.superuser_password, self.port)
    }

    /// The server log (every statement is logged: `log_statement = all`).
    pub fn log_text(&self) -> String {
        let out = if is_root() {
            Command::new("runuser").args(["-u", "postgres", "--", "cat", self.log.to_str().unwrap_or("")]).output()
        } else {
            Command::new("cat").arg(&self.log).output()
        };
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
    }
}

impl Drop for ScramCluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = as_postgres("pg_ctl", &["-D", data.to_str().unwrap_or(""), "-m", "immediate", "-w", "stop"]).output();
        let dir = self.dir.display().to_string();
        let _ = if is_root() {
            Command::new("runuser").args(["-u", "postgres", "--", "rm", "-rf", &dir]).status()
        } else {
            Command::new("rm").args(["-rf", &dir]).status()
        };
    }
}
