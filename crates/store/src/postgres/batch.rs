//! Per-batch work by (mission, user) pairs, in PostgreSQL's terms.
//!
//! Batches of many processes run at once. What keeps them apart: per-user advisory locks
//! ([`crate::LedgerTx::lock_users`]), the ledger's primary key, and the row locks
//! `lock_budgets` holds on missions until commit. Multi-row work is one statement over arrays
//! (`UNNEST`), so a batch costs a handful of round trips whatever its size, and a statement
//! never meets the protocol's limit of 65535 bound parameters.

use crate::rows::{state_json, ts_text};
use crate::sql::{PairQuery, RowOf};
use crate::{Result, StoredProgress};
use questline_core::id::{MissionId, TenantId, UserId};
use sqlx::{PgConnection, Postgres};
use std::collections::HashMap;

/// Serializes units per user across processes: see `questline_lock_users` in the migration.
pub(super) async fn lock_users(conn: &mut PgConnection, tenant: &TenantId, users: &[UserId]) -> Result<()> {
    if users.is_empty() {
        return Ok(());
    }
    let users: Vec<&str> = users.iter().map(UserId::as_str).collect();
    // One round trip; the function takes the locks in key order.
    sqlx::query("SELECT questline_lock_users($1, $2)").bind(tenant.as_str()).bind(&users).execute(conn).await?;
    Ok(())
}

/// The rows a [`PairQuery`] names, in no particular order: the table joined against the
/// pairs unnested from two arrays, so one probe per pair in one round trip.
pub(super) async fn fetch_pairs<R: RowOf<Postgres>>(conn: &mut PgConnection, query: PairQuery<'_>) -> Result<Vec<R>> {
    if query.keys.is_empty() {
        return Ok(Vec::new());
    }
    let (missions, users): (Vec<&str>, Vec<&str>) = query.keys.iter().map(|(m, u)| (m.as_str(), u.as_str())).unzip();
    let sql = format!(
        "SELECT {} FROM UNNEST($2::text[], $3::text[]) AS k (mission_id, user_id) \
         JOIN {} AS p ON p.tenant_id = $1 AND p.mission_id = k.mission_id AND p.user_id = k.user_id",
        query.select_list(),
        query.table.table,
    );
    Ok(sqlx::query_as(&sql).bind(query.tenant).bind(&missions).bind(&users).fetch_all(conn).await?)
}

pub(super) async fn save_progress(conn: &mut PgConnection, tenant: &TenantId, rows: &[StoredProgress]) -> Result<()> {
    // If the slice repeats a pair, the later row wins, as if saved one by one. PostgreSQL
    // refuses an upsert that touches a row twice, so the repeats go first; sorting gives
    // concurrent upserts one lock order.
    let mut last: HashMap<(&MissionId, &UserId), &StoredProgress> = HashMap::with_capacity(rows.len());
    for row in rows {
        last.insert((&row.mission_id, &row.user_id), row);
    }
    if last.is_empty() {
        return Ok(());
    }
    let mut rows: Vec<&StoredProgress> = last.into_values().collect();
    rows.sort_by(|a, b| (&a.mission_id, &a.user_id).cmp(&(&b.mission_id, &b.user_id)));

    let mut missions = Vec::with_capacity(rows.len());
    let mut users = Vec::with_capacity(rows.len());
    let mut states = Vec::with_capacity(rows.len());
    let mut completions = Vec::with_capacity(rows.len());
    let mut updated = Vec::with_capacity(rows.len());
    for row in rows {
        missions.push(row.mission_id.as_str());
        users.push(row.user_id.as_str());
        states.push(state_json(row)?);
        completions.push(i64::from(row.state.completions));
        updated.push(ts_text(row.updated_at));
    }
    sqlx::query(
        "INSERT INTO progress (tenant_id, mission_id, user_id, state, completions, updated_at) \
         SELECT $1, k.mission_id, k.user_id, k.state, k.completions, k.updated_at \
         FROM UNNEST($2::text[], $3::text[], $4::text[], $5::int8[], $6::text[]) \
             AS k (mission_id, user_id, state, completions, updated_at) \
         ON CONFLICT (tenant_id, mission_id, user_id) DO UPDATE SET \
             state = excluded.state, completions = excluded.completions, updated_at = excluded.updated_at",
    )
    .bind(tenant.as_str())
    .bind(&missions)
    .bind(&users)
    .bind(&states)
    .bind(&completions)
    .bind(&updated)
    .execute(conn)
    .await?;
    Ok(())
}
