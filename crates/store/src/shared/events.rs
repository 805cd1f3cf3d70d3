//! The ledger as the traits see it, over the backend's two primitives (`ledger::insert` and
//! `ledger::fetch`): what is the same whatever the SQL — repeats within a slice, empty
//! lists, decoding, and the fold order `(occurred_at, id)` of every result — is done here.

use super::{Conn, ledger};
use crate::Result;
use crate::rows::events_from;
use crate::sql::EventLookup;
use jiff::Timestamp;
use questline_core::event::Event;
use questline_core::id::TenantId;
use std::collections::HashSet;

/// See [`crate::LedgerTx::insert_events`].
pub(super) async fn insert(
    conn: &mut Conn,
    tenant: &TenantId,
    events: &[Event],
    received_at: Timestamp,
) -> Result<Vec<bool>> {
    // Repeats within the slice are settled here, so that the database only ever sees each
    // id once and "new" is simply "the INSERT returned it".
    let mut seen = HashSet::with_capacity(events.len());
    let firsts: Vec<&Event> = events.iter().filter(|e| seen.insert(e.id())).collect();
    if firsts.is_empty() {
        return Ok(Vec::new());
    }
    let mut inserted: HashSet<String> =
        ledger::insert(conn, tenant.as_str(), &firsts, received_at.as_microsecond()).await?.into_iter().collect();
    // `remove` marks the first occurrence new and makes any later repeat a duplicate.
    Ok(events.iter().map(|e| inserted.remove(e.id())).collect())
}

/// See [`crate::BatchReads::known_ids`].
pub(super) async fn known(conn: &mut Conn, tenant: &TenantId, ids: &[String]) -> Result<Vec<String>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    ledger::known(conn, tenant.as_str(), ids).await
}

/// The events a lookup names, in fold order.
pub(super) async fn find(conn: &mut Conn, tenant: &TenantId, lookup: EventLookup<'_>) -> Result<Vec<Event>> {
    let nothing = match lookup {
        EventLookup::ById(ids) | EventLookup::ReversalsOf(ids) => ids.is_empty(),
        EventLookup::UserOriginals { types, .. } | EventLookup::UserReversals { types, .. } => types.is_empty(),
    };
    if nothing {
        return Ok(Vec::new());
    }
    let mut events = events_from(ledger::fetch(conn, tenant.as_str(), lookup).await?)?;
    // Ids compare bytewise here as in both schemas (`COLLATE "C"` on PostgreSQL).
    events.sort_by(|a, b| (a.occurred_at(), a.id()).cmp(&(b.occurred_at(), b.id())));
    Ok(events)
}
