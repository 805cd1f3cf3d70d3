//! Property tests through the real server: whatever the arrival order, batching and
//! duplication of payments and refunds, the progress the API reports is what the engine
//! gives for the net events alone (invariants 1, 2 and 5).

use crate::fixtures::*;
use crate::start;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use questline_core::event::Event;
use questline_core::mission::{CompiledMission, MissionSpec};
use questline_core::net::net_events;
use questline_core::progress::replay;
use questline_testkit::Backend;
use serde_json::{Value, json};

fn mission() -> Value {
    json!({"id": "prop", "name": "prop", "status": "active", "window": {"kind": "rolling", "duration": "P2D"},
           "repeat": {"max_completions": null},
           "steps": [{"event_type": "payment", "filters": [{"field": "amount", "op": "gte", "value": 20}],
                      "aggregate": {"fn": "sum", "field": "amount"}, "target": 300}],
           "reward": {"kind": "points", "amount": 1}})
}

/// (payments as (hours back, cents)), (refunds as (index of payment, cents or full)), arrival seed, batch size
type Case = (Vec<(i64, i64)>, Vec<(usize, Option<i64>)>, u64, usize);

fn cases() -> impl Strategy<Value = Case> {
    prop::collection::vec((1i64..240, 1i64..30_000), 1..30).prop_flat_map(|payments| {
        let n = payments.len();
        (Just(payments), prop::collection::vec((0..n, prop::option::of(1i64..20_000)), 0..10), any::<u64>(), 1usize..12)
    })
}

fn events_of(case: &Case, user: &str) -> Vec<Value> {
    let (payments, refunds, ..) = case;
    let mut out: Vec<Value> = payments
        .iter()
        .enumerate()
        .map(|(i, (h, cents))| {
            payment(
                &format!("{user}-p{i}"),
                user,
                questline_core::decimal::to_value(rust_decimal::Decimal::new(*cents, 2)),
                *h,
            )
        })
        .collect();
    for (j, (of, cents)) in refunds.iter().enumerate() {
        let amount = cents.map(|c| questline_core::decimal::to_value(rust_decimal::Decimal::new(c, 2)));
        out.push(refund(&format!("{user}-r{j}"), user, &format!("{user}-p{of}"), amount));
    }
    out
}

/// Cases per backend: each is a user's whole history over HTTP, so a few dozen per backend
/// keep the suite's time in hand (`PROPTEST_CASES` does not override it).
const CASES: u32 = 48;

pub async fn progress_equals_the_net_events_in_any_arrival_order(backend: Backend) {
    // proptest's runner is synchronous, and each case blocks on HTTP calls: it runs on a
    // blocking thread with a runtime of its own. A failed case's panic is passed on as it is.
    let run = tokio::task::spawn_blocking(move || net_events_property(backend)).await;
    if let Err(e) = run {
        std::panic::resume_unwind(e.into_panic());
    }
}

fn net_events_property(backend: Backend) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(async {
        let server = start(backend).await;
        create_mission(&server, &mission()).await;
        server
    });
    let spec: MissionSpec = {
        let mut m = mission();
        for k in ["id", "status"] {
            m.as_object_mut().unwrap().remove(k);
        }
        serde_json::from_value(m).unwrap()
    };
    let compiled = CompiledMission::compile("prop", &spec).unwrap();
    let mut runner = TestRunner::new(Config { cases: CASES, ..Config::default() });
    let n = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&cases(), |case| {
            let user = format!("user-{}", n.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
            let events = events_of(&case, &user);
            // Shuffle by the seed, duplicate every fourth, send in batches.
            let mut arrival = events.clone();
            let mut s = case.2;
            for i in (1..arrival.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                arrival.swap(i, (s >> 33) as usize % (i + 1));
            }
            let dups: Vec<Value> = arrival.iter().step_by(4).cloned().collect();
            arrival.extend(dups);
            let got = rt.block_on(async {
                for batch in arrival.chunks(case.3) {
                    ingest(&server, batch).await;
                }
                progress(&server, &user, "prop").await
            });

            let parsed: Vec<Event> = events.iter().map(|e| Event::parse(e, jiff::Timestamp::now()).unwrap()).collect();
            let (originals, reversals): (Vec<Event>, Vec<Event>) =
                parsed.into_iter().partition(|e| e.reverses().is_none());
            let (expected, _) = replay(&compiled, net_events(&originals, &reversals));
            prop_assert_eq!(
                &got["steps"][0]["value"],
                &questline_core::decimal::to_value(expected.steps[0].value),
                "{}",
                got
            );
            prop_assert_eq!(got["completions"].as_u64(), Some(u64::from(expected.completions)));
            // Each completion has exactly one live reward. A reward already settled (granted:
            // points settle at once, without a hold) is not taken back by a later reversal, so
            // live rewards beyond the completions may remain, but only granted ones.
            let rewards = rt.block_on(rewards(&server, &user));
            let live: Vec<&Value> = rewards.iter().filter(|r| r["status"] != "revoked").collect();
            for completion in 1..=u64::from(expected.completions) {
                let of = live.iter().filter(|r| r["completion"].as_u64() == Some(completion)).count();
                prop_assert_eq!(of, 1, "one live reward for completion {}: {:?}", completion, rewards);
            }
            for beyond in live.iter().filter(|r| r["completion"].as_u64() > Some(u64::from(expected.completions))) {
                prop_assert_eq!(
                    &beyond["status"],
                    "granted",
                    "only a settled reward outlives its completion: {}",
                    beyond
                );
            }
            Ok(())
        })
        .unwrap();
}
