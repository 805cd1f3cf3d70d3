//! questline's side of the queue benchmark's process contract: `questline-bench queue-role
//! --role ROLE --url URL …`, run by the orchestrator as a process of its own, exactly as
//! the peers' `bench/peers/peer.mjs` is (same roles, same flags, same JSON on stdout).
//!
//! - `setup`: opens the queue (applies its migrations), so that nothing timed migrates;
//! - `enqueue`: `--jobs` no-op jobs in calls of `--batch` (one unit of work each);
//! - `drain`: one worker (`--concurrency`) until the table holds `--jobs` succeeded jobs;
//! - `latency-worker`: an idle worker, `{"ready":true}` once running, then for each job
//!   the time from the enqueue instant its payload carries to its handler's start;
//! - `latency-producer`: `--jobs` jobs one per call, open loop at `--rate` per second.
//!
//! The no-op kind exists only here, in the bench's own worker process: the product server
//! has no such handler. The worker is `questline_queue::Worker` with the product's
//! defaults (`WorkerConfig::default()`) but the concurrency and the prefetch (by default the
//! concurrency, as `questline worker` runs).

use crate::Result;
use crate::queue::contract::{self, Store as StoreCounts};
use questline_queue::{Backend, NewJob, Outcome, QueueConfig, SqlQueue, Worker, WorkerConfig};
use serde_json::json;
use sqlx::Connection;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The bench's no-op job kind.
pub const KIND: &str = "bench.noop";

#[derive(Debug, Clone, clap::Args)]
pub struct RoleArgs {
    #[arg(long, value_enum)]
    pub role: contract::Role,
    /// The database: `sqlite://FILE` or `postgres://…`.
    #[arg(long)]
    pub url: String,
    #[arg(long, default_value_t = 100_000)]
    pub jobs: u64,
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Open-loop rate of `latency-producer`, jobs per second.
    #[arg(long, default_value_t = 250.0)]
    pub rate: f64,
    /// Jobs per enqueue call in `enqueue`.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// The worker's poll interval, ms (default: the product's, `WorkerConfig::default()`).
    #[arg(long)]
    pub poll_ms: Option<u64>,
    /// Jobs the worker claims ahead of its free slots (default: the concurrency, as
    /// `questline worker` runs with `QUESTLINE_WORKER_PREFETCH` unset).
    #[arg(long)]
    pub prefetch: Option<usize>,
}

pub async fn run(args: &RoleArgs) -> Result<()> {
    let store = questline_store::connect(&args.url).await?;
    let queue = Arc::new(SqlQueue::open(store, QueueConfig::default()).await?.listening(&args.url));
    let out = match args.role {
        contract::Role::Setup => json!({
            "role": "setup",
            "version": concat!("questline ", env!("CARGO_PKG_VERSION")),
            "settings": {
                "worker": format!("{:?}", worker_config(args)),
                "handler": "Worker::handle (one job per call), outcome Done",
                "enqueue": format!("SqlQueue::enqueue, {} jobs per call (bulk); 1 per call (latency)", args.batch),
                "wakeup": if args.url.starts_with("postgres") { "LISTEN/NOTIFY" } else { "poll (no NOTIFY on SQLite)" },
            },
        }),
        contract::Role::Enqueue => enqueue(&queue, args).await?,
        contract::Role::Drain => drain(queue, args).await?,
        contract::Role::LatencyWorker => latency_worker(queue, args).await?,
        contract::Role::LatencyProducer => latency_producer(&queue, args).await?,
    };
    println!("{out}");
    Ok(())
}

async fn enqueue(queue: &SqlQueue, args: &RoleArgs) -> Result<serde_json::Value> {
    let started = Instant::now();
    let mut seq = 0;
    while seq < args.jobs {
        let n = (args.jobs - seq).min(args.batch.max(1) as u64);
        let jobs: Vec<NewJob> = (seq..seq + n).map(|s| NewJob::new(KIND, json!({"seq": s}))).collect();
        queue.enqueue(jobs, jiff::Timestamp::now()).await?;
        seq += n;
    }
    Ok(json!({"role": "enqueue", "jobs": args.jobs, "secs": started.elapsed().as_secs_f64()}))
}

