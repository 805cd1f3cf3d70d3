//! Properties of whole ingest runs through the real phases (see [`World`]): the invariants
//! of DESIGN.md, checked against a recomputation from the ledger.

use super::super::testing::{World, event, mission, payment, refund};
use crate::event::Event;
use crate::mission::CompiledMission;
use crate::reward::RewardStatus;
use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const USERS: [&str; 3] = ["u0", "u1", "u2"];

/// Sum in a rolling window with repeats and capped cashback, count with unlimited repeats,
/// a filtered count, a calendar-day sum, and a login count (another event type).
fn missions() -> Vec<Arc<CompiledMission>> {
    vec![
        mission(
            "m-sum",
            json!({"name": "sum", "window": {"kind": "rolling", "duration": "P7D"}, "repeat": {"max_completions": 3},
                   "steps": [{"event_type": "payment", "aggregate": {"fn": "sum", "field": "amount"}, "target": 500}],
                   "reward": {"kind": "cash", "percent": 10, "cap": 40, "currency": "INR"}}),
        ),
        mission(
            "m-count",
            json!({"name": "count", "repeat": {"max_completions": null},
                   "steps": [{"event_type": "payment", "target": 3}], "reward": {"kind": "points", "amount": 10}}),
        ),
        mission(
            "m-swiggy",
            json!({"name": "swiggy", "steps": [{"event_type": "payment", "target": 2,
                   "filters": [{"field": "merchant", "op": "eq", "value": "swiggy"}]}], "reward": {"kind": "badge"}}),
        ),
        mission(
            "m-daily",
            json!({"name": "daily", "window": {"kind": "calendar", "period": "day"}, "repeat": {"max_completions": null},
                   "steps": [{"event_type": "payment", "aggregate": {"fn": "sum", "field": "amount"}, "target": 300}],
                   "reward": {"kind": "coins", "amount": 1}}),
        ),
        mission(
            "m-login",
            json!({"name": "login", "repeat": {"max_completions": 2}, "steps": [{"event_type": "login", "target": 2}],
                   "reward": {"kind": "badge"}}),
        ),
    ]
}

fn amount() -> impl Strategy<Value = Decimal> {
    (1i64..=40_000).prop_map(|cents| Decimal::new(cents, 2))
}

/// Originals (payments, some logins) of a few users, and (partial or full) reversals of them,
/// a few sent by the wrong user.
fn scenario() -> impl Strategy<Value = (Vec<Event>, Vec<Event>)> {
    let originals = prop::collection::vec(
        (0..USERS.len(), 0i64..20_000, amount(), prop::bool::weighted(0.6), prop::bool::weighted(0.15)),
        1..30,
    );
    originals.prop_flat_map(|os| {
        let n = os.len();
        let reversals = prop::collection::vec((0..n, prop::option::of(amount()), prop::bool::weighted(0.1)), 0..12);
        (Just(os), reversals).prop_map(|(os, rs)| {
            let originals: Vec<Event> = os
                .iter()
                .enumerate()
                .map(|(i, (u, minute, amount, swiggy, login))| {
                    let id = format!("e{i}");
                    if *login {
                        event(&id, "login", USERS[*u], *minute, json!({}))
                    } else {
                        payment(&id, USERS[*u], *minute, *amount, if *swiggy { "swiggy" } else { "other" })
                    }
                })
                .collect();
            let reversals = rs
                .iter()
                .enumerate()
                .map(|(i, (of, amount, stray))| {
                    let owner = os[*of].0;
                    let user = if *stray { (owner + 1) % USERS.len() } else { owner };
                    refund(&format!("r{i}"), USERS[user], &format!("e{of}"), *amount)
                })
                .collect();
            (originals, reversals)
        })
    })
}

/// A deterministic shuffle from `seed`, some duplicate deliveries, cut into batches.
fn arrive(events: &[Event], seed: u64, dup_every: usize, sizes: &[usize]) -> Vec<Vec<Event>> {
    let mut arrival = events.to_vec();
    let mut s = seed;
    for i in (1..arrival.len()).rev() {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        arrival.swap(i, (s >> 33) as usize % (i + 1));
    }
    let dups: Vec<Event> = arrival.iter().step_by(dup_every).cloned().collect();
    arrival.extend(dups);
    cut(arrival, sizes)
}

