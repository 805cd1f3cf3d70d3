use super::testing::{World, event, mission, payment, refund};
use super::*;
use crate::id::EventId;
use crate::progress::ProgressState;
use crate::reward::RewardStatus;
use rust_decimal::Decimal;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

mod props;

fn d(n: i64) -> Decimal {
    Decimal::from(n)
}

/// Sum of payments to 100, once, a badge.
fn sum100(id: &str) -> Arc<crate::mission::CompiledMission> {
    mission(
        id,
        json!({"name": "sum", "steps": [{"event_type": "payment", "aggregate": {"fn": "sum", "field": "amount"},
               "target": 100}], "reward": {"kind": "badge"}}),
    )
}

/// One payment, any amount, completes; unlimited repeats, 10 points each.
fn each_payment(id: &str) -> Arc<crate::mission::CompiledMission> {
    mission(
        id,
        json!({"name": "each", "repeat": {"max_completions": null}, "steps": [{"event_type": "payment", "target": 1}],
               "reward": {"kind": "points", "amount": 10}}),
    )
}

#[test]
fn active_missions_index_by_type_in_id_order() {
    let login = mission(
        "a-login",
        json!({"name": "l", "steps": [{"event_type": "login", "target": 1}], "reward": {"kind": "badge"}}),
    );
    let set = ActiveMissions::new([sum100("z"), each_payment("b"), login]);
    let ids: Vec<&str> = set.for_type("payment").iter().map(|m| m.id()).collect();
    assert_eq!(ids, ["b", "z"]);
    assert_eq!(set.event_types().collect::<Vec<_>>(), ["login", "payment"]);
    assert!(set.listens_to("login") && !set.listens_to("refund"));
    assert!(set.contains("z") && set.get("b").is_some() && set.len() == 3);
    assert!(set.for_type("refund").is_empty());
}

#[test]
fn a_reversal_of_another_users_event_is_ignored_and_reported() {
    let mut w = World::new([(sum100("m"), None)]);
    w.ingest(&[payment("p1", "alice", 10, d(150), "x")]);
    assert_eq!(w.live("m", "alice").len(), 1);
    // Bob refunds Alice's payment, alongside a payment of Alice's own.
    let out = w.ingest(&[refund("r1", "bob", "p1", None), payment("p2", "alice", 20, d(5), "x")]);
    assert_eq!(
        out.plan.ignored(),
        [IgnoredReversal {
            reversal: "r1".into(),
            user_id: "bob".into(),
            original: "p1".into(),
            owner: "alice".into()
        }]
    );
    assert_eq!(out.plan.refold_users().count(), 0);
    assert!(out.decision.revokes.is_empty());
    assert_eq!(w.state("m", "alice").completions, 1);
    assert_eq!(w.live("m", "alice").len(), 1);
    // Within one batch too: Bob's refund of Alice's new payment takes nothing from it.
    let mut w = World::new([(sum100("m"), None)]);
    let out = w.ingest(&[payment("p1", "alice", 10, d(150), "x"), refund("r1", "bob", "p1", None)]);
    assert_eq!(out.plan.ignored().len(), 1);
    assert_eq!(w.state("m", "alice").completions, 1);
}

#[test]
fn an_original_and_its_reversal_in_one_batch_fold_in_net_form() {
    let m = sum100("m");
    let active = ActiveMissions::new([m.clone()]);
    let fresh = [payment("p", "u", 10, d(600), "x"), refund("r", "u", "p", Some(d(550)))];
    assert_eq!(reversal_targets(&fresh), [EventId::from("p")]);
    let plan = plan(&active, fresh.to_vec(), &fresh[..1]);
    assert_eq!(plan.pairs().collect::<Vec<_>>(), [&(MissionId::new("m"), UserId::new("u"))]);
    assert_eq!(plan.refold_users().count(), 0, "no refold: the original folds in its net form");
    assert!(plan.needs_ledger(&HashMap::new()).is_empty());
    let inputs = BatchInputs {
        stored: HashMap::new(),
        early_reversals: Vec::new(), // the batch's own reversals need not be loaded back
        ledgers: HashMap::new(),
        live_rewards: HashMap::new(),
        inactive: Vec::new(),
        now: super::testing::at(100),
    };
    let decision = decide(&plan, &inputs).unwrap();
    assert_eq!(decision.progress.len(), 1);
    assert_eq!(decision.progress[0].state.steps[0].value, d(50));
    assert!(decision.completions.is_empty() && decision.grants.is_empty());
}

#[test]
fn a_reversal_before_its_original_waits_and_then_applies() {
    let mut w = World::new([(sum100("m"), None)]);
    let out = w.ingest(&[refund("r", "u", "p", Some(d(60)))]);
    assert!(out.plan.is_empty() && out.plan.ignored().is_empty());
    let out = w.ingest(&[payment("p", "u", 10, d(150), "x")]);
    assert_eq!(out.plan.early_reversal_ids(), [EventId::from("p")]);
    assert_eq!(w.state("m", "u").steps[0].value, d(90));
    assert!(w.live("m", "u").is_empty());
}

