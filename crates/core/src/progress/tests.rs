use super::*;
use crate::mission::spec::MissionSpec;
use crate::net::net_events;
use proptest::prelude::*;
use serde_json::{Value, json};
use std::sync::Arc;

fn mission(v: Value) -> Arc<CompiledMission> {
    let spec: MissionSpec = serde_json::from_value(v).unwrap();
    CompiledMission::compile("m", &spec).unwrap()
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn ev(id: &str, event_type: &str, at: &str, attributes: Value) -> Event {
    Event::builder(id, event_type, "u", ts(at)).attributes(attributes.as_object().unwrap().clone()).build()
}

fn swiggy() -> Arc<CompiledMission> {
    mission(json!({
        "name": "swiggy", "window": {"kind": "rolling", "duration": "P7D"},
        "steps": [{"event_type": "payment",
                   "filters": [{"field": "amount", "op": "gte", "value": 100},
                               {"field": "merchant", "op": "eq", "value": "swiggy"}],
                   "aggregate": {"fn": "sum", "field": "amount"}, "target": 500}],
        "reward": {"kind": "cash", "percent": 10, "cap": 40, "currency": "INR"}
    }))
}

fn pay(id: &str, at: &str, amount: &str) -> Event {
    ev(id, "payment", at, json!({"amount": serde_json::from_str::<Value>(amount).unwrap(), "merchant": "swiggy"}))
}

#[test]
fn ten_tenths_reach_one() {
    let m = mission(json!({"name": "x", "steps": [{"event_type": "payment",
        "aggregate": {"fn": "sum", "field": "amount"}, "target": 1}], "reward": {"kind": "badge"}}));
    let events: Vec<_> = (0..10).map(|i| pay(&format!("e{i}"), "2026-11-22T10:00:00Z", "0.1")).collect();
    let (state, completions) = replay(&m, &events);
    assert_eq!(completions.len(), 1);
    assert_eq!(completions[0].at, events[9].occurred_at());
    assert_eq!(state.steps[0].value, Decimal::ONE);
}

#[test]
fn rolling_window_completes_inside_and_resets_after() {
    let m = swiggy();
    // 300 + 250 within 7 days: completes; cashback 10% of 550 capped at 40.
    let (state, c) = replay(&m, &[pay("a", "2026-11-01T00:00:00Z", "300"), pay("b", "2026-11-07T23:00:00Z", "250")]);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].reward_amount, Some(Decimal::from(40)));
    assert!(state.is_finished(&m));
    // 300 then 250 eight days later: the first window lapsed, the second holds only 250.
    let (state, c) = replay(&m, &[pay("a", "2026-11-01T00:00:00Z", "300"), pay("b", "2026-11-09T00:00:00Z", "250")]);
    assert!(c.is_empty());
    assert_eq!(state.steps[0].value, Decimal::from(250));
    assert_eq!(state.window.unwrap().starts_at, ts("2026-11-09T00:00:00Z"));
    let view = ProgressView::new(&m, "u", Some(&state), None, ts("2026-11-20T00:00:00Z"));
    assert_eq!(view.status, ProgressStatus::Expired);
    let view = ProgressView::new(&m, "u", Some(&state), None, ts("2026-11-10T00:00:00Z"));
    assert_eq!(view.status, ProgressStatus::InProgress);
}

#[test]
fn filters_decide_what_counts() {
    let m = swiggy();
    let small = pay("a", "2026-11-01T00:00:00Z", "99.99");
    let elsewhere = ev("b", "payment", "2026-11-01T01:00:00Z", json!({"amount": 600, "merchant": "zomato"}));
    let (state, c) = replay(&m, &[small, elsewhere]);
    assert!(c.is_empty());
    assert!(state.last_counted_at.is_none());
    let view = ProgressView::new(&m, "u", Some(&state), None, ts("2026-11-02T00:00:00Z"));
    assert_eq!(view.status, ProgressStatus::NotStarted);
}

#[test]
fn streak_of_five_days_in_a_time_zone() {
    let m = mission(json!({"name": "login", "steps": [{"event_type": "login",
        "aggregate": {"fn": "streak", "timezone": "Asia/Kolkata"}, "target": 5}], "reward": {"kind": "badge", "name": "loyal"}}));
    // 19:00Z is 00:30 the next day in Kolkata: these are five consecutive local days.
    let days = [
        "2026-11-01T19:00:00Z",
        "2026-11-02T19:00:00Z",
        "2026-11-03T10:00:00Z",
        "2026-11-04T19:00:00Z",
        "2026-11-05T19:00:00Z",
        "2026-11-06T19:00:00Z",
    ];
    let logins: Vec<_> = days.iter().enumerate().map(|(i, d)| ev(&format!("l{i}"), "login", d, json!({}))).collect();
    // Local days: Nov 2, 3, 3 (two logins on one day), 5, 6, 7 — a gap on Nov 4.
    let (state, c) = replay(&m, &logins);
    assert_eq!(state.steps[0].value, Decimal::from(3), "the longest run is Nov 5-7");
    assert!(c.is_empty());
    let more: Vec<_> =
        (0..5).map(|i| ev(&format!("d{i}"), "login", &format!("2026-11-1{i}T08:00:00Z"), json!({}))).collect();
    let (_, c) = replay(&m, &more);
    assert_eq!(c.len(), 1);
}

