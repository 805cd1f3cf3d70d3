//! Per-batch progress in SQLite's terms: users looked up by chunked `IN` lists (one
//! primary-key probe each), multi-row upserts, and no locks, because the single writer
//! connection already excludes every other unit.

use crate::rows::{
    REWARD_COLUMNS, RewardRow, USER_PROGRESS_COLUMNS, UserProgressRow, last_updated, missions_json, user_progress_from,
    versions_in_order,
};
use crate::{Result, UserProgress};
use questline_core::id::{MissionId, TenantId, UserId};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

/// Users per lookup (1 parameter each).
const KEY_CHUNK: usize = 500;
/// Rows per multi-row upsert (4 parameters each).
const SAVE_CHUNK: usize = 500;

/// Users without a row are left out. (Nothing to lock, here or in [`lock_versions`]: the
/// writer pool has one connection, so a unit already excludes every other.)
pub(super) async fn read_progress(
    conn: &mut SqliteConnection,
    tenant: &TenantId,
    users: &[UserId],
) -> Result<Vec<UserProgress>> {
    let mut out = Vec::with_capacity(users.len());
    for chunk in users.chunks(KEY_CHUNK) {
        let rows: Vec<UserProgressRow> =
            users_query(USER_PROGRESS_COLUMNS, tenant.as_str(), chunk).build_query_as().fetch_all(&mut *conn).await?;
        out.extend(user_progress_from(rows)?);
    }
    Ok(out)
}

pub(super) async fn lock_versions(
    conn: &mut SqliteConnection,
    tenant: &TenantId,
    users: &[UserId],
) -> Result<Vec<i64>> {
    let mut rows = Vec::with_capacity(users.len());
    for chunk in users.chunks(KEY_CHUNK) {
        let mut qb = users_query("user_id, version", tenant.as_str(), chunk);
        rows.extend(qb.build_query_as::<(String, i64)>().fetch_all(&mut *conn).await?);
    }
    Ok(versions_in_order(users, rows))
}

/// Apart from its execution, so that `plans` can check how SQLite runs it.
pub(super) fn users_query<'a>(columns: &str, tenant: &'a str, users: &'a [UserId]) -> QueryBuilder<'a, Sqlite> {
    let mut qb = QueryBuilder::new(format!("SELECT {columns} FROM user_progress WHERE tenant_id = "));
    qb.push_bind(tenant).push(" AND user_id IN (");
    let mut list = qb.separated(", ");
    for user in users {
        list.push_bind(user.as_str());
    }
    qb.push(")");
    qb
}

pub(super) async fn save_progress(
    conn: &mut SqliteConnection,
    tenant: &TenantId,
    users: &[UserProgress],
) -> Result<()> {
    for chunk in users.chunks(SAVE_CHUNK) {
        let missions = chunk.iter().map(missions_json).collect::<Result<Vec<_>>>()?;
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO user_progress (tenant_id, user_id, missions, version, updated_at) ");
        qb.push_values(chunk.iter().zip(missions), |mut row, (p, missions)| {
            row.push_bind(tenant.as_str())
                .push_bind(p.user_id.as_str())
                .push_bind(missions)
                .push_bind(1_i64)
                .push_bind(last_updated(p));
        });
        // If a slice repeats a user, the later row wins, as if saved one by one.
        qb.push(
            " ON CONFLICT (tenant_id, user_id) DO UPDATE SET \
             missions = excluded.missions, version = user_progress.version + 1, updated_at = excluded.updated_at",
        );
        qb.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Every reward of these users (the caller keeps the live ones), one index probe
/// (`rewards_by_user`) per user.
pub(super) async fn live_rewards_of_users(
    conn: &mut SqliteConnection,
    tenant: &str,
    users: &[&str],
) -> Result<Vec<RewardRow>> {
    Ok(live_of_users_query(tenant, users).build_query_as().fetch_all(conn).await?)
}

/// Apart from its execution, so that `plans` can check how SQLite runs it.
pub(super) fn live_of_users_query<'a>(tenant: &'a str, users: &[&'a str]) -> QueryBuilder<'a, Sqlite> {
    let mut qb = QueryBuilder::new(format!("SELECT {REWARD_COLUMNS} FROM rewards WHERE tenant_id = "));
    qb.push_bind(tenant).push(" AND user_id IN (");
    let mut list = qb.separated(", ");
    for user in users {
        list.push_bind(*user);
    }
    qb.push(")");
    qb
}

/// (mission, user, completion) keys per lookup (3 parameters each).
const COMPLETION_CHUNK: usize = 300;

/// See [`crate::BatchReads::live_completions`]: the keys as a `VALUES` table, each probing
/// `rewards_live`.
pub(super) async fn live_completions(
    conn: &mut SqliteConnection,
    tenant: &str,
    keys: &[(MissionId, UserId, u32)],
) -> Result<Vec<(MissionId, UserId, u32)>> {
    let mut out = Vec::new();
    for chunk in keys.chunks(COMPLETION_CHUNK) {
        let rows: Vec<(String, String, i64)> =
            live_completions_query(tenant, chunk).build_query_as().fetch_all(&mut *conn).await?;
        out.extend(rows.into_iter().map(|(m, u, c)| (MissionId::from(m), UserId::from(u), c as u32)));
    }
    Ok(out)
}

/// Apart from its execution, so that `plans` can check how SQLite runs it.
pub(super) fn live_completions_query<'a>(
    tenant: &'a str,
    keys: &'a [(MissionId, UserId, u32)],
) -> QueryBuilder<'a, Sqlite> {
    let mut qb = QueryBuilder::new("SELECT r.mission_id, r.user_id, r.completion FROM (");
    qb.push_values(keys, |mut row, (mission, user, completion)| {
        row.push_bind(mission.as_str()).push_bind(user.as_str()).push_bind(i64::from(*completion));
    });
    // CROSS JOIN fixes the order: each key probes the index, never a walk of the table.
    qb.push(") AS k CROSS JOIN rewards AS r ON r.tenant_id = ");
    qb.push_bind(tenant);
    qb.push(
        " AND r.mission_id = k.column1 AND r.user_id = k.column2 AND r.completion = k.column3 \
         AND r.status <> 'revoked'",
    );
    qb
}
