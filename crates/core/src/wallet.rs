//! What settled rewards leave behind: balances (points, coins) kept as a ledger of entries,
//! and entitlements (badges, unlocks). The rules are here; the rows are the store's.

use crate::mission::spec::RewardKind;
use jiff::Timestamp;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// One movement of a balance. `balance_after` is the balance once it applied: a balance's
/// history reads without summing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BalanceEntry {
    pub id: String,
    pub user_id: String,
    pub currency: String,
    #[cfg_attr(feature = "openapi", schema(value_type = f64))]
    pub amount: Decimal,
    #[cfg_attr(feature = "openapi", schema(value_type = f64))]
    pub balance_after: Decimal,
    pub reason: String,
    /// The reward a settlement entry is for; null for entries an admin posted.
    pub reward_id: Option<String>,
    #[serde(skip)]
    pub idempotency_key: Option<String>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Balance {
    pub currency: String,
    #[cfg_attr(feature = "openapi", schema(value_type = f64))]
    pub balance: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Entitlement {
    pub code: String,
    /// `badge` or `unlock`.
    pub kind: RewardKind,
    pub mission_id: Option<String>,
    #[serde(skip)]
    pub reward_id: Option<String>,
    pub granted_at: Timestamp,
}

/// A movement that would take a balance below zero.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the balance is {balance}; {amount} would take it below zero")]
pub struct InsufficientBalance {
    pub balance: Decimal,
    pub amount: Decimal,
}

/// The balance once `amount` applies to `balance`: never below zero, exact (`None` if no
/// decimal holds the sum), without trailing zeros (`100`, not `100.00`).
pub fn apply(balance: Decimal, amount: Decimal) -> Result<Option<Decimal>, InsufficientBalance> {
    let Some(after) = balance.checked_add(amount) else { return Ok(None) };
    if after.is_sign_negative() && !after.is_zero() {
        return Err(InsufficientBalance { balance, amount });
    }
    Ok(Some(after.normalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn a_balance_moves_exactly_and_never_below_zero() {
        assert_eq!(apply(d("10.10"), d("0.20")), Ok(Some(d("10.30"))));
        assert_eq!(apply(d("10"), d("-10")), Ok(Some(d("0"))));
        assert_eq!(apply(d("10"), d("-10.01")), Err(InsufficientBalance { balance: d("10"), amount: d("-10.01") }));
        assert_eq!(apply(Decimal::MAX, d("1")), Ok(None));
    }

    proptest! {
        /// Whatever the order of credits and debits, an accepted sequence never leaves the
        /// balance negative, and the balance is the sum of what was accepted.
        #[test]
        fn accepted_movements_sum_to_a_balance_never_negative(moves in prop::collection::vec(-1_000i64..1_000, 0..60)) {
            let mut balance = Decimal::ZERO;
            let mut accepted = Decimal::ZERO;
            for m in moves {
                let amount = Decimal::new(m, 2);
                if let Ok(Some(after)) = apply(balance, amount) {
                    balance = after;
                    accepted += amount;
                }
                prop_assert!(balance >= Decimal::ZERO);
            }
            prop_assert_eq!(balance, accepted);
        }
    }
}
