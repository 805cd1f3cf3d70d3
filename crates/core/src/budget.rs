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
use jiff::{SignedDuration, Timestamp};
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
    /// This batch's takes spent the budget: the mission ends, at [`ended_at`] of the batch's
    /// time (not at it: the events of this batch must still count on a refold).
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

/// When a mission whose budget a batch at `batch_at` spent stops being active: just after
/// the batch. Its events were received at `batch_at`, and an active period is `[from,
/// until)`: closing it at `batch_at` itself would drop the events that spent the budget from
/// every later refold (which would then revoke the rewards they earned).
pub fn ended_at(batch_at: Timestamp) -> Timestamp {
    batch_at + SignedDuration::from_micros(1)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::UserId;
    use crate::mission::spec::{RewardKind, RewardSpec};

    fn grant(mission: &str, user: &str, completion: u32) -> Grant {
        Grant {
            mission_id: MissionId::new(mission),
            user_id: UserId::new(user),
            completion,
            reward: RewardSpec {
                kind: RewardKind::Badge,
                amount: None,
                currency: None,
                percent: None,
                cap: None,
                code: None,
                name: None,
                hold: None,
                expires_after: None,
            },
            amount: None,
            at: "2026-11-01T00:00:00Z".parse().unwrap(),
        }
    }

    fn row(mission: &str, granted: u64, max_rewards: Option<u64>) -> BudgetRow {
        BudgetRow { mission_id: MissionId::new(mission), granted, max_rewards }
    }

    fn keys(grants: &[Grant]) -> Vec<(&str, &str, u32)> {
        grants.iter().map(|g| (g.mission_id.as_str(), g.user_id.as_str(), g.completion)).collect()
    }

    #[test]
    fn spent_means_granted_reached_the_max() {
        assert!(!is_spent(0, None) && !is_spent(u64::MAX, None));
        assert!(!is_spent(2, Some(3)));
        assert!(is_spent(3, Some(3)) && is_spent(4, Some(3)), "a budget lowered below the count is spent too");
    }

    #[test]
    fn grants_are_taken_in_order_until_the_budget_is_spent() {
        let grants = vec![grant("b", "u2", 1), grant("a", "u1", 2), grant("b", "u1", 1), grant("a", "u1", 1)];
        let out = take_budgets(&[row("a", 0, None), row("b", 5, Some(6))], grants);
        assert_eq!(keys(&out.taken), [("a", "u1", 1), ("a", "u1", 2), ("b", "u1", 1)]);
        assert_eq!(keys(&out.refused), [("b", "u2", 1)]);
        assert_eq!(
            out.updates,
            [
                BudgetUpdate { mission_id: "a".into(), granted: 2, ends_mission: false },
                BudgetUpdate { mission_id: "b".into(), granted: 6, ends_mission: true },
            ]
        );
    }

    #[test]
    fn a_spent_or_missing_budget_takes_nothing_and_updates_nothing() {
        let out = take_budgets(&[row("a", 3, Some(3))], vec![grant("a", "u", 1), grant("gone", "u", 1)]);
        assert!(out.taken.is_empty() && out.updates.is_empty());
        assert_eq!(out.refused.len(), 2);
        // Lowered below what was granted: spent, and not ended again by a take.
        let out = take_budgets(&[row("a", 5, Some(3))], vec![grant("a", "u", 1)]);
        assert!(out.taken.is_empty() && out.updates.is_empty());
        assert_eq!(take_budgets(&[row("a", 0, Some(1))], vec![]), BudgetOutcome::default());
    }

    #[test]
    fn the_exact_take_that_spends_ends_the_mission() {
        let out = take_budgets(&[row("a", 0, Some(2))], vec![grant("a", "u", 1), grant("a", "v", 1)]);
        assert_eq!(out.taken.len(), 2);
        assert_eq!(out.updates, [BudgetUpdate { mission_id: "a".into(), granted: 2, ends_mission: true }]);
        let out = take_budgets(&[row("a", 0, Some(3))], vec![grant("a", "u", 1), grant("a", "v", 1)]);
        assert!(!out.updates[0].ends_mission);
        let at: Timestamp = "2026-11-01T00:00:00Z".parse().unwrap();
        assert!(ended_at(at) > at);
    }
}
