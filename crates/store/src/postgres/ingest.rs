//! [`IngestTx`] on PostgreSQL: one READ COMMITTED transaction on a writer connection.
//!
//! Batches of many processes run at once. What keeps them apart: per-user advisory locks
//! ([`IngestTx::lock_users`]), the ledger's primary key, and the row lock a budget take
//! holds on its mission until commit. Multi-row work is one statement over arrays
//! (`UNNEST`), so a batch costs a handful of round trips whatever its size, and a statement
//! never meets the protocol's limit of 65535 bound parameters.

use super::rows::{
    PROGRESS_COLUMNS, ProgressRow, REWARD_COLUMNS, RewardRow, progress_from, rewards_from, state_json, ts_text,
};
use super::{classify, ledger, missions};
use crate::{IngestTx, Result, StoreError, StoredProgress};
use async_trait::async_trait;
use jiff::Timestamp;
use questline_core::event::Event;
use questline_core::reward::Reward;
use sqlx::{PgConnection, Postgres, Transaction};
use std::collections::{HashMap, HashSet};

pub(super) struct PgIngestTx {
    pub(super) tx: Transaction<'static, Postgres>,
}

#[async_trait]
impl IngestTx for PgIngestTx {
    async fn insert_events(&mut self, tenant: &str, events: &[Event], received_at: Timestamp) -> Result<Vec<bool>> {
        ledger::insert_events(&mut self.tx, tenant, events, received_at).await.map_err(classify)
    }

    async fn events_by_id(&mut self, tenant: &str, ids: &[String]) -> Result<Vec<Event>> {
        ledger::events_by_id(&mut self.tx, tenant, ids).await.map_err(classify)
    }

    async fn reversals_of(&mut self, tenant: &str, ids: &[String]) -> Result<Vec<Event>> {
        ledger::reversals_of(&mut self.tx, tenant, ids).await.map_err(classify)
    }

    async fn user_originals(&mut self, tenant: &str, user_id: &str, types: &[String]) -> Result<Vec<Event>> {
        ledger::user_originals(&mut self.tx, tenant, user_id, types).await.map_err(classify)
    }

    async fn load_progress(&mut self, tenant: &str, keys: &[(String, String)]) -> Result<Vec<StoredProgress>> {
        load_progress(&mut self.tx, tenant, keys).await.map_err(classify)
    }

    async fn save_progress(&mut self, tenant: &str, rows: &[StoredProgress]) -> Result<()> {
        save_progress(&mut self.tx, tenant, rows).await.map_err(classify)
    }

    async fn live_rewards(&mut self, tenant: &str, mission_id: &str, user_id: &str) -> Result<Vec<Reward>> {
        // `status <> 'revoked'` exactly as in the partial index `rewards_live`, so it is used.
        let rows: Vec<RewardRow> = sqlx::query_as(&format!(
            "SELECT {REWARD_COLUMNS} FROM rewards \
             WHERE tenant_id = $1 AND mission_id = $2 AND user_id = $3 AND status <> 'revoked' \
             ORDER BY completion"
        ))
        .bind(tenant)
        .bind(mission_id)
        .bind(user_id)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(|e| classify(e.into()))?;
        rewards_from(rows)
    }

    async fn take_budget(&mut self, tenant: &str, mission_id: &str, at: Timestamp) -> Result<bool> {
        take_budget(&mut self.tx, tenant, mission_id, at).await.map_err(classify)
    }

    async fn insert_reward(&mut self, tenant: &str, reward: &Reward) -> Result<()> {
        insert_reward(&mut self.tx, tenant, reward).await.map_err(classify)
    }

    async fn revoke_reward(&mut self, tenant: &str, reward_id: &str, at: Timestamp) -> Result<()> {
        // Only a pending reward: one already granted has been paid out, and marking it
        // revoked here would make the books disagree with what the user received.
        sqlx::query(
            "UPDATE rewards SET status = 'revoked', updated_at = $1 \
             WHERE tenant_id = $2 AND id = $3 AND status = 'pending'",
        )
        .bind(ts_text(at))
        .bind(tenant)
        .bind(reward_id)
        .execute(&mut *self.tx)
        .await
        .map_err(|e| classify(e.into()))?;
        Ok(())
    }

    async fn missions_revision(&mut self, tenant: &str) -> Result<i64> {
        missions::revision(&mut self.tx, tenant).await.map_err(classify)
    }

    async fn lock_users(&mut self, tenant: &str, users: &[String]) -> Result<()> {
        if users.is_empty() {
            return Ok(());
        }
        // One round trip; the function (see the migration) takes the locks in key order.
        sqlx::query("SELECT questline_lock_users($1, $2)")
            .bind(tenant)
            .bind(users)
            .execute(&mut *self.tx)
            .await
            .map_err(|e| classify(e.into()))?;
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.tx.commit().await.map_err(|e| classify(e.into()))
    }
}

