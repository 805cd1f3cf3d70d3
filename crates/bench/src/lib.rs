//! questline's benchmark harness. `questline-bench ingest` measures ingest to committed
//! progress through the real HTTP path, beside a reference measured in the same run: the
//! same rows written straight to a fresh database of the same backend, no engine.
//!
//! Codemap: `workload` (the generated event stream, a pure function of the seed),
//! `missions` (the 50 missions, as JSON and as predicates), `engine` (the server in-process
//! and the HTTP load), `reference` (the raw-SQL writer), `database` (fresh databases and the
//! counts read back), `sampler` (throughput and memory each second), `report` (the JSON
//! result and the summary), `plot` (the PNG). `queue` is the job-queue benchmark (its own
//! codemap in `queue/mod.rs`).
//!
//! See `docs/BENCHMARKS.md` for the commands, the results and what bounds them.

#![forbid(unsafe_code)]

pub mod database;
pub mod engine;
pub mod limit;
pub mod messages;
pub mod missions;
pub mod plot;
pub mod queue;
pub mod reference;
pub mod report;
pub mod sampler;
pub mod workload;

use clap::Parser;
use database::{Backend, FreshDb};
use reference::ProgressRows;
use report::Report;
use std::path::PathBuf;
use std::time::Duration;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Parser)]
#[command(name = "questline-bench", about = "questline's benchmarks")]
pub enum Cli {
    /// Ingest to committed progress through the HTTP API, beside a raw-SQL reference.
    Ingest(IngestArgs),
    /// The job queue beside its peers: bulk enqueue, drain, and enqueue-to-start latency.
    Queue(queue::QueueArgs),
    /// A burst of messages end to end, to three simulated providers.
    Messages(messages::MessagesArgs),
    /// The rate limiter beside governor (in-process) and rate-limiter-flexible (Redis).
    Limit(limit::LimitArgs),
    /// One process of the queue benchmark on questline's own queue (run by `queue`).
    #[command(hide = true)]
    QueueRole(queue::role::RoleArgs),
}

/// Where a benchmark's fresh databases are made.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// The storage backend (for the ingest benchmark: the engine and the reference alike).
    #[arg(long, value_enum, default_value = "sqlite")]
    pub database: Backend,
    /// The PostgreSQL server on which fresh databases are created (one per phase).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres", env = "QUESTLINE_BENCH_POSTGRES_URL")]
    pub postgres_url: String,
    /// Where SQLite files go (a temporary directory inside it); default: the system's.
    #[arg(long)]
    pub sqlite_dir: Option<PathBuf>,
}