#[test]
fn distinct_merchants_and_repeats() {
    let m = mission(json!({"name": "explorer", "repeat": {"max_completions": null},
        "steps": [{"event_type": "payment", "aggregate": {"fn": "distinct", "field": "merchant"}, "target": 3}],
        "reward": {"kind": "points", "amount": 10}}));
    let merchants = ["a", "b", "a", "c", "d", "e", "f", "g"];
    let events: Vec<_> = merchants
        .iter()
        .enumerate()
        .map(|(i, mer)| {
            ev(&format!("e{i}"), "payment", &format!("2026-11-0{}T00:00:00Z", i + 1), json!({"merchant": mer}))
        })
        .collect();
    let (state, c) = replay(&m, &events);
    assert_eq!(c.iter().map(|c| c.ordinal).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(state.steps[0].value, Decimal::ONE, "progress restarts after a completion: only g");
}

#[test]
fn calendar_day_allows_one_completion_per_day() {
    let m = mission(json!({"name": "daily", "window": {"kind": "calendar", "period": "day", "timezone": "UTC"},
        "repeat": {"max_completions": null},
        "steps": [{"event_type": "read", "target": 2}], "reward": {"kind": "coins", "amount": 1}}));
    let at = [
        "2026-11-01T01:00:00Z",
        "2026-11-01T02:00:00Z",
        "2026-11-01T03:00:00Z",
        "2026-11-01T04:00:00Z",
        "2026-11-02T01:00:00Z",
        "2026-11-03T01:00:00Z",
        "2026-11-03T02:00:00Z",
    ];
    let events: Vec<_> = at.iter().enumerate().map(|(i, a)| ev(&format!("r{i}"), "read", a, json!({}))).collect();
    let (_, c) = replay(&m, &events);
    assert_eq!(c.len(), 2, "one on Nov 1 (not two), none on Nov 2, one on Nov 3");
}

#[test]
fn sequential_steps_count_in_order() {
    let m = mission(json!({"name": "onboard", "sequential": true,
        "steps": [{"event_type": "kyc", "target": 1}, {"event_type": "payment", "target": 1}],
        "reward": {"kind": "unlock", "name": "pro"}}));
    let pay_first =
        [ev("p", "payment", "2026-11-01T00:00:00Z", json!({})), ev("k", "kyc", "2026-11-02T00:00:00Z", json!({}))];
    assert!(replay(&m, &pay_first).1.is_empty(), "a payment before KYC does not count");
    let in_order =
        [ev("k", "kyc", "2026-11-01T00:00:00Z", json!({})), ev("p", "payment", "2026-11-02T00:00:00Z", json!({}))];
    assert_eq!(replay(&m, &in_order).1.len(), 1);
}

#[test]
fn an_event_that_counts_for_no_step_does_not_open_a_window() {
    let m = mission(json!({"name": "onboard", "sequential": true, "window": {"kind": "rolling", "duration": "P7D"},
        "steps": [{"event_type": "kyc", "target": 1}, {"event_type": "payment", "target": 1}],
        "reward": {"kind": "unlock", "name": "pro"}}));
    let e = [
        ev("p0", "payment", "2026-11-01T00:00:00Z", json!({})),
        ev("k", "kyc", "2026-11-07T00:00:00Z", json!({})),
        ev("p1", "payment", "2026-11-09T00:00:00Z", json!({})),
    ];
    let (state, c) = replay(&m, &e);
    assert_eq!(c.len(), 1, "the window opens with the KYC on day 6: {state:?}");
}

#[test]
fn mission_life_bounds_what_counts() {
    let m = mission(json!({"name": "nov", "starts_at": "2026-11-01T00:00:00Z", "ends_at": "2026-12-01T00:00:00Z",
        "steps": [{"event_type": "login", "target": 2}], "reward": {"kind": "badge"}}));
    let e = [
        ev("a", "login", "2026-10-31T23:59:59Z", json!({})),
        ev("b", "login", "2026-11-15T00:00:00Z", json!({})),
        ev("c", "login", "2026-12-01T00:00:00Z", json!({})),
    ];
    let (state, c) = replay(&m, &e);
    assert!(c.is_empty());
    assert_eq!(state.steps[0].value, Decimal::ONE);
}

#[test]
fn amounts_beyond_decimal_range_saturate_instead_of_panicking() {
    let m = mission(json!({"name": "huge", "steps": [{"event_type": "payment",
        "aggregate": {"fn": "sum", "field": "amount"}, "target": 7.5e28}],
        "reward": {"kind": "cash", "percent": 10, "cap": 40, "currency": "INR"}}));
    let huge = [pay("a", "2026-11-01T00:00:00Z", "7e28"), pay("b", "2026-11-01T01:00:00Z", "7e28")];
    let (state, c) = replay(&m, &huge);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].reward_amount, Some(Decimal::from(40)), "cashback capped");
    assert_eq!(state.steps[0].value, Decimal::MAX);
}

