//! The contract every system's bench process keeps, questline's (`role.rs`) and the peers'
//! (`bench/peers/peer.mjs`) alike: the same roles and flags, and one JSON object on the
//! last line of stdout (`{"ready":true}` before it, for a worker that is now running).
//! Percentiles are computed here, from the raw samples, the same way for every system.

use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Setup,
    Enqueue,
    Drain,
    LatencyWorker,
    LatencyProducer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Setup => "setup",
            Role::Enqueue => "enqueue",
            Role::Drain => "drain",
            Role::LatencyWorker => "latency-worker",
            Role::LatencyProducer => "latency-producer",
        }
    }
}

/// What a system's own store says after the drain; `None` where it keeps no such record
/// (graphile-worker deletes a job when it succeeds).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Store {
    /// Jobs recorded as succeeded.
    pub completed: Option<u64>,
    /// Distinct payloads among them.
    pub distinct: Option<u64>,
    /// Jobs started more than once.
    pub run_twice: Option<u64>,
    /// Jobs in any other state (still waiting, running, failed).
    pub unfinished: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EnqueueOut {
    pub jobs: u64,
    pub secs: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrainOut {
    pub jobs: u64,
    /// First handler start to the last completion recorded in the store.
    pub secs: f64,
    /// Handler calls, distinct jobs among them (by `seq`), and calls beyond one per job.
    pub handled: u64,
    pub distinct: u64,
    pub duplicates: u64,
    #[serde(default)]
    pub store: Store,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LatencyWorkerOut {
    pub handled: u64,
    pub distinct: u64,
    pub duplicates: u64,
    /// Handler start minus the enqueue instant in the payload, per job, µs.
    pub latency_us: Vec<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LatencyProducerOut {
    pub jobs: u64,
    pub secs: f64,
    /// The latest an enqueue started after its due instant, µs.
    pub max_lag_us: i64,
    /// Each enqueue call's duration, µs.
    pub call_us: Vec<i64>,
}

/// p50/p90/p99/max of samples in µs, reported in ms (nearest rank).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    pub samples: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(samples_us: &[i64]) -> Percentiles {
        let mut v = samples_us.to_vec();
        v.sort_unstable();
        let at = |q: f64| {
            if v.is_empty() {
                return f64::NAN;
            }
            let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
            v[rank - 1] as f64 / 1000.0
        };
        Percentiles { samples: v.len(), p50_ms: at(0.50), p90_ms: at(0.90), p99_ms: at(0.99), max_ms: at(1.0) }
    }
}

/// Microseconds since the Unix epoch: the clock every process on the machine shares.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// Tells the orchestrator that the worker is running.
pub fn ready() {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{{\"ready\":true}}");
    let _ = out.flush();
}

/// Open loop: job `seq` is due at `start + seq / rate`, whatever earlier enqueues did.
pub struct OpenLoop {
    start: tokio::time::Instant,
    rate: f64,
}

impl OpenLoop {
    pub fn new(rate: f64) -> OpenLoop {
        OpenLoop { start: tokio::time::Instant::now() + Duration::from_millis(20), rate: rate.max(0.001) }
    }

    /// Sleeps until `seq` is due; returns how late it is by then.
    pub async fn wait_for(&self, seq: u64) -> Duration {
        let due = self.start + Duration::from_secs_f64(seq as f64 / self.rate);
        tokio::time::sleep_until(due).await;
        tokio::time::Instant::now().saturating_duration_since(due)
    }

    pub fn elapsed(&self) -> Duration {
        Instant::now().saturating_duration_since(self.start.into_std())
    }
}

#[cfg(test)]
mod tests {
    use super::Percentiles;

    #[test]
    fn percentiles_are_nearest_rank() {
        let p = Percentiles::of(&(1..=100).map(|ms| ms * 1000).collect::<Vec<_>>());
        assert_eq!((p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms), (50.0, 90.0, 99.0, 100.0));
        assert!(Percentiles::of(&[]).p50_ms.is_nan());
    }
}
