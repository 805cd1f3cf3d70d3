//! What the user API and recomputation read, on the reader pool, never waiting for a unit
//! of work.

use super::{BEGIN_SNAPSHOT, Conn, Db, events, sql};
use crate::rows::{REWARD_COLUMNS, RewardRow, USER_PROGRESS_COLUMNS, UserProgressRow, rewards_from};
use crate::sql::EventLookup;
use crate::{Result, StoredProgress};
use questline_core::event::Event;
use questline_core::id::{MissionId, TenantId, UserId};
use questline_core::reward::Reward;
use sqlx::{Pool, QueryBuilder};

pub(super) async fn user_progress(
    conn: &mut Conn,
    tenant: &TenantId,
    user: &UserId,
    mission: Option<&MissionId>,
) -> Result<Vec<StoredProgress>> {
    let row: Option<UserProgressRow> = sqlx::query_as(&sql(&format!(
        "SELECT {USER_PROGRESS_COLUMNS} FROM user_progress WHERE tenant_id = ? AND user_id = ?"
    )))
    .bind(tenant.as_str())
    .bind(user.as_str())
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(Vec::new()) };
    // By mission id: the map's order.
    Ok(row
        .into_progress()?
        .missions
        .into_iter()
        .filter(|(id, _)| mission.is_none_or(|m| m == id))
        .map(|(mission_id, p)| StoredProgress {
            mission_id,
            user_id: user.clone(),
            state: p.state,
            updated_at: p.updated_at,
        })
        .collect())
}

pub(super) async fn user_rewards(conn: &mut Conn, tenant: &TenantId, user: &UserId) -> Result<Vec<Reward>> {
    // `created_at` is fixed-width RFC 3339 text in byte order, so text order is time order.
    let mut qb: QueryBuilder<Db> =
        QueryBuilder::new(format!("SELECT {REWARD_COLUMNS} FROM rewards WHERE tenant_id = "));
    qb.push_bind(tenant.as_str()).push(" AND user_id = ").push_bind(user.as_str());
    qb.push(" ORDER BY created_at DESC, id DESC");
    rewards_from(qb.build_query_as::<RewardRow>().fetch_all(conn).await?)
}

/// The originals and their reversals are read in one read-only snapshot (see the backend's
/// `BEGIN_SNAPSHOT`): a unit committing in between cannot add a reversal whose original is
/// missing from the first list.
pub(super) async fn user_ledger(
    reader: &Pool<Db>,
    tenant: &TenantId,
    user: &UserId,
    types: &[String],
) -> Result<(Vec<Event>, Vec<Event>)> {
    let mut tx = reader.begin_with(BEGIN_SNAPSHOT).await?;
    let originals = events::find(&mut tx, tenant, EventLookup::UserOriginals { user, types }).await?;
    let reversals = events::find(&mut tx, tenant, EventLookup::UserReversals { user, types }).await?;
    tx.commit().await?;
    Ok((originals, reversals))
}
