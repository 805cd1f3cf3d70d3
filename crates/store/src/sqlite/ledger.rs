//! The event ledger: idempotent inserts and the lookups a batch (or a recomputation) needs.
//!
//! Functions take a bare connection so that the same SQL serves a unit of work on the
//! writer and read-only snapshots on the reader pool. What is the same on both backends
//! (repeats within a slice, empty lists, the fold order of results) is settled in
//! `shared::events`.
//!
//! Batches are up to 1000 events, so statements are multi-row and chunked: one round trip to
//! SQLite's worker thread per chunk rather than per event, and well under SQLite's limit of
//! 32766 bound parameters per statement.

use crate::Result;
use crate::rows::{EVENT_COLUMNS, EventRow, attributes_json};
use crate::sql::EventLookup;
use questline_core::event::Event;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

/// Rows per multi-row INSERT (8 parameters each).
const INSERT_CHUNK: usize = 500;
/// Ids per `IN (...)` list.
const ID_CHUNK: usize = 500;

/// The events a lookup names, in no particular order. Id lists are chunked.
pub(super) async fn fetch(conn: &mut SqliteConnection, tenant: &str, lookup: EventLookup<'_>) -> Result<Vec<EventRow>> {
    let mut rows = Vec::new();
    match lookup {
        EventLookup::ById(ids) => {
            for chunk in ids.chunks(ID_CHUNK) {
                rows.extend(by_id_query(tenant, chunk).build_query_as().fetch_all(&mut *conn).await?);
            }
        }
        EventLookup::ReversalsOf(ids) => {
            for chunk in ids.chunks(ID_CHUNK) {
                rows.extend(reversals_query(tenant, chunk).build_query_as().fetch_all(&mut *conn).await?);
            }
        }
        // A mission has a handful of steps, so type lists are short: no chunking.
        EventLookup::UserOriginals { user, types } => {
            rows = originals_query(tenant, user.as_str(), types).build_query_as().fetch_all(conn).await?;
        }
        EventLookup::UserReversals { user, types } => {
            rows = user_reversals_query(tenant, user.as_str(), types).build_query_as().fetch_all(conn).await?;
        }
    }
    Ok(rows)
}

/// Which of `ids` the ledger holds: one primary-key probe each, a chunk of ids at a time.
pub(super) async fn known(conn: &mut SqliteConnection, tenant: &str, ids: &[String]) -> Result<Vec<String>> {
    let mut known = Vec::new();
    for chunk in ids.chunks(ID_CHUNK) {
        known.extend(known_query(tenant, chunk).build_query_scalar::<String>().fetch_all(&mut *conn).await?);
    }
    Ok(known)
}

/// Apart from its execution, so that `plans` can check how SQLite runs it.
pub(super) fn known_query<'a>(tenant: &'a str, ids: &'a [String]) -> QueryBuilder<'a, Sqlite> {
    let mut qb = QueryBuilder::new("SELECT id FROM events WHERE tenant_id = ");
    qb.push_bind(tenant).push(" AND id IN (");
    let mut list = qb.separated(", ");
    for id in ids {
        list.push_bind(id.as_str());
    }
    qb.push(")");
    qb
}

/// Records `events` (unique ids), received `at` (microseconds); returns the ids that were new.
pub(super) async fn insert(
    conn: &mut SqliteConnection,
    tenant: &str,
    events: &[&Event],
    at: i64,
) -> Result<Vec<String>> {
    let mut inserted = Vec::with_capacity(events.len());
    for chunk in events.chunks(INSERT_CHUNK) {
        let attributes = chunk.iter().map(|e| attributes_json(e)).collect::<Result<Vec<_>>>()?;
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO events (tenant_id, id, type, user_id, occurred_at, attributes, reverses, received_at) ",
        );
        qb.push_values(chunk.iter().zip(attributes), |mut row, (e, attributes)| {
            row.push_bind(tenant)
                .push_bind(e.id())
                .push_bind(e.event_type())
                .push_bind(e.user_id())
                .push_bind(e.occurred_at().as_microsecond())
                .push_bind(attributes)
                .push_bind(e.reverses())
                .push_bind(at);
        });
        // DO NOTHING rows are not RETURNed: the ids that come back are exactly the new ones.
        qb.push(" ON CONFLICT (tenant_id, id) DO NOTHING RETURNING id");
        inserted.extend(qb.build_query_scalar::<String>().fetch_all(&mut *conn).await?);
    }
    Ok(inserted)
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
    qb.push(" AND reverses IS NULL AND type IN (");
    push_list(&mut qb, types);
    qb.push(")");
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
    qb.push(")");
    qb
}

fn push_list<'a>(qb: &mut QueryBuilder<'a, Sqlite>, items: &'a [String]) {
    let mut list = qb.separated(", ");
    for item in items {
        list.push_bind(item.as_str());
    }
}
