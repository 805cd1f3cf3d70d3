//! Exact sliding-window rate limits, decided as **reservations**: the caller asks for the
//! earliest slot at which every one of its rules admits one more request, books it if it is
//! no more than `max_wait` away, then waits that long and sends. Written for the dispatcher
//! that sends messages to SMS and e-mail providers (issue 8): a provider must never see more
//! requests than its limits allow in any window, and the dispatcher should use all of them.
//!
//! # The guarantee
//!
//! A [`Rule`] is `(key, limit, window)`. For every key, the slots granted on it form a
//! non-decreasing log, and each new slot `t` is at least `log[len - limit] + window'`, where
//! `window' = window + margin` ([`Margin`]). So every half-open interval of length `window'`
//! holds at most `limit` granted slots, for every rule ever decided on the key: this is a
//! sliding log, exact at microsecond resolution (the research survey, `shared/research/
//! ratelimit.md`, §0 and §A.5: the only exact design that is also 100 % utilised; a fixed
//! window or a GCRA with burst admits up to 2×). Several rules, on one key or several, are
//! decided together and atomically: the slot is the latest of each rule's earliest, and it is
//! booked on every key named, or on none.
//!
//! A decision checks the rules it is given and no others: **every decision on a key must
//! name all of that key's rules** (the dispatcher passes a provider's whole set each time).
//! A decision on `(k, 5/s)` alone would not see `(k, 3/100 ms)`, and could book a fourth
//! slot inside 100 ms (the property test found exactly that before this was the contract).
//!
//! Slots never decrease on a key, so a later request can never take a slot in front of an
//! earlier, longer wait: that loses a little utilisation when callers ask with very
//! different `max_wait`s, and buys a log that stays sorted (the earliest slot is
//! `max(now, last slot, hold, log[len - limit] + window')`). Each key keeps only what its
//! rules can need: slots younger than its longest window, and at most its largest limit.
//!
//! Durations are relative to "now" on purpose: the caller's clock and the deciding clock
//! (this process's monotonic clock, or the Redis server's `TIME`) never need to agree.
//!
//! # The margin
//!
//! Providers count arrivals at their edge, after network jitter that can bunch requests
//! sent a window apart. [`Margin`] lengthens every window by `fixed + window × per_mille /
//! 1000`; the default, 10 ms + 0.1 %, is 11 ms (1.1 %) on a 1-s window, and 70 ms on a
//! minute. Jitter does not grow with the window, so most of the margin is fixed; the
//! proportional part covers two clocks running at different rates (NTP slews a clock by
//! at most 0.05 %, twice that in all between two clocks). Every slot given up to the margin is a message a provider was paid to
//! take, so the margin is no wider than that. Jitter beyond it is what [`Limiter::hold`]
//! (a provider's 429 and `Retry-After`) is for.
//!
//! # Backends
//!
//! - [`LocalLimiter`]: one process (the embedded default), sharded mutexes, no await inside.
//! - `RedisLimiter` (feature `redis`): every process of a deployment, one Lua script per
//!   decision on the Redis server's clock; when Redis cannot be reached it **fails closed**
//!   to a local share of each limit. The argument that the switch-over in both directions
//!   keeps the guarantee is in that module's documentation (`redis/mod.rs`).

#![forbid(unsafe_code)]

pub mod clock;
mod local;
mod log;
#[cfg(feature = "redis")]
pub mod redis;

pub use clock::{Clock, ManualClock, MonotonicClock};
pub use local::LocalLimiter;
#[cfg(feature = "redis")]
pub use redis::{RedisConfig, RedisLimiter, Source};

use std::time::Duration;

/// At most `limit` requests on `key` in any window of length `window` (plus the margin).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    pub key: String,
    pub limit: u32,
    pub window: Duration,
    /// Slots on the key at least `window / limit` (the margin included) apart: the same
    /// number per window, spread evenly instead of `limit` at once (see [`Rule::paced`]).
    pub paced: bool,
}

impl Rule {
    pub fn new(key: impl Into<String>, limit: u32, window: Duration) -> Self {
        Rule { key: key.into(), limit, window, paced: false }
    }

    /// This rule, paced: a burst is let out at the rule's rate, one slot every
    /// `window / limit`, instead of `limit` slots at the same instant and then a window's
    /// wait. No window holds fewer than it would unpaced once the burst outlasts a window,
    /// and requests that leave together no longer arrive bunched: the jitter of sending
    /// `limit` requests at once is what a provider sees as a breach of its window.
    pub fn paced(mut self) -> Self {
        self.paced = true;
        self
    }

    fn check(&self) -> Result<(), LimitError> {
        if self.limit == 0 || self.window.is_zero() {
            return Err(LimitError::InvalidRule { key: self.key.clone(), why: "limit and window must be positive" });
        }
        Ok(())
    }
}

/// The answer to [`Limiter::reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// A slot is booked `wait` from now: wait that long, then send. The slot is spent
    /// whether or not the caller sends.
    Granted { wait: Duration },
    /// The earliest slot is `earliest` from now, more than the `max_wait` asked: nothing was
    /// booked (the dispatcher tries another provider, or asks again later).
    TooLate { earliest: Duration },
}

/// The safety margin added to every window: `fixed + window × per_mille / 1000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Margin {
    pub fixed: Duration,
    pub per_mille: u32,
}

impl Margin {
    pub const NONE: Margin = Margin { fixed: Duration::ZERO, per_mille: 0 };

    /// `window` lengthened by the margin: the window every decision actually uses.
    pub fn window(&self, window: Duration) -> Duration {
        window + self.fixed + window * self.per_mille / 1000
    }
}

impl Default for Margin {
    /// 10 ms + 0.1 % (see the crate's documentation).
    fn default() -> Self {
        Margin { fixed: Duration::from_millis(10), per_mille: 1 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("invalid rule on key {key:?}: {why}")]
    InvalidRule { key: String, why: &'static str },
    /// Neither Redis nor a safe local share can decide (Redis unreachable before this process
    /// ever learnt how many processes share the limits): nothing is granted.
    #[error("the rate limiter cannot decide safely: {0}")]
    Unavailable(String),
}

/// A rate limiter (see the crate's documentation for the guarantee).
#[async_trait::async_trait]
pub trait Limiter: Send + Sync {
    /// Books the earliest slot at which every rule admits one more request, if that slot is
    /// no more than `max_wait` from now, and returns how long the caller waits before
    /// sending. Otherwise books nothing and says how far away the earliest slot is.
    async fn reserve(&self, rules: &[Rule], max_wait: Duration) -> Result<Reservation, LimitError>;

    /// A provider said "slow down" (429 with `Retry-After`): no slot on `key` before
    /// now + `for_`. Slots already granted stand.
    async fn hold(&self, key: &str, for_: Duration) -> Result<(), LimitError>;
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
