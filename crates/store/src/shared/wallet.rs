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
use std::collections::HashSet;

const ENTRY_COLUMNS: &str = "id, user_id, currency, amount, balance_after, reason, reward_id, idempotency_key, \
     expires_at, expiry_of, created_at";

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

/// Writes rewards' settled state, one statement per distinct outcome (a batch's granted
/// rewards share theirs).
pub(super) async fn save_settlements(conn: &mut Conn, tenant: &TenantId, rewards: &[Reward]) -> Result<()> {
    type Outcome<'a> = (RewardStatus, u32, Option<String>, Option<&'a str>, String);
    let mut groups: Vec<(Outcome<'_>, Vec<&str>)> = Vec::new();
    for r in rewards {
        let key = (r.status, r.attempts, r.settled_at.map(ts_text), r.failure.as_deref(), ts_text(r.updated_at));
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, ids)) => ids.push(r.id.as_str()),
            None => groups.push((key, vec![r.id.as_str()])),
        }
    }
    for ((status, attempts, settled_at, failure, updated_at), ids) in groups {
        for chunk in ids.chunks(LIST_CHUNK) {
            let mut qb: QueryBuilder<Db> = QueryBuilder::new("UPDATE rewards SET status = ");
            qb.push_bind(status.as_str()).push(", attempts = ").push_bind(i64::from(attempts));
            qb.push(", settled_at = ").push_bind(settled_at.clone());
            qb.push(", failure = ").push_bind(failure);
            qb.push(", updated_at = ").push_bind(updated_at.clone());
            qb.push(" WHERE tenant_id = ").push_bind(tenant.as_str()).push(" AND id IN (");
            let mut list = qb.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            qb.push(")");
            qb.build().execute(&mut *conn).await?;
        }
    }
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

