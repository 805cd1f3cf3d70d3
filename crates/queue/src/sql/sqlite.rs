//! The SQL lane on SQLite: every write already runs on the store's single writer
//! connection (units of work are `BEGIN IMMEDIATE`), so claims never overlap and nothing
//! needs a row lock. Wakeups are in-process only.

#[allow(clippy::duplicate_mod, reason = "the shared SQL, compiled once per backend")]
#[path = "shared.rs"]
mod shared;

pub(super) use shared::*;

type Db = sqlx::Sqlite;

/// No row locks: the single writer excludes every other writer.
const SKIP_LOCKED: &str = "";
const FOR_UPDATE: &str = "";

/// Nothing to do before a claim: the single writer already serializes them.
pub(super) async fn before_claim(_: &mut Conn) -> crate::Result<()> {
    Ok(())
}

/// Nothing to send: SQLite has no `NOTIFY`; the enqueuing process wakes its own workers.
pub(super) async fn notify(_: &mut Conn) -> crate::Result<()> {
    Ok(())
}
