//! Rows as both backends hold them, and their conversion to and from domain types.
//!
//! The two schemas store the same values in the same shapes (TEXT timestamps, TEXT JSON,
//! 64-bit integers) and the derived `FromRow`s are generic over the database, so this one
//! module decodes the rows of SQLite and of PostgreSQL alike.
//!
//! Every decode failure becomes [`StoreError::Corrupt`] naming the table, the row and the
//! column, because a value we wrote ourselves that no longer decodes is a bug or a
//! hand-edited database, and whoever reads the log needs to find the row.
//!
//! Instants: `occurred_at`/`received_at` are INTEGER microseconds (they order the ledger);
//! every other instant is RFC 3339 TEXT written by [`ts_text`] with a fixed nine fractional
//! digits. The fixed width is what makes `ORDER BY created_at` and the optimistic
//! `updated_at = ?` comparison exact: jiff's default display drops trailing zero digits, and
//! `...:00Z` sorts after `...:00.5Z` as text.

use crate::keys::{ApiKey, Role};
use crate::{BudgetRow, MissionProgress, Result, StoreError, UserProgress};
use jiff::Timestamp;
use questline_core::event::{Event, RecordedEvent};
use questline_core::id::{MissionId, TenantId};
use questline_core::mission::spec::RewardKind;
use questline_core::mission::{Mission, MissionSpec, MissionStatus};
use questline_core::reward::{Reward, RewardStatus};
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt::Display;

/// The columns [`EventRow`] reads, for `SELECT {EVENT_COLUMNS} FROM events`.
pub(crate) const EVENT_COLUMNS: &str =
    "id, type AS event_type, user_id, occurred_at, attributes, reverses, received_at";
pub(crate) const MISSION_COLUMNS: &str =
    "id, status, spec, rewards_granted, activated_at, active_periods, created_at, updated_at";
pub(crate) const USER_PROGRESS_COLUMNS: &str = "user_id, missions, version";
pub(crate) const REWARD_COLUMNS: &str = "id, mission_id, user_id, completion, kind, amount, currency, code, name, status, hold_until, attempts, \
     settled_at, failure, expires_after, created_at, updated_at";
pub(crate) const KEY_COLUMNS: &str = "tenant_id, id, name, role, created_at, last_used_at";

pub(crate) fn corrupt(what: impl Display, err: impl Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {err}"))
}

/// An instant as stored in TEXT columns: RFC 3339, UTC, always nine fractional digits.
pub(crate) fn ts_text(t: Timestamp) -> String {
    format!("{t:.9}")
}

fn parse_ts(text: &str, what: impl Display) -> Result<Timestamp> {
    text.parse().map_err(|e| corrupt(what, e))
}

fn parse_opt_ts(text: Option<&str>, what: impl Display) -> Result<Option<Timestamp>> {
    text.map(|t| parse_ts(t, what)).transpose()
}

/// SQLite integers are signed; a count past `i64::MAX` cannot happen in practice, and a
/// budget that large is as good as none, so saturating is the honest reading.
pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

// --- events ---

#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    id: String,
    event_type: String,
    user_id: String,
    occurred_at: i64,
    attributes: String,
    reverses: Option<String>,
    received_at: i64,
}

impl EventRow {
    pub(crate) fn into_event(self) -> Result<Event> {
        let what = |col: &str| format!("events {:?} {col}", self.id);
        let occurred_at = Timestamp::from_microsecond(self.occurred_at).map_err(|e| corrupt(what("occurred_at"), e))?;
        let attributes: Map<String, Value> =
            serde_json::from_str(&self.attributes).map_err(|e| corrupt(what("attributes"), e))?;
        let received_at = Timestamp::from_microsecond(self.received_at).map_err(|e| corrupt(what("received_at"), e))?;
        Ok(Event::recorded(RecordedEvent {
            id: self.id,
            event_type: self.event_type,
            user_id: self.user_id,
            occurred_at,
            attributes,
            reverses: self.reverses,
            received_at,
        }))
    }
}

pub(crate) fn events_from(rows: Vec<EventRow>) -> Result<Vec<Event>> {
    rows.into_iter().map(EventRow::into_event).collect()
}

pub(crate) fn attributes_json(event: &Event) -> Result<String> {
    serde_json::to_string(event.attributes())
        .map_err(|e| corrupt(format!("cannot encode attributes of event {:?}", event.id()), e))
}

// --- missions ---

#[derive(sqlx::FromRow)]
pub(crate) struct MissionRow {
    id: String,
    status: String,
    spec: String,
    rewards_granted: i64,
    activated_at: Option<String>,
    active_periods: String,
    created_at: String,
    updated_at: String,
}

