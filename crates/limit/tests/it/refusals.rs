//! Refusals on Redis: a one-key decision refused once is refused again from the key's hash
//! (`reserve.lua`) until the next booking. These tests check what that must not change: a
//! hammered key still admits its limit in every window and never more, a refusal's earliest
//! slot is where the slot really is, and other rules on the same key are decided afresh.

use questline_limit::{Limiter, Margin, RedisConfig, RedisLimiter, Reservation, Rule, Source};
use std::time::{Duration, Instant};

async fn limiter(namespace: &str) -> RedisLimiter {
    let mut config = RedisConfig::new(namespace.to_owned());
    config.margin = Margin::NONE;
    RedisLimiter::connect(&questline_testkit::redis::url(), config)
        .await
        .unwrap_or_else(|e| questline_testkit::redis::unavailable(&e.to_string()))
}

#[tokio::test]
async fn a_hammered_key_admits_its_limit_every_window_and_never_more() {
    if questline_testkit::redis::skipped("limit::refusals") {
        return;
    }
    let namespace = questline_testkit::redis::fresh_namespace();
    let limiter = limiter(&namespace).await;
    let (limit, window) = (20u64, Duration::from_millis(400));
    let rule = [Rule::new("h", limit as u32, window)];
    let (mut slots, mut refusals) = (Vec::new(), 0);
    let until = Instant::now() + Duration::from_millis(2_100);
    while Instant::now() < until {
        match limiter.reserve_traced(&rule, Duration::ZERO).await.unwrap() {
            (Reservation::Granted { .. }, Source::Redis { slot }) => slots.push(slot),
            (Reservation::Granted { .. }, Source::Fallback) => panic!("fell back with Redis up"),
            (Reservation::TooLate { .. }, _) => refusals += 1,
        }
    }
    assert!(refusals > 10 * slots.len(), "the key was hammered: {refusals} refusals, {} grants", slots.len());
    let window_us = window.as_micros() as u64;
    let most = crate::windows::max_in_window(&slots, window_us) as u64;
    assert_eq!(most, limit, "at most the limit in any window, and some window full");
    // Five whole windows in 2.1 s: each one admitted its limit (the first slot opens them).
    for w in 0..5 {
        let from = slots[0] + w * window_us;
        let n = slots.iter().filter(|&&s| (from..from + window_us).contains(&s)).count() as u64;
        assert_eq!(n, limit, "window {w} admitted {n} of {limit}");
    }
    questline_testkit::redis::delete_keys(&format!("{namespace}:*")).await.unwrap();
}

#[tokio::test]
async fn a_refusal_names_the_real_earliest_slot_and_other_rules_are_decided_afresh() {
    if questline_testkit::redis::skipped("limit::refusals") {
        return;
    }
    let namespace = questline_testkit::redis::fresh_namespace();
    let limiter = limiter(&namespace).await;
    let tight = [Rule::new("k", 2, Duration::from_secs(2))];
    for _ in 0..2 {
        assert!(matches!(limiter.reserve(&tight, Duration::ZERO).await.unwrap(), Reservation::Granted { .. }));
    }
    // Refused twice: the second from the hash. Both name the slot 2 s after the first grant.
    let earliest = |r: Reservation| match r {
        Reservation::TooLate { earliest } => earliest,
        granted => panic!("{granted:?}"),
    };
    let first = earliest(limiter.reserve(&tight, Duration::ZERO).await.unwrap());
    let second = earliest(limiter.reserve(&tight, Duration::ZERO).await.unwrap());
    assert!(first > Duration::from_millis(1_800) && second <= first, "{first:?} then {second:?}");
    // A looser rule on the same key is not refused by the tight rule's bound.
    let loose = [Rule::new("k", 5, Duration::from_secs(2))];
    assert!(matches!(limiter.reserve(&loose, Duration::ZERO).await.unwrap(), Reservation::Granted { .. }));
    // And waiting is granted where the refusal said, give or take the calls' scheduling and
    // the loose grant (which moved the tight rule's earliest from the first grant 2 s on to
    // the second's, a fraction of a millisecond later).
    match limiter.reserve(&tight, Duration::from_secs(5)).await.unwrap() {
        Reservation::Granted { wait } => assert!(
            wait <= second + Duration::from_millis(20) && wait + Duration::from_millis(300) >= second,
            "{wait:?} vs {second:?}"
        ),
        refused => panic!("{refused:?}"),
    }
    questline_testkit::redis::delete_keys(&format!("{namespace}:*")).await.unwrap();
}
