//! What runs each system, on which store, and how the store is reset.
//!
//! questline runs as `questline-bench queue-role` (this binary, re-executed); the Node peers
//! as `node bench/peers/peer.mjs --system NAME`; riverqueue through its own `riverqueue
//! bench` (burn-down), which runs producer and workers in one process and measures no
//! enqueue-to-start latency.

use crate::Result;
use crate::database::{Backend, FreshDb};
use crate::queue::QueueArgs;
use crate::queue::child::{self, Child};
use crate::queue::contract::{DrainOut, EnqueueOut, LatencyProducerOut, LatencyWorkerOut, Percentiles, Role};
use crate::queue::report::SystemRun;
use serde::Serialize;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    QuestlineSqlite,
    QuestlinePostgres,
    GraphileWorker,
    PgBoss,
    BullmqPostgres,
    BullmqRedis,
    Riverqueue,
}

impl System {
    pub const ALL: [System; 7] = [
        System::QuestlinePostgres,
        System::GraphileWorker,
        System::PgBoss,
        System::BullmqPostgres,
        System::Riverqueue,
        System::BullmqRedis,
        System::QuestlineSqlite,
    ];

    pub fn name(self) -> &'static str {
        match self {
            System::QuestlineSqlite => "questline-sqlite",
            System::QuestlinePostgres => "questline-postgres",
            System::GraphileWorker => "graphile-worker",
            System::PgBoss => "pg-boss",
            System::BullmqPostgres => "bullmq-postgres",
            System::BullmqRedis => "bullmq-redis",
            System::Riverqueue => "riverqueue",
        }
    }

    /// The store the system runs on: the backend its figures are compared on.
    pub fn backend(self) -> &'static str {
        match self {
            System::QuestlineSqlite => "sqlite",
            System::BullmqRedis => "redis",
            _ => "postgres",
        }
    }

    pub fn is_questline(self) -> bool {
        matches!(self, System::QuestlineSqlite | System::QuestlinePostgres)
    }
}

/// One run of one system; errors are recorded in the run, never abort the benchmark.
pub async fn run(system: System, args: &QueueArgs, run: usize) -> SystemRun {
    let mut result = SystemRun::new(system, run);
    let outcome = async {
        let store = Store::reset(system, args).await?;
        let measured = match system {
            System::Riverqueue => river(&store.url, args, &mut result).await,
            _ => roles(system, &store.url, args, &mut result).await,
        };
        let finished = store.finish(args).await;
        measured.and(finished)
    }
    .await;
    result.finish(args, outcome.err().map(|e| e.to_string()));
    result
}

/// The store of one run: a fresh database (PostgreSQL, SQLite) or a flushed Redis index.
struct Store {
    url: String,
    db: Option<FreshDb>,
}

impl Store {
    async fn reset(system: System, args: &QueueArgs) -> Result<Store> {
        let tag = format!("queue_{}", system.name().replace('-', "_"));
        match system.backend() {
            "redis" => {
                flush_redis(&args.redis_url, args.redis_db)?;
                Ok(Store { url: format!("{}/{}", args.redis_url.trim_end_matches('/'), args.redis_db), db: None })
            }
            "sqlite" => {
                let db = FreshDb::create(Backend::Sqlite, &args.postgres_url, args.sqlite_dir.as_deref(), &tag).await?;
                Ok(Store { url: db.url.clone(), db: Some(db) })
            }
            _ => {
                let db = FreshDb::create(Backend::Postgres, &args.postgres_url, None, &tag).await?;
                Ok(Store { url: db.url.clone(), db: Some(db) })
            }
        }
    }

    async fn finish(self, args: &QueueArgs) -> Result<()> {
        match self.db {
            Some(db) => db.finish(false).await,
            None => flush_redis(&args.redis_url, args.redis_db),
        }
    }
}

/// The command that runs a role of `system`.
fn program(system: System, args: &QueueArgs) -> Result<Vec<String>> {
    if system.is_questline() {
        let me = std::env::current_exe()?.display().to_string();
        let mut p = vec![me, "queue-role".to_owned()];
        if let Some(ms) = args.poll_ms {
            p.extend(["--poll-ms".to_owned(), ms.to_string()]);
        }
        if let Some(n) = args.prefetch {
            p.extend(["--prefetch".to_owned(), n.to_string()]);
        }
        return Ok(p);
    }
    let script = args.peers_dir.join("peer.mjs");
    Ok(vec![args.node.display().to_string(), script.display().to_string(), "--system".into(), system.name().into()])
}

