//! A fresh database of either backend for one test, and the stores opened on it.
//!
//! PostgreSQL: each test creates `questline_test_<uuid>` through the server that
//! `QUESTLINE_TEST_POSTGRES_URL` names (default [`DEFAULT_ADMIN_URL`]) and drops it when it
//! passes; a failed test leaves its database behind to be looked at. If the server cannot be
//! reached, the test FAILS: a PostgreSQL test never passes without having run. Only with
//! `QUESTLINE_SKIP_POSTGRES=1` does it return early instead, after one loud line on
//! standard error.

use questline_store::Store;
use questline_store::postgres::{PostgresStore, admin};
use questline_store::sqlite::SqliteStore;
use std::io::Write;
use std::ops::Deref;
use std::path::PathBuf;
use std::time::Duration;
use tempfile::TempDir;

pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// How long reaching the server may take before it counts as unreachable.
const CONNECT_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestDb {
    kind: Kind,
}

enum Kind {
    Sqlite { dir: TempDir },
    Postgres { admin_url: String, name: String, url: String },
}

impl TestDb {
    /// A fresh, empty database; `None` only if PostgreSQL is unreachable and
    /// `QUESTLINE_SKIP_POSTGRES=1` asks to skip (after saying so).
    pub async fn fresh(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => Some(Self { kind: Kind::Sqlite { dir: tempfile::tempdir().expect("temp dir") } }),
            Backend::Postgres => fresh_postgres().await,
        }
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
            Kind::Postgres { url, .. } => url.clone(),
        }
    }

    /// Opens a store on the database (migrating it on first use). Each call is a separate
    /// store with its own connection pools, as a separate process would have.
    pub async fn open(&self) -> TestStore {
        match &self.kind {
            Kind::Sqlite { .. } => TestStore::Sqlite(SqliteStore::connect(&self.url()).await.expect("open store")),
            Kind::Postgres { url, .. } => TestStore::Postgres(PostgresStore::connect(url).await.expect("open store")),
        }
    }

    /// Removes what the test made. Only called when the test got this far, so a failed test
    /// leaves its PostgreSQL database to be inspected.
    pub async fn finish(self) {
        let Kind::Postgres { admin_url, name, .. } = &self.kind else { return };
        if let Err(e) = admin::drop_database(admin_url, name).await {
            eprintln!("could not drop test database {name}: {e}");
        }
    }
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

pub fn admin_url() -> String {
    std::env::var("QUESTLINE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

async fn fresh_postgres() -> Option<TestDb> {
    let admin_url = admin_url();
    let name = format!("questline_test_{}", uuid::Uuid::now_v7().simple());
    match tokio::time::timeout(CONNECT_DEADLINE, admin::create_database(&admin_url, &name)).await {
        Ok(Ok(url)) => Some(TestDb { kind: Kind::Postgres { admin_url, name, url } }),
        Ok(Err(e)) if admin::unreachable(&e) => unavailable(&admin_url, &e.to_string()),
        Err(_) => unavailable(&admin_url, &format!("no answer within {CONNECT_DEADLINE:?}")),
        // Reachable but refusing (authentication, permissions, disk): a real failure.
        Ok(Err(e)) => panic!("cannot create a test database on {}: {e}", redact(&admin_url)),
    }
}

fn unavailable(admin_url: &str, why: &str) -> Option<TestDb> {
    let admin_url = redact(admin_url);
    if std::env::var("QUESTLINE_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
        // Through the stderr handle, not `eprintln!`: the test harness captures (and hides)
        // what a passing test prints with the macros, and a skip must be seen.
        let _ = writeln!(
            std::io::stderr().lock(),
            "SKIPPED (QUESTLINE_SKIP_POSTGRES=1): PostgreSQL not reachable at {admin_url} ({why}); \
             this PostgreSQL test did NOT run."
        );
        return None;
    }
    panic!(
        "PostgreSQL not reachable at {admin_url} ({why}). A PostgreSQL test fails without it: run the suite \
         through scripts/test, which starts one, set QUESTLINE_TEST_POSTGRES_URL, or set \
         QUESTLINE_SKIP_POSTGRES=1 to skip these tests knowingly."
    );
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme_end), Some(at)) if scheme_end < at => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
