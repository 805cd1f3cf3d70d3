//! The engine phase: the real server, in this process on port 0, fed over real HTTP.
//!
//! Closed loop (default): `clients` tasks each send a batch, wait for the answer (which the
//! server gives only after the commit), and send the next: the maximum throughput.
//! Open loop (`--rate`): batches are due at fixed instants whatever the answers do, and each
//! request's latency counts from the instant it was due, so a stall shows in the tail
//! instead of silently slowing the sender (no coordinated omission).

use crate::database::FreshDb;
use crate::missions::BenchMission;
use crate::sampler::{self, Sample};
use crate::workload::{Workload, batch_body};
use crate::{Plan, Result};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use questline_server::config::Config;
use questline_server::serve::Server;
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Most requests in flight in open-loop mode; past it a due batch waits (and its wait counts
/// in its latency).
const MAX_IN_FLIGHT: usize = 512;

/// What the engine phase measured.
pub struct EngineRun {
    pub elapsed: Duration,
    pub sent: u64,
    /// Events of the requests answered 200: committed.
    pub committed: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// Requests answered with an error status or not answered.
    pub failed_requests: u64,
    pub first_errors: Vec<String>,
    pub latency: Histogram<u64>,
    pub samples: Vec<Sample>,
    /// `VmHWM` at the end of the phase, MiB.
    pub vm_hwm_mib: Option<f64>,
    /// CPU time the load generator spent building request bodies, seconds.
    pub generator_secs: f64,
    /// The resend check: (sent, accepted, duplicates), if asked.
    pub resend: Option<(u64, u64, u64)>,
}

#[derive(Deserialize)]
struct IngestAnswer {
    accepted: u64,
    duplicates: u64,
    rejected: Vec<serde_json::Value>,
}

/// Shared by every request of the phase.
struct Load {
    http: reqwest::Client,
    url: String,
    key: String,
    workload: Workload,
    plan: Plan,
    /// Events of every request answered (the progress bar).
    sent: AtomicU64,
    /// Events of the requests answered 200 (the throughput).
    acked: Arc<AtomicU64>,
    accepted: AtomicU64,
    duplicates: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
    errors: Mutex<Vec<String>>,
    latency: Mutex<Histogram<u64>>,
    generator_nanos: AtomicU64,
    bar: ProgressBar,
}

pub async fn run(db: &FreshDb, workload: &Workload, missions: &[BenchMission], plan: &Plan) -> Result<EngineRun> {
    let key = format!("ql_bench-{:016x}", std::process::id() as u64 ^ 0x5eed_0000_0000);
    let config = Config {
        listen: "127.0.0.1:0".parse()?,
        database_url: db.url.clone(),
        admin_key: Some(key.clone()),
        ..Config::default()
    };
    let server = Server::bind(&config, None).await.map_err(|e| match db.backend {
        crate::database::Backend::Postgres => format!("cannot start the server on PostgreSQL: {e}"),
        crate::database::Backend::Sqlite => format!("cannot start the server: {e}"),
    })?;
    let base = format!("http://{}", server.local_addr());
    let shutdown = server.shutdown_token();
    #[expect(clippy::disallowed_methods, reason = "the handle is awaited at the end of the phase")]
    let serving = tokio::spawn(server.serve());

    let http = reqwest::Client::builder().tcp_nodelay(true).pool_max_idle_per_host(MAX_IN_FLIGHT).build()?;
    for m in missions {
        let resp = http.post(format!("{base}/v1/missions")).bearer_auth(&key).json(&m.json).send().await?;
        if !resp.status().is_success() {
            let status = resp.status();
            return Err(format!("creating mission {}: {status}: {}", m.id, resp.text().await?).into());
        }
    }

    let bar = progress_bar(plan);
    let load = Arc::new(Load {
        http,
        url: format!("{base}/v1/events"),
        key,
        workload: workload.clone(),
        plan: plan.clone(),
        sent: AtomicU64::new(0),
        acked: Arc::new(AtomicU64::new(0)),
        accepted: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        rejected: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        errors: Mutex::new(Vec::new()),
        latency: Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3)?),
        generator_nanos: AtomicU64::new(0),
        bar,
    });

    let stop_sampling = CancellationToken::new();
    let soak = plan.duration.is_some();
    #[expect(clippy::disallowed_methods, reason = "the handle is awaited at the end of the phase")]
    let sampling = tokio::spawn(sampler::sample(
        load.acked.clone(),
        Duration::from_secs(1),
        stop_sampling.clone(),
        move |s: &Sample| {
            // A soak reports memory as it goes, every 10 s.
            if soak && (s.t.round() as u64).is_multiple_of(10) {
                eprintln!(
                    "t={:>5.0}s  {:>9} events  {:>8.0} events/s  RSS {:>7.1} MiB",
                    s.t, s.done, s.rate, s.rss_mib
                );
            }
        },
    ));

    let started = Instant::now();
    match plan.rate {
        None => closed_loop(&load, started).await,
        Some(rate) => open_loop(&load, started, rate).await,
    }
    let elapsed = started.elapsed();
    stop_sampling.cancel();
    let samples = sampling.await?;
    let vm_hwm_mib = sampler::memory_mib().1;
    load.bar.finish_and_clear();

    let resend = if plan.resend_check { Some(resend_all(&load).await?) } else { None };

    shutdown.cancel();
    serving.await?.map_err(|e| format!("server: {e}"))?;

    let load = Arc::try_unwrap(load).map_err(|_| "a request task outlived the phase")?;
    Ok(EngineRun {
        elapsed,
        sent: load.sent.into_inner(),
        committed: load.acked.load(Ordering::Relaxed),
        accepted: load.accepted.into_inner(),
        duplicates: load.duplicates.into_inner(),
        rejected: load.rejected.into_inner(),
        failed_requests: load.failed.into_inner(),
        first_errors: load.errors.into_inner().unwrap_or_default(),
        latency: load.latency.into_inner().map_err(|_| "latency lock poisoned")?,
        samples,
        vm_hwm_mib,
        generator_secs: load.generator_nanos.into_inner() as f64 / 1e9,
        resend,
    })
}

