//! A fresh database of either backend for one test, and the stores opened on it.
//!
//! The database itself comes from `questline_testkit` (a SQLite file in a temporary
//! directory, or `questline_test_<uuid>` created on the PostgreSQL server that
//! `QUESTLINE_TEST_POSTGRES_URL` names and dropped with the guard). A PostgreSQL test never
//! passes without having run: an unreachable server fails it, and only
//! `QUESTLINE_SKIP_POSTGRES=1` skips it, with one loud line.

use questline_store::Store;
use questline_store::postgres::PostgresStore;
use questline_store::sqlite::SqliteStore;
use questline_testkit::postgres::{PostgresDatabase, fresh_database};
use std::ops::Deref;
use std::path::PathBuf;
use tempfile::TempDir;

pub use questline_testkit::Backend;

pub struct TestDb {
    kind: Kind,
}

enum Kind {
    Sqlite { dir: TempDir },
    Postgres { database: PostgresDatabase },
}

impl TestDb {
    /// A fresh, empty database; `None` only when `QUESTLINE_SKIP_POSTGRES=1` asks to skip
    /// `test` (after saying so).
    pub async fn fresh(backend: Backend, test: &str) -> Option<Self> {
        if backend.skipped(test) {
            return None;
        }
        let kind = match backend {
            Backend::Sqlite => Kind::Sqlite { dir: tempfile::tempdir().expect("temp dir") },
            Backend::Postgres => Kind::Postgres { database: fresh_database().await },
        };
        Some(Self { kind })
    }

    pub fn backend(&self) -> Backend {
        match self.kind {
            Kind::Sqlite { .. } => Backend::Sqlite,
            Kind::Postgres { .. } => Backend::Postgres,
        }
    }

    /// The SQLite file (created by the first `open`); `None` on PostgreSQL.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        match &self.kind {
            Kind::Sqlite { dir } => Some(dir.path().join("questline.db")),
            Kind::Postgres { .. } => None,
        }
    }

    pub fn url(&self) -> String {
        match &self.kind {
            Kind::Sqlite { .. } => format!("sqlite://{}", self.sqlite_path().unwrap().display()),
            Kind::Postgres { database } => database.url().to_owned(),
        }
    }

    /// Opens a store on the database (migrating it on first use). Each call is a separate
    /// store with its own connection pools, as a separate process would have.
    pub async fn open(&self) -> TestStore {
        let url = self.url();
        match &self.kind {
            Kind::Sqlite { .. } => TestStore::Sqlite(SqliteStore::connect(&url).await.expect("open store")),
            Kind::Postgres { .. } => TestStore::Postgres(PostgresStore::connect(&url).await.expect("open store")),
        }
    }

    /// Removes what the test made (the guards do; a failed test's PostgreSQL database stays
    /// behind to be inspected).
    pub async fn finish(self) {}
}

/// A store of either backend. Derefs to `dyn Store`, so tests call the trait as the service
/// does; `close` is the backends' own.
pub enum TestStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl TestStore {
    pub async fn close(&self) {
        match self {
            TestStore::Sqlite(s) => s.close().await,
            TestStore::Postgres(s) => s.close().await,
        }
    }
}

impl Deref for TestStore {
    type Target = dyn Store;

    fn deref(&self) -> &Self::Target {
        match self {
            TestStore::Sqlite(s) => s,
            TestStore::Postgres(s) => s,
        }
    }
}
