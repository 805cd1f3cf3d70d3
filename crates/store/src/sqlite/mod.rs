//! The SQLite backend: the embedded default, one file, zero set-up.
//!
//! Two pools share the file. The **writer** pool has exactly one connection: SQLite admits
//! one writer at a time anyway, and queueing writers in-process (rather than letting them
//! collide on the file lock) avoids `SQLITE_BUSY` and makes ledger duplicate detection and
//! budget takes exact under concurrent requests. Every write — ingest batches, missions,
//! keys — goes through it. The **reader** pool serves reads from WAL snapshots without
//! waiting for the writer.
//!
//! Durability: WAL with `synchronous = FULL`, so a committed (acknowledged) batch survives
//! `kill -9` and power loss, not only a process crash.
//!
//! Codemap: `ingest` (the [`IngestTx`]), `ledger` (events), `missions`, `keys`, `reads`
//! (user-facing reads), `rows` (row <-> domain conversions).

mod ingest;
mod keys;
mod ledger;
mod missions;
mod reads;
mod rows;

use crate::keys::{ApiKey, NewApiKey, Role};
use crate::{IngestTx, Page, Result, Store, StoredProgress};
use async_trait::async_trait;
use jiff::Timestamp;
use questline_core::event::Event;
use questline_core::mission::{Mission, MissionStatus};
use questline_core::reward::Reward;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::str::FromStr;
use std::time::Duration;

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
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;

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

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn insert_key(&self, tenant: &str, key: &NewApiKey) -> Result<ApiKey> {
        keys::insert(&self.writer, tenant, key).await
    }

    async fn key_by_hash(&self, secret_hash: &str) -> Result<Option<(String, ApiKey)>> {
        keys::by_hash(&self.reader, secret_hash).await
    }

    async fn list_keys(&self, tenant: &str) -> Result<Vec<ApiKey>> {
        keys::list(&self.reader, tenant).await
    }

    async fn delete_key(&self, tenant: &str, id: &str) -> Result<bool> {
        keys::delete(&self.writer, tenant, id).await
    }

    async fn touch_key(&self, tenant: &str, id: &str, at: Timestamp) -> Result<()> {
        keys::touch(&self.writer, tenant, id, at).await
    }

    async fn count_keys(&self, tenant: &str, role: Role) -> Result<u64> {
        keys::count(&self.reader, tenant, role).await
    }

    async fn insert_mission(&self, tenant: &str, mission: &Mission) -> Result<()> {
        missions::insert(&self.writer, tenant, mission).await
    }

    async fn get_mission(&self, tenant: &str, id: &str) -> Result<Option<Mission>> {
        missions::get(&self.reader, tenant, id).await
    }

    async fn list_missions(
        &self,
        tenant: &str,
        status: Option<MissionStatus>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<Mission>> {
        missions::list(&self.reader, tenant, status, after, limit).await
    }

    async fn update_mission(&self, tenant: &str, mission: &Mission, expected_updated_at: Timestamp) -> Result<bool> {
        missions::update(&self.writer, tenant, mission, expected_updated_at).await
    }

    async fn delete_draft_mission(&self, tenant: &str, id: &str) -> Result<bool> {
        missions::delete_draft(&self.writer, tenant, id).await
    }

    async fn active_missions(&self, tenant: &str) -> Result<Vec<Mission>> {
        missions::active(&self.reader, tenant).await
    }

    async fn missions_revision(&self, tenant: &str) -> Result<i64> {
        let mut conn = self.reader.acquire().await?;
        missions::revision(&mut conn, tenant).await
    }

    async fn user_progress(
        &self,
        tenant: &str,
        user_id: &str,
        mission_id: Option<&str>,
    ) -> Result<Vec<StoredProgress>> {
        reads::user_progress(&self.reader, tenant, user_id, mission_id).await
    }

    async fn user_rewards(&self, tenant: &str, user_id: &str) -> Result<Vec<Reward>> {
        reads::user_rewards(&self.reader, tenant, user_id).await
    }

    async fn user_ledger(&self, tenant: &str, user_id: &str, types: &[String]) -> Result<(Vec<Event>, Vec<Event>)> {
        reads::user_ledger(&self.reader, tenant, user_id, types).await
    }

    async fn begin(&self) -> Result<Box<dyn IngestTx>> {
        // IMMEDIATE takes the write lock now, so a batch that reads before it writes cannot
        // fail to upgrade if another process wrote meanwhile; `busy_timeout` covers the wait.
        let tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        Ok(Box::new(ingest::SqliteIngestTx { tx }))
    }
}

#[cfg(test)]
mod plans;