fn progress_bar(plan: &Plan) -> ProgressBar {
    let bar = match (plan.duration, plan.events) {
        (Some(d), _) => ProgressBar::new(d.as_secs()).with_style(
            ProgressStyle::with_template("{bar:40} {elapsed}/{duration} soak  {msg}").expect("static template"),
        ),
        (None, events) => ProgressBar::new(events).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} events  {per_sec}  eta {eta}").expect("static template"),
        ),
    };
    if plan.quiet { ProgressBar::hidden() } else { bar }
}

impl Load {
    /// Whether batch `k` is still to be sent.
    fn wanted(&self, k: u64, started: Instant) -> bool {
        let in_count = self.plan.duration.is_some() || k * self.plan.batch < self.plan.events;
        let in_time = self.plan.duration.is_none_or(|d| started.elapsed() < d);
        in_count && in_time
    }

    fn slots(&self, k: u64) -> std::ops::Range<u64> {
        let start = k * self.plan.batch;
        let end = match self.plan.duration {
            Some(_) => start + self.plan.batch,
            None => (start + self.plan.batch).min(self.plan.events),
        };
        start..end
    }

    fn body(&self, k: u64) -> String {
        let t = Instant::now();
        let body = batch_body(&self.workload, self.slots(k));
        self.generator_nanos.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        body
    }

    /// Sends batch `k`; `since` is when its latency starts.
    async fn send(&self, k: u64, body: String, since: Instant, started: Instant) {
        let n = self.slots(k).end - self.slots(k).start;
        match self.post(body).await {
            Ok(answer) => {
                self.acked.fetch_add(n, Ordering::Relaxed);
                self.accepted.fetch_add(answer.accepted, Ordering::Relaxed);
                self.duplicates.fetch_add(answer.duplicates, Ordering::Relaxed);
                self.rejected.fetch_add(answer.rejected.len() as u64, Ordering::Relaxed);
                if let Some(first) = answer.rejected.first() {
                    self.error(format!("batch {k}: rejected {first}"));
                }
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.error(format!("batch {k}: {e}"));
            }
        }
        let micros = since.elapsed().as_micros().max(1) as u64;
        self.latency.lock().expect("latency lock").saturating_record(micros);
        self.sent.fetch_add(n, Ordering::Relaxed);
        match self.plan.duration {
            Some(_) => {
                self.bar.set_position(started.elapsed().as_secs());
                self.bar.set_message(format!("{} events", self.sent.load(Ordering::Relaxed)));
            }
            None => self.bar.inc(n),
        }
    }

    async fn post(&self, body: String) -> Result<IngestAnswer> {
        let resp = self
            .http
            .post(&self.url)
            .bearer_auth(&self.key)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if !status.is_success() {
            return Err(format!("{status}: {}", String::from_utf8_lossy(&bytes)).into());
        }
        Ok(serde_json::from_slice(&bytes)?)
    }

    fn error(&self, e: String) {
        let mut errors = self.errors.lock().expect("errors lock");
        if errors.len() < 10 {
            errors.push(e);
        }
    }
}

async fn closed_loop(load: &Arc<Load>, started: Instant) {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..load.plan.clients {
        let (load, next) = (load.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if !load.wanted(k, started) {
                    break;
                }
                let body = load.body(k);
                load.send(k, body, Instant::now(), started).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

async fn open_loop(load: &Arc<Load>, started: Instant, rate: f64) {
    let interval = Duration::from_secs_f64(load.plan.batch as f64 / rate);
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = JoinSet::new();
    let mut k = 0;
    while load.wanted(k, started) {
        let due = started + interval.mul_f64(k as f64);
        tokio::time::sleep_until(due.into()).await;
        let Ok(permit) = permits.clone().acquire_owned().await else { break };
        let body = load.body(k);
        let load = load.clone();
        tasks.spawn(async move {
            load.send(k, body, due, started).await;
            drop(permit);
        });
        // Reap finished tasks as we go, so a long soak does not pile them up.
        while tasks.try_join_next().is_some() {}
        k += 1;
    }
    while tasks.join_next().await.is_some() {}
}

/// Sends every batch of the phase again: each must come back a duplicate.
async fn resend_all(load: &Arc<Load>) -> Result<(u64, u64, u64)> {
    let batches = load.sent.load(Ordering::Relaxed).div_ceil(load.plan.batch);
    let (mut sent, mut accepted, mut duplicates) = (0, 0, 0);
    for k in 0..batches {
        let slots = load.slots(k);
        sent += slots.end - slots.start;
        let answer = load.post(batch_body(&load.workload, slots)).await?;
        accepted += answer.accepted;
        duplicates += answer.duplicates;
    }
    Ok((sent, accepted, duplicates))
}