/// setup, enqueue, drain, then latency (worker first, idle, then the open-loop producer).
async fn roles(system: System, url: &str, args: &QueueArgs, result: &mut SystemRun) -> Result<()> {
    let program = program(system, args)?;
    let timeout = Duration::from_secs(args.timeout_secs);
    let flags = |role: Role, jobs: u64| -> Vec<String> {
        [
            ("--role", role.as_str().to_owned()),
            ("--url", url.to_owned()),
            ("--jobs", jobs.to_string()),
            ("--concurrency", args.concurrency.to_string()),
            ("--rate", args.rate.to_string()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_owned(), v])
        .collect()
    };
    let what = |role: Role| format!("{} {}", system.name(), role.as_str());

    let setup = child::run(what(Role::Setup), &program, &flags(Role::Setup, args.jobs), timeout).await?;
    result.version = setup.get("version").and_then(|v| v.as_str()).map(str::to_owned);
    result.settings = setup.get("settings").cloned();

    let enqueue: EnqueueOut = serde_json::from_value(
        child::run(what(Role::Enqueue), &program, &flags(Role::Enqueue, args.jobs), timeout).await?,
    )?;
    result.enqueue_jobs_per_sec = Some(enqueue.jobs as f64 / enqueue.secs);
    if args.analyze_after_enqueue && system.backend() == "postgres" {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(url).await?;
        sqlx::raw_sql("ANALYZE").execute(&mut conn).await?;
        conn.close().await?;
    }

    let drain: DrainOut = serde_json::from_value(
        child::run(what(Role::Drain), &program, &flags(Role::Drain, args.jobs), timeout).await?,
    )?;
    result.drain_jobs_per_sec = Some(drain.jobs as f64 / drain.secs);
    result.drain = Some(drain);

    let m = args.latency_jobs;
    let mut worker = Child::spawn(what(Role::LatencyWorker), &program, &flags(Role::LatencyWorker, m), timeout)?;
    worker.ready().await?;
    // Idle for a moment: listeners connected, the first polls done.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let producer: LatencyProducerOut = serde_json::from_value(
        child::run(what(Role::LatencyProducer), &program, &flags(Role::LatencyProducer, m), timeout).await?,
    )?;
    let worker: LatencyWorkerOut = serde_json::from_value(worker.result().await?)?;
    result.latency = Some(Percentiles::of(&worker.latency_us));
    result.enqueue_call = Some(Percentiles::of(&producer.call_us));
    result.latency_offered_rate = Some(producer.jobs as f64 / producer.secs.max(1e-9));
    result.producer_max_lag_ms = Some(producer.max_lag_us as f64 / 1000.0);
    result.latency_check = Some((worker.handled, worker.distinct, worker.duplicates));
    Ok(())
}

/// riverqueue's own burn-down: `riverqueue migrate-up`, then `riverqueue bench -n N`.
async fn river(url: &str, args: &QueueArgs, result: &mut SystemRun) -> Result<()> {
    let river = args.river.display().to_string();
    let timeout = Duration::from_secs(args.timeout_secs);
    let migrate = tokio::process::Command::new(&river).args(["migrate-up", "--database-url", url]).output();
    let migrate = tokio::time::timeout(timeout, migrate).await.map_err(|_| "riverqueue migrate-up timed out")??;
    if !migrate.status.success() {
        return Err(format!("riverqueue migrate-up: {}", String::from_utf8_lossy(&migrate.stderr)).into());
    }
    let (n, workers) = (args.jobs.to_string(), args.concurrency.to_string());
    // The same worker concurrency as every other system (River's default is 2,000).
    let bench_args = ["bench", "--database-url", url, "-n", &n, "--max-workers", &workers];
    let started = Instant::now();
    let bench = tokio::process::Command::new(&river).args(bench_args).kill_on_drop(true).output();
    let bench = tokio::time::timeout(timeout, bench).await.map_err(|_| "riverqueue bench timed out")??;
    let secs = started.elapsed().as_secs_f64();
    let text = format!("{}{}", String::from_utf8_lossy(&bench.stdout), String::from_utf8_lossy(&bench.stderr));
    if !bench.status.success() {
        return Err(format!("riverqueue bench: {text}").into());
    }
    result.version = Some("riverqueue-cli 0.5.0".into());
    result.settings =
        Some(serde_json::json!({"command": format!("riverqueue {}", bench_args.join(" ")), "process_secs": secs}));
    result.river_output = Some(text.clone());
    result.drain_jobs_per_sec = river_figure(&text, "overall job/sec");
    result.river_p95_secs = river_figure(&text, "p95");
    Ok(())
}

