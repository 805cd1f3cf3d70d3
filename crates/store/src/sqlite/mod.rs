//! The SQLite backend: the embedded default, one file, zero set-up.
//!
//! Two pools share the file. The **writer** pool has exactly one connection: SQLite admits
//! one writer at a time anyway, and queueing writers in-process (rather than letting them
//! collide on the file lock) avoids `SQLITE_BUSY` and makes ledger duplicate detection and
//! budget counts exact under concurrent requests. Every unit of work — ingest batches,
//! missions, keys — runs on it, as does `touch_key`. The **reader** pool serves reads from WAL snapshots without
//! waiting for the writer.
//!
//! Durability: WAL with `synchronous = FULL`, so a committed (acknowledged) batch survives
//! `kill -9` and power loss, not only a process crash.
//!
//! Codemap: `ledger` (events: chunked `IN` lists, `INDEXED BY`) and `batch` (progress and
//! live rewards by (mission, user) pairs, chunked `VALUES` joins) hold the SQL only SQLite
//! speaks; everything else is `crate::shared`'s, compiled here with `Db = Sqlite`. `plans`
//! pins the query plans of the hot lookups.

mod batch;
mod ledger;
#[allow(clippy::duplicate_mod, reason = "the shared SQL, compiled once per backend")]
#[path = "../shared/mod.rs"]
mod shared;

use crate::Result;
use crate::sql::Dialect;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};
use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

// What `shared` compiles against.
type Db = Sqlite;
type Backend = SqliteStore;

/// Reader connections. Reads are short; more than a few buys little on a small machine.
const READERS: u32 = 4;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `sqlite://PATH` and applies migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let base = SqliteConnectOptions::from_str(url)?
            // Reads through a memory map rather than copying each page in (up to 1 GiB of
            // the file; the rest is read as usual). Pages are the OS's cache, shared.
            .pragma("mmap_size", "1073741824")
            .foreign_keys(true)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));

        // The writer alone creates the file and switches it to WAL (a persistent setting
        // of the file), before any reader opens it.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            // Keep the one connection for the life of the store: reopening costs a schema
            // read and an empty statement cache on the hot path.
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(
                base.clone()
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    // 256 MiB instead of 2: every batch touches progress and index pages
                    // all over the file (keys lead with the user or mission, so writes land
                    // at random). Profiles showed page copies from the OS dominating.
                    .pragma("cache_size", "-262144"),
            )
            .await?;
        migrator().run(&writer).await?;

        // `query_only` makes a write that strays onto a reader fail loudly instead of
        // racing the writer for the lock.
        let reader =
            SqlitePoolOptions::new().max_connections(READERS).connect_with(base.pragma("query_only", "ON")).await?;
        Ok(Self { writer, reader })
    }

    /// Closes both pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// The store's migrations. Other crates keep their own tables' migrations
/// ([`crate::Store::apply_migrations`]) in the same `_sqlx_migrations` table, under versions
/// of their own, so the store ignores versions it does not know.
fn migrator() -> sqlx::migrate::Migrator {
    let mut migrator = sqlx::migrate!("./migrations/sqlite");
    migrator.set_ignore_missing(true);
    migrator
}

/// Of another crate's two migration sets, the one this backend runs.
fn migrator_for<'m>(
    sqlite: &'m sqlx::migrate::Migrator,
    _: &'m sqlx::migrate::Migrator,
) -> &'m sqlx::migrate::Migrator {
    sqlite
}

impl Dialect for Sqlite {
    /// IMMEDIATE takes the write lock now, so a unit that reads before it writes cannot
    /// fail to upgrade if another process wrote meanwhile; `busy_timeout` covers the wait.
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    /// In WAL mode a read transaction is one snapshot from its first read on.
    const BEGIN_SNAPSHOT: &'static str = "BEGIN";
    /// Nothing: the single writer connection already excludes every other unit of work.
    const LOCK_ROWS: &'static str = "";

    /// SQLite takes `?` as written.
    fn sql(text: &str) -> Cow<'_, str> {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod plans;
