//! Pacing on Redis: the Lua script spreads a burst as the local log does.

use questline_limit::{Limiter, Margin, RedisConfig, RedisLimiter, Reservation, Rule};
use std::time::Duration;

#[tokio::test]
async fn a_paced_rule_on_redis_spreads_a_burst_as_the_local_limiter_does() {
    if questline_testkit::redis::skipped("limit::paced") {
        return;
    }
    let namespace = questline_testkit::redis::fresh_namespace();
    let mut config = RedisConfig::new(namespace.clone());
    config.margin = Margin::NONE;
    let limiter = RedisLimiter::connect(&questline_testkit::redis::url(), config)
        .await
        .unwrap_or_else(|e| questline_testkit::redis::unavailable(&e.to_string()));
    let rule = [Rule::new("p", 10, Duration::from_secs(1)).paced()];
    let mut waits = Vec::new();
    for _ in 0..10 {
        match limiter.reserve(&rule, Duration::from_secs(5)).await.unwrap() {
            Reservation::Granted { wait } => waits.push(wait),
            Reservation::TooLate { earliest } => panic!("refused, earliest {earliest:?}"),
        }
    }
    // Each slot 100 ms after the one before (the waits shrink by the time each call took).
    let slots_ms: Vec<f64> = waits.iter().map(|w| w.as_secs_f64() * 1000.0).collect();
    for (i, pair) in slots_ms.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        assert!((80.0..=100.5).contains(&gap), "slot {i} to {}: {gap} ms apart ({slots_ms:?})", i + 1);
    }
    assert!(slots_ms[9] >= 800.0, "{slots_ms:?}");
    questline_testkit::redis::delete_keys(&format!("{namespace}:*")).await.unwrap();
}
