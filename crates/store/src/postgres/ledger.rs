//! The event ledger: idempotent inserts and the lookups a batch (or a recomputation) needs.
//!
//! Lists of ids travel as one array parameter (`= ANY($2)`, `UNNEST`), so no statement is
//! chunked and each lookup is one round trip. What is the same on both backends (repeats
//! within a slice, empty lists, the fold order of results) is settled in `shared::events`.

use crate::Result;
use crate::rows::{EVENT_COLUMNS, EventRow, attributes_json};
use crate::sql::EventLookup;
use questline_core::event::Event;
use sqlx::PgConnection;

/// Records `events` (unique ids), received `at` (microseconds); returns the ids that were new.
pub(super) async fn insert(conn: &mut PgConnection, tenant: &str, events: &[&Event], at: i64) -> Result<Vec<String>> {
    let mut events = events.to_vec();
    // Inserting in id order gives every transaction the same order of index-entry waits,
    // so two batches sharing ids queue instead of deadlocking.
    events.sort_unstable_by(|a, b| a.id().cmp(b.id()));

    let n = events.len();
    let (mut ids, mut types, mut users) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut occurred, mut attributes, mut reverses) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for e in events {
        ids.push(e.id());
        types.push(e.event_type());
        users.push(e.user_id());
        occurred.push(e.occurred_at().as_microsecond());
        attributes.push(attributes_json(e)?);
        reverses.push(e.reverses());
    }
    // DO NOTHING rows are not RETURNed: the ids that come back are exactly the new ones. An
    // id a concurrent transaction inserted and has not committed yet makes this wait for it,
    // then count as new only if that one rolled back.
    let new = sqlx::query_scalar(
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
    .bind(at)
    .fetch_all(conn)
    .await?;
    Ok(new)
}

/// Which of `ids` the ledger holds. An array (`= ANY`), not a list of parameters: a long
/// `IN ($2, $3, …)` list made the planner walk the table as the ledger grew (batches stalled
/// for seconds at 200,000 events).
pub(super) async fn known(conn: &mut PgConnection, tenant: &str, ids: &[String]) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar("SELECT id FROM events WHERE tenant_id = $1 AND id = ANY($2)")
        .bind(tenant)
        .bind(ids)
        .fetch_all(conn)
        .await?)
}

/// The events a lookup names, in no particular order: each list travels as one array.
pub(super) async fn fetch(conn: &mut PgConnection, tenant: &str, lookup: EventLookup<'_>) -> Result<Vec<EventRow>> {
    let rows = match lookup {
        EventLookup::ById(ids) => {
            let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = $1 AND id = ANY($2)");
            sqlx::query_as(&sql).bind(tenant).bind(ids).fetch_all(conn).await?
        }
        EventLookup::ReversalsOf(ids) => {
            // `IS NOT NULL` spelled out: the partial index is only usable if the query implies it.
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = $1 AND reverses IS NOT NULL AND reverses = ANY($2)"
            );
            sqlx::query_as(&sql).bind(tenant).bind(ids).fetch_all(conn).await?
        }
        EventLookup::UserOriginals { user, types } => {
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM events \
                 WHERE tenant_id = $1 AND user_id = $2 AND reverses IS NULL AND type = ANY($3)"
            );
            sqlx::query_as(&sql).bind(tenant).bind(user.as_str()).bind(types).fetch_all(conn).await?
        }
        // One statement however many originals the user has.
        EventLookup::UserReversals { user, types } => {
            let sql = "SELECT r.id, r.type AS event_type, r.user_id, r.occurred_at, r.attributes, r.reverses, \
                       r.received_at FROM events AS o \
                       JOIN events AS r ON r.tenant_id = o.tenant_id AND r.reverses = o.id AND r.reverses IS NOT NULL \
                       WHERE o.tenant_id = $1 AND o.user_id = $2 AND o.reverses IS NULL AND o.type = ANY($3)";
            sqlx::query_as(sql).bind(tenant).bind(user.as_str()).bind(types).fetch_all(conn).await?
        }
    };
    Ok(rows)
}
