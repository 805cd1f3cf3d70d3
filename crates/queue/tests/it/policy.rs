//! The backoff, as properties: whatever the policy, the attempt and the draw, a delay is
//! never beyond the cap, never negative (a retry never runs before the failure), and the
//! un-jittered base never shrinks as attempts grow; jitter stays within its band.

use proptest::prelude::*;
use questline_queue::{Backend, Jitter, JobState, MemoryQueue, NewJob, Outcome, Policies, QueueConfig, RetryPolicy};
use serde_json::json;
use std::time::Duration;

fn policy() -> impl Strategy<Value = RetryPolicy> {
    (
        1u32..100,
        0u64..10_000_000_000,
        0u64..100_000_000_000_000,
        prop_oneof![Just(Jitter::None), Just(Jitter::Full), Just(Jitter::Equal)],
    )
        .prop_map(|(max_attempts, initial, cap, jitter)| RetryPolicy {
            max_attempts,
            initial: Duration::from_nanos(initial),
            cap: Duration::from_nanos(cap),
            jitter,
        })
}

proptest! {
    #[test]
    fn a_delay_is_within_zero_and_the_cap(policy in policy(), attempt in 0u32..200, draw in any::<f64>()) {
        let delay = policy.delay(attempt, draw);
        prop_assert!(delay <= policy.cap, "{delay:?} > cap {:?}", policy.cap);
        prop_assert!(delay <= policy.base(attempt));
        // A Duration is never negative: the next run_at is never before the failure.
    }

    #[test]
    fn the_base_never_decreases(policy in policy(), attempt in 0u32..200) {
        prop_assert!(policy.base(attempt) <= policy.base(attempt + 1));
    }

    #[test]
    fn the_base_doubles_until_the_cap(policy in policy(), attempt in 1u32..40) {
        let expected = policy.initial.as_nanos().saturating_mul(1u128 << (attempt - 1)).min(policy.cap.as_nanos());
        prop_assert_eq!(policy.base(attempt).as_nanos(), expected);
    }

    #[test]
    fn jitter_stays_in_its_band(policy in policy(), attempt in 1u32..100, draw in 0.0f64..1.0) {
        let base = policy.base(attempt);
        let delay = policy.delay(attempt, draw);
        match policy.jitter {
            Jitter::None => prop_assert_eq!(delay, base),
            Jitter::Full => prop_assert!(delay <= base),
            // Equal jitter never goes below half the base.
            Jitter::Equal => prop_assert!(delay >= base / 2 && delay <= base, "{delay:?} vs {base:?}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Through a lane, as a worker sees it: a failed attempt's next run is never before the
    /// failure and never later than the cap after it (unless the job is dead, out of
    /// attempts); the base of successive failures never shrinks.
    #[test]
    fn a_failed_job_runs_again_between_now_and_the_cap(policy in policy(), failures in 1usize..8, start in 0i64..1_000_000) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let config = QueueConfig { policies: Policies::new(policy), ..QueueConfig::default() };
            let q = MemoryQueue::new(config);
            let job = q.enqueue(vec![NewJob::new("k", json!({}))], crate::at(start)).await.unwrap().remove(0);
            let mut now = crate::at(start);
            let mut last_delay = Duration::ZERO;
            for _ in 0..failures {
                let Some(claimed) = crate::claim(&q, &["k"], 1, now).await.pop() else { break };
                let after = crate::ack(&q, &claimed, Outcome::retry("x"), now).await.unwrap();
                if after.state == JobState::Dead {
                    prop_assert_eq!(claimed.attempt, policy.max_attempts.max(1));
                    break;
                }
                prop_assert!(after.run_at >= now, "{} before {}", after.run_at, now);
                let delay = after.run_at.duration_since(now).unsigned_abs();
                prop_assert!(delay <= policy.cap, "{delay:?} beyond the cap {:?}", policy.cap);
                if policy.jitter == Jitter::None {
                    prop_assert!(delay >= last_delay, "the base shrank: {delay:?} after {last_delay:?}");
                }
                last_delay = delay;
                now = after.run_at;
            }
            prop_assert_eq!(q.get(&job.id, now).await.unwrap().unwrap().id, job.id);
            Ok(())
        })?;
    }
}

#[test]
fn examples_of_the_default_policy() {
    let p = RetryPolicy::default();
    assert_eq!(p.base(1), Duration::from_secs(1));
    assert_eq!(p.base(2), Duration::from_secs(2));
    assert_eq!(p.base(11), Duration::from_secs(1024));
    assert_eq!(p.base(13), Duration::from_secs(3600), "capped at an hour");
    assert_eq!(p.base(u32::MAX), Duration::from_secs(3600), "no overflow");
    assert_eq!(p.delay(3, 0.0), Duration::from_secs(2), "equal jitter: half the base at the lowest draw");
    assert_eq!(p.delay(3, f64::NAN), Duration::from_secs(2), "a draw that is not a number counts as 0");
}
