//! SQL text written once for both backends.
//!
//! Statements shared by the backends are written with SQLite's `?` placeholders;
//! [`numbered`] turns them into PostgreSQL's `$1 … $n`. That keeps a statement's text in one
//! place, so the two backends cannot drift apart in what they ask the database.

use crate::rows::PROGRESS_COLUMNS;
use questline_core::id::{MissionId, UserId};
use std::borrow::Cow;
use std::collections::HashSet;
use std::hash::Hash;

/// How a backend speaks where the shared statements leave it a choice. Implemented for
/// `sqlx::Sqlite` and `sqlx::Postgres` in the backends' `mod.rs`, beside the reasons.
pub(crate) trait Dialect {
    /// Starts a unit of work.
    const BEGIN_WRITE: &'static str;
    /// Starts a read-only transaction whose reads share one snapshot.
    const BEGIN_SNAPSHOT: &'static str;
    /// Appended to a budget read to lock the rows it returns until commit.
    const LOCK_ROWS: &'static str;
    /// A shared statement, written with `?` placeholders, as this backend takes it.
    fn sql(text: &str) -> Cow<'_, str>;
}

/// `sql` with every `?` outside quotes replaced by `$1`, `$2`, … in order.
pub(crate) fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    let mut quote: Option<char> = None;
    for c in sql.chars() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '?') => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

/// The first occurrence of each item, in order: a repeated key would otherwise come back
/// twice from a join against the keys.
pub(crate) fn unique<T: Eq + Hash>(items: &[T]) -> Vec<&T> {
    let mut seen = HashSet::with_capacity(items.len());
    items.iter().filter(|item| seen.insert(*item)).collect()
}

/// A lookup in the ledger, answered by each backend's `ledger::fetch` in its own SQL.
#[derive(Debug, Clone, Copy)]
pub(crate) enum EventLookup<'a> {
    /// The events with these ids.
    ById(&'a [String]),
    /// Every reversal of any of these ids.
    ReversalsOf(&'a [String]),
    /// A user's originals (not reversals) of these types.
    UserOriginals { user: &'a UserId, types: &'a [String] },
    /// Every reversal of the originals `UserOriginals` names.
    UserReversals { user: &'a UserId, types: &'a [String] },
}

/// A table looked up by (mission, user) pairs. The table is aliased `p`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PairTable {
    /// `a, b, c`: the columns to select, unqualified.
    pub(crate) columns: &'static str,
    pub(crate) table: &'static str,
}

/// Rows of a [`PairTable`] for some (mission, user) pairs of a tenant: each backend's
/// `batch::fetch_pairs` joins the table against the pairs in its own way.
pub(crate) struct PairQuery<'a> {
    pub(crate) table: PairTable,
    pub(crate) tenant: &'a str,
    /// Unique: a repeated pair would come back twice from the join.
    pub(crate) keys: Vec<&'a (MissionId, UserId)>,
}

impl<'a> PairQuery<'a> {
    pub(crate) fn new(table: PairTable, tenant: &'a str, keys: &'a [(MissionId, UserId)]) -> Self {
        Self { table, tenant, keys: unique(keys) }
    }

    /// The columns qualified by the table's alias, for a SELECT list.
    pub(crate) fn select_list(&self) -> String {
        self.table.columns.split(", ").map(|c| format!("p.{c}")).collect::<Vec<_>>().join(", ")
    }
}

/// A row type `fetch_pairs` can decode on the database `DB`.
pub(crate) trait RowOf<DB: sqlx::Database>: for<'r> sqlx::FromRow<'r, DB::Row> + Send + Unpin {}

impl<DB: sqlx::Database, R> RowOf<DB> for R where R: for<'r> sqlx::FromRow<'r, DB::Row> + Send + Unpin {}

/// Progress rows by (mission, user): one primary-key probe per pair.
pub(crate) const PROGRESS: PairTable = PairTable { columns: PROGRESS_COLUMNS, table: "progress" };

#[cfg(test)]
mod tests {
    use super::numbered;

    #[test]
    fn placeholders_are_numbered_in_order_outside_quotes() {
        assert_eq!(numbered("SELECT 1"), "SELECT 1");
        assert_eq!(
            numbered("UPDATE t SET a = ?, b = '?' WHERE \"c?\" = ? AND d = ?"),
            "UPDATE t SET a = $1, b = '?' WHERE \"c?\" = $2 AND d = $3"
        );
        // A doubled quote inside a literal closes and reopens it: still inside.
        assert_eq!(numbered("SELECT 'it''s ?' , ?"), "SELECT 'it''s ?' , $1");
    }
}
