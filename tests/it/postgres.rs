//! Behaviour only PostgreSQL has: encrypted connections.

use jitbot::store::Db;

use crate::support::{Backend, TestDatabase, postgres_server};

#[tokio::test]
async fn a_postgres_url_may_require_tls() {
    let Some(server) = postgres_server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (_database, url) = TestDatabase::create(Backend::Postgres, dir.path()).await;
    let plain = Db::connect(&url, 1).await.unwrap();
    let Db::Postgres(pool) = &plain else { unreachable!() };
    let ssl: String = sqlx::query_scalar("SHOW ssl").fetch_one(pool).await.unwrap();
    plain.close().await;
    if ssl != "on" {
        eprintln!("note: the server at {server} has ssl = {ssl}; cannot check TLS connections");
        return;
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    let db = Db::connect(&format!("{url}{separator}sslmode=require"), 1).await.unwrap();
    db.migrate().await.unwrap();
    let Db::Postgres(pool) = &db else { unreachable!() };
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetch_one(pool).await.unwrap();
    assert!(encrypted, "sslmode=require gives an encrypted connection");
    db.close().await;
}

/// A request whose future is dropped while its transaction begins (the
/// client went away, a timeout fired) must not leave its pooled connection
/// inside that transaction: the pool would hand it to the next caller,
/// whose writes would then be reported done but never committed, and whose
/// locks would be held indefinitely.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transaction_cancelled_while_it_begins_leaves_no_connection_inside_it() {
    use sqlx::Connection;
    if postgres_server().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_database, url) = TestDatabase::create(Backend::Postgres, dir.path()).await;
    // One connection: whatever the cancelled request left behind, the next one gets.
    let db = Db::connect(&url, 1).await.unwrap();
    let Db::Postgres(pool) = &db else { unreachable!() };
    sqlx::query("CREATE TABLE written (n BIGINT PRIMARY KEY)").execute(pool).await.unwrap();
    let mut outside = sqlx::PgConnection::connect(&url).await.unwrap();
    for n in 0..200_i64 {
        // Cancelled at points from "BEGIN not yet answered" to "transaction open".
        let wait = std::time::Duration::from_micros(u64::try_from(n % 8).unwrap() * 50);
        let cancelled = tokio::time::timeout(wait, async {
            let tx = db.begin().await?;
            tokio::task::yield_now().await;
            tx.rollback().await
        });
        let _ = cancelled.await;
        // The next request writes outside any transaction: it is committed at once.
        sqlx::query("INSERT INTO written (n) VALUES ($1)").bind(n).execute(pool).await.unwrap();
        let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM written WHERE n = $1")
            .bind(n)
            .fetch_one(&mut outside)
            .await
            .unwrap();
        assert_eq!(seen, 1, "write {n} is invisible to others: its connection was left inside a cancelled transaction");
        // And the request after it runs its own transaction.
        let tx = db.begin().await.unwrap();
        tx.commit().await.unwrap();
    }
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM written").fetch_one(&mut outside).await.unwrap();
    assert_eq!(total, 200);
    // A clean connection is kept: the check does not cost a reconnect per request.
    let first: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(pool).await.unwrap();
    let tx = db.begin().await.unwrap();
    tx.commit().await.unwrap();
    let again: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(pool).await.unwrap();
    assert_eq!(first, again, "a connection outside any transaction went back to the pool");
    db.close().await;
}
