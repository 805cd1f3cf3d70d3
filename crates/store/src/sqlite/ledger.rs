//! The event ledger: idempotent inserts and the lookups a batch (or a recomputation) needs.
//!
//! Functions take a bare connection so that the same SQL serves the ingest transaction on
//! the writer and read-only snapshots on the reader pool.
//!
//! Batches are up to 1000 events, so statements are multi-row and chunked: one round trip to
//! SQLite's worker thread per chunk rather than per event, and well under SQLite's limit of
//! 32766 bound parameters per statement.

use super::rows::{EVENT_COLUMNS, EventRow, attributes_json, events_from};
use crate::Result;
use jiff::Timestamp;
use questline_core::event::Event;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use std::collections::HashSet;

/// Rows per multi-row INSERT (8 parameters each).
const INSERT_CHUNK: usize = 500;
/// Ids per `IN (...)` list.
pub(super) const ID_CHUNK: usize = 500;

/// See [`crate::IngestTx::insert_events`].
pub(super) async fn insert_events(
    conn: &mut SqliteConnection,
    tenant: &str,
    events: &[Event],
    received_at: Timestamp,
) -> Result<Vec<bool>> {
    // Repeats within the slice are settled here, so that the database only ever sees each
    // id once and "new" is simply "the INSERT returned it".
    let mut seen = HashSet::with_capacity(events.len());
    let firsts: Vec<&Event> = events.iter().filter(|e| seen.insert(e.id.as_str())).collect();

    let received_at = received_at.as_microsecond();
    let mut inserted: HashSet<String> = HashSet::with_capacity(firsts.len());
    for chunk in firsts.chunks(INSERT_CHUNK) {
        let attributes = chunk.iter().map(|e| attributes_json(e)).collect::<Result<Vec<_>>>()?;
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO events (tenant_id, id, type, user_id, occurred_at, attributes, reverses, received_at) ",
        );
        qb.push_values(chunk.iter().zip(attributes), |mut row, (e, attributes)| {
            row.push_bind(tenant)
                .push_bind(e.id.as_str())
                .push_bind(e.event_type.as_str())
                .push_bind(e.user_id.as_str())
                .push_bind(e.occurred_at.as_microsecond())
                .push_bind(attributes)
                .push_bind(e.reverses.as_deref())
                .push_bind(received_at);
        });
        // DO NOTHING rows are not RETURNed: the ids that come back are exactly the new ones.
        qb.push(" ON CONFLICT (tenant_id, id) DO NOTHING RETURNING id");
        let ids: Vec<String> = qb.build_query_scalar().fetch_all(&mut *conn).await?;
        inserted.extend(ids);
    }

    // `remove` marks the first occurrence new and makes any later repeat a duplicate.
    Ok(events.iter().map(|e| inserted.remove(&e.id)).collect())
}

/// See [`crate::IngestTx::events_by_id`]. Ordered by `(occurred_at, id)`.
pub(super) async fn events_by_id(conn: &mut SqliteConnection, tenant: &str, ids: &[String]) -> Result<Vec<Event>> {
    let mut events = Vec::new();
    for chunk in ids.chunks(ID_CHUNK) {
        events.extend(fetch(conn, by_id_query(tenant, chunk)).await?);
    }
    sort(&mut events);
    Ok(events)
}

/// See [`crate::IngestTx::reversals_of`]. Ordered by `(occurred_at, id)`.
pub(super) async fn reversals_of(conn: &mut SqliteConnection, tenant: &str, ids: &[String]) -> Result<Vec<Event>> {
    let mut events = Vec::new();
    for chunk in ids.chunks(ID_CHUNK) {
        events.extend(fetch(conn, reversals_query(tenant, chunk)).await?);
    }
    sort(&mut events);
    Ok(events)
}

/// See [`crate::IngestTx::user_originals`]. Ordered by `(occurred_at, id)`.
pub(super) async fn user_originals(
    conn: &mut SqliteConnection,
    tenant: &str,
    user_id: &str,
    types: &[String],
) -> Result<Vec<Event>> {
    if types.is_empty() {
        return Ok(Vec::new());
    }
    fetch(conn, originals_query(tenant, user_id, types)).await
}

