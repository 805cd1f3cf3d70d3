//! Persistence behind narrow traits, and one unit of work for every write.
//!
//! [`Store`] is the database as the service sees it: reads ([`KeyReads`], [`MissionReads`],
//! [`UserReads`]) that never wait for a writer, and [`Store::begin`], which opens a
//! [`UnitOfWork`]: ONE transaction through which everything that writes goes — an ingest
//! batch's ledger rows, progress, rewards and budgets, mission edits, API keys, and any other
//! crate's rows (through [`UnitOfWork::connection`]) — so that what belongs together commits
//! together (invariant: one transaction per batch). The orchestration lives above this crate,
//! written once against these traits; a backend only answers narrow questions in SQL.
//! Business decisions stay out of SQL: the engine decides how many rewards a budget allows,
//! the store locks and writes the counts ([`BudgetTx`]).
//!
//! Errors are sorted once, where a `sqlx::Error` becomes a [`StoreError`] (`error.rs`): a
//! lost race is [`StoreError::Retryable`] (see [`StoreError::is_retryable`]) on every
//! statement of every backend.
//!
//! Codemap:
//! - `api.rs`: the traits and the values they trade ([`UserProgress`], [`StoredProgress`], [`BudgetRow`],
//!   [`Page`], [`Connection`]). `error.rs`: [`StoreError`]. `keys.rs`: API keys as stored. `webhooks.rs`: webhook endpoints as stored.
//! - `rows.rs`: row decoding and encoding, one module for both backends.
//! - `shared/`: the SQL that is the same on both backends, written once with `?`
//!   placeholders and compiled into each backend (`sql.rs` numbers placeholders for
//!   PostgreSQL).
//! - [`sqlite`] (embedded default, one process) and [`postgres`] (many processes on one
//!   database): connection set-up, pools, and only the SQL that really differs.
//! - `migrations/` per backend; `tests/it`, one conformance suite run against both.

#![forbid(unsafe_code)]

mod api;
mod error;
pub mod keys;
pub mod postgres;
mod progress_codec;
mod rows;
mod sql;
pub mod sqlite;
pub mod webhooks;

use std::sync::Arc;

pub use api::{
    BatchReads, BudgetRow, BudgetTx, Connection, ContactReads, ContactTx, ForeignRead, KeyReads, KeyTx, LedgerTx,
    MessageReads, MessageTx, MissionProgress, MissionReads, MissionTx, Page, ProgressTx, RewardTx, Store,
    StoredProgress, UnitOfWork, UserProgress, UserReads, WalletReads, WalletTx, WebhookReads, WebhookTx,
};
pub use error::{Result, StoreError};
pub use keys::{ApiKey, NewApiKey, Role};
pub use webhooks::Webhook;

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
