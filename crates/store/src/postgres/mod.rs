//! The PostgreSQL backend: many processes on one database.
//!
//! It behaves exactly as the SQLite backend does (the conformance suite in `tests/it` runs
//! the same tests on both); what differs is how concurrency is made safe. SQLite has one
//! writer, so batches never overlap. Here batches from any number of processes run at once,
//! and the database itself keeps the invariants:
//!
//! - **Exactly once**: the ledger's primary key. `INSERT … ON CONFLICT DO NOTHING RETURNING
//!   id` returns only the new ids; an insert of an id that a concurrent transaction has just
//!   inserted waits for it, then skips the row if it committed.
//! - **Per-user order**: [`IngestTx::lock_users`] takes a transaction-scoped advisory lock
//!   per user, so two batches touching a user apply one after the other, and each reads the
//!   progress the other committed (READ COMMITTED takes a fresh snapshot per statement).
//! - **Budgets**: one `UPDATE … WHERE rewards_granted < max_rewards`; the row lock queues
//!   concurrent takes and each re-checks the condition on the row it finally sees.
//! - **Lost races** (deadlock `40P01`, serialization failure `40001`) roll the transaction
//!   back and surface as [`StoreError::Retryable`], so the caller reruns the batch.
//!
//! Two pools, as on SQLite: **writer** connections for ingest transactions and every write,
//! **reader** connections for reads. A batch holds a writer connection for its whole
//! transaction and may need a read meanwhile (reloading the missions index): with a single
//! pool, a burst of batches could hold every connection and wait forever for one more.
//!
//! Codemap: `ingest` (the [`IngestTx`]), `ledger` (events), `missions`, `keys`, `reads`,
//! `admin` (creating and dropping databases, for tests and benchmarks), `rows` (row <->
//! domain conversions, shared with SQLite).

pub mod admin;
mod ingest;
mod keys;
mod ledger;
mod missions;
mod reads;
// The row types and conversions are the SQLite backend's, compiled here too: both schemas
// hold the same values in the same shapes (TEXT timestamps, TEXT JSON, BIGINT integers) and
// the derived `FromRow`s are generic over the database, so both backends decode rows with
// the very same code. They belong in a shared `crate::rows`; until it exists, this is how
// the two stay identical.
#[allow(clippy::duplicate_mod, reason = "one definition of the row conversions for both backends")]
#[path = "../sqlite/rows.rs"]
mod rows;

use crate::keys::{ApiKey, NewApiKey, Role};
use crate::{IngestTx, Page, Result, Store, StoreError, StoredProgress};
use async_trait::async_trait;
use jiff::Timestamp;
use questline_core::event::Event;
use questline_core::mission::{Mission, MissionStatus};
use questline_core::reward::Reward;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::str::FromStr;

/// Pool sizes. Each running batch holds one writer connection until it commits, so
/// `max_connections` bounds how many batches one process applies at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostgresOptions {
    /// Writer connections (ingest transactions, mission and key writes).
    pub max_connections: u32,
    /// Reader connections (user-facing reads, the missions index, key lookups).
    pub read_connections: u32,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self { max_connections: 16, read_connections: 4 }
    }
}

/// The URL query parameter that sets [`PostgresOptions::max_connections`]; taken out of the
/// URL before the driver sees it.
const MAX_CONNECTIONS_PARAM: &str = "max_connections";

#[derive(Debug, Clone)]
pub struct PostgresStore {
    writer: PgPool,
    reader: PgPool,
}

impl PostgresStore {
    /// Connects to `postgres://…` (or `postgresql://…`) and applies migrations. The URL may
    /// carry `max_connections=N` among its query parameters (default 16).
    pub async fn connect(url: &str) -> Result<Self> {
        let (url, max_connections) = take_max_connections(url)?;
        let mut options = PostgresOptions::default();
        if let Some(n) = max_connections {
            options.max_connections = n;
        }
        Self::connect_with(&url, options).await
    }

    /// Like [`PostgresStore::connect`], with the pool sizes given here; the URL goes to the
    /// driver as it is.
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<Self> {
        let mut connect = PgConnectOptions::from_str(url)?;
        if !url.contains("application_name=") {
            // Names our sessions in `pg_stat_activity`.
            connect = connect.application_name("questline");
        }
        let writer =
            PgPoolOptions::new().max_connections(options.max_connections.max(1)).connect_with(connect.clone()).await?;
        // Concurrent starts are safe: the migrator holds an advisory lock while it works.
        sqlx::migrate!("./migrations/postgres").run(&writer).await?;
        let reader =
            PgPoolOptions::new().max_connections(options.read_connections.max(1)).connect_with(connect).await?;
        Ok(Self { writer, reader })
    }

    /// Closes both pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// Splits our own `max_connections` parameter off a URL.
fn take_max_connections(url: &str) -> Result<(String, Option<u32>)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None));
    };
    let mut max = None;
    let mut rest = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some((MAX_CONNECTIONS_PARAM, value)) => {
                let n = value.parse::<u32>().ok().filter(|&n| n > 0).ok_or_else(|| {
                    let why = format!("database url: {MAX_CONNECTIONS_PARAM}={value:?} is not a positive number");
                    StoreError::Database(sqlx::Error::Configuration(why.into()))
                })?;
                max = Some(n);
            }
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() { base.to_owned() } else { format!("{base}?{}", rest.join("&")) };
    Ok((url, max))
}

