//! Once a second: the events acknowledged so far and the process's resident memory.
//!
//! Memory is read from `/proc/self/status` (`VmRSS` now, `VmHWM` the peak). The server runs
//! in this process, so the figures include the load generator (small: it streams its
//! requests and holds no event history) and SQLite's page cache.

use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// One sample.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Seconds since the phase started.
    pub t: f64,
    /// Events acknowledged (or, for the reference, committed) in total.
    pub done: u64,
    /// Events per second since the previous sample.
    pub rate: f64,
    /// Resident set size, MiB.
    pub rss_mib: f64,
    /// Its anonymous part (heap, stacks, SQLite's page cache), MiB: without the pages of
    /// files mapped into memory (SQLite's `mmap_size`), which the kernel can drop at will.
    pub rss_anon_mib: f64,
}

/// `VmRSS` and `VmHWM` of this process in MiB, if the platform has `/proc`.
pub fn memory_mib() -> (Option<f64>, Option<f64>) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    (status_field(&status, "VmRSS:"), status_field(&status, "VmHWM:"))
}

/// `RssAnon` of this process in MiB.
pub fn anon_mib() -> Option<f64> {
    status_field(&std::fs::read_to_string("/proc/self/status").unwrap_or_default(), "RssAnon:")
}

fn status_field(status: &str, name: &str) -> Option<f64> {
    status.lines().find_map(|l| l.strip_prefix(name)).and_then(|rest| {
        let kib: f64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib / 1024.0)
    })
}

/// Samples `done` every `every` until `stop` is cancelled; `report` sees each sample as it
/// is taken (the soak prints them).
pub async fn sample(
    done: Arc<AtomicU64>,
    every: Duration,
    stop: CancellationToken,
    mut report: impl FnMut(&Sample) + Send,
) -> Vec<Sample> {
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate
    let (mut last_t, mut last_done) = (0.0, 0);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => break,
        }
        let t = started.elapsed().as_secs_f64();
        let now_done = done.load(Ordering::Relaxed);
        let rate = if t > last_t { (now_done - last_done) as f64 / (t - last_t) } else { 0.0 };
        let s = Sample {
            t,
            done: now_done,
            rate,
            rss_mib: memory_mib().0.unwrap_or(0.0),
            rss_anon_mib: anon_mib().unwrap_or(0.0),
        };
        report(&s);
        samples.push(s);
        (last_t, last_done) = (t, now_done);
    }
    samples
}
