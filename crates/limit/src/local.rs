//! [`LocalLimiter`]: the sliding logs in this process's memory, for the embedded default (one
//! process) and as the fallback of the Redis limiter. A decision locks the shards of its keys
//! (in shard order, so two decisions never deadlock), decides, books, unlocks: no await
//! inside, a few hundred nanoseconds.

use crate::clock::{Clock, MonotonicClock};
use crate::log::KeyLog;
use crate::{LimitError, Limiter, Margin, Reservation, Rule, micros};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

const SHARDS: usize = 16;

type Shard = HashMap<String, KeyLog>;

/// Exact sliding-window limits in one process (see the crate's documentation).
pub struct LocalLimiter<C: Clock = MonotonicClock> {
    clock: C,
    margin: Margin,
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
}

impl LocalLimiter {
    /// A limiter on the monotonic clock with the default [`Margin`].
    pub fn new() -> Self {
        Self::with_clock(MonotonicClock::default(), Margin::default())
    }
}

impl Default for LocalLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Clock> LocalLimiter<C> {
    pub fn with_clock(clock: C, margin: Margin) -> Self {
        LocalLimiter {
            clock,
            margin,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    pub fn margin(&self) -> Margin {
        self.margin
    }

    /// This limiter's clock now (the origin of [`LocalLimiter::reserve_at`]'s answers).
    pub fn now(&self) -> Duration {
        self.clock.now()
    }

    /// [`Limiter::reserve`], without the future: the decision never waits.
    pub fn reserve_now(&self, rules: &[Rule], max_wait: Duration) -> Result<Reservation, LimitError> {
        self.decide(rules, max_wait, 0, 1).map(|(r, _)| r)
    }

    /// [`Limiter::hold`], without the future.
    pub fn hold_now(&self, key: &str, for_: Duration) {
        let now = micros(self.clock.now());
        let mut shard = lock(&self.shards[self.shard_of(key)]);
        shard.entry(key.to_owned()).or_default().hold(now.saturating_add(micros(for_)));
    }

    /// The decision itself: no slot before `floor` (µs on this clock), each limit divided by
    /// `share` (rounded down, at least 1). Returns the reservation and, when granted, the
    /// slot (µs on this clock).
    pub(crate) fn decide(
        &self,
        rules: &[Rule],
        max_wait: Duration,
        floor: u64,
        share: u32,
    ) -> Result<(Reservation, Option<u64>), LimitError> {
        for rule in rules {
            rule.check()?;
        }
        let mut order: Vec<usize> = rules.iter().map(|r| self.shard_of(&r.key)).collect();
        order.sort_unstable();
        order.dedup();
        let mut guards: Vec<(usize, MutexGuard<'_, Shard>)> =
            order.iter().map(|&i| (i, lock(&self.shards[i]))).collect();
        let now = micros(self.clock.now());
        let mut slot = now.max(floor);
        let share = share.max(1);
        for rule in rules {
            let log = log_of(&mut guards, self.shard_of(&rule.key), &rule.key);
            let limit = (rule.limit / share).max(1);
            let window = micros(self.margin.window(rule.window));
            log.note_rule(limit, window);
            log.trim(now);
            slot = slot.max(log.earliest(now, limit, window, rule.paced));
        }
        let wait = Duration::from_micros(slot - now);
        if wait > max_wait {
            return Ok((Reservation::TooLate { earliest: wait }, None));
        }
        for (i, rule) in rules.iter().enumerate() {
            // Several rules on one key book it once.
            if rules[..i].iter().all(|r| r.key != rule.key) {
                log_of(&mut guards, self.shard_of(&rule.key), &rule.key).book(slot, now);
            }
        }
        Ok((Reservation::Granted { wait }, Some(slot)))
    }

    fn shard_of(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize) % SHARDS
    }
}

fn log_of<'a>(guards: &'a mut [(usize, MutexGuard<'_, Shard>)], shard: usize, key: &str) -> &'a mut KeyLog {
    let (_, map) = guards.iter_mut().find(|(i, _)| *i == shard).expect("the key's shard is locked");
    if !map.contains_key(key) {
        map.insert(key.to_owned(), KeyLog::default());
    }
    map.get_mut(key).expect("just inserted")
}

/// A poisoned shard is still consistent: every change to a log is a push or a pop.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[async_trait::async_trait]
impl<C: Clock> Limiter for LocalLimiter<C> {
    async fn reserve(&self, rules: &[Rule], max_wait: Duration) -> Result<Reservation, LimitError> {
        self.reserve_now(rules, max_wait)
    }

    async fn hold(&self, key: &str, for_: Duration) -> Result<(), LimitError> {
        self.hold_now(key, for_);
        Ok(())
    }
}
