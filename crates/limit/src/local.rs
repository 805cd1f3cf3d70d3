//! [`LocalLimiter`]: the sliding logs in this process's memory, for the embedded default (one
//! process) and as the fallback of the Redis limiter. A decision locks the shards of its keys
//! (in shard order, so two decisions never deadlock), decides, books, unlocks: no await
//! inside, no allocation for a key seen before, under a hundred nanoseconds
//! (`questline-bench limit`, docs/BENCHMARKS.md).

use crate::clock::{Clock, MonotonicClock};
use crate::log::KeyLog;
use crate::{LimitError, Limiter, Margin, Reservation, Rule, micros};
use hashbrown::{DefaultHashBuilder, HashMap};
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

const SHARDS: usize = 16;
/// One bit per shard: which shards a decision locks.
type ShardSet = u16;
const _: () = assert!(ShardSet::BITS as usize == SHARDS);

type Shard = HashMap<String, KeyLog>;

/// Exact sliding-window limits in one process (see the crate's documentation).
pub struct LocalLimiter<C: Clock = MonotonicClock> {
    clock: C,
    margin: Margin,
    hasher: DefaultHashBuilder,
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
            hasher: DefaultHashBuilder::default(),
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
        // Locked in shard order: two decisions never wait on each other in a cycle.
        let set: ShardSet = rules.iter().fold(0, |set, r| set | 1 << self.shard_of(&r.key));
        let mut guards: [Option<MutexGuard<'_, Shard>>; SHARDS] = Default::default();
        for (i, guard) in guards.iter_mut().enumerate().filter(|(i, _)| set & 1 << i != 0) {
            *guard = Some(lock(&self.shards[i]));
        }
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

fn log_of<'a>(guards: &'a mut [Option<MutexGuard<'_, Shard>>], shard: usize, key: &str) -> &'a mut KeyLog {
    let map = guards[shard].as_mut().expect("the key's shard is locked");
    map.entry_ref(key).or_default()
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
