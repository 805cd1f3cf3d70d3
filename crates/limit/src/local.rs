//! [`LocalLimiter`]: the sliding logs in this process's memory, for the embedded default (one
//! process) and as the fallback of the Redis limiter. A decision locks the shards of its keys
//! (in shard order, so two decisions never deadlock), decides, books, unlocks: no await
//! inside, no allocation for a key seen before, under a hundred nanoseconds
//! (`questline-bench limit`, docs/BENCHMARKS.md). A key is hashed once per decision.

use crate::clock::{Clock, MonotonicClock};
use crate::log::KeyLog;
use crate::{LimitError, Limiter, Margin, Reservation, Rule, micros};
use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

const SHARDS: usize = 16;
/// One bit per shard: which shards a decision locks.
type ShardSet = u16;
const _: () = assert!(ShardSet::BITS as usize == SHARDS);
/// Rules whose key hashes a decision keeps on the stack (more are hashed again as needed).
const INLINE_RULES: usize = 8;

/// A key's log, found by a hash computed once per rule and decision (a map keyed by the
/// string would hash it again for every lookup).
struct Entry {
    key: Box<str>,
    log: KeyLog,
}

type Shard = HashTable<Entry>;

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
            shards: (0..SHARDS).map(|_| Mutex::new(HashTable::new())).collect(),
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
        let hash = self.hash(key);
        let mut shard = lock(&self.shards[shard_of(hash)]);
        log_in(&mut shard, &self.hasher, hash, key).hold(now.saturating_add(micros(for_)));
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
        let mut inline = [0u64; INLINE_RULES];
        for (h, rule) in inline.iter_mut().zip(rules) {
            *h = self.hash(&rule.key);
        }
        let hash = |i: usize| if i < INLINE_RULES { inline[i] } else { self.hash(&rules[i].key) };
        // Locked in shard order: two decisions never wait on each other in a cycle.
        let set: ShardSet = (0..rules.len()).fold(0, |set, i| set | 1 << shard_of(hash(i)));
        let mut guards: [Option<MutexGuard<'_, Shard>>; SHARDS] = Default::default();
        for (i, guard) in guards.iter_mut().enumerate().filter(|(i, _)| set & 1 << i != 0) {
            *guard = Some(lock(&self.shards[i]));
        }
        let now = micros(self.clock.now());
        let mut slot = now.max(floor);
        let share = share.max(1);
        for (i, rule) in rules.iter().enumerate() {
            let log = log_of(&mut guards, &self.hasher, hash(i), &rule.key);
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
                log_of(&mut guards, &self.hasher, hash(i), &rule.key).book(slot, now);
            }
        }
        Ok((Reservation::Granted { wait }, Some(slot)))
    }

    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }
}

/// The shard of a key: from the hash's top bits, since its table's buckets are chosen by
/// the low ones (keys of one shard sharing them would crowd a few buckets).
fn shard_of(hash: u64) -> usize {
    (hash >> 60) as usize % SHARDS
}

fn log_of<'a>(
    guards: &'a mut [Option<MutexGuard<'_, Shard>>],
    hasher: &DefaultHashBuilder,
    hash: u64,
    key: &str,
) -> &'a mut KeyLog {
    let shard = guards[shard_of(hash)].as_mut().expect("the key's shard is locked");
    log_in(shard, hasher, hash, key)
}

/// The log of `key` (whose hash is `hash`) in its shard, made empty the first time.
fn log_in<'a>(shard: &'a mut Shard, hasher: &DefaultHashBuilder, hash: u64, key: &str) -> &'a mut KeyLog {
    let entry = shard
        .entry(hash, |e| &*e.key == key, |e| hasher.hash_one(&*e.key))
        .or_insert_with(|| Entry { key: key.into(), log: KeyLog::default() });
    &mut entry.into_mut().log
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
