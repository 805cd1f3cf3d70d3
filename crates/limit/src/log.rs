//! One key's log of granted slots and the arithmetic of the earliest slot: pure, in
//! microseconds on one clock. `local.rs` runs it under a lock; `redis/reserve.lua` is the
//! same arithmetic on the server (keep the two in step).

use std::collections::VecDeque;

/// The granted slots of one key, oldest first, non-decreasing; and a provider's hold.
#[derive(Debug, Default, Clone)]
pub struct KeyLog {
    slots: VecDeque<u64>,
    /// No slot before this (a provider's Retry-After).
    hold_until: u64,
    /// The longest effective window and the largest limit any rule on this key has asked
    /// for: what the log must keep to decide every rule seen.
    max_window: u64,
    max_limit: u32,
}

impl KeyLog {
    /// The earliest slot ≥ `now` at which a rule of `limit` per `window` (effective, the
    /// margin included) admits one more: after the last slot (slots never decrease), after
    /// the hold, and at least `window` after the entry `limit` back from the end, so that
    /// every half-open interval of length `window` holding the new slot holds at most
    /// `limit - 1` older ones. `paced`: also at least `window / limit` after the last slot.
    pub fn earliest(&self, now: u64, limit: u32, window: u64, paced: bool) -> u64 {
        let mut t = now.max(self.hold_until);
        if let Some(&last) = self.slots.back() {
            t = t.max(last);
            if paced {
                t = t.max(last + window / u64::from(limit.max(1)));
            }
        }
        let limit = limit.max(1) as usize;
        if self.slots.len() >= limit {
            t = t.max(self.slots[self.slots.len() - limit] + window);
        }
        t
    }

    /// Records that the key's rules include one of `limit` per `window`; call before
    /// [`earliest`](Self::earliest) so trimming never drops what that rule needs.
    pub fn note_rule(&mut self, limit: u32, window: u64) {
        self.max_window = self.max_window.max(window);
        self.max_limit = self.max_limit.max(limit.max(1));
    }

    /// Books `slot` (≥ every slot booked before) and drops what no rule seen can need:
    /// entries a longest window before `now`, and all but the last `max_limit`.
    pub fn book(&mut self, slot: u64, now: u64) {
        debug_assert!(self.slots.back().is_none_or(|&l| l <= slot));
        self.slots.push_back(slot);
        self.trim(now);
    }

    pub fn trim(&mut self, now: u64) {
        while self.slots.len() > self.max_limit as usize {
            self.slots.pop_front();
        }
        while self.slots.front().is_some_and(|&s| s + self.max_window <= now) {
            self.slots.pop_front();
        }
    }

    pub fn hold(&mut self, until: u64) {
        self.hold_until = self.hold_until.max(until);
    }
}