// ---- properties ----

#[derive(Debug, Clone)]
enum Input {
    Payment { id: usize, minute: i64, amount: Decimal, merchant: bool },
    Reversal { id: usize, of: usize, amount: Option<Decimal> },
}

fn amount() -> impl Strategy<Value = Decimal> {
    (1i64..=40_000).prop_map(|cents| Decimal::new(cents, 2))
}

fn inputs() -> impl Strategy<Value = Vec<Input>> {
    let payments = prop::collection::vec((0i64..20_000, amount(), prop::bool::weighted(0.8)), 1..25);
    payments.prop_flat_map(|ps| {
        let n = ps.len();
        let reversals = prop::collection::vec((0..n, prop::option::of(amount())), 0..8);
        (Just(ps), reversals).prop_map(|(ps, rs)| {
            let mut out: Vec<Input> = ps
                .into_iter()
                .enumerate()
                .map(|(id, (minute, amount, merchant))| Input::Payment { id, minute, amount, merchant })
                .collect();
            out.extend(rs.into_iter().enumerate().map(|(i, (of, amount))| Input::Reversal { id: i, of, amount }));
            out
        })
    })
}

fn to_event(input: &Input) -> Event {
    let base = ts("2026-11-01T00:00:00Z");
    match input {
        Input::Payment { id, minute, amount, merchant } => {
            Event::builder(format!("p{id}"), "payment", "u", base + jiff::SignedDuration::from_mins(*minute))
                .attribute("amount", crate::decimal::to_value(*amount))
                .attribute("merchant", if *merchant { "swiggy" } else { "other" })
                .build()
        }
        Input::Reversal { id, of, amount } => {
            let e = Event::builder(format!("r{id}"), "refund", "u", base).reverses(format!("p{of}"));
            match amount {
                Some(a) => e.attribute("amount", crate::decimal::to_value(*a)).build(),
                None => e.build(),
            }
        }
    }
}

/// What live ingest does: events arrive one batch each, in `events` order, through the real
/// batch phases (`crate::batch`), with an in-memory store that only loads and saves.
fn ingest_in_order(m: &Arc<CompiledMission>, events: &[Event]) -> ProgressState {
    let mut world = crate::batch::testing::World::new([(m.clone(), None)]);
    for e in events {
        world.ingest(std::slice::from_ref(e));
    }
    world.state(m.id(), "u")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Invariants 1, 2 and 5: whatever the arrival order, with duplicates, incremental folding
    /// ends where a replay of the net events alone ends.
    #[test]
    fn any_arrival_order_gives_the_progress_of_the_net_events(
        inputs in inputs(),
        seed in any::<u64>(),
        dup_every in 2usize..6,
    ) {
        let m = swiggy();
        let events: Vec<Event> = inputs.iter().map(to_event).collect();
        let mut arrival = events.clone();
        // A deterministic shuffle from the seed, then some duplicates.
        let mut s = seed;
        for i in (1..arrival.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            arrival.swap(i, (s >> 33) as usize % (i + 1));
        }
        let dups: Vec<Event> = arrival.iter().step_by(dup_every).cloned().collect();
        arrival.extend(dups);

        let originals: Vec<Event> = events.iter().filter(|e| e.reverses().is_none()).cloned().collect();
        let reversals: Vec<Event> = events.iter().filter(|e| e.reverses().is_some()).cloned().collect();
        let (expected, _) = replay(&m, net_events(&originals, &reversals));
        let got = ingest_in_order(&m, &arrival);
        prop_assert_eq!(&got, &expected);
        prop_assert_eq!(&got.steps, &expected.steps);
        prop_assert_eq!(got.completions, expected.completions);
        prop_assert_eq!(got.window, expected.window);
    }

    /// Sums are exact: n payments of the same decimal amount sum to exactly n times it.
    #[test]
    fn sums_are_exact(cents in 1i64..1_000_000, n in 1usize..200) {
        let m = mission(json!({"name": "x", "steps": [{"event_type": "payment",
            "aggregate": {"fn": "sum", "field": "amount"}, "target": 1e15}], "reward": {"kind": "badge"}}));
        let a = Decimal::new(cents, 3);
        let events: Vec<Event> = (0..n).map(|i| pay(&format!("e{i}"), "2026-11-22T10:00:00Z", &a.to_string())).collect();
        let (state, _) = replay(&m, &events);
        prop_assert_eq!(state.steps[0].value, a * Decimal::from(n));
    }

    /// Folding in two halves equals folding at once (what the incremental path relies on).
    #[test]
    fn folding_is_resumable(inputs in inputs(), split in 0usize..25) {
        let m = swiggy();
        let originals: Vec<Event> = inputs.iter().map(to_event).filter(|e| e.reverses().is_none()).collect();
        let net = net_events(&originals, &[]);
        let split = split.min(net.len());
        let (whole, all_completions) = replay(&m, &net);
        let (mut state, mut completions) = replay(&m, &net[..split]);
        completions.extend(fold(&m, &mut state, &net[split..]));
        prop_assert_eq!(state, whole);
        prop_assert_eq!(completions, all_completions);
    }
}
