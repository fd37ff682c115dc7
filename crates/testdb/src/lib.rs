//! Test support for rekey's crates: runs one async test body against a fresh SQLite file and,
//! when `REKEY_TEST_POSTGRES_URL` is set, against a fresh PostgreSQL database that is dropped
//! afterwards; says plainly when PostgreSQL is skipped.

#![forbid(unsafe_code)]
#![allow(missing_docs)]

use std::path::PathBuf;

use rekey_store::db::Backend;
use rekey_store::{ConnectionTrait, Kek, Store};
use sea_orm::Database;

/// What a test body returns.
pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Environment variable naming the PostgreSQL server for tests.
pub const PG_ENV: &str = "REKEY_TEST_POSTGRES_URL";

/// One fresh database with a store (with a fresh KEK) opened on it.
pub struct TestDb {
    pub store: Store,
    pub backend: Backend,
    pub url: String,
    /// The SQLite file (SQLite only).
    pub sqlite_path: Option<PathBuf>,
    _guard: Guard,
}

enum Guard {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres(#[allow(dead_code)] PgDatabase),
}

impl TestDb {
    pub async fn sqlite() -> Result<TestDb, Box<dyn std::error::Error + Send + Sync>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("rekey.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let store = Store::open(&url).await?.with_kek(Kek::generate()?);
        Ok(TestDb {
            store,
            backend: Backend::Sqlite,
            url,
            sqlite_path: Some(path),
            _guard: Guard::Sqlite(dir),
        })
    }

    pub async fn postgres(
        server: &str,
    ) -> Result<TestDb, Box<dyn std::error::Error + Send + Sync>> {
        let guard = PgDatabase::create(server, "rekey_test").await?;
        let url = guard.url().to_string();
        let store = Store::open(&url).await?.with_kek(Kek::generate()?);
        Ok(TestDb {
            store,
            backend: Backend::Postgres,
            url,
            sqlite_path: None,
            _guard: Guard::Postgres(guard),
        })
    }

    /// A second, independent store on the same database (same KEK not included).
    pub async fn reopen(&self) -> Result<Store, rekey_store::StoreError> {
        Store::open(&self.url).await
    }

    /// Number of audit entries.
    pub async fn audit_len(&self) -> Result<usize, rekey_store::StoreError> {
        Ok(self.store.audit_entries(0, 1_000_000).await?.len())
    }
}

/// `postgres://user@host:port` from a URL that may carry a database path.
fn server_base(url: &str) -> String {
    let url = url.trim_end_matches('/');
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('/') {
            Some((authority, _)) => format!("{scheme}://{authority}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// A fresh, empty PostgreSQL database for one test, dropped when this value is, also when the
/// test panics (best effort). [`TestDb`] opens a store on one; tests of the binary point it at
/// one.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl PgDatabase {
    /// Creates `<prefix>_<uuid>` on the server `server` names (any database path in it is
    /// ignored).
    pub async fn create(
        server: &str,
        prefix: &str,
    ) -> Result<PgDatabase, Box<dyn std::error::Error + Send + Sync>> {
        let base = server_base(server);
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let admin_url = format!("{base}/postgres");
        let admin = Database::connect(&admin_url).await?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await?;
        admin.close().await?;
        Ok(PgDatabase {
            url: format!("{base}/{name}"),
            admin_url,
            name,
        })
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // A thread with its own runtime: Drop cannot await, and may run during a panic.
        let handle = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(conn) = Database::connect(admin_url).await {
                    let _ = conn
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = handle.join();
    }
}

/// Runs `body` on SQLite, then on PostgreSQL if configured. Panics naming the backend on the
/// first failure.
pub async fn on_both(body: impl AsyncFn(&TestDb) -> TestResult) {
    let db = match TestDb::sqlite().await {
        Ok(db) => db,
        Err(e) => panic!("[sqlite] cannot set up the test database: {e}"),
    };
    if let Err(e) = body(&db).await {
        panic!("[sqlite] {e}");
    }
    let _ = db.store.clone().close().await;
    drop(db);
    match std::env::var(PG_ENV) {
        Err(_) => eprintln!("skipping PostgreSQL: {PG_ENV} not set"),
        Ok(server) => {
            let db = match TestDb::postgres(&server).await {
                Ok(db) => db,
                Err(e) => panic!("[postgres] cannot set up the test database on {server}: {e}"),
            };
            if let Err(e) = body(&db).await {
                panic!("[postgres] {e}");
            }
            let _ = db.store.clone().close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::server_base;

    #[test]
    fn server_base_strips_database() {
        assert_eq!(
            server_base("postgres://postgres@127.0.0.1:5432"),
            "postgres://postgres@127.0.0.1:5432"
        );
        assert_eq!(
            server_base("postgres://postgres@127.0.0.1:5432/postgres"),
            "postgres://postgres@127.0.0.1:5432"
        );
    }
}
