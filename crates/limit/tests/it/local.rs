//! The local limiter against a model: any sequence of reservations and holds on random rules,
//! max_waits and times (a manual clock) is decided exactly as a naive model over the full,
//! untrimmed logs decides it (so trimming loses nothing, and a request is refused only when
//! its earliest slot really is beyond its max_wait); and the full log of granted slots never
//! has more than `limit` in any window of any rule.

use crate::windows::max_in_window;
use proptest::prelude::*;
use questline_limit::{LocalLimiter, ManualClock, Margin, Reservation, Rule};
use std::collections::HashMap;
use std::time::Duration;

const MS: u64 = 1000;

fn rules() -> Vec<Rule> {
    vec![
        Rule::new("a", 3, Duration::from_millis(100)),
        Rule::new("a", 5, Duration::from_millis(1000)),
        Rule::new("b", 2, Duration::from_millis(50)),
        Rule::new("b", 10, Duration::from_millis(700)).paced(),
        Rule::new("c", 1, Duration::from_millis(30)),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    /// Advance the clock (ms), then reserve on these keys (each with all of its rules, as the
    /// contract asks) with this max_wait (ms).
    Reserve { advance: u64, keys: Vec<usize>, max_wait: u64 },
    /// Advance, then hold a key for a while (ms).
    Hold { advance: u64, key: usize, for_: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0u64..120, proptest::sample::subsequence(vec![0usize, 1, 2], 1..=3), 0u64..1500)
            .prop_map(|(advance, keys, max_wait)| Op::Reserve { advance, keys, max_wait }),
        1 => (0u64..120, 0usize..3, 0u64..400).prop_map(|(advance, key, for_)| Op::Hold { advance, key, for_ }),
    ]
}

/// The model: every slot ever granted per key, every hold.
#[derive(Default)]
struct Model {
    slots: HashMap<String, Vec<u64>>,
    holds: HashMap<String, u64>,
}

impl Model {
    fn earliest(&self, now: u64, rules: &[Rule], margin: Margin) -> u64 {
        let mut t = now;
        for rule in rules {
            let log = self.slots.get(&rule.key).map(Vec::as_slice).unwrap_or(&[]);
            t = t.max(*self.holds.get(&rule.key).unwrap_or(&0));
            t = t.max(log.last().copied().unwrap_or(0));
            let window = margin.window(rule.window).as_micros() as u64;
            let limit = rule.limit as usize;
            if log.len() >= limit {
                t = t.max(log[log.len() - limit] + window);
            }
            if rule.paced
                && let Some(last) = log.last()
            {
                t = t.max(last + window / limit as u64);
            }
        }
        t
    }
}

fn run(ops: &[Op], margin: Margin) -> Result<(), TestCaseError> {
    let clock = ManualClock::default();
    clock.set(Duration::from_secs(1));
    let limiter = LocalLimiter::with_clock(clock.clone(), margin);
    let all = rules();
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Reserve { advance, keys, max_wait } => {
                clock.advance(Duration::from_millis(*advance));
                let now = clock.now_micros();
                let names: Vec<&str> = keys.iter().map(|&k| ["a", "b", "c"][k]).collect();
                let chosen: Vec<Rule> = all.iter().filter(|r| names.contains(&r.key.as_str())).cloned().collect();
                let expected = model.earliest(now, &chosen, margin);
                let got = limiter.reserve_now(&chosen, Duration::from_millis(*max_wait)).unwrap();
                let wait = Duration::from_micros(expected - now);
                if expected - now <= max_wait * MS {
                    prop_assert_eq!(got, Reservation::Granted { wait });
                    let mut keys: Vec<&str> = chosen.iter().map(|r| r.key.as_str()).collect();
                    keys.dedup();
                    keys.sort_unstable();
                    keys.dedup();
                    for k in keys {
                        model.slots.entry(k.to_owned()).or_default().push(expected);
                    }
                } else {
                    prop_assert_eq!(got, Reservation::TooLate { earliest: wait });
                }
            }
            Op::Hold { advance, key, for_ } => {
                clock.advance(Duration::from_millis(*advance));
                let key = ["a", "b", "c"][*key];
                limiter.hold_now(key, Duration::from_millis(*for_));
                let until = clock.now_micros() + for_ * MS;
                let h = model.holds.entry(key.to_owned()).or_default();
                *h = (*h).max(until);
            }
        }
    }
    for rule in &all {
        let log = model.slots.get(&rule.key).map(Vec::as_slice).unwrap_or(&[]);
        // The nominal window: the margin only ever makes it stricter.
        let worst = max_in_window(log, rule.window.as_micros() as u64);
        prop_assert!(worst <= rule.limit as usize, "{worst} slots in a window of {rule:?}");
    }
    Ok(())
}

