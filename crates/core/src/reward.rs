//! Rewards: what a completion earns, and the states a reward moves through.

use crate::mission::spec::{RewardKind, RewardSpec};
use jiff::{Span, Timestamp};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RewardStatus {
    /// Earned, not yet settled.
    Pending,
    Granted,
    /// A reversal took the progress back under the target before settlement.
    Revoked,
    Failed,
}

impl RewardStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Granted => "granted",
            Self::Revoked => "revoked",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "granted" => Self::Granted,
            "revoked" => Self::Revoked,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reward {
    pub id: String,
    pub mission_id: String,
    pub user_id: String,
    /// Which of the user's completions of the mission earned it (1-based).
    pub completion: u32,
    pub kind: RewardKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>))]
    pub amount: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub status: RewardStatus,
    /// Settled no earlier than this (`created_at` plus the mission's `hold`); until then a
    /// reversal may still revoke it.
    pub hold_until: Timestamp,
    /// Settlement attempts made (a webhook fulfilment may take several).
    pub attempts: u32,
    /// When it became `granted` or `failed`.
    pub settled_at: Option<Timestamp>,
    /// Why it is `failed`; null otherwise.
    pub failure: Option<String>,
    /// Points and coins: how long the credit lasts once settled (ISO 8601), if it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_after: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The amount a completion earns: the fixed amount, or the cashback percent of the
/// completing step's sum, capped, rounded half away from zero to two decimals (minor units).
pub fn amount_for(spec: &RewardSpec, completing_sum: Option<Decimal>) -> Option<Decimal> {
    match spec.percent {
        None => spec.amount,
        Some(percent) => {
            let base = completing_sum.unwrap_or_default();
            let raw = (base.saturating_mul(percent) / Decimal::ONE_HUNDRED)
                .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
            Some(spec.cap.map_or(raw, |cap| raw.min(cap)).normalize())
        }
    }
}

/// A new pending reward for the `completion`-th completion.
#[allow(clippy::too_many_arguments)]
pub fn pending(
    id: String,
    mission_id: &str,
    user_id: &str,
    completion: u32,
    spec: &RewardSpec,
    amount: Option<Decimal>,
    now: Timestamp,
) -> Reward {
    Reward {
        id,
        mission_id: mission_id.to_owned(),
        user_id: user_id.to_owned(),
        completion,
        kind: spec.kind,
        amount,
        currency: spec.currency.clone(),
        code: spec.code.clone(),
        name: spec.name.clone(),
        status: RewardStatus::Pending,
        hold_until: hold_end(spec, now),
        attempts: 0,
        settled_at: None,
        failure: None,
        expires_after: spec.expires_after.clone(),
        created_at: now,
        updated_at: now,
    }
}

/// The hold of a reward spec, if any and valid (`CompiledMission::compile` refuses an
/// invalid one, so a stored mission's always is).
pub fn hold_span(spec: &RewardSpec) -> Option<Span> {
    spec.hold.as_deref().and_then(|text| text.parse::<Span>().ok()).filter(|s| !s.is_negative())
}

/// The end of a reward's hold when earned at `earned`: calendar units (P1M) in UTC.
pub fn hold_end(spec: &RewardSpec, earned: Timestamp) -> Timestamp {
    hold_span(spec).map_or(earned, |span| crate::mission::window::rolling_end(earned, span))
}

/// When a credit settled at `settled` expires, if its reward's `expires_after` says it does
/// (calendar units in UTC, like a hold).
pub fn credit_expiry(reward: &Reward, settled: Timestamp) -> Option<Timestamp> {
    let span = reward.expires_after.as_deref()?.parse::<Span>().ok().filter(|s| !s.is_negative())?;
    Some(crate::mission::window::rolling_end(settled, span))
}

