//! A fresh queue of one lane for one test: in memory, on a SQLite file in a temporary
//! directory, on a PostgreSQL database created for the test (dropped after it; see
//! `questline_testkit::postgres` for the `QUESTLINE_SKIP_POSTGRES` rule), or on Redis under
//! a key namespace of the test's own (its keys deleted after it; `questline_testkit::redis`,
//! `QUESTLINE_SKIP_REDIS`).

use questline_queue::{Backend, Jitter, MemoryQueue, Policies, QueueConfig, RedisQueue, RetryPolicy, SqlQueue};
use questline_store::Store;
use questline_store::postgres::PostgresStore;
use questline_store::sqlite::SqliteStore;
use questline_testkit::postgres::{PostgresDatabase, fresh_database};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaneKind {
    Memory,
    Sqlite,
    Postgres,
    Redis,
}

/// Backoff in tests: no jitter, so that every `run_at` is exact. 10 s, 20 s, 40 s, capped at
/// 40 s; 3 attempts, but 5 for the kind `patient`.
pub const INITIAL: Duration = Duration::from_secs(10);
pub const CAP: Duration = Duration::from_secs(40);
pub const MAX_ATTEMPTS: u32 = 3;
pub const PATIENT_ATTEMPTS: u32 = 5;
/// Lapsed leases before a job is quarantined.
pub const MAX_CRASHES: u32 = 2;

pub fn config() -> QueueConfig {
    let policy = RetryPolicy { max_attempts: MAX_ATTEMPTS, initial: INITIAL, cap: CAP, jitter: Jitter::None };
    QueueConfig {
        policies: Policies::new(policy).with("patient", RetryPolicy { max_attempts: PATIENT_ATTEMPTS, ..policy }),
        max_crashes: MAX_CRASHES,
    }
}

pub struct Lane {
    pub kind: LaneKind,
    pub queue: Arc<dyn Backend>,
    /// The SQL lane itself and its store (SQL lanes only).
    pub sql: Option<(Arc<SqlQueue>, Arc<dyn Store>)>,
    db: Db,
}

enum Db {
    Memory,
    Sqlite(TempDir),
    Postgres(PostgresDatabase),
    Redis(RedisNamespace),
}

impl Lane {
    /// `None` only for a PostgreSQL test skipped under `QUESTLINE_SKIP_POSTGRES=1`.
    pub async fn fresh(kind: LaneKind, test: &str) -> Option<Self> {
        let db = match kind {
            LaneKind::Memory => Db::Memory,
            LaneKind::Sqlite => Db::Sqlite(tempfile::tempdir().expect("temp dir")),
            LaneKind::Postgres => {
                if questline_testkit::postgres::skipped(test) {
                    return None;
                }
                Db::Postgres(fresh_database().await)
            }
            LaneKind::Redis => {
                if questline_testkit::redis::skipped(test) {
                    return None;
                }
                Db::Redis(RedisNamespace(questline_testkit::redis::fresh_namespace()))
            }
        };
        let mut lane = Self { kind, queue: Arc::new(MemoryQueue::new(config())), sql: None, db };
        if let Db::Redis(namespace) = &lane.db {
            lane.queue = Arc::new(open_redis(&namespace.0).await);
        } else if kind != LaneKind::Memory {
            let (sql, store) = lane.open_sql().await;
            lane.queue = sql.clone();
            lane.sql = Some((sql, store));
        }
        Some(lane)
    }

    pub fn url(&self) -> Option<String> {
        match &self.db {
            Db::Memory | Db::Redis(_) => None,
            Db::Sqlite(dir) => Some(format!("sqlite://{}", dir.path().join("questline.db").display())),
            Db::Postgres(db) => Some(db.url().to_owned()),
        }
    }

    /// A new store and SQL lane on this lane's database: what another process would open.
    async fn open_sql(&self) -> (Arc<SqlQueue>, Arc<dyn Store>) {
        let url = self.url().expect("a SQL lane");
        let store: Arc<dyn Store> = match self.kind {
            LaneKind::Sqlite => Arc::new(SqliteStore::connect(&url).await.expect("open sqlite store")),
            _ => Arc::new(PostgresStore::connect(&url).await.expect("open postgres store")),
        };
        let sql = SqlQueue::open(store.clone(), config()).await.expect("open queue").listening(&url);
        (Arc::new(sql), store)
    }

    /// The queue as another process sees it: on SQL lanes a store and queue of its own on
    /// the same database (its own pools); in memory, the same queue (there is no other
    /// process).
    pub async fn other_process(&self) -> Arc<dyn Backend> {
        match &self.db {
            Db::Memory => self.queue.clone(),
            Db::Redis(namespace) => Arc::new(open_redis(&namespace.0).await),
            _ => self.open_sql().await.0,
        }
    }
}

/// A Redis queue on the test server under `namespace`; fails the test if Redis is not there.
pub async fn open_redis(namespace: &str) -> RedisQueue {
    let url = questline_testkit::redis::url();
    match RedisQueue::open(&url, namespace, config()).await {
        Ok(queue) => queue,
        Err(e) => questline_testkit::redis::unavailable(&e.to_string()),
    }
}

pub use questline_testkit::redis::Namespace as RedisNamespace;