/// A bracketed figure `riverqueue bench` prints on its last line, after `name`:
/// `… overall job/sec [  3731.9 ], p95 [  26.974s ], running 26.8s`.
fn river_figure(text: &str, name: &str) -> Option<f64> {
    let line = text.lines().rev().find(|l| l.contains("overall job/sec"))?;
    let rest = &line[line.find(name)? + name.len()..];
    let inside = rest.trim_start().strip_prefix('[')?.split(']').next()?;
    inside.trim().trim_end_matches('s').parse().ok()
}

/// `FLUSHDB` on the bench's own Redis index, refusing if it holds a key the bench did not
/// make (BullMQ's keys here all start `qlbench:`). Plain RESP over TCP: four commands.
fn flush_redis(redis_url: &str, db: u32) -> Result<()> {
    let addr = redis_url.trim_start_matches("redis://").trim_end_matches('/');
    let mut conn = std::net::TcpStream::connect(addr).map_err(|e| format!("cannot reach Redis at {addr}: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let db = db.to_string();
    resp(&mut conn, &["SELECT", &db])?;
    let foreign = resp(&mut conn, &["SCAN", "0", "MATCH", "*", "COUNT", "1000"])?;
    // The reply lists keys; any key not ours means the index is someone else's.
    if foreign
        .split("\r\n")
        .any(|l| !l.is_empty() && !l.starts_with(['*', '$']) && !l.starts_with("qlbench:") && l.parse::<u64>().is_err())
    {
        return Err(format!("Redis database {db} holds keys the bench did not make; pick another --redis-db").into());
    }
    resp(&mut conn, &["FLUSHDB"])?;
    Ok(())
}

/// Sends one command and reads its whole reply (small replies only).
fn resp(conn: &mut std::net::TcpStream, words: &[&str]) -> Result<String> {
    let mut out = format!("*{}\r\n", words.len());
    for w in words {
        out.push_str(&format!("${}\r\n{w}\r\n", w.len()));
    }
    conn.write_all(out.as_bytes())?;
    let mut buf = vec![0u8; 1 << 16];
    let mut reply = String::new();
    loop {
        let n = conn.read(&mut buf)?;
        reply.push_str(&String::from_utf8_lossy(&buf[..n]));
        if n == 0 || complete(&reply) {
            break;
        }
    }
    if reply.starts_with('-') {
        return Err(format!("Redis {}: {}", words[0], reply.trim()).into());
    }
    Ok(reply)
}

/// Whether a RESP reply is whole: a simple line, or SCAN's two-element array.
fn complete(reply: &str) -> bool {
    if !reply.starts_with('*') {
        return reply.ends_with("\r\n");
    }
    // *2 $cursor cursor *N then N bulk strings of two lines each.
    let lines: Vec<&str> = reply.split("\r\n").collect();
    let Some(n) = lines.get(3).and_then(|l| l.strip_prefix('*')).and_then(|n| n.parse::<usize>().ok()) else {
        return false;
    };
    lines.len() > 4 + 2 * n
}

#[cfg(test)]
mod tests {
    use super::{complete, river_figure};

    #[test]
    fn reads_a_scan_reply_to_its_end() {
        assert!(complete("+OK\r\n"));
        assert!(complete("*2\r\n$1\r\n0\r\n*0\r\n"));
        assert!(!complete("*2\r\n$1\r\n0\r\n*1\r\n$3\r\n"));
        assert!(complete("*2\r\n$1\r\n0\r\n*1\r\n$3\r\nabc\r\n"));
    }

    #[test]
    fn reads_rivers_last_line() {
        let text = "bench: jobs worked [ 9536 ], job/sec [ 4768.0 ] [2.0s]\nbench: total jobs worked [ 100000 ], \
                    total jobs inserted [ 100000 ], overall job/sec [     3731.9 ], p95 [    26.974s ], running 26.8s\n";
        assert_eq!(river_figure(text, "overall job/sec"), Some(3731.9));
        assert_eq!(river_figure(text, "p95"), Some(26.974));
    }
}
