//! SQL text written once for both backends.
//!
//! Statements shared by the backends are written with SQLite's `?` placeholders;
//! [`numbered`] turns them into PostgreSQL's `$1 … $n`. That keeps a statement's text in one
//! place, so the two backends cannot drift apart in what they ask the database.

use questline_core::id::UserId;
use std::borrow::Cow;

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