impl MissionRow {
    pub(crate) fn into_mission(self) -> Result<Mission> {
        let what = |col: &str| format!("missions {:?} {col}", self.id);
        let status = MissionStatus::parse(&self.status).ok_or_else(|| corrupt(what("status"), &self.status))?;
        let spec: MissionSpec = serde_json::from_str(&self.spec).map_err(|e| corrupt(what("spec"), e))?;
        let rewards_granted = u64::try_from(self.rewards_granted).map_err(|e| corrupt(what("rewards_granted"), e))?;
        Ok(Mission {
            status,
            spec,
            rewards_granted,
            activated_at: parse_opt_ts(self.activated_at.as_deref(), what("activated_at"))?,
            active_periods: serde_json::from_str(&self.active_periods)
                .map_err(|e| corrupt(what("active_periods"), e))?,
            created_at: parse_ts(&self.created_at, what("created_at"))?,
            updated_at: parse_ts(&self.updated_at, what("updated_at"))?,
            id: self.id,
        })
    }
}

pub(crate) fn spec_json(mission: &Mission) -> Result<String> {
    serde_json::to_string(&mission.spec)
        .map_err(|e| corrupt(format!("cannot encode spec of mission {:?}", mission.id), e))
}

pub(crate) fn active_periods_json(mission: &Mission) -> Result<String> {
    serde_json::to_string(&mission.active_periods)
        .map_err(|e| corrupt(format!("cannot encode active periods of mission {:?}", mission.id), e))
}

/// The `max_rewards` column mirrors the spec's budget, so that [`BudgetRow`]s come from one
/// row lock without decoding the spec.
pub(crate) fn max_rewards(mission: &Mission) -> Option<i64> {
    mission.spec.budget.as_ref().map(|b| to_i64(b.max_rewards))
}

#[derive(sqlx::FromRow)]
pub(crate) struct BudgetRecord {
    id: String,
    rewards_granted: i64,
    max_rewards: Option<i64>,
}

impl BudgetRecord {
    pub(crate) fn into_budget(self) -> Result<BudgetRow> {
        let what = |col: &str| format!("missions {:?} {col}", self.id);
        let granted = u64::try_from(self.rewards_granted).map_err(|e| corrupt(what("rewards_granted"), e))?;
        let max_rewards =
            self.max_rewards.map(u64::try_from).transpose().map_err(|e| corrupt(what("max_rewards"), e))?;
        Ok(BudgetRow { mission_id: self.id.into(), granted, max_rewards })
    }
}

// --- progress ---

/// A user's progress row: every mission's state in one JSON object, mission id ->
/// [`MissionProgress`].
#[derive(sqlx::FromRow)]
pub(crate) struct UserProgressRow {
    user_id: String,
    missions: String,
    version: i64,
}

impl UserProgressRow {
    pub(crate) fn into_progress(self) -> Result<UserProgress> {
        let missions: BTreeMap<MissionId, MissionProgress> = crate::progress_codec::decode(&self.missions)
            .map_err(|e| corrupt(format!("user_progress {:?} missions", self.user_id), e))?;
        Ok(UserProgress { user_id: self.user_id.into(), missions, version: self.version })
    }
}

pub(crate) fn user_progress_from(rows: Vec<UserProgressRow>) -> Result<Vec<UserProgress>> {
    rows.into_iter().map(UserProgressRow::into_progress).collect()
}

/// Each user's version in `users`' order, from `(user, version)` rows; 0 for a user without
/// a row.
pub(crate) fn versions_in_order(users: &[questline_core::id::UserId], rows: Vec<(String, i64)>) -> Vec<i64> {
    let found: std::collections::HashMap<String, i64> = rows.into_iter().collect();
    users.iter().map(|u| found.get(u.as_str()).copied().unwrap_or(0)).collect()
}

/// The `missions` column of a user's row.
pub(crate) fn missions_json(progress: &UserProgress) -> Result<String> {
    crate::progress_codec::encode(&progress.missions)
        .map_err(|e| corrupt(format!("cannot encode the progress of user {:?}", progress.user_id.as_str()), e))
}

/// When a user's row last changed: its latest mission's.
pub(crate) fn last_updated(progress: &UserProgress) -> String {
    progress.missions.values().map(|m| m.updated_at).max().map_or_else(String::new, ts_text)
}

// --- rewards ---

#[derive(sqlx::FromRow)]
pub(crate) struct RewardRow {
    id: String,
    mission_id: String,
    user_id: String,
    completion: i64,
    kind: String,
    amount: Option<String>,
    currency: Option<String>,
    code: Option<String>,
    name: Option<String>,
    status: String,
    /// Null only in rows migrated from before holds existed, which had none.
    hold_until: Option<String>,
    attempts: i64,
    settled_at: Option<String>,
    failure: Option<String>,
    expires_after: Option<String>,
    created_at: String,
    updated_at: String,
}