#[test]
fn a_late_event_refolds_the_ledger() {
    let mut w = World::new([(each_payment("m"), None)]);
    w.ingest(&[payment("b", "u", 100, d(1), "x")]);
    let out = w.ingest(&[payment("a", "u", 50, d(1), "x")]);
    assert_eq!(out.decision.revokes.len(), 0);
    let stored: HashMap<PairKey, ProgressState> = w.progress.clone();
    assert_eq!(w.state("m", "u").completions, 2);
    let late = plan(&ActiveMissions::new([each_payment("m")]), vec![payment("c", "u", 10, d(1), "x")], &[]);
    assert_eq!(late.needs_ledger(&stored).into_iter().collect::<Vec<_>>(), [UserId::new("u")]);
    let err = decide(
        &late,
        &BatchInputs {
            stored,
            early_reversals: vec![],
            ledgers: HashMap::new(),
            live_rewards: HashMap::new(),
            inactive: vec![],
            now: super::testing::at(0),
        },
    );
    assert_eq!(err.unwrap_err(), DecideError::MissingLedger { user_id: UserId::new("u") });
}

#[test]
fn each_new_completion_is_one_effect_and_one_grant() {
    let mut w = World::new([(each_payment("m"), None)]);
    let out = w.ingest(&[payment("b", "u", 2, d(1), "x"), payment("a", "u", 1, d(1), "x")]);
    let effects: Vec<_> = out
        .decision
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::MissionCompleted { ordinal, at, .. } => Some((*ordinal, *at)),
            _ => None,
        })
        .collect();
    assert_eq!(effects, [(1, super::testing::at(1)), (2, super::testing::at(2))]);
    assert_eq!(out.decision.completions.len(), 2);
    assert_eq!(out.decision.grants.iter().map(|g| g.completion).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(w.rewards[0].amount, Some(d(10)));
    // A refold that finds the same completions reports none again.
    let out = w.ingest(&[payment("c", "u", 0, d(1), "x")]);
    assert_eq!(out.decision.completions.iter().map(|c| c.ordinal).collect::<Vec<_>>(), [3]);
}

#[test]
fn a_paused_mission_revokes_and_never_grants() {
    let mut w = World::new([(sum100("m"), None)]);
    w.ingest(&[payment("p1", "u", 10, d(150), "x")]);
    w.pause("m");
    let out = w.ingest(&[refund("r1", "u", "p1", None), payment("p2", "u", 20, d(500), "x")]);
    assert_eq!(out.decision.revokes.len(), 1);
    assert!(out.decision.grants.is_empty() && out.decision.effects.is_empty());
    assert!(w.live("m", "u").is_empty());
    assert_eq!(w.state("m", "u"), w.replayed("m", "u").0);
    assert_eq!(w.state("m", "u").completions, 0, "p2 arrived while paused: it never counts");
}

#[test]
fn a_settled_reward_is_neither_revoked_nor_granted_twice() {
    let mut w = World::new([(sum100("m"), None)]);
    w.ingest(&[payment("p1", "u", 10, d(150), "x")]);
    w.settle(0);
    let out = w.ingest(&[refund("r1", "u", "p1", None)]);
    assert!(out.decision.revokes.is_empty());
    assert_eq!(w.state("m", "u").completions, 0);
    let out = w.ingest(&[payment("p2", "u", 20, d(100), "x")]);
    assert_eq!(out.decision.completions.len(), 1, "a completion again");
    assert!(out.decision.grants.is_empty(), "its reward was paid out already");
    assert_eq!(w.rewards.len(), 1);
    assert!(w.violations.is_empty());
}

#[test]
fn the_events_that_spend_a_budget_still_count_after_the_mission_ends() {
    let mut w = World::new([(sum100("m"), Some(1))]);
    w.ingest(&[payment("p0", "u", 10, d(60), "x")]);
    let out = w.ingest(&[payment("p1", "u", 20, d(90), "x")]);
    assert!(out.budgets.updates[0].ends_mission);
    assert!(!w.missions["m"].active && w.missions["m"].ended);
    // A partial refund refolds the ended mission: p0 + p1 still reach 100.
    let out = w.ingest(&[refund("r", "u", "p0", Some(d(10)))]);
    assert_eq!(out.plan.refold_users().count(), 1);
    assert!(out.decision.revokes.is_empty());
    assert_eq!(w.state("m", "u").completions, 1);
    assert_eq!(w.live("m", "u")[0].status, RewardStatus::Pending);
    // Had the active period closed at the batch's own time, p1 (received then) would not count.
    let received = w.ledger.iter().find(|e| e.id() == "p1").unwrap().received_at();
    let mut periods = w.compiled("m").active_periods().unwrap().to_vec();
    periods[0].until = received;
    let closed_at_batch = (*w.compiled("m")).clone().with_active_periods(periods);
    let net = crate::net::net_events(w.ledger.iter().filter(|e| e.reverses().is_none()), &[]);
    assert_eq!(crate::progress::replay(&closed_at_batch, &net).1.len(), 0);
}

