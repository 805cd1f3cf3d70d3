//! One process of the multi-process Redis tests (`tests/it/redis.rs`): `--workers` tasks
//! reserve one slot after another on `--rules` (every rule in every decision, as the
//! contract asks) from `--start-unix-ms` for `--run-ms` milliseconds, each waiting for its
//! slot (or, refused, for the earliest slot, at most 50 ms) before asking again. Every
//! granted slot is written as a JSON line to `--out`: who decided, the slot's Redis server
//! time and the server time of the decision (µs, when Redis decided), and its wall-clock
//! time (µs, this machine's `SystemTime` at the answer plus the wait).
//!
//! `--timeout-ms` sets [`RedisConfig::timeout`] (default 200 ms). `--rules` is `key:limit:window_ms`, comma-separated. `--hold key:at_ms:for_ms` also holds
//! `key` for `for_ms` at `at_ms` after the start, and writes a line with the wall-clock
//! times just before the call and just after it returned.

use questline_limit::{Limiter, Margin, RedisConfig, RedisLimiter, Reservation, Rule, Source};
use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn wall_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_micros() as u64
}

fn parse_rules(spec: &str) -> Result<Vec<Rule>, Error> {
    spec.split(',')
        .map(|r| {
            let parts: Vec<&str> = r.split(':').collect();
            let [key, limit, window] = parts[..] else { return Err(format!("bad rule {r:?}").into()) };
            Ok(Rule::new(key, limit.parse()?, Duration::from_millis(window.parse()?)))
        })
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts: HashMap<&str, &str> =
        args.chunks(2).map(|p| (p[0].trim_start_matches("--"), p.get(1).map_or("", String::as_str))).collect();
    let get = |k: &str| opts.get(k).copied().ok_or_else(|| format!("missing --{k}"));
    let num = |k: &str| -> Result<u64, Error> { Ok(get(k)?.parse()?) };
    let rules = parse_rules(get("rules")?)?;
    let mut config = RedisConfig::new(get("ns")?);
    config.horizon = Duration::from_millis(num("horizon-ms")?);
    config.margin = Margin { fixed: Duration::from_millis(num("margin-ms")?), per_mille: 0 };
    config.heartbeat = Duration::from_millis(200);
    if let Ok(ms) = num("timeout-ms") {
        config.timeout = Duration::from_millis(ms);
    }
    config.longest_window = rules.iter().map(|r| r.window).max().unwrap_or_default();
    let limiter = Arc::new(RedisLimiter::connect(get("url")?, config).await?);
    let start = num("start-unix-ms")? * 1000;
    let end = start + num("run-ms")? * 1000;
    let cancel = CancellationToken::new();
    let mut tasks: JoinSet<Result<(bool, Vec<String>), Error>> = JoinSet::new();
    {
        let (limiter, cancel) = (limiter.clone(), cancel.clone());
        tasks.spawn(async move {
            limiter.run_heartbeat(cancel).await;
            Ok((false, Vec::new()))
        });
    }
    tokio::time::sleep(Duration::from_micros(start.saturating_sub(wall_us()))).await;
    let workers = num("workers")?;
    for _ in 0..workers {
        let (limiter, rules) = (limiter.clone(), rules.clone());
        tasks.spawn(async move {
            let mut log = Vec::new();
            while wall_us() < end {
                match limiter.reserve_traced(&rules, Duration::from_secs(60)).await {
                    Ok((Reservation::Granted { wait }, source)) => {
                        let wait_us = wait.as_micros() as u64;
                        let wall = wall_us() + wait_us;
                        log.push(match source {
                            Source::Redis { slot } => format!(
                                r#"{{"src":"redis","server_us":{slot},"decided_us":{},"wall_us":{wall}}}"#,
                                slot - wait_us
                            ),
                            Source::Fallback => format!(
                                r#"{{"src":"local","server_us":null,"decided_us":null,"wall_us":{wall},"processes":{}}}"#,
                                limiter.processes().unwrap_or(0)
                            ),
                        });
                        tokio::time::sleep(wait).await;
                    }
                    Ok((Reservation::TooLate { earliest }, _)) => {
                        tokio::time::sleep(earliest.min(Duration::from_millis(50))).await
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
            Ok((true, log))
        });
    }
    if let Ok(spec) = get("hold") {
        let parts: Vec<&str> = spec.split(':').collect();
        let [key, at, for_] = parts[..] else { return Err(format!("bad hold {spec:?}").into()) };
        let (key, at, for_): (String, u64, u64) = (key.to_owned(), at.parse()?, for_.parse()?);
        let limiter = limiter.clone();
        tasks.spawn(async move {
            tokio::time::sleep(Duration::from_micros((start + at * 1000).saturating_sub(wall_us()))).await;
            let called = wall_us();
            limiter.hold(&key, Duration::from_millis(for_)).await?;
            let returned = wall_us();
            Ok((
                false,
                vec![format!(
                    r#"{{"hold":"{key}","called_us":{called},"returned_us":{returned},"for_us":{}}}"#,
                    for_ * 1000
                )],
            ))
        });
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(get("out")?)?);
    let mut left = workers;
    while let Some(log) = tasks.join_next().await {
        let (is_worker, log) = log??;
        for line in log {
            writeln!(out, "{line}")?;
        }
        if is_worker {
            left = left.saturating_sub(1);
        }
        if left == 0 {
            cancel.cancel();
        }
    }
    out.flush()?;
    Ok(())
}
