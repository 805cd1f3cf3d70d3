//! SQL that is the same on both backends, written once and compiled once per backend.
//!
//! Each backend includes this folder as its own module (`#[path = "../shared/mod.rs"]`), so
//! `Db` and `Conn` below are SQLite's types in `sqlite::shared` and PostgreSQL's in
//! `postgres::shared`, and every statement's text lives in one file. Statements are written
//! with `?` placeholders and go through the backend's `sql` (PostgreSQL numbers them); built
//! queries use `QueryBuilder`, which places each backend's own.
//!
//! What a backend provides to this module, by name: `Db` (its `sqlx` database, which
//! implements [`Dialect`]: placeholders and the statements that begin transactions and lock
//! rows), `Backend` (its store type, with `reader` and `writer` pools), and the modules
//! `ledger` (`insert`, `fetch`) and `batch` (`lock_progress`, `save_progress`) with the SQL
//! that really differs (arrays against chunked lists, `INDEXED BY`, row locks).
//!
//! Codemap: `store` (the pool-level traits), `unit` (the [`crate::UnitOfWork`]), `events`
//! (the ledger over the backend's primitives), `missions` (missions, the missions revision,
//! budgets), `keys`, `webhooks`, `messages` (and each provider's monthly count), `contacts` (users' contact points and preferences), `rewards`, `reads` (user-facing reads).

mod contacts;
mod events;
mod keys;
mod messages;
mod missions;
mod reads;
mod rewards;
mod store;
mod unit;
mod wallet;
mod webhooks;

use super::{Backend, Db, batch, ledger};
use crate::sql::Dialect;
use std::borrow::Cow;

type Conn = <Db as sqlx::Database>::Connection;

const BEGIN_WRITE: &str = <Db as Dialect>::BEGIN_WRITE;
const BEGIN_SNAPSHOT: &str = <Db as Dialect>::BEGIN_SNAPSHOT;
const LOCK_ROWS: &str = <Db as Dialect>::LOCK_ROWS;

fn sql(text: &str) -> Cow<'_, str> {
    <Db as Dialect>::sql(text)
}

/// Items per `IN (…)` list in the statements built here: well under SQLite's limit of
/// 32766 bound parameters and PostgreSQL's of 65535.
const LIST_CHUNK: usize = 500;
