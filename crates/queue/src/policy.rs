//! When a failed job runs again: exponential backoff with a cap and jitter, as a pure
//! function of the attempt and a random draw, so that tests (and the property tests in
//! `tests/it/policy.rs`) pin it exactly.
//!
//! The delay is `min(cap, initial · 2^(attempt-1))` (the *base*), then jittered: `Full`
//! draws uniformly from `[0, base)`, `Equal` from `[base/2, base)`, `None` keeps the base.
//! The result becomes the job's next `run_at`, persisted; no worker sleeps on it.

use std::collections::HashMap;
use std::time::Duration;

/// How a delay is spread, so that jobs that failed together do not all retry together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Exactly the base (tests; a single consumer with nothing to spread).
    None,
    /// Uniform in `[0, base)`: the widest spread (AWS's "full jitter").
    Full,
    /// Uniform in `[base/2, base)`: spread, but never much sooner than the base.
    Equal,
}

/// How one kind of job is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included, unless the job names its own.
    pub max_attempts: u32,
    /// The base delay after the first failed attempt.
    pub initial: Duration,
    /// No base delay exceeds this.
    pub cap: Duration,
    pub jitter: Jitter,
}

impl Default for RetryPolicy {
    /// 20 attempts, 1 s doubling to at most an hour, equal jitter: about 14 hours from the
    /// first failure to the last attempt.
    fn default() -> Self {
        Self {
            max_attempts: 20,
            initial: Duration::from_secs(1),
            cap: Duration::from_secs(3600),
            jitter: Jitter::Equal,
        }
    }
}

impl RetryPolicy {
    /// The delay before the attempt after failed attempt `attempt` (1-based), without
    /// jitter: `min(cap, initial · 2^(attempt-1))`, never overflowing.
    pub fn base(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(63);
        let factor = 1u64 << doublings;
        let nanos = self.initial.as_nanos().saturating_mul(u128::from(factor));
        let cap = self.cap.as_nanos();
        let nanos = nanos.min(cap);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The jittered delay after failed attempt `attempt`, for a random `draw` in `[0, 1)`
    /// (clamped into it).
    pub fn delay(&self, attempt: u32, draw: f64) -> Duration {
        let base = self.base(attempt);
        let draw = if draw.is_finite() { draw.clamp(0.0, 1.0) } else { 0.0 };
        match self.jitter {
            Jitter::None => base,
            Jitter::Full => base.mul_f64(draw).min(base),
            Jitter::Equal => {
                let half = base / 2;
                (half + (base - half).mul_f64(draw)).min(base)
            }
        }
    }
}

/// Retry policies by job kind, and the one for every other kind.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    pub default: RetryPolicy,
    pub by_kind: HashMap<String, RetryPolicy>,
}

impl Policies {
    pub fn new(default: RetryPolicy) -> Self {
        Self { default, by_kind: HashMap::new() }
    }

    /// Gives `kind` a policy of its own.
    pub fn with(mut self, kind: impl Into<String>, policy: RetryPolicy) -> Self {
        self.by_kind.insert(kind.into(), policy);
        self
    }

    pub fn get(&self, kind: &str) -> &RetryPolicy {
        self.by_kind.get(kind).unwrap_or(&self.default)
    }
}
