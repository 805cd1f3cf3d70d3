//! One process of the multi-process Redis test (`tests/it/redis.rs`): `--workers` tasks
//! reserve one slot after another on one rule from `--start-unix-ms` for `--secs` seconds,
//! each waiting for its slot (or, refused, for the earliest slot, at most 50 ms) before
//! asking again. Every granted slot is written as a JSON line to `--out`: who decided, the
//! slot's Redis server time (µs, when Redis decided) and its wall-clock time (µs, this
//! machine's `SystemTime` at the answer plus the wait).

use questline_limit::{Margin, RedisConfig, RedisLimiter, Reservation, Rule, Source};
use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

fn wall_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_micros() as u64
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts: HashMap<&str, &str> =
        args.chunks(2).map(|p| (p[0].trim_start_matches("--"), p.get(1).map_or("", String::as_str))).collect();
    let get = |k: &str| opts.get(k).copied().ok_or_else(|| format!("missing --{k}"));
    let num = |k: &str| -> Result<u64, Box<dyn std::error::Error>> { Ok(get(k)?.parse()?) };
    let rule = Rule::new(get("key")?, num("limit")? as u32, Duration::from_millis(num("window-ms")?));
    let mut config = RedisConfig::new(get("ns")?);
    config.horizon = Duration::from_millis(num("horizon-ms")?);
    config.margin = Margin { fixed: Duration::from_millis(num("margin-ms")?), per_mille: 0 };
    config.heartbeat = Duration::from_millis(200);
    config.longest_window = rule.window;
    let limiter = Arc::new(RedisLimiter::connect(get("url")?, config).await?);
    let start = num("start-unix-ms")? * 1000;
    let end = start + num("secs")? * 1_000_000;
    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    {
        let (limiter, cancel) = (limiter.clone(), cancel.clone());
        tasks.spawn(async move {
            limiter.run_heartbeat(cancel).await;
            Vec::new()
        });
    }
    tokio::time::sleep(Duration::from_micros(start.saturating_sub(wall_us()))).await;
    for _ in 0..num("workers")? {
        let (limiter, rule) = (limiter.clone(), rule.clone());
        tasks.spawn(async move {
            let mut log = Vec::new();
            while wall_us() < end {
                match limiter.reserve_traced(std::slice::from_ref(&rule), Duration::from_secs(60)).await {
                    Ok((Reservation::Granted { wait }, source)) => {
                        let wall = wall_us() + wait.as_micros() as u64;
                        log.push(match source {
                            Source::Redis { slot } => {
                                format!(r#"{{"src":"redis","server_us":{slot},"wall_us":{wall}}}"#)
                            }
                            Source::Fallback => format!(r#"{{"src":"local","server_us":null,"wall_us":{wall}}}"#),
                        });
                        tokio::time::sleep(wait).await;
                    }
                    Ok((Reservation::TooLate { earliest }, _)) => {
                        tokio::time::sleep(earliest.min(Duration::from_millis(50))).await
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
            log
        });
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(get("out")?)?);
    let mut workers = num("workers")?;
    while let Some(log) = tasks.join_next().await {
        for line in log? {
            writeln!(out, "{line}")?;
        }
        workers = workers.saturating_sub(1);
        if workers == 0 {
            cancel.cancel();
        }
    }
    out.flush()?;
    Ok(())
}
