//! `questline-bench queue`: the job-queue benchmark, questline's queue beside its peers
//! (issue 7). One scenario for every system, each in processes of its own:
//!
//! 1. **enqueue**: a producer process bulk-enqueues `--jobs` no-op jobs (calls of 1,000);
//! 2. **drain**: then a worker process (`--concurrency` jobs at once) runs them all, timed
//!    from its first handler start to the last completion its store records; the handler
//!    counts runs per job and the store is read back: exactly `--jobs` distinct jobs
//!    succeeded, none twice;
//! 3. **latency**: an idle worker process, and a producer process enqueueing
//!    `--latency-jobs` jobs one per call, open loop at `--rate` (due instants on the wall
//!    clock), each payload carrying its enqueue instant; the worker records start − enqueue.
//!
//! The store is reset for every system and run (a fresh PostgreSQL database or SQLite file,
//! `FLUSHDB` on a Redis database index only the bench uses). Systems alternate within a run
//! (the order rotates each run) so that the machine's noise spreads over all of them.
//!
//! Codemap: `contract` (the roles and their JSON, shared with `bench/peers/peer.mjs`),
//! `role` (questline's own processes), `systems` (what runs each system, and the resets),
//! `child` (a role's process), `report` (the result files and the summary), `plot`.

pub mod child;
pub mod contract;
pub mod plot;
pub mod report;
pub mod role;
pub mod systems;

use crate::Result;
use report::{QueueReport, SystemRun};
use std::path::PathBuf;
use systems::System;

#[derive(Debug, Clone, clap::Args)]
pub struct QueueArgs {
    /// Systems to run, in this order in the first run (rotated in the next ones).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "questline-postgres,graphile-worker,pg-boss,bullmq-postgres,riverqueue,bullmq-redis,questline-sqlite"
    )]
    pub systems: Vec<System>,
    /// Jobs bulk-enqueued and drained.
    #[arg(long, default_value_t = 100_000)]
    pub jobs: u64,
    /// Jobs a worker runs at once, the same for every system.
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Jobs of the latency phase, enqueued one per call.
    #[arg(long, default_value_t = 5_000)]
    pub latency_jobs: u64,
    /// Open-loop rate of the latency phase, jobs per second.
    #[arg(long, default_value_t = 250.0)]
    pub rate: f64,
    /// Runs of every system; the summary takes the median.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// The PostgreSQL server on which a fresh database is created per system and run.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres", env = "QUESTLINE_BENCH_POSTGRES_URL")]
    pub postgres_url: String,
    /// The Redis server (BullMQ on Redis).
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// The Redis database index the bench owns: flushed before and after each run, and
    /// refused if it holds a key the bench did not make.
    #[arg(long, default_value_t = 11)]
    pub redis_db: u32,
    /// Where SQLite files go (a temporary directory inside it).
    #[arg(long)]
    pub sqlite_dir: Option<PathBuf>,
    /// The peers' scripts (`peer.mjs`).
    #[arg(long, default_value = "bench/peers")]
    pub peers_dir: PathBuf,
    /// Node 22 (`bench/peers/run.sh` installs it from npm into the cache).
    #[arg(long, env = "QUESTLINE_BENCH_NODE", default_value = "node")]
    pub node: PathBuf,
    /// `riverqueue` (riverqueue-cli 0.5.0).
    #[arg(long, env = "QUESTLINE_BENCH_RIVER", default_value = "riverqueue")]
    pub river: PathBuf,
    /// Longest a phase may take before it is abandoned (the run then records the error).
    #[arg(long, default_value_t = 900)]
    pub timeout_secs: u64,
    /// Run `ANALYZE` on every PostgreSQL store between the enqueue and the drain. This
    /// server runs with `autovacuum = off`, so a fresh table otherwise never has statistics
    /// (a diagnosis: see docs/BENCHMARKS.md, "Job queue beside its peers").
    #[arg(long)]
    pub analyze_after_enqueue: bool,
    /// questline's worker poll interval, ms (default: the product's).
    #[arg(long)]
    pub poll_ms: Option<u64>,
    /// Jobs questline's worker claims ahead of its free slots (default: the concurrency, as
    /// `questline worker` runs).
    #[arg(long)]
    pub prefetch: Option<usize>,
    /// Where the JSON results and the plot go.
    #[arg(long, default_value = "docs/bench")]
    pub out: PathBuf,
    /// Prefix of the result files.
    #[arg(long, default_value = "queue")]
    pub label: String,
}

/// Runs every system `--runs` times, alternating, and writes `OUT/LABEL-SYSTEM.json` per
/// system, `OUT/LABEL-summary.json` and `OUT/LABEL.png`.
pub async fn run(args: &QueueArgs) -> Result<QueueReport> {
    let started_at = jiff::Timestamp::now();
    let machine = crate::report::Machine::probe();
    let autovacuum = autovacuum(&args.postgres_url).await;
    let mut runs: Vec<SystemRun> = Vec::new();
    std::fs::create_dir_all(&args.out)?;
    for r in 0..args.runs.max(1) {
        let mut order = args.systems.clone();
        let turn = r % order.len().max(1);
        order.rotate_left(turn);
        for system in order {
            eprintln!("queue bench: run {}/{}, {}", r + 1, args.runs, system.name());
            let result = systems::run(system, args, r + 1).await;
            eprintln!("  {}", result.one_line());
            runs.push(result);
            // Written as it goes: a long run that dies keeps what it measured.
            let mut report = QueueReport::new(args, &machine, started_at, &runs);
            report.params.postgres_autovacuum.clone_from(&autovacuum);
            report.write(&args.out, &args.label)?;
        }
    }
    let mut report = QueueReport::new(args, &machine, started_at, &runs);
    report.params.postgres_autovacuum = autovacuum;
    report.write(&args.out, &args.label)?;
    let png = args.out.join(format!("{}.png", args.label));
    match plot::draw(&report, &png) {
        Ok(()) => eprintln!("wrote {}", png.display()),
        Err(e) => eprintln!("no plot: {e}"),
    }
    Ok(report)
}

/// `SHOW autovacuum` on the PostgreSQL server, for the report.
async fn autovacuum(url: &str) -> Option<String> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.ok()?;
    let (value,): (String,) = sqlx::query_as("SHOW autovacuum").fetch_one(&mut conn).await.ok()?;
    conn.close().await.ok()?;
    Some(value)
}