trait Micros {
    fn now_micros(&self) -> u64;
}

impl Micros for ManualClock {
    fn now_micros(&self) -> u64 {
        questline_limit::Clock::now(self).as_micros() as u64
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decides_as_the_model_and_never_overshoots(ops in proptest::collection::vec(op(), 1..200)) {
        run(&ops, Margin::NONE)?;
    }

    #[test]
    fn with_a_margin_too(ops in proptest::collection::vec(op(), 1..200)) {
        run(&ops, Margin::default())?;
    }
}

/// Utilisation: a saturated key grants exactly `limit` per window, back to back.
#[test]
fn a_saturated_key_grants_its_limit_every_window() {
    let clock = ManualClock::default();
    let limiter = LocalLimiter::with_clock(clock.clone(), Margin::NONE);
    let rule = [Rule::new("p", 50, Duration::from_millis(1000))];
    let mut slots = Vec::new();
    // Ten windows' worth, everyone willing to wait: the slots are the schedule.
    for _ in 0..500 {
        match limiter.reserve_now(&rule, Duration::from_secs(60)).unwrap() {
            Reservation::Granted { wait } => slots.push(wait.as_millis() as u64),
            Reservation::TooLate { .. } => panic!("refused within max_wait"),
        }
    }
    for w in 0..10 {
        let n = slots.iter().filter(|s| (w * 1000..(w + 1) * 1000).contains(*s)).count();
        assert_eq!(n, 50, "window {w}");
    }
    assert_eq!(max_in_window(&slots, 1000), 50);
    // And one more is 10 s away; with a max_wait of 9 s it is refused, booking nothing.
    let r = limiter.reserve_now(&rule, Duration::from_secs(9)).unwrap();
    assert_eq!(r, Reservation::TooLate { earliest: Duration::from_secs(10) });
}

/// A hold delays every later slot on its key, and only on its key.
#[test]
fn a_hold_delays_its_key() {
    let clock = ManualClock::default();
    let limiter = LocalLimiter::with_clock(clock.clone(), Margin::NONE);
    limiter.hold_now("p", Duration::from_millis(300));
    let p = [Rule::new("p", 10, Duration::from_secs(1))];
    let q = [Rule::new("q", 10, Duration::from_secs(1))];
    assert_eq!(
        limiter.reserve_now(&p, Duration::from_secs(1)).unwrap(),
        Reservation::Granted { wait: Duration::from_millis(300) }
    );
    assert_eq!(limiter.reserve_now(&q, Duration::ZERO).unwrap(), Reservation::Granted { wait: Duration::ZERO });
}

/// Paced, a burst leaves at the rule's rate: the same slots per window, evenly spread.
#[test]
fn a_paced_rule_spreads_a_burst_and_still_grants_its_limit_every_window() {
    let clock = ManualClock::default();
    let limiter = LocalLimiter::with_clock(clock.clone(), Margin::NONE);
    let rule = [Rule::new("p", 50, Duration::from_millis(1000)).paced()];
    let slots: Vec<u64> = (0..500)
        .map(|_| match limiter.reserve_now(&rule, Duration::from_secs(60)).unwrap() {
            Reservation::Granted { wait } => wait.as_millis() as u64,
            Reservation::TooLate { .. } => panic!("refused within max_wait"),
        })
        .collect();
    assert_eq!(&slots[..4], &[0, 20, 40, 60]);
    assert!(slots.windows(2).all(|w| w[1] - w[0] == 20), "one slot every 20 ms");
    assert_eq!(max_in_window(&slots, 1000), 50);
    // A key with nothing booked grants at once.
    clock.advance(Duration::from_secs(20));
    let fresh = [Rule::new("q", 50, Duration::from_millis(1000)).paced()];
    assert_eq!(limiter.reserve_now(&fresh, Duration::ZERO).unwrap(), Reservation::Granted { wait: Duration::ZERO });
}
