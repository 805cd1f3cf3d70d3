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

/// A claim: the single writer already serializes claims, so every one may take jobs with a
/// concurrency key.
pub(super) async fn claim_due(
    conn: &mut Conn,
    request: &crate::ClaimRequest,
    now: jiff::Timestamp,
) -> crate::Result<Vec<crate::Job>> {
    promote(&mut *conn, now).await?;
    claim(conn, request, now, true).await
}

/// Nothing to refresh: SQLite's planner reads the partial indexes' order without statistics
/// (and the claim's pick is measured fast without them).
pub(super) async fn refresh_statistics(_: &mut Conn) -> crate::Result<bool> {
    Ok(false)
}

/// Nothing to send: SQLite has no `NOTIFY`; the enqueuing process wakes its own workers.
pub(super) async fn notify(_: &mut Conn) -> crate::Result<()> {
    Ok(())
}
