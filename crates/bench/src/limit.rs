//! `questline-bench limit`: the rate limiter beside its peers, in the same run, on the same
//! key and limit (issue 8): the in-process `LocalLimiter` beside the `governor` crate, and
//! the `RedisLimiter` beside the `rate-limiter-flexible` npm package on the same Redis.
//!
//! Each system hammers one key with decisions for `--seconds` (a refused decision counts as a
//! decision: that is what a busy dispatcher asks most). Ours is asked as the peers are, "may
//! I send now?" (`max_wait` zero), so every system answers admit-or-refuse. Reported per
//! system: decisions per second, p50/p99 decision latency, and the worst window: the most
//! admissions in any window of the limit's length starting at any microsecond, over the
//! limit (1.00 = exact; above 1, the limit was exceeded). Admissions are stamped by the
//! deciding clock where the system exposes it (ours on Redis: the Redis server's `TIME`),
//! else by the caller just after the answer (governor, rate-limiter-flexible).

use hdrhistogram::Histogram;
use questline_limit::{Margin, RedisConfig, RedisLimiter, Reservation, Rule, Source};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// How long each system is hammered.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// The limit, per `--window-ms`.
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
    /// The window (rate-limiter-flexible takes whole seconds only).
    #[arg(long, default_value_t = 1000)]
    pub window_ms: u64,
    /// Decisions in flight at once on Redis (tasks for ours, concurrent `consume()` for the peer).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    #[arg(long, default_value = "redis://127.0.0.1:6379/12", env = "QUESTLINE_BENCH_REDIS_URL")]
    pub redis_url: String,
    /// Node, with `rate-limiter-flexible` and `ioredis` installed beside `--peer` (see
    /// `bench/peers/limit.sh`); without it the Redis peer is left out.
    #[arg(long)]
    pub node: Option<PathBuf>,
    #[arg(long, default_value = "bench/peers/limit/peer.mjs")]
    pub peer: PathBuf,
    /// Rounds: every system runs once per round, in turn, and each is reported by its median
    /// round (by decisions per second): Redis figures on a shared 2-core machine vary by a
    /// third from one run to the next.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Which systems to run, comma-separated: ours-local, governor, ours-redis, flexible.
    #[arg(long, value_delimiter = ',', default_value = "ours-local,governor,ours-redis,flexible")]
    pub systems: Vec<String>,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// One system's figures.
#[derive(Debug, Clone, Serialize)]
pub struct SystemFigures {
    pub system: String,
    pub decisions: u64,
    pub decisions_per_second: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub admitted: u64,
    /// The most admissions in any window of the limit's length.
    pub worst_window: u64,
    /// `worst_window / limit`.
    pub overshoot: f64,
    /// Who stamped the admissions the worst window is measured on.
    pub stamped_by: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct LimitReport {
    pub limit: u32,
    pub window_ms: u64,
    pub seconds: u64,
    pub concurrency: usize,
    /// Rounds run; each system's figures are its median round's.
    pub runs: usize,
    pub systems: Vec<SystemFigures>,
}

impl std::fmt::Display for LimitReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "limit {} per {} ms, one key, {} s per system, {} in flight on Redis; the median of {} rounds",
            self.limit, self.window_ms, self.seconds, self.concurrency, self.runs
        )?;
        writeln!(
            f,
            "{:<28} {:>12} {:>9} {:>9} {:>9} {:>7} {:>9}  stamped by",
            "system", "decisions/s", "p50 µs", "p99 µs", "admitted", "worst", "overshoot"
        )?;
        for s in &self.systems {
            writeln!(
                f,
                "{:<28} {:>12.0} {:>9.2} {:>9.2} {:>9} {:>7} {:>8.2}×  {}",
                s.system,
                s.decisions_per_second,
                s.p50_us,
                s.p99_us,
                s.admitted,
                s.worst_window,
                s.overshoot,
                s.stamped_by
            )?;
        }
        Ok(())
    }
}

/// What one run of a system measured: decisions, latencies (ns), admission stamps (µs).
struct Run {
    decisions: u64,
    elapsed: Duration,
    latencies: Histogram<u64>,
    admitted: Vec<u64>,
}

impl Run {
    fn new() -> Self {
        Run {
            decisions: 0,
            elapsed: Duration::ZERO,
            // 1 ns to 60 s, 3 significant figures.
            latencies: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds"),
            admitted: Vec::new(),
        }
    }

    fn took(&mut self, latency: Duration) {
        self.decisions += 1;
        self.latencies.saturating_record(latency.as_nanos() as u64);
    }

    fn quantile_us(&self, q: f64) -> f64 {
        self.latencies.value_at_quantile(q) as f64 / 1000.0
    }