impl RewardRow {
    pub(crate) fn into_reward(self) -> Result<Reward> {
        let what = |col: &str| format!("rewards {:?} {col}", self.id);
        let amount = match &self.amount {
            // Decimal text, never a float: `from_str_exact` refuses to round.
            Some(text) => Some(Decimal::from_str_exact(text).map_err(|e| corrupt(what("amount"), e))?),
            None => None,
        };
        Ok(Reward {
            completion: u32::try_from(self.completion).map_err(|e| corrupt(what("completion"), e))?,
            kind: parse_kind(&self.kind).ok_or_else(|| corrupt(what("kind"), &self.kind))?,
            status: RewardStatus::parse(&self.status).ok_or_else(|| corrupt(what("status"), &self.status))?,
            hold_until: parse_ts(self.hold_until.as_deref().unwrap_or(&self.created_at), what("hold_until"))?,
            attempts: u32::try_from(self.attempts).map_err(|e| corrupt(what("attempts"), e))?,
            settled_at: parse_opt_ts(self.settled_at.as_deref(), what("settled_at"))?,
            failure: self.failure,
            expires_after: self.expires_after,
            created_at: parse_ts(&self.created_at, what("created_at"))?,
            updated_at: parse_ts(&self.updated_at, what("updated_at"))?,
            amount,
            id: self.id,
            mission_id: self.mission_id,
            user_id: self.user_id,
            currency: self.currency,
            code: self.code,
            name: self.name,
        })
    }
}

pub(crate) fn rewards_from(rows: Vec<RewardRow>) -> Result<Vec<Reward>> {
    rows.into_iter().map(RewardRow::into_reward).collect()
}

/// The inverse of `RewardKind::as_str`; core has no parser and does not need one.
fn parse_kind(s: &str) -> Option<RewardKind> {
    Some(match s {
        "cash" => RewardKind::Cash,
        "points" => RewardKind::Points,
        "coins" => RewardKind::Coins,
        "voucher" => RewardKind::Voucher,
        "gift_card" => RewardKind::GiftCard,
        "badge" => RewardKind::Badge,
        "unlock" => RewardKind::Unlock,
        _ => return None,
    })
}

// --- API keys ---

#[derive(sqlx::FromRow)]
pub(crate) struct KeyRow {
    tenant_id: String,
    id: String,
    name: String,
    role: String,
    created_at: String,
    last_used_at: Option<String>,
}

impl KeyRow {
    /// The key with the tenant it belongs to.
    pub(crate) fn into_key(self) -> Result<(TenantId, ApiKey)> {
        let what = |col: &str| format!("api_keys {:?} {col}", self.id);
        let key = ApiKey {
            role: Role::parse(&self.role).ok_or_else(|| corrupt(what("role"), &self.role))?,
            created_at: parse_ts(&self.created_at, what("created_at"))?,
            last_used_at: parse_opt_ts(self.last_used_at.as_deref(), what("last_used_at"))?,
            id: self.id,
            name: self.name,
        };
        Ok((self.tenant_id.into(), key))
    }
}

// --- webhooks ---

pub(crate) const WEBHOOK_COLUMNS: &str =
    "id, url, events, max_attempts, retry_initial_ms, retry_max_ms, sealed_secret, created_at";

#[derive(sqlx::FromRow)]
pub(crate) struct WebhookRow {
    id: String,
    url: String,
    events: String,
    max_attempts: i64,
    retry_initial_ms: i64,
    retry_max_ms: i64,
    sealed_secret: String,
    created_at: String,
}

impl WebhookRow {
    pub(crate) fn into_webhook(self) -> Result<crate::webhooks::Webhook> {
        let what = |col: &str| format!("webhooks {:?} {col}", self.id);
        let millis = |n: i64, col: &str| {
            u64::try_from(n).map(std::time::Duration::from_millis).map_err(|e| corrupt(what(col), e))
        };
        Ok(crate::webhooks::Webhook {
            events: serde_json::from_str(&self.events).map_err(|e| corrupt(what("events"), e))?,
            max_attempts: u32::try_from(self.max_attempts).map_err(|e| corrupt(what("max_attempts"), e))?,
            retry_initial: millis(self.retry_initial_ms, "retry_initial_ms")?,
            retry_max: millis(self.retry_max_ms, "retry_max_ms")?,
            created_at: parse_ts(&self.created_at, what("created_at"))?,
            id: self.id,
            url: self.url,
            sealed_secret: self.sealed_secret,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_fixed_width_and_round_trip() {
        let whole: Timestamp = "2024-05-01T10:00:00Z".parse().unwrap();
        let half: Timestamp = "2024-05-01T10:00:00.5Z".parse().unwrap();
        let nanos: Timestamp = "2024-05-01T10:00:00.123456789Z".parse().unwrap();
        assert_eq!(ts_text(whole), "2024-05-01T10:00:00.000000000Z");
        assert!(ts_text(whole) < ts_text(half), "text order must be time order");
        for t in [whole, half, nanos] {
            assert_eq!(ts_text(t).parse::<Timestamp>().unwrap(), t);
        }
    }

    #[test]
    fn reward_kinds_round_trip() {
        use RewardKind::*;
        for kind in [Cash, Points, Coins, Voucher, Badge, Unlock] {
            assert_eq!(parse_kind(kind.as_str()), Some(kind));
        }
        assert_eq!(parse_kind("gold"), None);
    }
}
