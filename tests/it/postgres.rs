//! Behaviour only PostgreSQL has: encrypted connections.

use jitbot::store::{Db, Pool};

use crate::support::{Backend, TestDatabase, postgres_server};

#[tokio::test]
async fn a_postgres_url_may_require_tls() {
    let Some(server) = postgres_server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (_database, url) = TestDatabase::create(Backend::Postgres, dir.path()).await;
    let plain = Db::connect(&url, 1).await.unwrap();
    let Pool::Postgres(pool) = plain.pool() else { unreachable!() };
    let ssl: String = sqlx::query_scalar("SHOW ssl").fetch_one(pool).await.unwrap();
    plain.close().await;
    if ssl != "on" {
        eprintln!("note: the server at {server} has ssl = {ssl}; cannot check TLS connections");
        return;
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    let db = Db::connect(&format!("{url}{separator}sslmode=require"), 1).await.unwrap();
    db.migrate().await.unwrap();
    let Pool::Postgres(pool) = db.pool() else { unreachable!() };
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetch_one(pool).await.unwrap();
    assert!(encrypted, "sslmode=require gives an encrypted connection");
    db.close().await;
}
