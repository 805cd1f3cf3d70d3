//! Persistence behind one interface.
//!
//! [`Store`] is what the service needs, in the service's words; [`IngestTx`] is the unit of
//! work that applies one batch of events in ONE transaction (ledger rows, progress, rewards),
//! so that an event's ledger row and its effects commit together (invariant 1). The
//! orchestration of a batch lives above this crate and is written once against these traits;
//! a backend only answers narrow questions in SQL.
//!
//! Backends: [`sqlite::SqliteStore`] (embedded default, one process) and
//! [`postgres::PostgresStore`] (many processes on one database). One conformance suite
//! (`tests/it`) runs against both.

#![forbid(unsafe_code)]

pub mod keys;
pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;
use jiff::Timestamp;
use questline_core::event::Event;
use questline_core::mission::{Mission, MissionStatus};
use questline_core::progress::ProgressState;
use questline_core::reward::Reward;
use std::sync::Arc;

pub use keys::{ApiKey, NewApiKey, Role};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A row with this key exists already (e.g. a mission id that is taken).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database refused or failed; not the caller's fault.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value did not decode: a bug or a hand-edited database.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The transaction lost a race with another one (deadlock, serialization failure) and
    /// was rolled back: running it again can succeed.
    #[error("transaction conflict, retry: {0}")]
    Retryable(String),
    #[error("unsupported database url {0:?}: expected sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A user's stored progress in one mission.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredProgress {
    pub mission_id: String,
    pub user_id: String,
    pub state: ProgressState,
    pub updated_at: Timestamp,
}

/// One page of a list, ordered by id.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The id to pass as `after` for the next page, if there may be one.
    pub next_after: Option<String>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Whether the database answers.
    async fn ping(&self) -> Result<()>;

    // --- API keys ---
    async fn insert_key(&self, tenant: &str, key: &NewApiKey) -> Result<ApiKey>;
    /// The key whose secret hashes to `secret_hash`, with its tenant.
    async fn key_by_hash(&self, secret_hash: &str) -> Result<Option<(String, ApiKey)>>;
    async fn list_keys(&self, tenant: &str) -> Result<Vec<ApiKey>>;
    /// Returns whether a key was deleted.
    async fn delete_key(&self, tenant: &str, id: &str) -> Result<bool>;
    async fn touch_key(&self, tenant: &str, id: &str, at: Timestamp) -> Result<()>;
    async fn count_keys(&self, tenant: &str, role: Role) -> Result<u64>;

    // --- missions (every write bumps the tenant's missions revision) ---
    /// Fails with `Conflict` if the id is taken.
    async fn insert_mission(&self, tenant: &str, mission: &Mission) -> Result<()>;
    async fn get_mission(&self, tenant: &str, id: &str) -> Result<Option<Mission>>;
    async fn list_missions(
        &self,
        tenant: &str,
        status: Option<MissionStatus>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<Mission>>;
    /// Replaces a mission if it is unchanged since `expected_updated_at` (optimistic
    /// concurrency). Returns false if it changed or vanished meanwhile. `rewards_granted` is
    /// never written here: only budget takes move it.
    async fn update_mission(&self, tenant: &str, mission: &Mission, expected_updated_at: Timestamp) -> Result<bool>;
    /// Deletes a mission only while it is a draft. Returns whether one was deleted.
    async fn delete_draft_mission(&self, tenant: &str, id: &str) -> Result<bool>;
    async fn active_missions(&self, tenant: &str) -> Result<Vec<Mission>>;
    async fn missions_revision(&self, tenant: &str) -> Result<i64>;

    // --- reads ---
    /// A user's progress rows, all of them or for one mission.
    async fn user_progress(&self, tenant: &str, user_id: &str, mission_id: Option<&str>)
    -> Result<Vec<StoredProgress>>;
    /// A user's rewards, newest first.
    async fn user_rewards(&self, tenant: &str, user_id: &str) -> Result<Vec<Reward>>;
    /// Every original event of a user of the given types with every reversal of them (the
    /// input to a recomputation), outside any transaction.
    async fn user_ledger(&self, tenant: &str, user_id: &str, types: &[String]) -> Result<(Vec<Event>, Vec<Event>)>;

    /// Starts the transaction that applies one batch.
    async fn begin(&self) -> Result<Box<dyn IngestTx>>;
}

/// One batch's transaction. Nothing is visible to others until [`IngestTx::commit`]; dropping
/// it rolls back.
#[async_trait]
pub trait IngestTx: Send {
    /// Records events in the ledger. Returns, for each event, whether it was new; an id seen
    /// before (in an earlier batch, or earlier in this one) is a duplicate and is not written.
    async fn insert_events(&mut self, tenant: &str, events: &[Event], received_at: Timestamp) -> Result<Vec<bool>>;
    /// The stored events with these ids.
    async fn events_by_id(&mut self, tenant: &str, ids: &[String]) -> Result<Vec<Event>>;
    /// Every stored reversal of any of these ids.
    async fn reversals_of(&mut self, tenant: &str, ids: &[String]) -> Result<Vec<Event>>;
    /// Every stored original (not reversal) event of a user with one of these types.
    async fn user_originals(&mut self, tenant: &str, user_id: &str, types: &[String]) -> Result<Vec<Event>>;
    /// Stored progress for these (mission, user) pairs; pairs without a row are left out.
    async fn load_progress(&mut self, tenant: &str, keys: &[(String, String)]) -> Result<Vec<StoredProgress>>;
    async fn save_progress(&mut self, tenant: &str, rows: &[StoredProgress]) -> Result<()>;
    /// A user's live (not revoked) rewards for a mission, by completion.
    async fn live_rewards(&mut self, tenant: &str, mission_id: &str, user_id: &str) -> Result<Vec<Reward>>;
    /// Takes one reward from the mission's budget, atomically. Returns false if the budget
    /// is spent; ends the mission (status `ended`) when this take spends the last one.
    async fn take_budget(&mut self, tenant: &str, mission_id: &str, at: Timestamp) -> Result<bool>;
    async fn insert_reward(&mut self, tenant: &str, reward: &Reward) -> Result<()>;
    /// Marks a pending reward revoked.
    async fn revoke_reward(&mut self, tenant: &str, reward_id: &str, at: Timestamp) -> Result<()>;
    async fn missions_revision(&mut self, tenant: &str) -> Result<i64>;
    /// Serializes batches per user across processes: held until commit. `users` is sorted
    /// and unique, so that two batches lock in the same order. Call it before anything else
    /// that writes. (SQLite has one writer, so there it does nothing.)
    async fn lock_users(&mut self, tenant: &str, users: &[String]) -> Result<()>;
    async fn commit(self: Box<Self>) -> Result<()>;
}

/// Opens the store a database URL names, applying migrations.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PostgresStore::connect(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
}
