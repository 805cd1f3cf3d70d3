//! What the user API and recomputation read, on the reader pool, never waiting for a batch.

use super::ledger;
use super::rows::{PROGRESS_COLUMNS, ProgressRow, REWARD_COLUMNS, RewardRow, progress_from, rewards_from};
use crate::{Result, StoredProgress};
use questline_core::event::Event;
use questline_core::reward::Reward;
use sqlx::{PgPool, Postgres, QueryBuilder};

pub(super) async fn user_progress(
    reader: &PgPool,
    tenant: &str,
    user_id: &str,
    mission_id: Option<&str>,
) -> Result<Vec<StoredProgress>> {
    let mut qb: QueryBuilder<Postgres> =
        QueryBuilder::new(format!("SELECT {PROGRESS_COLUMNS} FROM progress WHERE tenant_id = "));
    qb.push_bind(tenant).push(" AND user_id = ").push_bind(user_id);
    if let Some(mission_id) = mission_id {
        qb.push(" AND mission_id = ").push_bind(mission_id);
    }
    qb.push(" ORDER BY mission_id");
    progress_from(qb.build_query_as::<ProgressRow>().fetch_all(reader).await?)
}

pub(super) async fn user_rewards(reader: &PgPool, tenant: &str, user_id: &str) -> Result<Vec<Reward>> {
    // `created_at` is fixed-width RFC 3339 text in byte order, so text order is time order.
    let rows: Vec<RewardRow> = sqlx::query_as(&format!(
        "SELECT {REWARD_COLUMNS} FROM rewards WHERE tenant_id = $1 AND user_id = $2 ORDER BY created_at DESC, id DESC"
    ))
    .bind(tenant)
    .bind(user_id)
    .fetch_all(reader)
    .await?;
    rewards_from(rows)
}

/// The originals and their reversals are read in one REPEATABLE READ transaction, so both
/// come from the same snapshot: a batch committing in between cannot add a reversal whose
/// original is missing from the first list.
pub(super) async fn user_ledger(
    reader: &PgPool,
    tenant: &str,
    user_id: &str,
    types: &[String],
) -> Result<(Vec<Event>, Vec<Event>)> {
    let mut tx = reader.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await?;
    let originals = ledger::user_originals(&mut tx, tenant, user_id, types).await?;
    let reversals = ledger::reversals_of_user_originals(&mut tx, tenant, user_id, types).await?;
    tx.commit().await?;
    Ok((originals, reversals))
}
