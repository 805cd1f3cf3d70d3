//! Reward writes inside a unit of work.

use super::{Conn, Db, LIST_CHUNK, batch};
use crate::rows::{REWARD_COLUMNS, RewardRow, rewards_from, ts_text};
use crate::{Result, StoreError};
use jiff::Timestamp;
use questline_core::id::{MissionId, TenantId, UserId};
use questline_core::reward::{Reward, RewardStatus};
use sqlx::QueryBuilder;
use std::collections::{BTreeSet, HashSet};

/// The live (not revoked) rewards of these (mission, user) pairs, looked up by user: a batch
/// names every pair of every mission its users' events listen to (often tens per user),
/// while a user has a handful of rewards, so one index probe per user (`rewards_by_user`)
/// and a filter here cost far less than one probe per pair.
pub(super) async fn live_of_pairs(
    conn: &mut Conn,
    tenant: &TenantId,
    keys: &[(MissionId, UserId)],
) -> Result<Vec<Reward>> {
    let wanted: HashSet<(&str, &str)> = keys.iter().map(|(m, u)| (m.as_str(), u.as_str())).collect();
    let users: Vec<&str> = keys.iter().map(|(_, u)| u.as_str()).collect::<BTreeSet<_>>().into_iter().collect();
    let mut live = Vec::new();
    for chunk in users.chunks(LIST_CHUNK) {
        let rows: Vec<RewardRow> = batch::live_rewards_of_users(&mut *conn, tenant.as_str(), chunk).await?;
        // Revoked ones are left out here, not in SQL: `status <> 'revoked'` matches the
        // partial index `rewards_live`, which PostgreSQL then chose over `rewards_by_user` and
        // walked whole (batches stalled for seconds once there were 100,000 rewards).
        live.extend(rewards_from(rows)?.into_iter().filter(|r| {
            r.status != RewardStatus::Revoked && wanted.contains(&(r.mission_id.as_str(), r.user_id.as_str()))
        }));
    }
    live.sort_by(|a, b| (&a.mission_id, &a.user_id, a.completion).cmp(&(&b.mission_id, &b.user_id, b.completion)));
    Ok(live)
}

/// Rewards per multi-row insert (17 parameters each).
const INSERT_CHUNK: usize = 200;

pub(super) async fn insert(conn: &mut Conn, tenant: &TenantId, rewards: &[Reward]) -> Result<()> {
    let mut inserted = 0;
    for chunk in rewards.chunks(INSERT_CHUNK) {
        let mut qb: QueryBuilder<Db> = QueryBuilder::new(
            "INSERT INTO rewards (tenant_id, id, mission_id, user_id, completion, kind, amount, currency, code, name, \
             status, hold_until, attempts, settled_at, failure, expires_after, created_at, updated_at) ",
        );
        qb.push_values(chunk, |mut row, reward| {
            row.push_bind(tenant.as_str())
                .push_bind(reward.id.as_str())
                .push_bind(reward.mission_id.as_str())
                .push_bind(reward.user_id.as_str())
                .push_bind(i64::from(reward.completion))
                .push_bind(reward.kind.as_str())
                // Decimal text keeps every digit and the scale ("0.30" stays "0.30").
                .push_bind(reward.amount.map(|a| a.to_string()))
                .push_bind(reward.currency.as_deref())
                .push_bind(reward.code.as_deref())
                .push_bind(reward.name.as_deref())
                .push_bind(reward.status.as_str())
                .push_bind(ts_text(reward.hold_until))
                .push_bind(i64::from(reward.attempts))
                .push_bind(reward.settled_at.map(ts_text))
                .push_bind(reward.failure.as_deref())
                .push_bind(reward.expires_after.as_deref())
                .push_bind(ts_text(reward.created_at))
                .push_bind(ts_text(reward.updated_at));
        });
        // DO NOTHING instead of catching the unique violation: on PostgreSQL an error would
        // abort the whole unit of work, and the caller may go on with it after a `Conflict`.
        qb.push(" ON CONFLICT DO NOTHING");
        inserted += qb.build().execute(&mut *conn).await?.rows_affected();
    }
    if inserted == rewards.len() as u64 {
        return Ok(());
    }
    let what = match rewards {
        [one] => format!(
            "reward {:?} or a live reward for completion {} of mission {:?} by user {:?}",
            one.id, one.completion, one.mission_id, one.user_id
        ),
        _ => format!("{} of {} rewards", rewards.len() as u64 - inserted, rewards.len()),
    };
    Err(StoreError::Conflict(format!("{what} exists: an id is taken or a completion has a live reward")))
}

/// Only pending rewards: one already granted has been paid out, and marking it revoked
/// here would make the books disagree with what the user received.
pub(super) async fn revoke(conn: &mut Conn, tenant: &TenantId, ids: &[String], at: Timestamp) -> Result<Vec<Reward>> {
    let at = ts_text(at);
    let mut revoked = Vec::new();
    for chunk in ids.chunks(LIST_CHUNK) {
        let mut qb: QueryBuilder<Db> = QueryBuilder::new("UPDATE rewards SET status = 'revoked', updated_at = ");
        qb.push_bind(at.as_str()).push(" WHERE tenant_id = ").push_bind(tenant.as_str());
        qb.push(" AND status = 'pending' AND id IN (");
        let mut list = qb.separated(", ");
        for id in chunk {
            list.push_bind(id.as_str());
        }
        // The rows as revoked, for the notifications of the unit that revoked them.
        qb.push(") RETURNING ").push(REWARD_COLUMNS);
        let rows: Vec<RewardRow> = qb.build_query_as().fetch_all(&mut *conn).await?;
        revoked.extend(rewards_from(rows)?);
    }
    Ok(revoked)
}