    fn figures(mut self, system: &str, args: &LimitArgs, stamped_by: &'static str) -> SystemFigures {
        self.admitted.sort_unstable();
        let worst = worst_window(&self.admitted, args.window_ms * 1000);
        SystemFigures {
            system: system.to_owned(),
            decisions: self.decisions,
            decisions_per_second: self.decisions as f64 / self.elapsed.as_secs_f64(),
            p50_us: self.quantile_us(0.50),
            p99_us: self.quantile_us(0.99),
            admitted: self.admitted.len() as u64,
            worst_window: worst,
            overshoot: worst as f64 / f64::from(args.limit),
            stamped_by,
        }
    }
}

/// The most stamps (sorted, µs) in any half-open window `[t, t + window)`.
pub fn worst_window(sorted: &[u64], window: u64) -> u64 {
    let (mut start, mut worst) = (0, 0);
    for (end, &t) in sorted.iter().enumerate() {
        while sorted[start] + window <= t {
            start += 1;
        }
        worst = worst.max(end - start + 1);
    }
    worst as u64
}

pub async fn run(args: &LimitArgs) -> Result<LimitReport, Box<dyn std::error::Error + Send + Sync>> {
    let mut rounds = Vec::new();
    for round in 1..=args.runs.max(1) {
        eprintln!("limit: round {round} of {}", args.runs.max(1));
        rounds.push(one_round(args).await?);
    }
    // Each system's median round, in the order the systems ran.
    let systems = (0..rounds[0].len())
        .map(|i| {
            let mut runs: Vec<&SystemFigures> = rounds.iter().map(|r| &r[i]).collect();
            runs.sort_by(|a, b| a.decisions_per_second.total_cmp(&b.decisions_per_second));
            runs[runs.len() / 2].clone()
        })
        .collect();
    Ok(LimitReport {
        limit: args.limit,
        window_ms: args.window_ms,
        seconds: args.seconds,
        concurrency: args.concurrency,
        runs: args.runs.max(1),
        systems,
    })
}

async fn one_round(args: &LimitArgs) -> Result<Vec<SystemFigures>, Box<dyn std::error::Error + Send + Sync>> {
    let window = Duration::from_millis(args.window_ms);
    let mut systems = Vec::new();
    let wants = |name: &str| args.systems.iter().any(|s| s == name);
    if wants("ours-local") {
        eprintln!("limit: questline LocalLimiter");
        systems.push(local_ours(args, window).figures("questline LocalLimiter", args, "the limiter's clock"));
    }
    if wants("governor") {
        eprintln!("limit: governor");
        systems.push(governor_direct(args, window).figures("governor (direct, GCRA)", args, "the caller, after"));
        systems.push(governor_keyed(args, window).figures("governor (keyed, GCRA)", args, "the caller, after"));
    }
    if wants("ours-redis") {
        eprintln!("limit: questline RedisLimiter");
        systems.push(redis_ours(args, window).await?.figures("questline RedisLimiter", args, "Redis TIME"));
    }
    if wants("flexible") {
        let Some(node) = &args.node else { return Err("flexible needs --node (see bench/peers/limit.sh)".into()) };
        eprintln!("limit: rate-limiter-flexible");
        let run = flexible(args, node).await?;
        systems.push(run.figures("rate-limiter-flexible (Redis)", args, "the caller, after"));
    }
    Ok(systems)
}

/// How often an in-process decision is timed: one in this many. Reading the clock twice
/// around every decision would cost about what governor's decision costs, and count in its
/// throughput; so throughput is counted over untimed decisions and the latency sampled.
const TIME_ONE_IN: u64 = 64;

/// In-process decisions until `seconds` have passed; `decide` answers whether it admitted
/// and, if it knows one, the stamp of the admission (µs). Admissions are few (the limit),
/// so stamping each costs nothing that matters.
fn hammer(seconds: u64, mut decide: impl FnMut() -> Option<Option<u64>>) -> Run {
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let mut run = Run::new();
    let admit = |run: &mut Run, answer: Option<Option<u64>>| {
        if let Some(stamp) = answer {
            run.admitted.push(stamp.unwrap_or_else(|| started.elapsed().as_micros() as u64));
        }
    };
    while Instant::now() < until {
        let before = Instant::now();
        let answer = decide();
        run.took(before.elapsed());
        admit(&mut run, answer);
        for _ in 1..TIME_ONE_IN {
            let answer = decide();
            admit(&mut run, answer);
        }
        run.decisions += TIME_ONE_IN - 1;
    }
    run.elapsed = started.elapsed();
    run
}

fn local_ours(args: &LimitArgs, window: Duration) -> Run {
    let limiter = questline_limit::LocalLimiter::new();
    let rules = [Rule::new("bench", args.limit, window)];
    hammer(args.seconds, || match limiter.reserve_now(&rules, Duration::ZERO) {
        Ok(Reservation::Granted { .. }) => Some(Some(limiter.now().as_micros() as u64)),
        _ => None,
    })
}