/// These balances (each `(user, currency)`), locked until the unit ends, in the order
/// given, which the caller makes the one order every unit locks balances in. Missing ones
/// are made at zero first, so that there is a row to lock.
pub(super) async fn lock_balances(
    conn: &mut Conn,
    tenant: &TenantId,
    keys: &[(UserId, String)],
    now: Timestamp,
) -> Result<Vec<Decimal>> {
    let mut balances = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(LIST_CHUNK / 2) {
        let mut qb: QueryBuilder<Db> =
            QueryBuilder::new("INSERT INTO balances (tenant_id, user_id, currency, balance, updated_at) ");
        qb.push_values(chunk, |mut row, (user, currency)| {
            row.push_bind(tenant.as_str())
                .push_bind(user.as_str())
                .push_bind(currency.as_str())
                .push_bind("0")
                .push_bind(ts_text(now));
        });
        qb.push(" ON CONFLICT (tenant_id, user_id, currency) DO NOTHING");
        qb.build().execute(&mut *conn).await?;
        // One row at a time, in the caller's order: a multi-row lock would take them in
        // whatever order the plan reads them.
        for (user, currency) in chunk {
            let text: String = sqlx::query_scalar(&sql(&format!(
                "SELECT balance FROM balances WHERE tenant_id = ? AND user_id = ? AND currency = ?{LOCK_ROWS}"
            )))
            .bind(tenant.as_str())
            .bind(user.as_str())
            .bind(currency.as_str())
            .fetch_one(&mut *conn)
            .await?;
            balances
                .push(Decimal::from_str_exact(&text).map_err(|e| corrupt(format!("balance {user}/{currency}"), e))?);
        }
    }
    Ok(balances)
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

/// Writes entries and moves each balance (locked by [`lock_balances`]) to its last entry's
/// `balance_after`.
pub(super) async fn insert_entries(conn: &mut Conn, tenant: &TenantId, entries: &[BalanceEntry]) -> Result<()> {
    for chunk in entries.chunks(LIST_CHUNK / 12) {
        let mut qb: QueryBuilder<Db> =
            QueryBuilder::new(format!("INSERT INTO balance_entries (tenant_id, {ENTRY_COLUMNS}) "));
        qb.push_values(chunk, |mut row, e| {
            row.push_bind(tenant.as_str())
                .push_bind(e.id.as_str())
                .push_bind(e.user_id.as_str())
                .push_bind(e.currency.as_str())
                .push_bind(e.amount.to_string())
                .push_bind(e.balance_after.to_string())
                .push_bind(e.reason.as_str())
                .push_bind(e.reward_id.as_deref())
                .push_bind(e.idempotency_key.as_deref())
                .push_bind(e.expires_at.map(ts_text))
                .push_bind(e.expiry_of.as_deref())
                .push_bind(ts_text(e.created_at));
        });
        qb.build().execute(&mut *conn).await?;
    }
    // The last entry of each balance says where it stands.
    let mut seen = HashSet::new();
    let last: Vec<&BalanceEntry> =
        entries.iter().rev().filter(|e| seen.insert((e.user_id.as_str(), e.currency.as_str()))).collect();
    for chunk in last.chunks(LIST_CHUNK / 4) {
        let mut qb: QueryBuilder<Db> =
            QueryBuilder::new("INSERT INTO balances (tenant_id, user_id, currency, balance, updated_at) ");
        qb.push_values(chunk, |mut row, e| {
            row.push_bind(tenant.as_str())
                .push_bind(e.user_id.as_str())
                .push_bind(e.currency.as_str())
                .push_bind(e.balance_after.to_string())
                .push_bind(ts_text(e.created_at));
        });
        qb.push(
            " ON CONFLICT (tenant_id, user_id, currency) DO UPDATE SET balance = excluded.balance, \
             updated_at = excluded.updated_at",
        );
        qb.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Balances holding a credit that expired by `now` and is not yet dealt with, longest
/// expired first (`balance_entries_expiring`).
pub(super) async fn expiring_balances(
    conn: &mut Conn,
    tenant: &TenantId,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<(UserId, String)>> {
    let rows: Vec<(String, String)> = sqlx::query_as(&sql(
        "SELECT user_id, currency FROM balance_entries WHERE tenant_id = ? AND expires_at IS NOT NULL \
         AND expired_at IS NULL AND expires_at <= ? GROUP BY user_id, currency ORDER BY min(expires_at) LIMIT ?",
    ))
    .bind(tenant.as_str())
    .bind(ts_text(now))
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(user, currency)| (UserId::new(&user), currency)).collect())
}

/// Every entry of one balance in the order written (entry ids are time-ordered), and the
/// credits whose expiry was dealt with.
pub(super) async fn balance_ledger(
    conn: &mut Conn,
    tenant: &TenantId,
    user: &UserId,
    currency: &str,
) -> Result<(Vec<BalanceEntry>, HashSet<String>)> {
    let rows: Vec<(EntryRow, Option<String>)> = sqlx::query(&sql(&format!(
        "SELECT {ENTRY_COLUMNS}, expired_at FROM balance_entries WHERE tenant_id = ? AND user_id = ? \
         AND currency = ? ORDER BY id"
    )))
    .bind(tenant.as_str())
    .bind(user.as_str())
    .bind(currency)
    .try_map(|row: <Db as sqlx::Database>::Row| {
        use sqlx::{FromRow, Row};
        Ok((EntryRow::from_row(&row)?, row.try_get("expired_at")?))
    })
    .fetch_all(conn)
    .await?;
    let mut entries = Vec::with_capacity(rows.len());
    let mut processed = HashSet::new();
    for (row, expired_at) in rows {
        if expired_at.is_some() {
            processed.insert(row.id.clone());
        }
        entries.push(row.into_entry()?);
    }
    Ok((entries, processed))
}

pub(super) async fn mark_expired(
    conn: &mut Conn,
    tenant: &TenantId,
    credit_ids: &[String],
    at: Timestamp,
) -> Result<()> {
    for chunk in credit_ids.chunks(LIST_CHUNK) {
        let mut qb: QueryBuilder<Db> = QueryBuilder::new("UPDATE balance_entries SET expired_at = ");
        qb.push_bind(ts_text(at)).push(" WHERE tenant_id = ").push_bind(tenant.as_str()).push(" AND id IN (");
        let mut list = qb.separated(", ");
        for id in chunk {
            list.push_bind(id.as_str());
        }
        qb.push(")");
        qb.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Grants entitlements, each unless its user holds that code already; how many were new.
pub(super) async fn insert_entitlements(
    conn: &mut Conn,
    tenant: &TenantId,
    entitlements: &[(UserId, Entitlement)],
) -> Result<u64> {
    let mut new = 0;
    for chunk in entitlements.chunks(LIST_CHUNK / 7) {
        let mut qb: QueryBuilder<Db> = QueryBuilder::new(
            "INSERT INTO entitlements (tenant_id, user_id, code, kind, mission_id, reward_id, granted_at) ",
        );
        qb.push_values(chunk, |mut row, (user, e)| {
            row.push_bind(tenant.as_str())
                .push_bind(user.as_str())
                .push_bind(e.code.as_str())
                .push_bind(e.kind.as_str())
                .push_bind(e.mission_id.as_deref())
                .push_bind(e.reward_id.as_deref())
                .push_bind(ts_text(e.granted_at));
        });
        qb.push(" ON CONFLICT (tenant_id, user_id, code) DO NOTHING");
        new += qb.build().execute(&mut *conn).await?.rows_affected();
    }
    Ok(new)
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
    expires_at: Option<String>,
    expiry_of: Option<String>,
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
            expires_at: match &self.expires_at {
                Some(text) => Some(text.parse().map_err(|e| corrupt(what("expires_at"), e))?),
                None => None,
            },
            expiry_of: self.expiry_of,
            id: self.id,
            user_id: self.user_id,
            currency: self.currency,
            reason: self.reason,
            reward_id: self.reward_id,
            idempotency_key: self.idempotency_key,
        })
    }
}