fn cut(mut events: Vec<Event>, sizes: &[usize]) -> Vec<Vec<Event>> {
    let mut batches = Vec::new();
    for &n in sizes.iter().cycle() {
        if events.is_empty() {
            break;
        }
        let rest = events.split_off(n.min(events.len()));
        batches.push(std::mem::replace(&mut events, rest));
    }
    batches
}

/// Invariants 2 and 5: each pair's stored progress is what a replay of the ledger's net events
/// yields (counting only events received while the mission was active).
fn progress_is_recomputable(w: &World) -> Result<(), TestCaseError> {
    for m in w.missions.keys() {
        for u in USERS {
            prop_assert_eq!(w.state(m.as_str(), u), w.replayed(m.as_str(), u).0, "{} {}", m, u);
        }
    }
    Ok(())
}

/// The ordinals of a pair's live rewards, and whether any is there twice.
fn live_ordinals(w: &World, m: &str, u: &str) -> (BTreeSet<u32>, bool) {
    let live = w.live(m, u);
    let ordinals: BTreeSet<u32> = live.iter().map(|r| r.completion).collect();
    let twice = ordinals.len() != live.len();
    (ordinals, twice)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Invariants 1, 2, 5 and no reward lost or given twice: whatever the arrival order, the
    /// batching and the duplicates, progress equals a replay of the net events, and each
    /// completion has exactly one live reward. Some rewards are settled along the way: they
    /// are never revoked, and a completion reached again does not earn a second one.
    #[test]
    fn any_arrival_gives_replayed_progress_and_one_reward_per_completion(
        (originals, reversals) in scenario(),
        seed in any::<u64>(),
        dup_every in 2usize..6,
        sizes in prop::collection::vec(1usize..7, 1..8),
        settle_every in prop::option::of(1usize..5),
    ) {
        let events = [originals, reversals].concat();
        let mut w = World::new(missions().into_iter().map(|m| (m, None)));
        for (i, batch) in arrive(&events, seed, dup_every, &sizes).iter().enumerate() {
            w.ingest(batch);
            if settle_every.is_some_and(|n| i % n == 0) {
                w.settle((seed as usize ^ i) % (w.rewards.len() + 1));
            }
        }
        prop_assert!(w.violations.is_empty(), "{:?}", w.violations);
        progress_is_recomputable(&w)?;
        for m in w.missions.keys() {
            for u in USERS {
                let (_, completions) = w.replayed(m.as_str(), u);
                let (ordinals, twice) = live_ordinals(&w, m.as_str(), u);
                prop_assert!(!twice, "{} {}: a completion rewarded twice", m, u);
                let expected: BTreeSet<u32> = (1..=completions as u32).collect();
                prop_assert!(expected.is_subset(&ordinals), "{} {}: a reward lost: {:?}", m, u, ordinals);
                for r in w.live(m.as_str(), u).iter().filter(|r| r.completion > completions as u32) {
                    prop_assert_eq!(r.status, RewardStatus::Granted, "only a settled reward outlives its completion");
                }
            }
        }
    }

    /// Invariant 3: a mission with a budget of N grants at most N rewards (revoked ones
    /// included), and ends exactly when the count reaches N; progress stays recomputable.
    #[test]
    fn budgets_are_never_overspent(
        (originals, reversals) in scenario(),
        budgets in prop::collection::vec(prop::option::of(1u64..5), 5),
        seed in any::<u64>(),
        sizes in prop::collection::vec(1usize..7, 1..8),
    ) {
        let events = [originals, reversals].concat();
        let mut w = World::new(missions().into_iter().zip(budgets.iter().copied()));
        for batch in arrive(&events, seed, 3, &sizes) {
            w.ingest(&batch);
        }
        prop_assert!(w.violations.is_empty(), "{:?}", w.violations);
        for (id, m) in &w.missions {
            let created = w.rewards.iter().filter(|r| r.mission_id == id.as_str()).count() as u64;
            prop_assert_eq!(created, m.granted);
            if let Some(max) = m.max_rewards {
                prop_assert!(m.granted <= max, "{}: {} granted of {}", id, m.granted, max);
            }
            prop_assert_eq!(m.ended, m.max_rewards == Some(m.granted), "{} ends exactly when spent", id);
            for u in USERS {
                let (_, completions) = w.replayed(id.as_str(), u);
                let (ordinals, twice) = live_ordinals(&w, id.as_str(), u);
                prop_assert!(!twice);
                prop_assert!(ordinals.iter().all(|o| *o as usize <= completions), "{} {}: {:?}", id, u, ordinals);
            }
        }
        progress_is_recomputable(&w)?;
    }

    /// Invariant 2: reversals arriving before their originals end where reversals arriving
    /// after them end, progress and live rewards alike.
    #[test]
    fn a_reversal_before_its_original_equals_one_after(
        (originals, reversals) in scenario(),
        sizes in prop::collection::vec(1usize..7, 1..8),
    ) {
        let mut after = World::new(missions().into_iter().map(|m| (m, None)));
        let mut before = after.clone();
        for batch in cut([originals.clone(), reversals.clone()].concat(), &sizes) {
            after.ingest(&batch);
        }
        for batch in cut([reversals, originals].concat(), &sizes) {
            before.ingest(&batch);
        }
        let live = |w: &World| -> BTreeMap<(String, String), BTreeSet<u32>> {
            w.rewards
                .iter()
                .filter(|r| r.status != RewardStatus::Revoked)
                .fold(BTreeMap::new(), |mut acc, r| {
                    acc.entry((r.mission_id.clone(), r.user_id.clone())).or_default().insert(r.completion);
                    acc
                })
        };
        for m in after.missions.keys() {
            for u in USERS {
                prop_assert_eq!(after.state(m.as_str(), u), before.state(m.as_str(), u), "{} {}", m, u);
            }
        }
        prop_assert_eq!(live(&after), live(&before));
        progress_is_recomputable(&after)?;
    }

    /// A mission paused when reversals arrive still takes back what they reversed (its pending
    /// rewards beyond the completions are revoked) and grants nothing, not even for payments
    /// that arrive while it is paused: its live rewards are exactly the completions it never
    /// dropped below since the pause.
    #[test]
    fn a_paused_mission_revokes_and_never_grants(
        (originals, reversals) in scenario(),
        more in scenario(),
        paused in prop::collection::btree_set(0usize..5, 1..3),
        sizes in prop::collection::vec(1usize..7, 1..8),
    ) {
        let mut w = World::new(missions().into_iter().map(|m| (m, None)));
        for batch in cut(originals, &sizes) {
            w.ingest(&batch);
        }
        let ids: Vec<String> = w.missions.keys().map(|id| id.to_string()).collect();
        let paused: Vec<&str> = paused.iter().map(|i| ids[*i].as_str()).collect();
        // The fewest completions each paused pair has had since (a reversal may also raise
        // them, e.g. by moving a rolling window; that grants nothing).
        let mut fewest: BTreeMap<(&str, &str), u32> = paused
            .iter()
            .flat_map(|m| USERS.map(|u| ((*m, u), w.state(m, u).completions)))
            .collect();
        for m in &paused {
            w.pause(m);
        }
        let rewards_at_pause = w.rewards.len();
        // New payments (ids apart from the first ones) together with the reversals.
        let late: Vec<Event> = more.0.into_iter().map(|e| e.to_builder().id(format!("late-{}", e.id())).build()).collect();
        for batch in cut([reversals, late].concat(), &sizes) {
            w.ingest(&batch);
            for ((m, u), n) in fewest.iter_mut() {
                *n = (*n).min(w.state(m, u).completions);
            }
        }
        prop_assert!(w.violations.is_empty(), "{:?}", w.violations);
        prop_assert!(w.rewards[rewards_at_pause..].iter().all(|r| !paused.contains(&r.mission_id.as_str())));
        progress_is_recomputable(&w)?;
        for ((m, u), fewest) in fewest {
            let (ordinals, twice) = live_ordinals(&w, m, u);
            prop_assert!(!twice);
            let expected: BTreeSet<u32> = (1..=fewest).collect();
            prop_assert_eq!(ordinals, expected, "{} {}", m, u);
        }
        // Resumed, they count what arrives from then on, and only that.
        for m in &paused {
            w.resume(m);
        }
        let again: Vec<Event> = more.1.into_iter().chain(w.ledger.iter().filter(|e| e.id().starts_with("late-")).cloned())
            .map(|e| {
                let again = e.to_builder().id(format!("again-{}", e.id())).received_at(None);
                match e.reverses() {
                    Some(r) => again.reverses(format!("again-late-{r}")).build(),
                    None => again.build(),
                }
            })
            .collect();
        w.ingest(&again);
        prop_assert!(w.violations.is_empty(), "{:?}", w.violations);
        progress_is_recomputable(&w)?;
    }
}
