//! The event ledger: idempotent inserts and the lookups a batch (or a recomputation) needs.
//!
//! Lists of ids travel as one array parameter (`= ANY($2)`, `UNNEST`), so no statement is
//! chunked and each lookup is one round trip. Every result comes back in fold order,
//! `(occurred_at, id)`, with ids compared bytewise (`COLLATE "C"` in the schema) exactly as
//! Rust and SQLite compare them.

use super::rows::{EVENT_COLUMNS, EventRow, attributes_json, events_from};
use crate::Result;
use jiff::Timestamp;
use questline_core::event::Event;
use sqlx::PgConnection;
use std::collections::HashSet;

/// See [`crate::IngestTx::insert_events`].
pub(super) async fn insert_events(
    conn: &mut PgConnection,
    tenant: &str,
    events: &[Event],
    received_at: Timestamp,
) -> Result<Vec<bool>> {
    // Repeats within the slice are settled here, so that the database only ever sees each
    // id once and "new" is simply "the INSERT returned it".
    let mut seen = HashSet::with_capacity(events.len());
    let mut firsts: Vec<&Event> = events.iter().filter(|e| seen.insert(e.id.as_str())).collect();
    if firsts.is_empty() {
        return Ok(Vec::new());
    }
    // Inserting in id order gives every transaction the same order of index-entry waits,
    // so two batches sharing ids queue instead of deadlocking.
    firsts.sort_unstable_by(|a, b| a.id.cmp(&b.id));

    let n = firsts.len();
    let (mut ids, mut types, mut users) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut occurred, mut attributes, mut reverses) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for e in firsts {
        ids.push(e.id.as_str());
        types.push(e.event_type.as_str());
        users.push(e.user_id.as_str());
        occurred.push(e.occurred_at.as_microsecond());
        attributes.push(attributes_json(e)?);
        reverses.push(e.reverses.as_deref());
    }
    // DO NOTHING rows are not RETURNed: the ids that come back are exactly the new ones. An
    // id a concurrent transaction inserted and has not committed yet makes this wait for it,
    // then count as new only if that one rolled back.
    let new: Vec<String> = sqlx::query_scalar(
        "INSERT INTO events (tenant_id, id, type, user_id, occurred_at, attributes, reverses, received_at) \
         SELECT $1, e.id, e.type, e.user_id, e.occurred_at, e.attributes, e.reverses, $8 \
         FROM UNNEST($2::text[], $3::text[], $4::text[], $5::int8[], $6::text[], $7::text[]) \
             AS e (id, type, user_id, occurred_at, attributes, reverses) \
         ON CONFLICT (tenant_id, id) DO NOTHING RETURNING id",
    )
    .bind(tenant)
    .bind(&ids)
    .bind(&types)
    .bind(&users)
    .bind(&occurred)
    .bind(&attributes)
    .bind(&reverses)
    .bind(received_at.as_microsecond())
    .fetch_all(conn)
    .await?;

    // `remove` marks the first occurrence new and makes any later repeat a duplicate.
    let mut inserted: HashSet<String> = new.into_iter().collect();
    Ok(events.iter().map(|e| inserted.remove(&e.id)).collect())
}

/// See [`crate::IngestTx::events_by_id`].
pub(super) async fn events_by_id(conn: &mut PgConnection, tenant: &str, ids: &[String]) -> Result<Vec<Event>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<EventRow> = sqlx::query_as(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = $1 AND id = ANY($2) ORDER BY occurred_at, id"
    ))
    .bind(tenant)
    .bind(ids)
    .fetch_all(conn)
    .await?;
    events_from(rows)
}

/// See [`crate::IngestTx::reversals_of`].
pub(super) async fn reversals_of(conn: &mut PgConnection, tenant: &str, ids: &[String]) -> Result<Vec<Event>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // `IS NOT NULL` spelled out: the partial index is only usable if the query implies it.
    let rows: Vec<EventRow> = sqlx::query_as(&format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE tenant_id = $1 AND reverses IS NOT NULL AND reverses = ANY($2) ORDER BY occurred_at, id"
    ))
    .bind(tenant)
    .bind(ids)
    .fetch_all(conn)
    .await?;
    events_from(rows)
}

/// See [`crate::IngestTx::user_originals`].
pub(super) async fn user_originals(
    conn: &mut PgConnection,
    tenant: &str,
    user_id: &str,
    types: &[String],
) -> Result<Vec<Event>> {
    if types.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<EventRow> = sqlx::query_as(&format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE tenant_id = $1 AND user_id = $2 AND reverses IS NULL AND type = ANY($3) ORDER BY occurred_at, id"
    ))
    .bind(tenant)
    .bind(user_id)
    .bind(types)
    .fetch_all(conn)
    .await?;
    events_from(rows)
}

/// Every reversal of the originals [`user_originals`] returns, in one statement: a heavy
/// user may have many thousands of originals.
pub(super) async fn reversals_of_user_originals(
    conn: &mut PgConnection,
    tenant: &str,
    user_id: &str,
    types: &[String],
) -> Result<Vec<Event>> {
    if types.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<EventRow> = sqlx::query_as(
        "SELECT r.id, r.type AS event_type, r.user_id, r.occurred_at, r.attributes, r.reverses, r.received_at \
         FROM events AS o \
         JOIN events AS r ON r.tenant_id = o.tenant_id AND r.reverses = o.id AND r.reverses IS NOT NULL \
         WHERE o.tenant_id = $1 AND o.user_id = $2 AND o.reverses IS NULL AND o.type = ANY($3) \
         ORDER BY r.occurred_at, r.id",
    )
    .bind(tenant)
    .bind(user_id)
    .bind(types)
    .fetch_all(conn)
    .await?;
    events_from(rows)
}