/// Every reversal of the originals [`user_originals`] returns, in one statement: a heavy
/// user may have far more originals than fit in an `IN` list. Ordered by `(occurred_at, id)`.
pub(super) async fn reversals_of_user_originals(
    conn: &mut SqliteConnection,
    tenant: &str,
    user_id: &str,
    types: &[String],
) -> Result<Vec<Event>> {
    if types.is_empty() {
        return Ok(Vec::new());
    }
    fetch(conn, user_reversals_query(tenant, user_id, types)).await
}

// The queries, apart from their execution so that `plans` can check how SQLite runs them.
//
// `INDEXED BY` where a partial index must be used: without `ANALYZE` statistics (a fresh
// file has none) SQLite prefers walking the whole tenant's primary key over the partial
// index as soon as `type IN (...)` has two values. That would be a full ledger scan per
// recomputation.

pub(super) fn by_id_query<'a>(tenant: &'a str, ids: &'a [String]) -> QueryBuilder<'a, Sqlite> {
    let mut qb = QueryBuilder::new(format!("SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = "));
    qb.push_bind(tenant).push(" AND id IN (");
    push_list(&mut qb, ids);
    qb.push(")");
    qb
}

pub(super) fn reversals_query<'a>(tenant: &'a str, ids: &'a [String]) -> QueryBuilder<'a, Sqlite> {
    let mut qb = QueryBuilder::new(format!(
        "SELECT {EVENT_COLUMNS} FROM events INDEXED BY events_by_reversed WHERE tenant_id = "
    ));
    // `IS NOT NULL` spelled out: the partial index is only usable if the query implies it.
    qb.push_bind(tenant).push(" AND reverses IS NOT NULL AND reverses IN (");
    push_list(&mut qb, ids);
    qb.push(")");
    qb
}

pub(super) fn originals_query<'a>(tenant: &'a str, user_id: &'a str, types: &'a [String]) -> QueryBuilder<'a, Sqlite> {
    let mut qb =
        QueryBuilder::new(format!("SELECT {EVENT_COLUMNS} FROM events INDEXED BY events_by_user WHERE tenant_id = "));
    qb.push_bind(tenant).push(" AND user_id = ").push_bind(user_id);
    // A mission has a handful of steps, so the type list is short: no chunking.
    qb.push(" AND reverses IS NULL AND type IN (");
    push_list(&mut qb, types);
    qb.push(") ORDER BY occurred_at, id");
    qb
}

pub(super) fn user_reversals_query<'a>(
    tenant: &'a str,
    user_id: &'a str,
    types: &'a [String],
) -> QueryBuilder<'a, Sqlite> {
    // CROSS JOIN fixes the order: the user's originals first, then each one's reversals.
    let mut qb = QueryBuilder::new(
        "SELECT r.id, r.type AS event_type, r.user_id, r.occurred_at, r.attributes, r.reverses, r.received_at \
         FROM events AS o INDEXED BY events_by_user \
         CROSS JOIN events AS r INDEXED BY events_by_reversed \
         ON r.tenant_id = o.tenant_id AND r.reverses = o.id AND r.reverses IS NOT NULL \
         WHERE o.tenant_id = ",
    );
    qb.push_bind(tenant).push(" AND o.user_id = ").push_bind(user_id);
    qb.push(" AND o.reverses IS NULL AND o.type IN (");
    push_list(&mut qb, types);
    qb.push(") ORDER BY r.occurred_at, r.id");
    qb
}

async fn fetch(conn: &mut SqliteConnection, mut qb: QueryBuilder<'_, Sqlite>) -> Result<Vec<Event>> {
    events_from(qb.build_query_as::<EventRow>().fetch_all(conn).await?)
}

fn push_list<'a>(qb: &mut QueryBuilder<'a, Sqlite>, items: &'a [String]) {
    let mut list = qb.separated(", ");
    for item in items {
        list.push_bind(item.as_str());
    }
}

/// Chunked queries come back in chunk order; callers get the fold order.
fn sort(events: &mut [Event]) {
    events.sort_by(|a, b| (a.occurred_at, &a.id).cmp(&(b.occurred_at, &b.id)));
}
