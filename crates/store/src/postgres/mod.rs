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
//! - **Per-user order**: [`crate::ProgressTx::lock_progress`] locks each user's progress row
//!   (`FOR UPDATE`, making an empty row first for a new user), so two batches touching a
//!   user apply one after the other, and each reads the progress the other committed (READ
//!   COMMITTED takes a fresh snapshot per statement).
//! - **Budgets**: [`crate::BudgetTx::lock_budgets`] reads the mission rows `FOR UPDATE`, in
//!   id order, so concurrent units queue on a mission and each counts from what the previous
//!   one committed.
//! - **Lost races** (deadlock `40P01`, serialization failure `40001`) roll the transaction
//!   back and surface as [`StoreError::Retryable`] (sorted once, in `crate::error`), so the
//!   caller reruns the unit.
//!
//! Two pools, as on SQLite: **writer** connections for units of work and every write,
//! **reader** connections for reads. A unit holds a writer connection for its whole
//! transaction and may need a read meanwhile (reloading the missions index): with a single
//! pool, a burst of batches could hold every connection and wait forever for one more.
//!
//! Codemap: `ledger` (events: arrays and `= ANY`) and `batch` (progress rows over `UNNEST`ed
//! arrays, locked `FOR UPDATE`) hold the SQL only PostgreSQL speaks;
//! everything else is `crate::shared`'s, compiled here with `Db = Postgres`. `admin` creates
//! and drops databases, for tests and benchmarks.

pub mod admin;
mod batch;
mod ledger;
#[allow(clippy::duplicate_mod, reason = "the shared SQL, compiled once per backend")]
#[path = "../shared/mod.rs"]
mod shared;

use crate::sql::{Dialect, numbered};
use crate::{Result, StoreError};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};
use std::borrow::Cow;
use std::str::FromStr;

// What `shared` compiles against.
type Db = Postgres;
type Backend = PostgresStore;

impl Dialect for Postgres {
    /// READ COMMITTED, whatever the server's default: every statement then sees what was
    /// committed before it started, so the reads that follow `lock_progress` see the unit that
    /// held the lock before. A snapshot taken at the first statement (REPEATABLE READ) would
    /// predate that commit.
    const BEGIN_WRITE: &'static str = "BEGIN ISOLATION LEVEL READ COMMITTED";
    const BEGIN_SNAPSHOT: &'static str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";
    /// Budget reads lock the mission rows until commit, so two units cannot both count the
    /// same last reward; rows are locked in the order they are returned (by id).
    const LOCK_ROWS: &'static str = " FOR UPDATE";

    fn sql(text: &str) -> Cow<'_, str> {
        Cow::Owned(numbered(text))
    }
}

/// The store's migrations. Other crates keep their own tables' migrations
/// ([`crate::Store::apply_migrations`]) in the same `_sqlx_migrations` table, under versions
/// of their own, so the store ignores versions it does not know.
fn migrator() -> sqlx::migrate::Migrator {
    let mut migrator = sqlx::migrate!("./migrations/postgres");
    migrator.set_ignore_missing(true);
    migrator
}

/// Of another crate's two migration sets, the one this backend runs.
fn migrator_for<'m>(
    _: &'m sqlx::migrate::Migrator,
    postgres: &'m sqlx::migrate::Migrator,
) -> &'m sqlx::migrate::Migrator {
    postgres
}

/// Pool sizes. Each running batch holds one writer connection until it commits, so
/// `max_connections` bounds how many batches one process applies at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostgresOptions {
    /// Writer connections (units of work, `touch_key`).
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
        if !url.contains("plan_cache_mode") {
            // A batch's statements take arrays whose best plan depends on their contents and
            // on tables that grow fast. A cached generic plan made while a table was nearly
            // empty (before autovacuum's first ANALYZE) walked a tenant's whole ledger for
            // each `id = ANY($2)` probe: 127 ms instead of 4 (docs/BENCHMARKS.md, "plan
            // cache"). Planning each execution costs well under a millisecond.
            connect = connect.options([("plan_cache_mode", "force_custom_plan")]);
        }
        let writer =
            PgPoolOptions::new().max_connections(options.max_connections.max(1)).connect_with(connect.clone()).await?;
        // Concurrent starts are safe: the migrator holds an advisory lock while it works.
        migrator().run(&writer).await?;
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
