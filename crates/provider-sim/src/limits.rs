//! The simulator's own limits: an exact sliding log per window, as a strict provider keeps
//! one. A request is admitted only if every window would still hold at most its limit
//! counting it; a refused request books nothing.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// At most `requests` in any `length` of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub requests: u32,
    pub length: Duration,
}

impl Window {
    /// `REQUESTS/MILLISECONDS`, as the command line takes it: `100/1000`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (requests, ms) = text.split_once('/').ok_or_else(|| format!("{text:?}: expected REQUESTS/MILLISECONDS"))?;
        let requests: u32 = requests.parse().map_err(|_| format!("{text:?}: the requests are not a number"))?;
        let ms: u64 = ms.parse().map_err(|_| format!("{text:?}: the milliseconds are not a number"))?;
        if requests == 0 || ms == 0 {
            return Err(format!("{text:?}: both must be at least 1"));
        }
        Ok(Self { requests, length: Duration::from_millis(ms) })
    }
}

pub struct SlidingLimits {
    windows: Vec<Window>,
    /// Per window, the admission instants still inside it, oldest first.
    admitted: Vec<VecDeque<Instant>>,
    most: Vec<u32>,
}

impl SlidingLimits {
    pub fn new(windows: Vec<Window>) -> Self {
        let admitted = windows.iter().map(|_| VecDeque::new()).collect();
        let most = vec![0; windows.len()];
        Self { windows, admitted, most }
    }

    pub fn windows(&self) -> &[Window] {
        &self.windows
    }

    /// The most requests ever admitted within one of each window.
    pub fn most_admitted(&self) -> &[u32] {
        &self.most
    }

    /// Admits a request arriving at `now`, or says how long until it would be admitted.
    pub fn admit(&mut self, now: Instant) -> Result<(), Duration> {
        let mut wait = Duration::ZERO;
        for (window, log) in self.windows.iter().zip(&mut self.admitted) {
            // `a` and `now` share a window of this length iff now < a + length.
            while log.front().is_some_and(|&a| a + window.length <= now) {
                log.pop_front();
            }
            if log.len() >= window.requests as usize {
                let frees_at = log[log.len() - window.requests as usize] + window.length;
                wait = wait.max(frees_at.saturating_duration_since(now));
            }
        }
        if !wait.is_zero() {
            return Err(wait);
        }
        for ((log, most), _) in self.admitted.iter_mut().zip(&mut self.most).zip(&self.windows) {
            log.push_back(now);
            *most = (*most).max(log.len() as u32);
        }
        Ok(())
    }
}
