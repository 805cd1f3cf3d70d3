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
    /// A credit that expires: what is left of it then is taken back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// An expiry's entry: the credit whose rest it took back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_of: Option<String>,
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

/// A credit that has expired, and how much of it is left to take back (zero if it was
/// all spent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    pub credit_id: String,
    pub amount: Decimal,
}

/// The credits of one balance that have expired by `now` and are not yet `processed`, and
/// what is left of each: its entries (`entries`, in the order they were written) replayed
/// with every debit spending the oldest credit that has something left — first in, first
/// out — and every earlier expiry taking its own credit's rest. What is left of a credit is
/// what is left of the balance at most, so taking it back never goes below zero.
pub fn expiries(
    entries: &[BalanceEntry],
    processed: &std::collections::HashSet<String>,
    now: Timestamp,
) -> Vec<Expiry> {
    // Each credit and what is left of it, oldest first.
    let mut lots: Vec<(&BalanceEntry, Decimal)> = Vec::new();
    for entry in entries {
        if entry.amount.is_sign_positive() && !entry.amount.is_zero() {
            lots.push((entry, entry.amount));
            continue;
        }
        let mut debit = -entry.amount;
        if let Some(credit) = &entry.expiry_of {
            if let Some((_, left)) = lots.iter_mut().find(|(c, _)| &c.id == credit) {
                let taken = debit.min(*left);
                *left -= taken;
                debit -= taken;
            }
            if debit.is_zero() {
                continue;
            }
        }
        for (_, left) in lots.iter_mut() {
            if debit.is_zero() {
                break;
            }
            let taken = debit.min(*left);
            *left -= taken;
            debit -= taken;
        }
    }
    lots.into_iter()
        .filter(|(c, _)| c.expires_at.is_some_and(|at| at <= now) && !processed.contains(&c.id))
        .map(|(c, left)| Expiry { credit_id: c.id.clone(), amount: left.normalize() })
        .collect()
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

    fn credit(id: &str, amount: &str, expires: Option<i64>) -> BalanceEntry {
        BalanceEntry {
            id: id.into(),
            user_id: "u".into(),
            currency: "points".into(),
            amount: d(amount),
            balance_after: Decimal::ZERO,
            reason: String::new(),
            reward_id: None,
            idempotency_key: None,
            expires_at: expires.map(|s| Timestamp::from_second(s).unwrap()),
            expiry_of: None,
            created_at: Timestamp::UNIX_EPOCH,
        }
    }

    fn debit(id: &str, amount: &str, of: Option<&str>) -> BalanceEntry {
        BalanceEntry { expiry_of: of.map(str::to_owned), ..credit(id, amount, None) }
    }

    fn left(entries: &[BalanceEntry], processed: &[&str], now: i64) -> Vec<(String, Decimal)> {
        let processed = processed.iter().map(|s| (*s).to_owned()).collect();
        expiries(entries, &processed, Timestamp::from_second(now).unwrap())
            .into_iter()
            .map(|e| (e.credit_id, e.amount))
            .collect()
    }

    #[test]
    fn the_oldest_credit_is_spent_first_and_what_is_left_of_it_expires() {
        // 100 expiring at 10, 50 expiring at 20, 30 forever; 120 spent: the first credit all,
        // 20 of the second.
        let entries = [
            credit("a", "100", Some(10)),
            credit("b", "50", Some(20)),
            credit("c", "30", None),
            debit("x", "-120", None),
        ];
        assert_eq!(left(&entries, &[], 5), []);
        assert_eq!(left(&entries, &[], 10), [("a".to_owned(), d("0"))], "all spent: nothing to take back");
        assert_eq!(left(&entries, &["a"], 20), [("b".to_owned(), d("30"))]);
        // Once b's rest is taken back, later debits spend c.
        let mut more = entries.to_vec();
        more.push(debit("y", "-30", Some("b")));
        more.push(debit("z", "-10", None));
        assert_eq!(left(&more, &["a", "b"], 99), []);
    }

    #[test]
    fn a_debit_spends_an_expired_credit_the_sweep_has_not_reached() {
        // The sweep runs later than the expiry: what the user spent meanwhile was theirs.
        let entries = [credit("a", "10", Some(10)), debit("x", "-4", None)];
        assert_eq!(left(&entries, &[], 50), [("a".to_owned(), d("6"))]);
    }

    proptest! {
        /// Taking back what expiries say never takes a balance below zero, never takes more
        /// than a credit was worth, and leaves exactly the unexpired credits' rest.
        #[test]
        fn expiries_never_overdraw(moves in prop::collection::vec((-500i64..1_000, prop::option::of(0i64..50)), 1..40), now in 0i64..60) {
            let mut entries = Vec::new();
            let mut balance = Decimal::ZERO;
            for (i, (m, expires)) in moves.into_iter().enumerate() {
                let amount = Decimal::new(m, 1);
                if let Ok(Some(after)) = apply(balance, amount)
                    && !amount.is_zero()
                {
                    balance = after;
                    let e = if amount.is_sign_positive() { credit(&i.to_string(), &amount.to_string(), expires) }
                            else { debit(&i.to_string(), &amount.to_string(), None) };
                    entries.push(e);
                }
            }
            let due = left(&entries, &[], now);
            for (id, amount) in &due {
                let worth = entries.iter().find(|e| &e.id == id).unwrap().amount;
                prop_assert!(*amount >= Decimal::ZERO && *amount <= worth);
                balance = apply(balance, -*amount).expect("never below zero").unwrap();
            }
            // Applied, the expiries leave nothing more to take back.
            for (id, amount) in &due {
                entries.push(debit(&format!("x{id}"), &(-*amount).to_string(), Some(id)));
            }
            let processed: Vec<&str> = due.iter().map(|(id, _)| id.as_str()).collect();
            prop_assert_eq!(left(&entries, &processed, now), vec![]);
            prop_assert!(balance >= Decimal::ZERO);
        }
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
