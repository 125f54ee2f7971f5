//! The store against real databases: every test runs on the embedded SQLite and on
//! PostgreSQL. PostgreSQL comes from `LAMINA_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each test gets its own database.
//! Without a reachable server the PostgreSQL half is skipped with a visible message,
//! except under `CI=true`, where that is a failure.

// clippy.toml allows unwrap inside #[test] functions; the harness helpers are test code too.
#![allow(clippy::unwrap_used)]

mod catalog;
mod concurrency_leases;
mod layers;
mod ledger;
mod membership;
mod package_blobs;
mod propagation;
mod queue;

use sqlx::Connection;
use store::Db;

pub struct TestDb {
    pub name: &'static str,
    pub db: Db,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

pub fn postgres_admin_url() -> String {
    std::env::var("LAMINA_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh, empty PostgreSQL database; None (after saying so) when there is no server.
pub async fn fresh_postgres() -> Option<String> {
    let admin = postgres_admin_url();
    let conn = sqlx::PgConnection::connect(&admin).await;
    let mut conn = match conn {
        Ok(c) => c,
        Err(e) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("PostgreSQL is required under CI=true but {admin} is unreachable: {e}");
            }
            eprintln!("SKIPPED: PostgreSQL half of this test ({admin} unreachable: {e})");
            return None;
        }
    };
    let name = format!("lamina_test_{}", uuid::Uuid::new_v4().simple());
    // The name is a UUID generated just above.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    Some(format!("{base}/{name}"))
}

/// SQLite, and PostgreSQL when available.
pub async fn backends() -> Vec<TestDb> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lamina.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut out = vec![TestDb {
        name: "sqlite",
        db: Db::open_sqlite(&path).await.unwrap(),
        url,
        _dir: Some(dir),
    }];
    if let Some(url) = fresh_postgres().await {
        out.push(TestDb {
            name: "postgres",
            db: Db::connect(&url).await.unwrap(),
            url,
            _dir: None,
        });
    }
    out
}
