//! Budgets: how many rewards a mission may still grant, decided in one place.
//!
//! `budget.max_rewards` counts rewards ever granted (a revoked reward does not return to the
//! budget). The store locks the budget rows of a batch's missions in mission-id order (the
//! one global order that keeps concurrent batches from deadlocking), hands them to
//! [`take_budgets`] with the batch's grants, and writes back the [`BudgetUpdate`]s: the SQL
//! does no arithmetic and decides nothing. The mission PATCH asks [`is_spent`] whether a
//! lowered budget ends the mission, so "spent" is written once.

use crate::batch::Grant;
use crate::id::MissionId;
use std::collections::BTreeMap;

/// A mission's budget as the store read it (under a row lock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetRow {
    pub mission_id: MissionId,
    /// Rewards granted so far (revoked ones included: they do not return to the budget).
    pub granted: u64,
    /// `budget.max_rewards`; `None`: no budget, every grant is taken.
    pub max_rewards: Option<u64>,
}

/// What the store writes back for a mission whose budget this batch took from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetUpdate {
    pub mission_id: MissionId,
    /// The new count of rewards granted.
    pub granted: u64,
    /// This batch's takes spent the budget: the mission ends now.
    pub ends_mission: bool,
}

/// The grants a batch may create, those the budget refused, and the new counts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BudgetOutcome {
    /// Grants within budget, in `(mission_id, user_id, completion)` order: create these.
    pub taken: Vec<Grant>,
    /// Grants beyond the budget (or for a mission without a budget row): they earn nothing,
    /// though their completion stands.
    pub refused: Vec<Grant>,
    /// One per mission that took at least one grant, in mission-id order.
    pub updates: Vec<BudgetUpdate>,
}

/// Whether a budget of `max_rewards` is spent once `granted` rewards were granted: the
/// mission can grant no more and ends. No budget is never spent.
pub fn is_spent(granted: u64, max_rewards: Option<u64>) -> bool {
    max_rewards.is_some_and(|max| granted >= max)
}

/// Takes `grants` from `budgets`, in `(mission_id, user_id, completion)` order, while each
/// mission's budget is not spent. The take that spends a budget ends its mission. A grant
/// whose mission has no row in `budgets` is refused (the mission is gone).
pub fn take_budgets(budgets: &[BudgetRow], mut grants: Vec<Grant>) -> BudgetOutcome {
    grants.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    let mut counts: BTreeMap<&MissionId, (&BudgetRow, u64)> =
        budgets.iter().map(|b| (&b.mission_id, (b, b.granted))).collect();
    let mut outcome = BudgetOutcome::default();
    for grant in grants {
        match counts.get_mut(&grant.mission_id) {
            Some((row, granted)) if !is_spent(*granted, row.max_rewards) => {
                *granted += 1;
                outcome.taken.push(grant);
            }
            _ => outcome.refused.push(grant),
        }
    }
    outcome.updates = counts
        .into_values()
        .filter(|(row, granted)| *granted != row.granted)
        .map(|(row, granted)| BudgetUpdate {
            mission_id: row.mission_id.clone(),
            granted,
            ends_mission: !is_spent(row.granted, row.max_rewards) && is_spent(granted, row.max_rewards),
        })
        .collect();
    outcome
}
