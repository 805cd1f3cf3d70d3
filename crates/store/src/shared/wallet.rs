//! Settlement's rows: a reward's settled state, balances with their entries, entitlements.

use super::{Conn, Db, LIST_CHUNK, LOCK_ROWS, sql};
use crate::rows::{REWARD_COLUMNS, RewardRow, corrupt, ts_text};
use crate::{Page, Result};
use jiff::Timestamp;
use questline_core::id::{TenantId, UserId};
use questline_core::mission::spec::RewardKind;
use questline_core::reward::{Reward, RewardStatus};
use questline_core::wallet::{Balance, BalanceEntry, Entitlement};
use rust_decimal::Decimal;
use sqlx::QueryBuilder;

const ENTRY_COLUMNS: &str =
    "id, user_id, currency, amount, balance_after, reason, reward_id, idempotency_key, created_at";

pub(super) async fn lock_reward(conn: &mut Conn, tenant: &TenantId, id: &str) -> Result<Option<Reward>> {
    let row: Option<RewardRow> = sqlx::query_as(&sql(&format!(
        "SELECT {REWARD_COLUMNS} FROM rewards WHERE tenant_id = ? AND id = ?{LOCK_ROWS}"
    )))
    .bind(tenant.as_str())
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(RewardRow::into_reward).transpose()
}

pub(super) async fn lock_rewards(conn: &mut Conn, tenant: &TenantId, ids: &[String]) -> Result<Vec<Reward>> {
    let mut sorted: Vec<&str> = ids.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut rewards = Vec::with_capacity(sorted.len());
    // Chunks in id order keep the lock order across chunks too.
    for chunk in sorted.chunks(LIST_CHUNK) {
        let mut qb: QueryBuilder<Db> =
            QueryBuilder::new(format!("SELECT {REWARD_COLUMNS} FROM rewards WHERE tenant_id = "));
        qb.push_bind(tenant.as_str()).push(" AND id IN (");
        let mut list = qb.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        qb.push(") ORDER BY id").push(LOCK_ROWS);
        let rows: Vec<RewardRow> = qb.build_query_as().fetch_all(&mut *conn).await?;
        for row in rows {
            rewards.push(row.into_reward()?);
        }
    }
    Ok(rewards)
}

