//! Missions, their budgets, and the tenant's missions revision.
//!
//! Every mission write and its revision bump share one transaction (the caller's unit of
//! work), so a process that sees the new revision is guaranteed to see the write, and one
//! that sees the old revision reloads later rather than never. On PostgreSQL the lock order
//! is always the mission row, then the tenant row (as when ending a mission whose budget is
//! spent), so mission writes cannot deadlock each other.

use super::{Conn, Db, LIST_CHUNK, LOCK_ROWS, sql};
use crate::rows::{
    BudgetRecord, MISSION_COLUMNS, MissionRow, active_periods_json, max_rewards, spec_json, to_i64, ts_text,
};
use crate::{BudgetRow, Page, Result, StoreError};
use jiff::Timestamp;
use questline_core::id::{MissionId, TenantId};
use questline_core::mission::{Mission, MissionStatus};
use sqlx::QueryBuilder;

/// Creates the tenant's row on its first mission or key. There is no tenant registry yet;
/// the row exists for the revision counter and the foreign keys.
pub(super) async fn ensure_tenant(conn: &mut Conn, tenant: &TenantId, at: Timestamp) -> Result<()> {
    sqlx::query(&sql("INSERT INTO tenants (id, created_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING"))
        .bind(tenant.as_str())
        .bind(ts_text(at))
        .execute(conn)
        .await?;
    Ok(())
}

