//! The monotonic clock of the in-process limiter, injectable so that tests drive time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Monotonic time since some origin of the clock's own. Only differences matter.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Duration;
}

/// Monotonic time from the clock's creation, read from the CPU's time-stamp counter where
/// `quanta` finds it invariant and calibrated (a few nanoseconds a reading: a decision reads
/// the clock once), else from the OS's monotonic clock.
#[derive(Debug, Clone)]
pub struct MonotonicClock {
    clock: quanta::Clock,
    origin: quanta::Instant,
}

impl Default for MonotonicClock {
    fn default() -> Self {
        let clock = quanta::Clock::new();
        let origin = clock.now();
        MonotonicClock { clock, origin }
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.clock.now().duration_since(self.origin)
    }
}

/// A clock that moves only when told (tests). Clones share the time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    pub fn set(&self, t: Duration) {
        self.0.store(t.as_micros() as u64, Ordering::SeqCst);
    }
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_micros() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_micros(self.0.load(Ordering::SeqCst))
    }
}
