//! [`IngestTx`] on SQLite: one `BEGIN IMMEDIATE` transaction on the single writer connection.
//!
//! Because the writer pool has exactly one connection, batches are applied one after the
//! other, which is what makes duplicate detection and budget takes exact: no two
//! transactions ever race for the same ledger id or the same budget. It also means a batch
//! must not hold its transaction open across anything slow, and must not call a `Store`
//! write (missions, keys) while it is open: that write would wait for this very connection.

use super::rows::{
    PROGRESS_COLUMNS, ProgressRow, REWARD_COLUMNS, RewardRow, progress_from, rewards_from, state_json, ts_text,
};
use super::{ledger, missions};
use crate::{IngestTx, Result, StoreError, StoredProgress};
use async_trait::async_trait;
use jiff::Timestamp;
use questline_core::event::Event;
use questline_core::reward::Reward;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, Transaction};
use std::collections::HashSet;

/// (mission, user) pairs per lookup (2 parameters each).
const KEY_CHUNK: usize = 500;
/// Progress rows per multi-row upsert (6 parameters each).
const SAVE_CHUNK: usize = 500;

pub(super) struct SqliteIngestTx {
    pub(super) tx: Transaction<'static, Sqlite>,
}

#[async_trait]
impl IngestTx for SqliteIngestTx {
    async fn insert_events(&mut self, tenant: &str, events: &[Event], received_at: Timestamp) -> Result<Vec<bool>> {
        ledger::insert_events(&mut self.tx, tenant, events, received_at).await
    }

    async fn events_by_id(&mut self, tenant: &str, ids: &[String]) -> Result<Vec<Event>> {
        ledger::events_by_id(&mut self.tx, tenant, ids).await
    }

    async fn reversals_of(&mut self, tenant: &str, ids: &[String]) -> Result<Vec<Event>> {
        ledger::reversals_of(&mut self.tx, tenant, ids).await
    }

    async fn user_originals(&mut self, tenant: &str, user_id: &str, types: &[String]) -> Result<Vec<Event>> {
        ledger::user_originals(&mut self.tx, tenant, user_id, types).await
    }

    async fn load_progress(&mut self, tenant: &str, keys: &[(String, String)]) -> Result<Vec<StoredProgress>> {
        load_progress(&mut self.tx, tenant, keys).await
    }

    async fn save_progress(&mut self, tenant: &str, rows: &[StoredProgress]) -> Result<()> {
        save_progress(&mut self.tx, tenant, rows).await
    }

    async fn live_rewards(&mut self, tenant: &str, mission_id: &str, user_id: &str) -> Result<Vec<Reward>> {
        // `status <> 'revoked'` exactly as in the partial index `rewards_live`, so it is used.
        let rows: Vec<RewardRow> = sqlx::query_as(&format!(
            "SELECT {REWARD_COLUMNS} FROM rewards \
             WHERE tenant_id = ? AND mission_id = ? AND user_id = ? AND status <> 'revoked' \
             ORDER BY completion"
        ))
        .bind(tenant)
        .bind(mission_id)
        .bind(user_id)
        .fetch_all(&mut *self.tx)
        .await?;
        rewards_from(rows)
    }

    async fn take_budget(&mut self, tenant: &str, mission_id: &str, at: Timestamp) -> Result<bool> {
        take_budget(&mut self.tx, tenant, mission_id, at).await
    }

    async fn insert_reward(&mut self, tenant: &str, reward: &Reward) -> Result<()> {
        let result = sqlx::query(
            "INSERT INTO rewards (tenant_id, id, mission_id, user_id, completion, kind, amount, currency, code, name, \
             status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .execute(&mut *self.tx)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if super::rows::is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "reward {:?} or a live reward for completion {} of mission {:?} by user {:?} exists",
                reward.id, reward.completion, reward.mission_id, reward.user_id
            ))),
            Err(e) => Err(e.into()),
        }
    }

    async fn revoke_reward(&mut self, tenant: &str, reward_id: &str, at: Timestamp) -> Result<()> {
        // Only a pending reward: one already granted has been paid out, and marking it
        // revoked here would make the books disagree with what the user received.
        sqlx::query("UPDATE rewards SET status = 'revoked', updated_at = ? WHERE tenant_id = ? AND id = ? AND status = 'pending'")
            .bind(ts_text(at))
            .bind(tenant)
            .bind(reward_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn missions_revision(&mut self, tenant: &str) -> Result<i64> {
        missions::revision(&mut self.tx, tenant).await
    }

    async fn lock_users(&mut self, _tenant: &str, _users: &[String]) -> Result<()> {
        // The writer pool has one connection: this transaction already excludes every other.
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        Ok(self.tx.commit().await?)
    }
}

async fn load_progress(
    conn: &mut SqliteConnection,
    tenant: &str,
    keys: &[(String, String)],
) -> Result<Vec<StoredProgress>> {
    // A repeated pair would come back twice from the join below.
    let mut seen = HashSet::with_capacity(keys.len());
    let keys: Vec<&(String, String)> = keys.iter().filter(|k| seen.insert(*k)).collect();
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(KEY_CHUNK) {
        let mut qb = progress_query(tenant, chunk);
        out.extend(progress_from(qb.build_query_as::<ProgressRow>().fetch_all(&mut *conn).await?)?);
    }
    Ok(out)
}

/// A join against the pairs as a VALUES table: one primary-key probe per pair.
pub(super) fn progress_query<'a>(tenant: &'a str, keys: &[&'a (String, String)]) -> QueryBuilder<'a, Sqlite> {
    let columns = PROGRESS_COLUMNS.split(", ").map(|c| format!("p.{c}")).collect::<Vec<_>>().join(", ");
    let mut qb = QueryBuilder::new(format!("SELECT {columns} FROM ("));
    qb.push_values(keys, |mut row, (mission_id, user_id)| {
        row.push_bind(mission_id.as_str()).push_bind(user_id.as_str());
    });
    qb.push(") AS k JOIN progress AS p ON p.tenant_id = ");
    qb.push_bind(tenant);
    qb.push(" AND p.mission_id = k.column1 AND p.user_id = k.column2");
    qb
}

async fn save_progress(conn: &mut SqliteConnection, tenant: &str, rows: &[StoredProgress]) -> Result<()> {
    for chunk in rows.chunks(SAVE_CHUNK) {
        let states = chunk.iter().map(state_json).collect::<Result<Vec<_>>>()?;
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO progress (tenant_id, mission_id, user_id, state, completions, updated_at) ");
        qb.push_values(chunk.iter().zip(states), |mut row, (p, state)| {
            row.push_bind(tenant)
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

/// One UPDATE does the check and the take, so no reader of a stale count can overspend.
/// Ending the mission also moves `updated_at`: otherwise an admin's edit based on the
/// mission as it was (still active) would pass the optimistic check and revive it. A take
/// that does not end it leaves `updated_at` alone, since `update_mission` never writes
/// `rewards_granted` and so cannot clobber it.
async fn take_budget(conn: &mut SqliteConnection, tenant: &str, mission_id: &str, at: Timestamp) -> Result<bool> {
    let taken: Option<Option<bool>> = sqlx::query_scalar(
        "UPDATE missions SET \
            rewards_granted = rewards_granted + 1, \
            status = CASE WHEN rewards_granted + 1 >= max_rewards THEN 'ended' ELSE status END, \
            updated_at = CASE WHEN rewards_granted + 1 >= max_rewards THEN ? ELSE updated_at END \
         WHERE tenant_id = ? AND id = ? AND (max_rewards IS NULL OR rewards_granted < max_rewards) \
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