#[test]
fn a_pair_that_nothing_counted_for_gets_no_row() {
    let merchant = mission(
        "m",
        json!({"name": "s", "steps": [{"event_type": "payment", "target": 1,
               "filters": [{"field": "merchant", "op": "eq", "value": "swiggy"}]}], "reward": {"kind": "badge"}}),
    );
    let mut w = World::new([(merchant, None)]);
    let out = w.ingest(&[payment("p", "u", 1, d(1), "zomato"), event("l", "login", "u", 1, json!({}))]);
    assert_eq!(out.plan.pairs().count(), 1);
    assert!(out.decision.progress.is_empty());
}

#[test]
fn reversals_that_can_never_apply_are_screened_out_when_their_original_is_known() {
    let stored = [payment("p-u", "u", 1, d(100), "swiggy"), refund("r-old", "u", "p-u", None)];
    let batch = [
        refund("ok", "u", "p-u", Some(d(10))),
        refund("stray", "v", "p-u", None),
        refund("of-a-reversal", "u", "r-old", None),
        payment("p-new", "u", 2, d(50), "swiggy"),
        refund("stray-new", "v", "p-new", None),
        refund("early", "v", "p-unknown", None),
        // A later original in the same batch is known too.
        refund("before-its-original", "w", "p-late", None),
        payment("p-late", "u", 3, d(50), "swiggy"),
    ];
    let screened = screen_reversals(&batch, &stored);
    let reasons: Vec<Option<&str>> = screened.iter().map(|e| e.as_ref().map(|e| e.detail.as_str())).collect();
    assert_eq!(
        reasons,
        [
            None,
            Some("\"p-u\" is another user's event"),
            Some("\"r-old\" is itself a reversal; only originals are reversed"),
            None,
            Some("\"p-new\" is another user's event"),
            None,
            Some("\"p-late\" is another user's event"),
            None,
        ]
    );
    assert!(screened.iter().flatten().all(|e| e.pointer == "/reverses"));
}

fn milestones(effects: &[Effect]) -> Vec<(u32, u8)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::MilestoneReached { attempt, percent, .. } => Some((*attempt, *percent)),
            _ => None,
        })
        .collect()
}

/// Sum of payments to 100, repeatable, notifying at 50 % and 80 %, and a day before its
/// rolling week lapses.
fn noisy(id: &str) -> Arc<crate::mission::CompiledMission> {
    mission(
        id,
        json!({"name": "noisy", "window": {"kind": "rolling", "duration": "P7D"}, "repeat": {"max_completions": null},
               "steps": [{"event_type": "payment", "aggregate": {"fn": "sum", "field": "amount"}, "target": 100}],
               "reward": {"kind": "badge"},
               "notifications": [
                   {"on": "progress", "at_percent": 50, "channel": "sms", "template": "halfway"},
                   {"on": "progress", "at_percent": 80, "channel": "sms", "template": "nearly"},
                   {"on": "window_lapsing", "before": "P1D", "channel": "email", "template": "hurry"}]}),
    )
}

#[test]
fn a_milestone_is_announced_once_when_crossed_and_again_after_a_reversal_took_it_back() {
    let mut w = World::new([(noisy("m"), None)]);
    let first = w.ingest(&[payment("p1", "alice", 1, d(40), "x")]);
    assert_eq!(milestones(&first.decision.effects), []);
    let opened: Vec<&Effect> =
        first.decision.effects.iter().filter(|e| matches!(e, Effect::WindowOpened { .. })).collect();
    assert_eq!(opened.len(), 1, "the first counted event opens the window");
    // 40 → 85 crosses both marks in one batch; the window is the same, so it is not reopened.
    let second = w.ingest(&[payment("p2", "alice", 2, d(45), "x")]);
    assert_eq!(milestones(&second.decision.effects), [(1, 50), (1, 80)]);
    assert!(!second.decision.effects.iter().any(|e| matches!(e, Effect::WindowOpened { .. })));
    // Staying above announces nothing; a refund under 50 and a payment back over announce again.
    assert_eq!(milestones(&w.ingest(&[payment("p3", "alice", 3, d(5), "x")]).decision.effects), []);
    assert_eq!(milestones(&w.ingest(&[refund("r2", "alice", "p2", None)]).decision.effects), []);
    assert_eq!(milestones(&w.ingest(&[payment("p4", "alice", 4, d(10), "x")]).decision.effects), [(1, 50)]);
}

#[test]
fn a_completion_announces_itself_not_the_milestones_it_jumped_over() {
    let mut w = World::new([(noisy("m"), None)]);
    let out = w.ingest(&[payment("p1", "alice", 1, d(30), "x"), payment("p2", "alice", 2, d(90), "x")]);
    assert_eq!(out.decision.completions.len(), 1);
    assert_eq!(milestones(&out.decision.effects), []);
    // The next attempt counts from zero and is announced as attempt 2.
    assert_eq!(milestones(&w.ingest(&[payment("p3", "alice", 3, d(60), "x")]).decision.effects), [(2, 50)]);
}

#[test]
fn a_mission_without_notifications_has_no_milestone_effects() {
    let mut w = World::new([(sum100("m"), None)]);
    let out = w.ingest(&[payment("p1", "alice", 1, d(60), "x")]);
    assert!(out.decision.effects.is_empty());
}