/// What the handler saw: runs per job (by `seq`), the first start, and start − enqueue.
struct Seen {
    runs: Vec<AtomicU64>,
    handled: AtomicU64,
    first_start: std::sync::OnceLock<Instant>,
    latencies_us: std::sync::Mutex<Vec<i64>>,
    all_handled: tokio::sync::Notify,
    expected: u64,
}

impl Seen {
    fn new(expected: u64) -> Arc<Seen> {
        Arc::new(Seen {
            runs: (0..expected).map(|_| AtomicU64::new(0)).collect(),
            handled: AtomicU64::new(0),
            first_start: std::sync::OnceLock::new(),
            latencies_us: std::sync::Mutex::new(Vec::with_capacity(expected as usize)),
            all_handled: tokio::sync::Notify::new(),
            expected,
        })
    }

    fn record(&self, payload: &serde_json::Value) {
        let now_us = contract::now_micros();
        self.first_start.get_or_init(Instant::now);
        if let Some(t) = payload.get("t").and_then(serde_json::Value::as_i64) {
            self.latencies_us.lock().unwrap_or_else(|p| p.into_inner()).push(now_us - t);
        }
        if let Some(run) =
            payload.get("seq").and_then(serde_json::Value::as_u64).and_then(|s| self.runs.get(s as usize))
        {
            run.fetch_add(1, Ordering::Relaxed);
        }
        if self.handled.fetch_add(1, Ordering::Relaxed) + 1 >= self.expected {
            self.all_handled.notify_one();
        }
    }

    fn distinct(&self) -> u64 {
        self.runs.iter().filter(|r| r.load(Ordering::Relaxed) > 0).count() as u64
    }

    fn duplicates(&self) -> u64 {
        self.runs.iter().map(|r| r.load(Ordering::Relaxed).saturating_sub(1)).sum()
    }
}

fn worker_config(args: &RoleArgs) -> WorkerConfig {
    let concurrency = args.concurrency.max(1);
    let prefetch = args.prefetch.unwrap_or(concurrency);
    let mut config = WorkerConfig { concurrency, prefetch, ..WorkerConfig::default() };
    if let Some(ms) = args.poll_ms {
        config.poll = Duration::from_millis(ms);
    }
    config
}

fn worker(queue: Arc<SqlQueue>, args: &RoleArgs, seen: Arc<Seen>) -> Worker {
    Worker::new(queue, worker_config(args)).handle(KIND, move |job| {
        let seen = seen.clone();
        async move {
            seen.record(&job.payload);
            Outcome::Done
        }
    })
}

/// Runs `worker` until `until` resolves, then shuts it down and waits for it.
async fn run_worker_until(worker: Worker, until: impl Future<Output = Result<()>>) -> Result<()> {
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let stop = shutdown.clone();
    tasks.spawn(async move { worker.run(stop).await });
    let result = until.await;
    shutdown.cancel();
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    result
}

async fn drain(queue: Arc<SqlQueue>, args: &RoleArgs) -> Result<serde_json::Value> {
    let seen = Seen::new(args.jobs);
    let w = worker(queue, args, seen.clone());
    let mut end = None;
    run_worker_until(w, async {
        seen.all_handled.notified().await;
        // Handled is not done: the drain ends when the last acknowledgement is committed.
        wait_for_succeeded(&args.url, args.jobs).await?;
        end = Some(Instant::now());
        Ok(())
    })
    .await?;
    let secs = match (seen.first_start.get(), end) {
        (Some(first), Some(end)) => end.duration_since(*first).as_secs_f64(),
        _ => f64::NAN,
    };
    let store = store_counts(&args.url).await?;
    Ok(json!({
        "role": "drain", "jobs": args.jobs, "secs": secs,
        "handled": seen.handled.load(Ordering::Relaxed), "distinct": seen.distinct(), "duplicates": seen.duplicates(),
        "store": store,
    }))
}

