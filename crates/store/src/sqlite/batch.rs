//! Per-batch work by (mission, user) pairs, in SQLite's terms: joins against the pairs as a
//! chunked `VALUES` table (one primary-key or index probe per pair), multi-row upserts, and
//! no user locks, because the single writer connection already excludes every other unit.

use crate::rows::{state_json, ts_text};
use crate::sql::{PairQuery, RowOf};
use crate::{Result, StoredProgress};
use questline_core::id::{MissionId, TenantId, UserId};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

/// (mission, user) pairs per lookup (2 parameters each).
const KEY_CHUNK: usize = 500;
/// Progress rows per multi-row upsert (6 parameters each).
const SAVE_CHUNK: usize = 500;

/// Nothing to lock: the writer pool has one connection, so this unit already excludes
/// every other.
pub(super) async fn lock_users(_conn: &mut SqliteConnection, _tenant: &TenantId, _users: &[UserId]) -> Result<()> {
    Ok(())
}

/// A join against the pairs as a VALUES table; apart from its execution so that `plans` can
/// check how SQLite runs it.
pub(super) fn pairs_query<'a>(query: &PairQuery<'a>, keys: &[&'a (MissionId, UserId)]) -> QueryBuilder<'a, Sqlite> {
    let mut qb = QueryBuilder::new(format!("SELECT {} FROM (", query.select_list()));
    qb.push_values(keys, |mut row, (mission, user)| {
        row.push_bind(mission.as_str()).push_bind(user.as_str());
    });
    // CROSS JOIN fixes the order: each pair probes the table, never the other way round
    // (which, without statistics, SQLite may pick: a walk of the tenant's whole table).
    qb.push(format!(") AS k CROSS JOIN {} AS p ON p.tenant_id = ", query.table.table));
    qb.push_bind(query.tenant);
    qb.push(" AND p.mission_id = k.column1 AND p.user_id = k.column2");
    qb
}

/// The rows a [`PairQuery`] names, in no particular order, a chunk of pairs at a time.
pub(super) async fn fetch_pairs<R: RowOf<Sqlite>>(conn: &mut SqliteConnection, query: PairQuery<'_>) -> Result<Vec<R>> {
    let mut out = Vec::with_capacity(query.keys.len());
    for chunk in query.keys.chunks(KEY_CHUNK) {
        out.extend(pairs_query(&query, chunk).build_query_as().fetch_all(&mut *conn).await?);
    }
    Ok(out)
}

pub(super) async fn save_progress(
    conn: &mut SqliteConnection,
    tenant: &TenantId,
    rows: &[StoredProgress],
) -> Result<()> {
    for chunk in rows.chunks(SAVE_CHUNK) {
        let states = chunk.iter().map(state_json).collect::<Result<Vec<_>>>()?;
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO progress (tenant_id, mission_id, user_id, state, completions, updated_at) ");
        qb.push_values(chunk.iter().zip(states), |mut row, (p, state)| {
            row.push_bind(tenant.as_str())
                .push_bind(p.mission_id.as_str())
                .push_bind(p.user_id.as_str())
                .push_bind(state)
                .push_bind(i64::from(p.state.completions))
                .push_bind(ts_text(p.updated_at));
        });
        // If a slice repeats a pair, the later row wins, as if saved one by one.
        qb.push(
            " ON CONFLICT (tenant_id, mission_id, user_id) DO UPDATE SET \
             state = excluded.state, completions = excluded.completions, updated_at = excluded.updated_at",
        );
        qb.build().execute(&mut *conn).await?;
    }
    Ok(())
}