/// Where a settled reward goes: the kind decides (API.md, "Settlement").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Points and coins: an entry in the user's balance of this name.
    Balance { currency: String, amount: Decimal },
    /// Badges and unlocks: an entitlement with this code.
    Entitlement { code: String },
    /// Cash and vouchers: the tenant's fulfilment endpoint decides (a webhook).
    Fulfilment,
}

/// How `reward` is settled: points and coins into the balance its `currency` names (default:
/// the kind), badges and unlocks as the entitlement its `code` names (default: the mission id).
pub fn settlement_of(reward: &Reward) -> Settlement {
    match reward.kind {
        RewardKind::Points | RewardKind::Coins => Settlement::Balance {
            currency: reward.currency.clone().unwrap_or_else(|| reward.kind.as_str().to_owned()),
            amount: reward.amount.unwrap_or_default(),
        },
        RewardKind::Badge | RewardKind::Unlock => {
            Settlement::Entitlement { code: reward.code.clone().unwrap_or_else(|| reward.mission_id.clone()) }
        }
        RewardKind::Cash | RewardKind::Voucher | RewardKind::GiftCard => Settlement::Fulfilment,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(percent: Option<i64>, cap: Option<i64>) -> RewardSpec {
        RewardSpec {
            kind: RewardKind::Cash,
            amount: percent.is_none().then(|| Decimal::from(50)),
            currency: Some("INR".into()),
            percent: percent.map(Decimal::from),
            cap: cap.map(Decimal::from),
            code: None,
            name: None,
            hold: None,
            expires_after: None,
        }
    }

    #[test]
    fn fixed_and_cashback() {
        assert_eq!(amount_for(&spec(None, None), None), Some(Decimal::from(50)));
        let sum = "512.30".parse().unwrap();
        assert_eq!(amount_for(&spec(Some(5), None), Some(sum)), Some("25.62".parse().unwrap()));
        assert_eq!(amount_for(&spec(Some(5), Some(20)), Some(sum)), Some(Decimal::from(20)));
    }

    #[test]
    fn a_hold_ends_after_its_duration_in_utc_calendar_units() {
        let earned: Timestamp = "2026-01-31T10:00:00Z".parse().unwrap();
        let with = |hold: Option<&str>| RewardSpec { hold: hold.map(str::to_owned), ..spec(None, None) };
        assert_eq!(hold_end(&with(None), earned), earned);
        assert_eq!(hold_end(&with(Some("PT0S")), earned), earned);
        assert_eq!(hold_end(&with(Some("PT24H")), earned), "2026-02-01T10:00:00Z".parse().unwrap());
        assert_eq!(hold_end(&with(Some("P1M")), earned), "2026-02-28T10:00:00Z".parse().unwrap());
    }

    #[test]
    fn the_kind_decides_where_a_reward_is_settled() {
        let reward = |kind: RewardKind, currency: Option<&str>, code: Option<&str>| {
            let spec = RewardSpec {
                kind,
                currency: currency.map(str::to_owned),
                code: code.map(str::to_owned),
                ..spec(None, None)
            };
            pending("r".into(), "read-3", "u", 1, &spec, Some(Decimal::from(7)), Timestamp::UNIX_EPOCH)
        };
        let balance = |currency: &str| Settlement::Balance { currency: currency.into(), amount: Decimal::from(7) };
        assert_eq!(settlement_of(&reward(RewardKind::Points, None, None)), balance("points"));
        assert_eq!(settlement_of(&reward(RewardKind::Coins, Some("gems"), None)), balance("gems"));
        let entitlement = |code: &str| Settlement::Entitlement { code: code.into() };
        assert_eq!(settlement_of(&reward(RewardKind::Unlock, None, None)), entitlement("read-3"));
        assert_eq!(settlement_of(&reward(RewardKind::Badge, None, Some("early-bird"))), entitlement("early-bird"));
        assert_eq!(settlement_of(&reward(RewardKind::Cash, Some("INR"), None)), Settlement::Fulfilment);
    }
}