/// Bumps the tenant's missions revision. The tenant row exists: a mission references it.
async fn bump_revision(conn: &mut Conn, tenant: &TenantId) -> Result<()> {
    sqlx::query(&sql("UPDATE tenants SET missions_revision = missions_revision + 1 WHERE id = ?"))
        .bind(tenant.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// The tenant's missions revision; 0 for a tenant that has never had a mission.
pub(super) async fn revision(conn: &mut Conn, tenant: &TenantId) -> Result<i64> {
    let revision: Option<i64> = sqlx::query_scalar(&sql("SELECT missions_revision FROM tenants WHERE id = ?"))
        .bind(tenant.as_str())
        .fetch_optional(conn)
        .await?;
    Ok(revision.unwrap_or(0))
}

pub(super) async fn insert(conn: &mut Conn, tenant: &TenantId, mission: &Mission) -> Result<()> {
    let spec = spec_json(mission)?;
    // First, so that the tenant row the foreign key needs exists.
    ensure_tenant(conn, tenant, mission.created_at).await?;
    // DO NOTHING rather than a unique violation: on PostgreSQL an error would abort the
    // caller's whole unit of work.
    let inserted = sqlx::query(&sql(
        "INSERT INTO missions (tenant_id, id, status, spec, max_rewards, rewards_granted, activated_at, active_periods, \
         created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, id) DO NOTHING",
    ))
    .bind(tenant.as_str())
    .bind(&mission.id)
    .bind(mission.status.as_str())
    .bind(spec)
    .bind(max_rewards(mission))
    .bind(to_i64(mission.rewards_granted))
    .bind(mission.activated_at.map(ts_text))
    .bind(active_periods_json(mission)?)
    .bind(ts_text(mission.created_at))
    .bind(ts_text(mission.updated_at))
    .execute(&mut *conn)
    .await?
    .rows_affected()
        > 0;
    if !inserted {
        return Err(StoreError::Conflict(format!("mission id {:?} is taken", mission.id)));
    }
    bump_revision(conn, tenant).await
}

pub(super) async fn get(conn: &mut Conn, tenant: &TenantId, id: &MissionId) -> Result<Option<Mission>> {
    let row: Option<MissionRow> =
        sqlx::query_as(&sql(&format!("SELECT {MISSION_COLUMNS} FROM missions WHERE tenant_id = ? AND id = ?")))
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(conn)
            .await?;
    row.map(MissionRow::into_mission).transpose()
}

pub(super) async fn list(
    conn: &mut Conn,
    tenant: &TenantId,
    status: Option<MissionStatus>,
    after: Option<&str>,
    limit: u32,
) -> Result<Page<Mission>> {
    // A page of nothing cannot say where the next one starts, so the smallest page is one.
    let limit = limit.max(1) as usize;
    let mut qb: QueryBuilder<Db> =
        QueryBuilder::new(format!("SELECT {MISSION_COLUMNS} FROM missions WHERE tenant_id = "));
    qb.push_bind(tenant.as_str());
    if let Some(status) = status {
        qb.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(after) = after {
        qb.push(" AND id > ").push_bind(after);
    }
    // One more than asked tells whether another page exists without a COUNT.
    qb.push(" ORDER BY id LIMIT ").push_bind(i64::try_from(limit + 1).unwrap_or(i64::MAX));
    let rows: Vec<MissionRow> = qb.build_query_as().fetch_all(conn).await?;
    let more = rows.len() > limit;
    let items = rows.into_iter().take(limit).map(MissionRow::into_mission).collect::<Result<Vec<_>>>()?;
    let next_after = if more { items.last().map(|m| m.id.clone()) } else { None };
    Ok(Page { items, next_after })
}

pub(super) async fn active(conn: &mut Conn, tenant: &TenantId) -> Result<Vec<Mission>> {
    let rows: Vec<MissionRow> = sqlx::query_as(&sql(&format!(
        "SELECT {MISSION_COLUMNS} FROM missions WHERE tenant_id = ? AND status = 'active' ORDER BY id"
    )))
    .bind(tenant.as_str())
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(MissionRow::into_mission).collect()
}

pub(super) async fn update(
    conn: &mut Conn,
    tenant: &TenantId,
    mission: &Mission,
    expected_updated_at: Timestamp,
) -> Result<bool> {
    let spec = spec_json(mission)?;
    // `updated_at` is compared as the text we wrote: `ts_text` is fixed-width, so the same
    // instant always has the same text. `created_at` and `rewards_granted` are not written.
    // On PostgreSQL a concurrent unit that ended the mission (`set_budget`) holds the row:
    // this waits for it, then sees the moved `updated_at` and reports the mission changed.
    let updated = sqlx::query(&sql(
        "UPDATE missions SET status = ?, spec = ?, max_rewards = ?, activated_at = ?, active_periods = ?, \
         updated_at = ? WHERE tenant_id = ? AND id = ? AND updated_at = ?",
    ))
    .bind(mission.status.as_str())
    .bind(spec)
    .bind(max_rewards(mission))
    .bind(mission.activated_at.map(ts_text))
    .bind(active_periods_json(mission)?)
    .bind(ts_text(mission.updated_at))
    .bind(tenant.as_str())
    .bind(&mission.id)
    .bind(ts_text(expected_updated_at))
    .execute(&mut *conn)
    .await?
    .rows_affected()
        > 0;
    if updated {
        bump_revision(conn, tenant).await?;
    }
    Ok(updated)
}

pub(super) async fn delete_draft(conn: &mut Conn, tenant: &TenantId, id: &MissionId) -> Result<bool> {
    let deleted = sqlx::query(&sql("DELETE FROM missions WHERE tenant_id = ? AND id = ? AND status = 'draft'"))
        .bind(tenant.as_str())
        .bind(id.as_str())
        .execute(&mut *conn)
        .await?
        .rows_affected()
        > 0;
    if deleted {
        bump_revision(conn, tenant).await?;
    }
    Ok(deleted)
}

/// See [`crate::BudgetTx::lock_budgets`]. Ids are sorted and chunks taken in order, so every
/// unit locks mission rows in one global order and two cannot wait on each other in a cycle.
pub(super) async fn lock_budgets(conn: &mut Conn, tenant: &TenantId, missions: &[MissionId]) -> Result<Vec<BudgetRow>> {
    let mut ids: Vec<&str> = missions.iter().map(MissionId::as_str).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(LIST_CHUNK) {
        let mut qb: QueryBuilder<Db> =
            QueryBuilder::new("SELECT id, rewards_granted, max_rewards FROM missions WHERE tenant_id = ");
        qb.push_bind(tenant.as_str()).push(" AND id IN (");
        let mut list = qb.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        // The row locks are taken in the order the rows come back.
        qb.push(") ORDER BY id").push(LOCK_ROWS);
        let rows: Vec<BudgetRecord> = qb.build_query_as().fetch_all(&mut *conn).await?;
        out.extend(rows.into_iter().map(BudgetRecord::into_budget).collect::<Result<Vec<_>>>()?);
    }
    Ok(out)
}

/// See [`crate::BudgetTx::set_budget`]. Ending the mission also moves `updated_at`:
/// otherwise an admin's edit based on the mission as it was (still active) would pass the
/// optimistic check and revive it. A count that does not end it leaves `updated_at` alone,
/// since `update_mission` never writes `rewards_granted` and so cannot clobber it.
pub(super) async fn set_budget(
    conn: &mut Conn,
    tenant: &TenantId,
    mission: &MissionId,
    granted: u64,
    end_mission_at: Option<Timestamp>,
) -> Result<()> {
    let Some(at) = end_mission_at else {
        sqlx::query(&sql("UPDATE missions SET rewards_granted = ? WHERE tenant_id = ? AND id = ?"))
            .bind(to_i64(granted))
            .bind(tenant.as_str())
            .bind(mission.as_str())
            .execute(conn)
            .await?;
        return Ok(());
    };
    // The row is locked (`lock_budgets`): read it, and let the domain close its active period
    // at the end, as a PATCH to `ended` would, so that the stored periods say when it ended.
    let Some(mut ending) = get(conn, tenant, mission).await? else { return Ok(()) };
    ending.set_status(MissionStatus::Ended, at);
    let ended = sqlx::query(&sql(
        "UPDATE missions SET rewards_granted = ?, status = 'ended', active_periods = ?, updated_at = ? \
         WHERE tenant_id = ? AND id = ?",
    ))
    .bind(to_i64(granted))
    .bind(active_periods_json(&ending)?)
    .bind(ts_text(at))
    .bind(tenant.as_str())
    .bind(mission.as_str())
    .execute(&mut *conn)
    .await?
    .rows_affected()
        > 0;
    if ended {
        bump_revision(conn, tenant).await?;
    }
    Ok(())
}