impl DatabaseArgs {
    /// A fresh database of the chosen backend, named after `tag`.
    pub async fn fresh(&self, tag: &str) -> Result<FreshDb> {
        FreshDb::create(self.database, &self.postgres_url, self.sqlite_dir.as_deref(), tag).await
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Distinct users in the traffic.
    #[arg(long, default_value_t = 100_000)]
    pub users: u64,
    /// Active missions (at most 50).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=50))]
    pub missions: u64,
    /// Events to send (ignored with --duration-secs).
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Concurrent HTTP clients (closed loop) and reference writers.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Events per request (the API takes up to 1000).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub batch: u64,
    /// Open loop: send at this many events per second instead of as fast as answers come.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Soak: run for this long instead of for --events.
    #[arg(long)]
    pub duration_secs: Option<u64>,
    /// Seed of the generated traffic.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Skip the reference (it only runs in maximum-throughput mode anyway).
    #[arg(long)]
    pub no_reference: bool,
    /// Which progress rows the reference writes (see docs/BENCHMARKS.md).
    #[arg(long, value_enum, default_value = "qualifying")]
    pub reference_progress: ProgressRows,
    /// After the run, send every batch again and check that all come back duplicates.
    #[arg(long)]
    pub resend_check: bool,
    /// Where the JSON result and the PNG plot go.
    #[arg(long, default_value = "docs/bench")]
    pub out: PathBuf,
    /// Name of the result files (default: ingest-DATABASE-MODE).
    #[arg(long)]
    pub label: Option<String>,
    /// Do not draw the plot.
    #[arg(long)]
    pub no_plot: bool,
    /// Keep the databases (and print where they are).
    #[arg(long)]
    pub keep_db: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// The load, as the phases need it.
#[derive(Debug, Clone)]
pub struct Plan {
    pub events: u64,
    pub clients: usize,
    pub batch: u64,
    pub rate: Option<f64>,
    pub duration: Option<Duration>,
    pub reference_progress: ProgressRows,
    pub resend_check: bool,
    pub quiet: bool,
}

impl IngestArgs {
    pub fn mode(&self) -> &'static str {
        match (self.duration_secs, self.rate) {
            (Some(_), _) => "soak",
            (None, Some(_)) => "rate",
            (None, None) => "max",
        }
    }

    pub fn label(&self) -> String {
        self.label.clone().unwrap_or_else(|| format!("ingest-{}-{}", self.db.database.as_str(), self.mode()))
    }
}

/// Runs the ingest benchmark: the engine phase, then (at maximum throughput) the reference
/// on the same events; writes `OUT/LABEL.json` and `OUT/LABEL.png`.
pub async fn ingest(args: &IngestArgs) -> Result<Report> {
    let started_at = jiff::Timestamp::now();
    let plan = Plan {
        events: args.events,
        clients: args.clients.max(1),
        batch: args.batch,
        rate: args.rate.filter(|r| *r > 0.0),
        duration: args.duration_secs.map(Duration::from_secs),
        reference_progress: args.reference_progress,
        resend_check: args.resend_check,
        quiet: args.quiet,
    };
    // The sweep of event time is spread over the events expected; a soak expects its rate
    // (or a generous guess) times its duration.
    let horizon = match (plan.duration, plan.rate) {
        (Some(d), Some(r)) => (r * d.as_secs_f64()) as u64,
        (Some(d), None) => 20_000 * d.as_secs(),
        (None, _) => plan.events,
    };
    // A minute back, so nothing is ever "in the future" by the server's clock.
    let workload =
        workload::Workload::new(args.seed, args.users, horizon, started_at - jiff::SignedDuration::from_mins(1));
    let missions = missions::missions(args.missions as usize);
    let machine = report::Machine::probe();

    eprintln!(
        "ingest on {}: {} users, {} missions, {} clients, batches of {}, {}",
        args.db.database.as_str(),
        args.users,
        missions.len(),
        plan.clients,
        plan.batch,
        match (plan.duration, plan.rate) {
            (Some(d), Some(r)) => format!("{r} events/s for {} s", d.as_secs()),
            (Some(d), None) => format!("as fast as possible for {} s", d.as_secs()),
            (None, Some(r)) => format!("{} events at {r} events/s", plan.events),
            (None, None) => format!("{} events as fast as possible", plan.events),
        }
    );

    let engine_db = args.db.fresh("engine").await?;
    let run = engine::run(&engine_db, &workload, &missions, &plan).await;
    let counts = match &run {
        Ok(_) => Some(database::counts(&engine_db).await?),
        Err(_) => None,
    };
    engine_db.finish(args.keep_db).await?;
    let run = run?;
    let counts = counts.unwrap_or_default();
    let expected_new = (0..run.sent).filter(|s| workload.kind(*s) != workload::SlotKind::Duplicate).count() as u64;

    let reference = if plan.rate.is_none() && plan.duration.is_none() && !args.no_reference {
        let db = args.db.fresh("reference").await?;
        let state_bytes = counts.avg_state_bytes.round() as usize;
        let r = reference::run(&db, &workload, &missions, &plan, run.sent, state_bytes).await;
        let ref_counts = match &r {
            Ok(_) => Some(database::counts(&db).await?),
            Err(_) => None,
        };
        db.finish(args.keep_db).await?;
        match r {
            Ok(r) => Ok(Some((r, ref_counts.unwrap_or_default()))),
            Err(e) => Err(e.to_string()),
        }
    } else {
        Ok(None)
    };

    let report = Report::new(report::Parts {
        args,
        plan: &plan,
        machine,
        started_at,
        missions: &missions,
        run,
        counts,
        expected_new,
        reference,
    });
    std::fs::create_dir_all(&args.out)?;
    let label = args.label();
    let json_path = args.out.join(format!("{label}.json"));
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)?)?;
    eprintln!("wrote {}", json_path.display());
    if !args.no_plot {
        let png = args.out.join(format!("{label}.png"));
        match plot::draw(&report, &png) {
            Ok(()) => eprintln!("wrote {}", png.display()),
            Err(e) => eprintln!("no plot: {e}"),
        }
    }
    Ok(report)
}