/// The quota governor documents for "`limit` per `window`": a cell every `window / limit`,
/// bursts of up to `limit`.
fn governor_quota(args: &LimitArgs, window: Duration) -> governor::Quota {
    let limit = std::num::NonZeroU32::new(args.limit).expect("a positive limit");
    governor::Quota::with_period(window / args.limit).expect("a positive period").allow_burst(limit)
}

/// One limiter, no key: the least a decision can cost (ours always names a key).
fn governor_direct(args: &LimitArgs, window: Duration) -> Run {
    let limiter = governor::RateLimiter::direct(governor_quota(args, window));
    hammer(args.seconds, || limiter.check().ok().map(|_| None))
}

/// A limiter per key (governor's default keyed store, a `DashMap`), as ours is.
fn governor_keyed(args: &LimitArgs, window: Duration) -> Run {
    let limiter = governor::RateLimiter::<String, _, _>::keyed(governor_quota(args, window));
    let key = "bench".to_owned();
    hammer(args.seconds, || limiter.check_key(&key).ok().map(|_| None))
}

async fn redis_ours(args: &LimitArgs, window: Duration) -> Result<Run, Box<dyn std::error::Error + Send + Sync>> {
    let namespace = format!("bench-limit-{}", std::process::id());
    let mut config = RedisConfig::new(namespace);
    config.margin = Margin::default();
    config.longest_window = window;
    let limiter = Arc::new(RedisLimiter::connect(&args.redis_url, config).await?);
    limiter.beat().await?;
    let rules = Arc::new([Rule::new("bench", args.limit, window)]);
    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (limiter, rules) = (limiter.clone(), rules.clone());
        tasks.spawn(async move {
            let mut run = Run::new();
            while Instant::now() < until {
                let before = Instant::now();
                let answer = limiter.reserve_traced(&*rules, Duration::ZERO).await;
                run.took(before.elapsed());
                match answer {
                    Ok((Reservation::Granted { .. }, Source::Redis { slot })) => run.admitted.push(slot),
                    Ok((Reservation::Granted { .. }, Source::Fallback)) => {
                        return Err("Redis was unreachable during the run: the local share decided".to_owned());
                    }
                    Ok(_) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok(run)
        });
    }
    let mut total = Run::new();
    while let Some(done) = tasks.join_next().await {
        let run = done??;
        total.decisions += run.decisions;
        total.latencies.add(&run.latencies).expect("histograms of one shape");
        total.admitted.extend(run.admitted);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

/// rate-limiter-flexible's `RateLimiterRedis` in a Node process (`--peer`), which prints one
/// JSON line: `{"decisions", "elapsed_ms", "latencies_us": [...], "admitted_us": [...]}`.
async fn flexible(args: &LimitArgs, node: &PathBuf) -> Result<Run, Box<dyn std::error::Error + Send + Sync>> {
    if !args.window_ms.is_multiple_of(1000) {
        return Err(
            "rate-limiter-flexible's Redis limiter takes whole seconds: --window-ms must be a multiple of 1000".into(),
        );
    }
    let output = tokio::process::Command::new(node)
        .arg(&args.peer)
        .args(["--url", &args.redis_url])
        .args(["--points", &args.limit.to_string()])
        .args(["--duration", &(args.window_ms / 1000).to_string()])
        .args(["--concurrency", &args.concurrency.to_string()])
        .args(["--seconds", &args.seconds.to_string()])
        .output()
        .await?;
    if !output.status.success() {
        return Err(format!("the peer failed: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    #[derive(serde::Deserialize)]
    struct PeerRun {
        decisions: u64,
        elapsed_ms: f64,
        latencies_us: Vec<f64>,
        admitted_us: Vec<u64>,
    }
    let peer: PeerRun = serde_json::from_slice(&output.stdout)?;
    let mut run = Run::new();
    for l in peer.latencies_us {
        run.latencies.saturating_record((l * 1000.0) as u64);
    }
    run.decisions = peer.decisions;
    run.elapsed = Duration::from_secs_f64(peer.elapsed_ms / 1000.0);
    run.admitted = peer.admitted_us;
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::worst_window;

    #[test]
    fn the_worst_window_counts_every_start() {
        assert_eq!(worst_window(&[], 1000), 0);
        // Windows of 1000 µs: [0, 999] holds 0 and 999; [999, 1998] holds 999, 1000, 1998.
        assert_eq!(worst_window(&[0, 999, 1000, 1998, 3000], 1000), 3);
        assert_eq!(worst_window(&[5, 5, 5], 1), 3);
    }
}