async fn load_progress(
    conn: &mut PgConnection,
    tenant: &str,
    keys: &[(String, String)],
) -> Result<Vec<StoredProgress>> {
    // A repeated pair would come back twice from the join below.
    let mut seen = HashSet::with_capacity(keys.len());
    let (missions, users): (Vec<&str>, Vec<&str>) =
        keys.iter().filter(|k| seen.insert(*k)).map(|(m, u)| (m.as_str(), u.as_str())).unzip();
    if missions.is_empty() {
        return Ok(Vec::new());
    }
    let columns = PROGRESS_COLUMNS.split(", ").map(|c| format!("p.{c}")).collect::<Vec<_>>().join(", ");
    // A join against the pairs: one primary-key probe per pair.
    let rows: Vec<ProgressRow> = sqlx::query_as(&format!(
        "SELECT {columns} FROM UNNEST($2::text[], $3::text[]) AS k (mission_id, user_id) \
         JOIN progress AS p ON p.tenant_id = $1 AND p.mission_id = k.mission_id AND p.user_id = k.user_id"
    ))
    .bind(tenant)
    .bind(&missions)
    .bind(&users)
    .fetch_all(conn)
    .await?;
    progress_from(rows)
}

async fn save_progress(conn: &mut PgConnection, tenant: &str, rows: &[StoredProgress]) -> Result<()> {
    // If the slice repeats a pair, the later row wins, as if saved one by one. PostgreSQL
    // refuses an upsert that touches a row twice, so the repeats go first; sorting gives
    // concurrent upserts one lock order.
    let mut last: HashMap<(&str, &str), &StoredProgress> = HashMap::with_capacity(rows.len());
    for row in rows {
        last.insert((row.mission_id.as_str(), row.user_id.as_str()), row);
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
    .bind(tenant)
    .bind(&missions)
    .bind(&users)
    .bind(&states)
    .bind(&completions)
    .bind(&updated)
    .execute(conn)
    .await?;
    Ok(())
}

/// One UPDATE does the check and the take. Under concurrency the row lock queues takes of
/// the same mission, and each re-evaluates `rewards_granted < max_rewards` on the row as the
/// previous take left it, so no two can spend the same last reward. Ending the mission also
/// moves `updated_at` (see the SQLite backend for why).
async fn take_budget(conn: &mut PgConnection, tenant: &str, mission_id: &str, at: Timestamp) -> Result<bool> {
    let taken: Option<Option<bool>> = sqlx::query_scalar(
        "UPDATE missions SET \
            rewards_granted = rewards_granted + 1, \
            status = CASE WHEN rewards_granted + 1 >= max_rewards THEN 'ended' ELSE status END, \
            updated_at = CASE WHEN rewards_granted + 1 >= max_rewards THEN $1 ELSE updated_at END \
         WHERE tenant_id = $2 AND id = $3 AND (max_rewards IS NULL OR rewards_granted < max_rewards) \
         RETURNING rewards_granted >= max_rewards",
    )
    .bind(ts_text(at))
    .bind(tenant)
    .bind(mission_id)
    .fetch_optional(&mut *conn)
    .await?;
    match taken {
        None => Ok(false),
        // RETURNING sees the new row: NULL without a budget, true if this take spent it.
        Some(spent) => {
            if spent == Some(true) {
                missions::bump_revision(conn, tenant).await?;
            }
            Ok(true)
        }
    }
}

async fn insert_reward(conn: &mut PgConnection, tenant: &str, reward: &Reward) -> Result<()> {
    // DO NOTHING instead of catching the unique violation: an error would abort the whole
    // transaction, and the caller may go on with it after a `Conflict`.
    let inserted = sqlx::query(
        "INSERT INTO rewards (tenant_id, id, mission_id, user_id, completion, kind, amount, currency, code, name, \
         status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(&reward.id)
    .bind(&reward.mission_id)
    .bind(&reward.user_id)
    .bind(i64::from(reward.completion))
    .bind(reward.kind.as_str())
    // Decimal text keeps every digit and the scale ("0.30" stays "0.30").
    .bind(reward.amount.map(|a| a.to_string()))
    .bind(&reward.currency)
    .bind(&reward.code)
    .bind(&reward.name)
    .bind(reward.status.as_str())
    .bind(ts_text(reward.created_at))
    .bind(ts_text(reward.updated_at))
    .execute(conn)
    .await?
    .rows_affected()
        > 0;
    if inserted {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "reward {:?} or a live reward for completion {} of mission {:?} by user {:?} exists",
            reward.id, reward.completion, reward.mission_id, reward.user_id
        )))
    }
}