/// Sorts the errors a rerun can cure from the rest. Applied at the trait boundary, so every
/// statement of every method is covered, including `COMMIT`.
fn classify(err: StoreError) -> StoreError {
    match err {
        StoreError::Database(sqlx::Error::Database(db))
            if matches!(db.code().as_deref(), Some(DEADLOCK_DETECTED | SERIALIZATION_FAILURE)) =>
        {
            StoreError::Retryable(db.message().to_owned())
        }
        other => other,
    }
}

const DEADLOCK_DETECTED: &str = "40P01";
const SERIALIZATION_FAILURE: &str = "40001";

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await.map_err(|e| classify(e.into()))?;
        Ok(())
    }

    async fn insert_key(&self, tenant: &str, key: &NewApiKey) -> Result<ApiKey> {
        keys::insert(&self.writer, tenant, key).await.map_err(classify)
    }

    async fn key_by_hash(&self, secret_hash: &str) -> Result<Option<(String, ApiKey)>> {
        keys::by_hash(&self.reader, secret_hash).await.map_err(classify)
    }

    async fn list_keys(&self, tenant: &str) -> Result<Vec<ApiKey>> {
        keys::list(&self.reader, tenant).await.map_err(classify)
    }

    async fn delete_key(&self, tenant: &str, id: &str) -> Result<bool> {
        keys::delete(&self.writer, tenant, id).await.map_err(classify)
    }

    async fn touch_key(&self, tenant: &str, id: &str, at: Timestamp) -> Result<()> {
        keys::touch(&self.writer, tenant, id, at).await.map_err(classify)
    }

    async fn count_keys(&self, tenant: &str, role: Role) -> Result<u64> {
        keys::count(&self.reader, tenant, role).await.map_err(classify)
    }

    async fn insert_mission(&self, tenant: &str, mission: &Mission) -> Result<()> {
        missions::insert(&self.writer, tenant, mission).await.map_err(classify)
    }

    async fn get_mission(&self, tenant: &str, id: &str) -> Result<Option<Mission>> {
        missions::get(&self.reader, tenant, id).await.map_err(classify)
    }

    async fn list_missions(
        &self,
        tenant: &str,
        status: Option<MissionStatus>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<Mission>> {
        missions::list(&self.reader, tenant, status, after, limit).await.map_err(classify)
    }

    async fn update_mission(&self, tenant: &str, mission: &Mission, expected_updated_at: Timestamp) -> Result<bool> {
        missions::update(&self.writer, tenant, mission, expected_updated_at).await.map_err(classify)
    }

    async fn delete_draft_mission(&self, tenant: &str, id: &str) -> Result<bool> {
        missions::delete_draft(&self.writer, tenant, id).await.map_err(classify)
    }

    async fn active_missions(&self, tenant: &str) -> Result<Vec<Mission>> {
        missions::active(&self.reader, tenant).await.map_err(classify)
    }

    async fn missions_revision(&self, tenant: &str) -> Result<i64> {
        let mut conn = self.reader.acquire().await?;
        missions::revision(&mut conn, tenant).await.map_err(classify)
    }

    async fn user_progress(
        &self,
        tenant: &str,
        user_id: &str,
        mission_id: Option<&str>,
    ) -> Result<Vec<StoredProgress>> {
        reads::user_progress(&self.reader, tenant, user_id, mission_id).await.map_err(classify)
    }

    async fn user_rewards(&self, tenant: &str, user_id: &str) -> Result<Vec<Reward>> {
        reads::user_rewards(&self.reader, tenant, user_id).await.map_err(classify)
    }

    async fn user_ledger(&self, tenant: &str, user_id: &str, types: &[String]) -> Result<(Vec<Event>, Vec<Event>)> {
        reads::user_ledger(&self.reader, tenant, user_id, types).await.map_err(classify)
    }

    async fn begin(&self) -> Result<Box<dyn IngestTx>> {
        // READ COMMITTED, whatever the server's default: every statement then sees what was
        // committed before it started, so the reads that follow `lock_users` see the batch
        // that held the lock before. A snapshot taken at the first statement (REPEATABLE
        // READ) would predate that commit.
        let tx =
            self.writer.begin_with("BEGIN ISOLATION LEVEL READ COMMITTED").await.map_err(|e| classify(e.into()))?;
        Ok(Box::new(ingest::PgIngestTx { tx }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_connections_is_taken_out_of_the_url() {
        let take = |url: &str| take_max_connections(url).unwrap();
        assert_eq!(take("postgres://h/db"), ("postgres://h/db".into(), None));
        assert_eq!(take("postgres://h/db?max_connections=32"), ("postgres://h/db".into(), Some(32)));
        assert_eq!(
            take("postgres://h/db?sslmode=disable&max_connections=4&application_name=x"),
            ("postgres://h/db?sslmode=disable&application_name=x".into(), Some(4))
        );
        assert!(take_max_connections("postgres://h/db?max_connections=0").is_err());
        assert!(take_max_connections("postgres://h/db?max_connections=many").is_err());
    }
}