pub(super) async fn settle_reward(conn: &mut Conn, tenant: &TenantId, reward: &Reward) -> Result<()> {
    sqlx::query(&sql("UPDATE rewards SET status = ?, attempts = ?, settled_at = ?, failure = ?, updated_at = ? \
         WHERE tenant_id = ? AND id = ?"))
    .bind(reward.status.as_str())
    .bind(i64::from(reward.attempts))
    .bind(reward.settled_at.map(ts_text))
    .bind(reward.failure.as_deref())
    .bind(ts_text(reward.updated_at))
    .bind(tenant.as_str())
    .bind(reward.id.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// Pending rewards whose hold ended by `now`, soonest first.
pub(super) async fn due_rewards(conn: &mut Conn, tenant: &TenantId, now: Timestamp, limit: u32) -> Result<Vec<Reward>> {
    let rows: Vec<RewardRow> = sqlx::query_as(&sql(&format!(
        "SELECT {REWARD_COLUMNS} FROM rewards WHERE tenant_id = ? AND status = ? AND hold_until <= ? \
         ORDER BY hold_until, id LIMIT ?"
    )))
    .bind(tenant.as_str())
    .bind(RewardStatus::Pending.as_str())
    .bind(ts_text(now))
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(RewardRow::into_reward).collect()
}

/// The balance, locked until the unit ends (a missing one is made at zero first, so that
/// there is a row to lock).
pub(super) async fn lock_balance(
    conn: &mut Conn,
    tenant: &TenantId,
    user: &UserId,
    currency: &str,
    now: Timestamp,
) -> Result<Decimal> {
    sqlx::query(&sql(
        "INSERT INTO balances (tenant_id, user_id, currency, balance, updated_at) VALUES (?, ?, ?, '0', ?) \
         ON CONFLICT (tenant_id, user_id, currency) DO NOTHING",
    ))
    .bind(tenant.as_str())
    .bind(user.as_str())
    .bind(currency)
    .bind(ts_text(now))
    .execute(&mut *conn)
    .await?;
    let text: String = sqlx::query_scalar(&sql(&format!(
        "SELECT balance FROM balances WHERE tenant_id = ? AND user_id = ? AND currency = ?{LOCK_ROWS}"
    )))
    .bind(tenant.as_str())
    .bind(user.as_str())
    .bind(currency)
    .fetch_one(conn)
    .await?;
    Decimal::from_str_exact(&text).map_err(|e| corrupt(format!("balance {user}/{currency}"), e))
}

/// The entry an idempotency key or a reward already wrote to this balance, if any.
pub(super) async fn find_entry(
    conn: &mut Conn,
    tenant: &TenantId,
    user: &UserId,
    currency: &str,
    idempotency_key: Option<&str>,
    reward_id: Option<&str>,
) -> Result<Option<BalanceEntry>> {
    let mut qb: QueryBuilder<Db> =
        QueryBuilder::new(format!("SELECT {ENTRY_COLUMNS} FROM balance_entries WHERE tenant_id = "));
    qb.push_bind(tenant.as_str());
    match (idempotency_key, reward_id) {
        (Some(key), _) => {
            qb.push(" AND user_id = ").push_bind(user.as_str());
            qb.push(" AND currency = ").push_bind(currency);
            qb.push(" AND idempotency_key = ").push_bind(key);
        }
        (None, Some(reward)) => {
            qb.push(" AND reward_id = ").push_bind(reward);
        }
        (None, None) => return Ok(None),
    }
    let row: Option<EntryRow> = qb.build_query_as().fetch_optional(conn).await?;
    row.map(EntryRow::into_entry).transpose()
}

/// Writes an entry and moves its balance (locked by [`lock_balance`]) to `balance_after`.
pub(super) async fn insert_entry(conn: &mut Conn, tenant: &TenantId, entry: &BalanceEntry) -> Result<()> {
    sqlx::query(&sql(&format!(
        "INSERT INTO balance_entries (tenant_id, {ENTRY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )))
    .bind(tenant.as_str())
    .bind(entry.id.as_str())
    .bind(entry.user_id.as_str())
    .bind(entry.currency.as_str())
    .bind(entry.amount.to_string())
    .bind(entry.balance_after.to_string())
    .bind(entry.reason.as_str())
    .bind(entry.reward_id.as_deref())
    .bind(entry.idempotency_key.as_deref())
    .bind(ts_text(entry.created_at))
    .execute(&mut *conn)
    .await?;
    sqlx::query(&sql(
        "UPDATE balances SET balance = ?, updated_at = ? WHERE tenant_id = ? AND user_id = ? AND currency = ?",
    ))
    .bind(entry.balance_after.to_string())
    .bind(ts_text(entry.created_at))
    .bind(tenant.as_str())
    .bind(entry.user_id.as_str())
    .bind(entry.currency.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// Grants an entitlement unless the user holds that code already; whether it was new.
pub(super) async fn insert_entitlement(
    conn: &mut Conn,
    tenant: &TenantId,
    user: &UserId,
    entitlement: &Entitlement,
) -> Result<bool> {
    let done = sqlx::query(&sql(
        "INSERT INTO entitlements (tenant_id, user_id, code, kind, mission_id, reward_id, granted_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, user_id, code) DO NOTHING",
    ))
    .bind(tenant.as_str())
    .bind(user.as_str())
    .bind(entitlement.code.as_str())
    .bind(entitlement.kind.as_str())
    .bind(entitlement.mission_id.as_deref())
    .bind(entitlement.reward_id.as_deref())
    .bind(ts_text(entitlement.granted_at))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn balances(conn: &mut Conn, tenant: &TenantId, user: &UserId) -> Result<Vec<Balance>> {
    let rows: Vec<(String, String)> = sqlx::query_as(&sql(
        "SELECT currency, balance FROM balances WHERE tenant_id = ? AND user_id = ? ORDER BY currency",
    ))
    .bind(tenant.as_str())
    .bind(user.as_str())
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(currency, text)| {
            let balance =
                Decimal::from_str_exact(&text).map_err(|e| corrupt(format!("balance {user}/{currency}"), e))?;
            Ok(Balance { currency, balance })
        })
        .collect()
}

/// A page of a balance's entries, newest first (entry ids are time-ordered).
pub(super) async fn entries(
    conn: &mut Conn,
    tenant: &TenantId,
    user: &UserId,
    currency: &str,
    before: Option<&str>,
    limit: u32,
) -> Result<Page<BalanceEntry>> {
    let mut qb: QueryBuilder<Db> =
        QueryBuilder::new(format!("SELECT {ENTRY_COLUMNS} FROM balance_entries WHERE tenant_id = "));
    qb.push_bind(tenant.as_str());
    qb.push(" AND user_id = ").push_bind(user.as_str());
    qb.push(" AND currency = ").push_bind(currency);
    if let Some(before) = before {
        qb.push(" AND id < ").push_bind(before);
    }
    qb.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit) + 1);
    let rows: Vec<EntryRow> = qb.build_query_as().fetch_all(conn).await?;
    let mut items = rows.into_iter().map(EntryRow::into_entry).collect::<Result<Vec<_>>>()?;
    let next_after = (items.len() > limit as usize).then(|| {
        items.truncate(limit as usize);
        items.last().map(|e| e.id.clone()).unwrap_or_default()
    });
    Ok(Page { items, next_after })
}

pub(super) async fn entitlements(conn: &mut Conn, tenant: &TenantId, user: &UserId) -> Result<Vec<Entitlement>> {
    let rows: Vec<EntitlementRow> =
        sqlx::query_as(&sql("SELECT code, kind, mission_id, reward_id, granted_at FROM entitlements \
         WHERE tenant_id = ? AND user_id = ? ORDER BY granted_at, code"))
        .bind(tenant.as_str())
        .bind(user.as_str())
        .fetch_all(conn)
        .await?;
    rows.into_iter()
        .map(|(code, kind, mission_id, reward_id, granted_at)| {
            let what = || format!("entitlement {user}/{code}");
            let kind = match kind.as_str() {
                "badge" => RewardKind::Badge,
                "unlock" => RewardKind::Unlock,
                other => return Err(corrupt(what(), format!("kind {other:?}"))),
            };
            let granted_at = granted_at.parse().map_err(|e| corrupt(what(), e))?;
            Ok(Entitlement { code, kind, mission_id, reward_id, granted_at })
        })
        .collect()
}

/// code, kind, mission_id, reward_id, granted_at
type EntitlementRow = (String, String, Option<String>, Option<String>, String);

#[derive(sqlx::FromRow)]
struct EntryRow {
    id: String,
    user_id: String,
    currency: String,
    amount: String,
    balance_after: String,
    reason: String,
    reward_id: Option<String>,
    idempotency_key: Option<String>,
    created_at: String,
}

impl EntryRow {
    fn into_entry(self) -> Result<BalanceEntry> {
        let what = |col: &str| format!("balance entry {:?} {col}", self.id);
        Ok(BalanceEntry {
            amount: Decimal::from_str_exact(&self.amount).map_err(|e| corrupt(what("amount"), e))?,
            balance_after: Decimal::from_str_exact(&self.balance_after)
                .map_err(|e| corrupt(what("balance_after"), e))?,
            created_at: self.created_at.parse().map_err(|e| corrupt(what("created_at"), e))?,
            id: self.id,
            user_id: self.user_id,
            currency: self.currency,
            reason: self.reason,
            reward_id: self.reward_id,
            idempotency_key: self.idempotency_key,
        })
    }
}
