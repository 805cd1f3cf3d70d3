//! Per-batch progress in PostgreSQL's terms.
//!
//! Batches of many processes run at once. What keeps them apart: the row lock on each of a
//! batch's users' progress rows ([`crate::ProgressTx::lock_versions`]), the ledger's primary
//! key, and the row locks `lock_budgets` holds on missions until commit. Multi-row work is
//! one statement over arrays (`UNNEST`), so a batch costs a handful of round trips whatever
//! its size, and a statement never meets the protocol's limit of 65535 bound parameters.

use crate::rows::{
    REWARD_COLUMNS, RewardRow, USER_PROGRESS_COLUMNS, UserProgressRow, last_updated, missions_json, user_progress_from,
    versions_in_order,
};
use crate::{Result, UserProgress};
use questline_core::id::{MissionId, TenantId, UserId};
use sqlx::PgConnection;
use std::collections::HashMap;

/// Row locks rather than advisory locks: they live in the rows, not in the shared lock
/// table, so a batch of thousands of users cannot exhaust it. A user without a row gets an
/// empty one first (version 0, as if absent), so that there is a row to lock; both
/// statements go in `user_id` order, the one order every unit locks in.
pub(super) async fn lock_versions(conn: &mut PgConnection, tenant: &TenantId, users: &[UserId]) -> Result<Vec<i64>> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = users.iter().map(UserId::as_str).collect();
    sqlx::query(
        "INSERT INTO user_progress (tenant_id, user_id, missions, version, updated_at) \
         SELECT $1, u, '{}', 0, '' FROM UNNEST($2::text[]) AS u ORDER BY u \
         ON CONFLICT (tenant_id, user_id) DO NOTHING",
    )
    .bind(tenant.as_str())
    .bind(&ids)
    .execute(&mut *conn)
    .await?;
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT user_id, version FROM user_progress WHERE tenant_id = $1 AND user_id = ANY($2) \
         ORDER BY user_id FOR UPDATE",
    )
    .bind(tenant.as_str())
    .bind(&ids)
    .fetch_all(conn)
    .await?;
    Ok(versions_in_order(users, rows))
}

pub(super) async fn read_progress(
    conn: &mut PgConnection,
    tenant: &TenantId,
    users: &[UserId],
) -> Result<Vec<UserProgress>> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = users.iter().map(UserId::as_str).collect();
    let rows: Vec<UserProgressRow> = sqlx::query_as(&format!(
        "SELECT {USER_PROGRESS_COLUMNS} FROM user_progress WHERE tenant_id = $1 AND user_id = ANY($2) ORDER BY user_id"
    ))
    .bind(tenant.as_str())
    .bind(&ids)
    .fetch_all(conn)
    .await?;
    user_progress_from(rows)
}

pub(super) async fn save_progress(conn: &mut PgConnection, tenant: &TenantId, users: &[UserProgress]) -> Result<()> {
    // If the slice repeats a user, the later row wins, as if saved one by one. PostgreSQL
    // refuses an upsert that touches a row twice, so the repeats go first.
    let mut last: HashMap<&UserId, &UserProgress> = HashMap::with_capacity(users.len());
    for p in users {
        last.insert(&p.user_id, p);
    }
    if last.is_empty() {
        return Ok(());
    }
    let mut rows: Vec<&UserProgress> = last.into_values().collect();
    rows.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    let mut ids = Vec::with_capacity(rows.len());
    let mut missions = Vec::with_capacity(rows.len());
    let mut updated = Vec::with_capacity(rows.len());
    for p in rows {
        ids.push(p.user_id.as_str());
        missions.push(missions_json(p)?);
        updated.push(last_updated(p));
    }
    sqlx::query(
        "INSERT INTO user_progress (tenant_id, user_id, missions, version, updated_at) \
         SELECT $1, k.user_id, k.missions, 1, k.updated_at \
         FROM UNNEST($2::text[], $3::text[], $4::text[]) AS k (user_id, missions, updated_at) \
         ON CONFLICT (tenant_id, user_id) DO UPDATE SET \
             missions = excluded.missions, version = user_progress.version + 1, updated_at = excluded.updated_at",
    )
    .bind(tenant.as_str())
    .bind(&ids)
    .bind(&missions)
    .bind(&updated)
    .execute(conn)
    .await?;
    Ok(())
}

/// Every reward of these users (the caller keeps the live ones). An array (`= ANY`), not a list of parameters: a long
/// `IN ($2, $3, …)` list made the planner walk the table as rewards grew.
pub(super) async fn live_rewards_of_users(
    conn: &mut PgConnection,
    tenant: &str,
    users: &[&str],
) -> Result<Vec<RewardRow>> {
    Ok(sqlx::query_as(&format!("SELECT {REWARD_COLUMNS} FROM rewards WHERE tenant_id = $1 AND user_id = ANY($2)"))
        .bind(tenant)
        .bind(users)
        .fetch_all(conn)
        .await?)
}

/// See [`crate::BatchReads::live_completions`]: the keys unnested from arrays, each probing
/// `rewards_live` (whose predicate the query repeats, so the planner may use it).
pub(super) async fn live_completions(
    conn: &mut PgConnection,
    tenant: &str,
    keys: &[(MissionId, UserId, u32)],
) -> Result<Vec<(MissionId, UserId, u32)>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let missions: Vec<&str> = keys.iter().map(|(m, _, _)| m.as_str()).collect();
    let users: Vec<&str> = keys.iter().map(|(_, u, _)| u.as_str()).collect();
    let completions: Vec<i64> = keys.iter().map(|(_, _, c)| i64::from(*c)).collect();
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT r.mission_id, r.user_id, r.completion \
         FROM UNNEST($2::text[], $3::text[], $4::int8[]) AS k (mission_id, user_id, completion) \
         JOIN rewards AS r ON r.tenant_id = $1 AND r.mission_id = k.mission_id AND r.user_id = k.user_id \
             AND r.completion = k.completion AND r.status <> 'revoked'",
    )
    .bind(tenant)
    .bind(&missions)
    .bind(&users)
    .bind(&completions)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(m, u, c)| (MissionId::from(m), UserId::from(u), c as u32)).collect())
}