async fn latency_worker(queue: Arc<SqlQueue>, args: &RoleArgs) -> Result<serde_json::Value> {
    let seen = Seen::new(args.jobs);
    let w = worker(queue, args, seen.clone());
    run_worker_until(w, async {
        contract::ready();
        seen.all_handled.notified().await;
        Ok(())
    })
    .await?;
    let latencies = std::mem::take(&mut *seen.latencies_us.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(json!({
        "role": "latency-worker", "jobs": args.jobs,
        "handled": seen.handled.load(Ordering::Relaxed), "distinct": seen.distinct(), "duplicates": seen.duplicates(),
        "latency_us": latencies,
    }))
}

async fn latency_producer(queue: &Arc<SqlQueue>, args: &RoleArgs) -> Result<serde_json::Value> {
    let schedule = contract::OpenLoop::new(args.rate);
    let mut calls = JoinSet::new();
    let mut call_us = Vec::with_capacity(args.jobs as usize);
    let mut max_lag_us = 0i64;
    for seq in 0..args.jobs {
        let lag = schedule.wait_for(seq).await;
        max_lag_us = max_lag_us.max(lag.as_micros() as i64);
        let queue = queue.clone();
        // Never waits for the previous enqueue: each is a task of its own.
        calls.spawn(async move {
            let job = NewJob::new(KIND, json!({"seq": seq, "t": contract::now_micros()}));
            let started = Instant::now();
            queue.enqueue(vec![job], jiff::Timestamp::now()).await.map(|_| started.elapsed())
        });
        while let Some(done) = calls.try_join_next() {
            call_us.push(done??.as_micros() as i64);
        }
    }
    while let Some(done) = calls.join_next().await {
        call_us.push(done??.as_micros() as i64);
    }
    Ok(json!({
        "role": "latency-producer", "jobs": args.jobs, "secs": schedule.elapsed().as_secs_f64(),
        "max_lag_us": max_lag_us, "call_us": call_us,
    }))
}

/// Polls the table until `n` jobs have succeeded (every 10 ms: it runs only at the end).
async fn wait_for_succeeded(url: &str, n: u64) -> Result<()> {
    const SQL: &str = "SELECT count(*) FROM queue_jobs WHERE state = 'succeeded'";
    let mut db = Db::connect(url).await?;
    loop {
        let (succeeded,): (i64,) = match &mut db {
            Db::Sqlite(c) => sqlx::query_as(SQL).fetch_one(c).await?,
            Db::Postgres(c) => sqlx::query_as(SQL).fetch_one(c).await?,
        };
        if succeeded as u64 >= n {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A plain connection beside the queue's own pools, to read the table back.
enum Db {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Db {
    async fn connect(url: &str) -> Result<Db> {
        Ok(if url.starts_with("sqlite:") {
            Db::Sqlite(sqlx::SqliteConnection::connect(url).await?)
        } else {
            Db::Postgres(sqlx::PgConnection::connect(url).await?)
        })
    }
}

/// The jobs table read back: how many succeeded, how many distinct payloads among them,
/// how many were claimed more than once, and how many are in any other state.
async fn store_counts(url: &str) -> Result<StoreCounts> {
    const SQL: &str = "SELECT \
        (SELECT count(*) FROM queue_jobs WHERE state = 'succeeded'), \
        (SELECT count(DISTINCT payload) FROM queue_jobs WHERE state = 'succeeded'), \
        (SELECT count(*) FROM queue_jobs WHERE claims > 1), \
        (SELECT count(*) FROM queue_jobs WHERE state <> 'succeeded')";
    let (succeeded, distinct, reclaimed, other): (i64, i64, i64, i64) = match Db::connect(url).await? {
        Db::Sqlite(mut c) => sqlx::query_as(SQL).fetch_one(&mut c).await?,
        Db::Postgres(mut c) => sqlx::query_as(SQL).fetch_one(&mut c).await?,
    };
    Ok(StoreCounts {
        completed: Some(succeeded as u64),
        distinct: Some(distinct as u64),
        run_twice: Some(reclaimed as u64),
        unfinished: Some(other as u64),
    })
}
