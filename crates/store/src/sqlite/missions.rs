//! Missions and the tenant's missions revision.
//!
//! Every mission write and its revision bump share one transaction, so a process that sees
//! the new revision is guaranteed to see the write, and one that sees the old revision
//! reloads later rather than never. Writes go through the writer pool (one connection),
//! reads through the reader pool.

use super::rows::{
    MISSION_COLUMNS, MissionRow, active_periods_json, is_unique_violation, max_rewards, spec_json, to_i64, ts_text,
};
use crate::{Page, Result, StoreError};
use jiff::Timestamp;
use questline_core::mission::{Mission, MissionStatus};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool};

/// Creates the tenant's row on its first mission or key. There is no tenant registry yet;
/// the row exists for the revision counter and the foreign keys.
pub(super) async fn ensure_tenant(conn: &mut SqliteConnection, tenant: &str, at: Timestamp) -> Result<()> {
    sqlx::query("INSERT INTO tenants (id, created_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING")
        .bind(tenant)
        .bind(ts_text(at))
        .execute(conn)
        .await?;
    Ok(())
}

/// Bumps the tenant's missions revision. The tenant row exists: a mission references it.
pub(super) async fn bump_revision(conn: &mut SqliteConnection, tenant: &str) -> Result<()> {
    sqlx::query("UPDATE tenants SET missions_revision = missions_revision + 1 WHERE id = ?")
        .bind(tenant)
        .execute(conn)
        .await?;
    Ok(())
}

/// The tenant's missions revision; 0 for a tenant that has never had a mission.
pub(super) async fn revision(conn: &mut SqliteConnection, tenant: &str) -> Result<i64> {
    let revision: Option<i64> = sqlx::query_scalar("SELECT missions_revision FROM tenants WHERE id = ?")
        .bind(tenant)
        .fetch_optional(conn)
        .await?;
    Ok(revision.unwrap_or(0))
}

pub(super) async fn insert(writer: &SqlitePool, tenant: &str, mission: &Mission) -> Result<()> {
    let spec = spec_json(mission)?;
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    // First, so that the tenant row the foreign key needs exists.
    ensure_tenant(&mut tx, tenant, mission.created_at).await?;
    let inserted = sqlx::query(
        "INSERT INTO missions (tenant_id, id, status, spec, max_rewards, rewards_granted, activated_at, active_periods, \
         created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(tenant)
    .bind(&mission.id)
    .bind(mission.status.as_str())
    .bind(spec)
    .bind(max_rewards(mission))
    .bind(to_i64(mission.rewards_granted))
    .bind(mission.activated_at.map(ts_text))
    .bind(active_periods_json(mission)?)
    .bind(ts_text(mission.created_at))
    .bind(ts_text(mission.updated_at))
    .execute(&mut *tx)
    .await;
    match inserted {
        Ok(_) => {
            bump_revision(&mut tx, tenant).await?;
            Ok(tx.commit().await?)
        }
        Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!("mission id {:?} is taken", mission.id))),
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn get(reader: &SqlitePool, tenant: &str, id: &str) -> Result<Option<Mission>> {
    let row: Option<MissionRow> =
        sqlx::query_as(&format!("SELECT {MISSION_COLUMNS} FROM missions WHERE tenant_id = ? AND id = ?"))
            .bind(tenant)
            .bind(id)
            .fetch_optional(reader)
            .await?;
    row.map(MissionRow::into_mission).transpose()
}

pub(super) async fn list(
    reader: &SqlitePool,
    tenant: &str,
    status: Option<MissionStatus>,
    after: Option<&str>,
    limit: u32,
) -> Result<Page<Mission>> {
    // A page of nothing cannot say where the next one starts, so the smallest page is one.
    let limit = limit.max(1) as usize;
    let mut qb: QueryBuilder<Sqlite> =
        QueryBuilder::new(format!("SELECT {MISSION_COLUMNS} FROM missions WHERE tenant_id = "));
    qb.push_bind(tenant);
    if let Some(status) = status {
        qb.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(after) = after {
        qb.push(" AND id > ").push_bind(after);
    }
    // One more than asked tells whether another page exists without a COUNT.
    qb.push(" ORDER BY id LIMIT ").push_bind(i64::try_from(limit + 1).unwrap_or(i64::MAX));
    let rows: Vec<MissionRow> = qb.build_query_as().fetch_all(reader).await?;
    let more = rows.len() > limit;
    let items = rows.into_iter().take(limit).map(MissionRow::into_mission).collect::<Result<Vec<_>>>()?;
    let next_after = if more { items.last().map(|m| m.id.clone()) } else { None };
    Ok(Page { items, next_after })
}

pub(super) async fn update(
    writer: &SqlitePool,
    tenant: &str,
    mission: &Mission,
    expected_updated_at: Timestamp,
) -> Result<bool> {
    let spec = spec_json(mission)?;
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    // `updated_at` is compared as the text we wrote: `ts_text` is fixed-width, so the same
    // instant always has the same text. `created_at` and `rewards_granted` are not written.
    let updated = sqlx::query(
        "UPDATE missions SET status = ?, spec = ?, max_rewards = ?, activated_at = ?, active_periods = ?, updated_at = ? \
         WHERE tenant_id = ? AND id = ? AND updated_at = ?",
    )
    .bind(mission.status.as_str())
    .bind(spec)
    .bind(max_rewards(mission))
    .bind(mission.activated_at.map(ts_text))
    .bind(active_periods_json(mission)?)
    .bind(ts_text(mission.updated_at))
    .bind(tenant)
    .bind(&mission.id)
    .bind(ts_text(expected_updated_at))
    .execute(&mut *tx)
    .await?
    .rows_affected()
        > 0;
    if updated {
        bump_revision(&mut tx, tenant).await?;
        tx.commit().await?;
    }
    Ok(updated)
}

pub(super) async fn delete_draft(writer: &SqlitePool, tenant: &str, id: &str) -> Result<bool> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    let deleted = sqlx::query("DELETE FROM missions WHERE tenant_id = ? AND id = ? AND status = 'draft'")
        .bind(tenant)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        > 0;
    if deleted {
        bump_revision(&mut tx, tenant).await?;
        tx.commit().await?;
    }
    Ok(deleted)
}

pub(super) async fn active(reader: &SqlitePool, tenant: &str) -> Result<Vec<Mission>> {
    let rows: Vec<MissionRow> = sqlx::query_as(&format!(
        "SELECT {MISSION_COLUMNS} FROM missions WHERE tenant_id = ? AND status = 'active' ORDER BY id"
    ))
    .bind(tenant)
    .fetch_all(reader)
    .await?;
    rows.into_iter().map(MissionRow::into_mission).collect()
}
