//! Behaviour only PostgreSQL has: encrypted connections, and pooled
//! connections that a cancelled transaction must not leave behind.

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
    let jitbot::store::Pool::Postgres(pool) = db.pool() else { unreachable!() };
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

/// The same through a use case: requests whose handling is cancelled at
/// every point (a client gone, a timeout) leave either a whole request with
/// its audit event or nothing, and the requests after them work.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn use_cases_cancelled_midway_leave_whole_state_and_the_next_requests_work() {
    use crate::support::{TestApp, user};
    if postgres_server().is_none() {
        return;
    }
    use sqlx::Connection;
    let t = TestApp::spawn_with_pool(Backend::Postgres, 2).await;
    let mut outside = sqlx::PgConnection::connect(&t.db_url).await.unwrap();
    let alice = user("U0ALICE");
    for n in 0..60_u64 {
        let wait = std::time::Duration::from_micros((n % 12) * 150);
        let _ = tokio::time::timeout(wait, t.request("U0ALICE", "prod-db-readonly", None)).await;
        // A `/jit link` right after: its sign-in link works from any
        // connection (the browser's request is served by another one).
        let token = t.service().start_link(&alice, None, t.now()).await.unwrap();
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM link_tokens WHERE token_hash = $1")
            .bind(jitbot::idp::hash_token(&token))
            .fetch_one(&mut outside)
            .await
            .unwrap();
        assert_eq!(stored, 1, "round {n}: the link token was written inside a cancelled request's transaction");
        // The next request is served normally: made, or refused because the
        // cancelled one was committed after all.
        if let Err(e) = t.request("U0ALICE", "prod-db-readonly", None).await {
            assert!(e.to_string().contains("already have"), "request after a cancelled one: {e}");
        }
        let pending = t.number("SELECT COUNT(*) FROM access_requests WHERE state = 'pending'").await;
        assert_eq!(pending, 1, "exactly one request is pending after round {n}");
        let id = t.number("SELECT id FROM access_requests WHERE state = 'pending'").await;
        t.service().cancel(jitbot::domain::RequestId::new(id), &alice, t.now()).await.unwrap();
    }
    jitbot::audit::verify(t.db()).await.unwrap();
    let requests = t.number("SELECT COUNT(*) FROM access_requests").await;
    let created = t.number("SELECT COUNT(*) FROM audit_events WHERE action = 'request.created'").await;
    assert_eq!(requests, 60);
    assert_eq!(created, requests, "every request has its audit event, and no event lacks its request");
}

/// The release check itself: a pooled connection handed back inside a
/// transaction block that sqlx does not know of (sent as raw SQL) is
/// closed, not given to the next caller; one handed back clean is kept.
#[tokio::test]
async fn a_connection_returned_inside_a_transaction_block_is_closed_and_a_clean_one_kept() {
    use sqlx::Connection;
    if postgres_server().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_database, url) = TestDatabase::create(Backend::Postgres, dir.path()).await;
    let db = Db::connect(&url, 1).await.unwrap();
    let Pool::Postgres(pool) = db.pool() else { unreachable!() };
    sqlx::query("CREATE TABLE written (n BIGINT PRIMARY KEY)").execute(pool).await.unwrap();
    let pid = |pool: &sqlx::PgPool| {
        let pool = pool.clone();
        async move { sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()").fetch_one(&pool).await.unwrap() }
    };
    let clean = pid(pool).await;
    assert_eq!(pid(pool).await, clean, "a clean connection is kept");

    let mut conn = pool.acquire().await.unwrap();
    sqlx::raw_sql("BEGIN").execute(&mut *conn).await.unwrap();
    drop(conn);
    let after = pid(pool).await;
    assert_ne!(after, clean, "the connection left inside a transaction block was closed");
    sqlx::query("INSERT INTO written (n) VALUES (1)").execute(pool).await.unwrap();
    let mut outside = sqlx::PgConnection::connect(&url).await.unwrap();
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM written").fetch_one(&mut outside).await.unwrap();
    assert_eq!(seen, 1, "the next write was committed, not held in a stranger's transaction");
    db.close().await;
}
