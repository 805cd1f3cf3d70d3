//! Rewards: what a completion earns, and the states a reward moves through.

use crate::mission::spec::{RewardKind, RewardSpec};
use jiff::Timestamp;
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
        created_at: now,
        updated_at: now,
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
        }
    }

    #[test]
    fn fixed_and_cashback() {
        assert_eq!(amount_for(&spec(None, None), None), Some(Decimal::from(50)));
        let sum = "512.30".parse().unwrap();
        assert_eq!(amount_for(&spec(Some(5), None), Some(sum)), Some("25.62".parse().unwrap()));
        assert_eq!(amount_for(&spec(Some(5), Some(20)), Some(sum)), Some(Decimal::from(20)));
    }
}
