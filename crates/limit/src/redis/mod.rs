//! [`RedisLimiter`]: the limits shared by every process of a deployment. Each decision is ONE
//! Lua script (`reserve.lua`), atomic, deciding by the server's `TIME` (µs), never a
//! caller's clock; its reply is the wait relative to the server's now (and the slot's server
//! time, for tests and benchmarks). Keys: `{ns}:limit:{key}:log` (a list of slots),
//! `{ns}:limit:{key}:meta` (longest window, largest limit, hold), `{ns}:limit:gate`,
//! `{ns}:limit:procs`; each expires when nothing in it can matter any more.
//!
//! # Failing closed
//!
//! The limiter protects a third party, so when Redis does not answer (an error, or no answer
//! within [`RedisConfig::timeout`]) it does not fail open: the process falls back to a
//! [`LocalLimiter`] granting each rule `limit / N` (rounded down, at least 1), N being the
//! number of live processes the heartbeat registry last showed (each `RedisLimiter` beats
//! every [`RedisConfig::heartbeat`], see [`RedisLimiter::run_heartbeat`]; a process that
//! never heard a count grants nothing: [`LimitError::Unavailable`]).
//!
//! All processes clamp every `max_wait` to one [`RedisConfig::horizon`] H, so no slot Redis
//! grants is more than H after the moment it is granted. Let W be the longest effective
//! window this process has decided on (or [`RedisConfig::longest_window`], if larger).
//!
//! **Into the fallback.** The process notices the failure at local time `f`, after Redis
//! stopped answering (at `d ≤ f`): every slot Redis granted to anyone is ≤ `d + H ≤ f + H`.
//! The fallback grants nothing before `f + H + W`: any window of length W holding a local
//! slot starts after `f + H`, so holds no Redis slot, and holds at most `limit / N` local
//! slots from each of the N processes: at most `limit`. (Times on different machines are
//! compared through elapsed durations, whose rates differ by parts per million: the margin
//! covers that.)
//!
//! **Back to Redis.** A process in the fallback tries Redis again at most every
//! [`RedisConfig::probe`] P. When Redis answers, that decision sets the namespace's gate:
//! no slot from Redis before `now + H + W + P + (own last local slot − now)⁺`. This
//! process's local slots are all more than W before the gate. Another process still in its
//! fallback notices Redis at its next probe (≤ P later; it decides nothing locally without
//! first probing when a probe is due), so its local slots were booked before `now + P` and
//! lie before `now + P + H`, a window W before the gate; and when it comes back it pushes the
//! gate past its own local slots in turn. So no window mixes Redis slots with local slots
//! of any process. The price of a recovery is a pause of about H + W + P on the namespace.
//!
//! **What this does not cover**, said plainly: (1) a partition that cuts off one process
//! while the others still reach Redis: that process's local share (limit / N) comes on top
//! of Redis's full limit for as long as the partition lasts — the share, not a doubling, is
//! the bound; (2) a Redis that stalls past the timeout and then runs the scripts queued
//! meanwhile: their slots count in Redis but the caller already moved to its fallback;
//! (3) processes configured with different horizons or windows: the argument needs one
//! H and one W for the namespace (set `longest_window`).

use crate::clock::MonotonicClock;
use crate::{LimitError, Limiter, LocalLimiter, Margin, Reservation, Rule, micros};
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How a [`RedisLimiter`] runs. All processes of one namespace must agree on `horizon`,
/// `probe`, `margin` and `longest_window` (see the module documentation).
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Every key under `{namespace}:limit:`.
    pub namespace: String,
    pub margin: Margin,
    /// A decision Redis has not answered within this is a failure (fallback).
    pub timeout: Duration,
    /// The longest reservation any process books: `max_wait` is clamped to it.
    pub horizon: Duration,
    /// How often this process says it is alive; a process unseen for 3 beats is not counted.
    pub heartbeat: Duration,
    /// How often a process in its fallback tries Redis again.
    pub probe: Duration,
    /// The longest window any process of the namespace uses (at least; the limiter also
    /// takes the longest it has seen itself).
    pub longest_window: Duration,
    /// This process's id in the registry.
    pub process_id: String,
}

impl RedisConfig {
    pub fn new(namespace: impl Into<String>) -> Self {
        RedisConfig {
            namespace: namespace.into(),
            margin: Margin::default(),
            timeout: Duration::from_millis(200),
            horizon: Duration::from_secs(5),
            heartbeat: Duration::from_secs(1),
            probe: Duration::from_millis(100),
            longest_window: Duration::ZERO,
            process_id: format!(
                "{}-{}",
                std::process::id(),
                micros(std::time::UNIX_EPOCH.elapsed().unwrap_or_default())
            ),
        }
    }
}

/// Who decided a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Redis; `slot` is the booked (or earliest) slot in the server's time, µs since the epoch.
    Redis { slot: u64 },
    /// The local fallback (a share of each limit).
    Fallback,
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Redis,
    /// No local slot before `not_before`; try Redis again from `next_probe` (µs, local clock).
    Fallback {
        not_before: u64,
        next_probe: u64,
    },
}

#[derive(Debug)]
struct State {
    mode: Mode,
    /// Live processes, as last heard.
    processes: Option<u32>,
    /// The longest effective window decided on, µs.
    longest: u64,
    /// The last slot the fallback granted, µs on the local clock.
    last_local: u64,
}

/// Limits shared through Redis, failing closed to a local share (module documentation).
pub struct RedisLimiter {
    conn: ConnectionManager,
    config: RedisConfig,
    reserve: Script,
    hold: Script,
    heartbeat: Script,
    local: LocalLimiter<MonotonicClock>,
    state: Mutex<State>,
}

impl RedisLimiter {
    /// Connects and registers this process (one heartbeat).
    pub async fn connect(url: &str, config: RedisConfig) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let timeouts = ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.timeout))
            .set_connection_timeout(Some(config.timeout))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(client, timeouts).await?;
        let limiter = RedisLimiter {
            conn,
            reserve: Script::new(include_str!("reserve.lua")),
            hold: Script::new(include_str!("hold.lua")),
            heartbeat: Script::new(include_str!("heartbeat.lua")),
            local: LocalLimiter::with_clock(MonotonicClock::default(), config.margin),
            state: Mutex::new(State {
                mode: Mode::Redis,
                processes: None,
                longest: micros(config.margin.window(config.longest_window)),
                last_local: 0,
            }),
            config,
        };
        limiter.beat().await?;
        Ok(limiter)
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}:limit:{suffix}", self.config.namespace)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One heartbeat; returns the live processes counted (this one included).
    pub async fn beat(&self) -> Result<u32, redis::RedisError> {
        let stale = micros(self.config.heartbeat * 3);
        let mut invocation = self.heartbeat.prepare_invoke();
        invocation.key(self.key("procs")).arg(&self.config.process_id).arg(stale);
        let n: u32 = self.timed(invocation.invoke_async(&mut self.conn.clone())).await?;
        self.state().processes = Some(n.max(1));
        Ok(n)
    }

    /// Beats every [`RedisConfig::heartbeat`] until `cancel`; a failed beat keeps the last
    /// count. Run it in the caller's `TaskTracker`.
    pub async fn run_heartbeat(&self, cancel: CancellationToken) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(self.config.heartbeat) => {}
            }
            if let Err(e) = self.beat().await {
                tracing::debug!(error = %e, "rate limiter heartbeat failed");
            }
        }
    }

    /// The live processes last heard of.
    pub fn processes(&self) -> Option<u32> {
        self.state().processes
    }

    /// Whether decisions go to Redis now (false: the local fallback).
    pub fn on_redis(&self) -> bool {
        matches!(self.state().mode, Mode::Redis)
    }

    /// [`Limiter::reserve`], also saying who decided.
    pub async fn reserve_traced(
        &self,
        rules: &[Rule],
        max_wait: Duration,
    ) -> Result<(Reservation, Source), LimitError> {
        for rule in rules {
            rule.check()?;
        }
        let max_wait = max_wait.min(self.config.horizon);
        let windows = rules.iter().map(|r| micros(self.config.margin.window(r.window))).max().unwrap_or(0);
        let now = micros(self.local.now());
        let gate = {
            let mut state = self.state();
            state.longest = state.longest.max(windows);
            match state.mode {
                Mode::Redis => Some(0),
                Mode::Fallback { not_before, next_probe } if now >= next_probe => {
                    state.mode = Mode::Fallback { not_before, next_probe: now + micros(self.config.probe) };
                    let own = state.last_local.saturating_sub(now);
                    Some(micros(self.config.horizon + self.config.probe) + state.longest + own)
                }
                Mode::Fallback { .. } => None,
            }
        };
        if let Some(gate) = gate {
            match self.on_redis_decide(rules, max_wait, gate).await {
                Ok(answer) => {
                    if gate > 0 {
                        tracing::info!("rate limiter back on Redis");
                    }
                    self.state().mode = Mode::Redis;
                    return Ok(answer);
                }
                Err(e) => self.fall_back(&e),
            }
        }
        self.decide_locally(rules, max_wait)
    }

    async fn on_redis_decide(
        &self,
        rules: &[Rule],
        max_wait: Duration,
        gate: u64,
    ) -> Result<(Reservation, Source), redis::RedisError> {
        let mut keys: Vec<&str> = Vec::with_capacity(rules.len());
        for r in rules {
            if !keys.contains(&r.key.as_str()) {
                keys.push(&r.key);
            }
        }
        let mut invocation = self.reserve.prepare_invoke();
        for k in &keys {
            invocation.key(self.key(&format!("{k}:log"))).key(self.key(&format!("{k}:meta")));
        }
        invocation.key(self.key("gate")).arg(micros(max_wait)).arg(gate).arg(rules.len());
        for r in rules {
            let k = keys.iter().position(|k| *k == r.key).expect("listed") + 1;
            invocation.arg(k).arg(r.limit).arg(micros(self.config.margin.window(r.window))).arg(u8::from(r.paced));
        }
        let (granted, wait, slot): (u8, u64, u64) = self.timed(invocation.invoke_async(&mut self.conn.clone())).await?;
        let wait = Duration::from_micros(wait);
        let reservation =
            if granted == 1 { Reservation::Granted { wait } } else { Reservation::TooLate { earliest: wait } };
        Ok((reservation, Source::Redis { slot }))
    }

    fn fall_back(&self, e: &redis::RedisError) {
        let now = micros(self.local.now());
        let mut state = self.state();
        if let Mode::Redis = state.mode {
            tracing::warn!(error = %e, "Redis unreachable: the rate limiter falls back to a local share");
            let not_before = now + micros(self.config.horizon) + state.longest;
            state.mode = Mode::Fallback { not_before, next_probe: now + micros(self.config.probe) };
        }
    }

    fn decide_locally(&self, rules: &[Rule], max_wait: Duration) -> Result<(Reservation, Source), LimitError> {
        let (not_before, share) = {
            let state = self.state();
            let Mode::Fallback { not_before, .. } = state.mode else { unreachable!("called in the fallback") };
            let Some(n) = state.processes else {
                return Err(LimitError::Unavailable(
                    "Redis is unreachable and this process never learnt how many share the limits".into(),
                ));
            };
            (not_before, n)
        };
        let (reservation, slot) = self.local.decide(rules, max_wait, not_before, share)?;
        if let Some(slot) = slot {
            let mut state = self.state();
            state.last_local = state.last_local.max(slot);
        }
        Ok((reservation, Source::Fallback))
    }

    async fn timed<T>(&self, call: impl Future<Output = Result<T, redis::RedisError>>) -> Result<T, redis::RedisError> {
        match tokio::time::timeout(self.config.timeout, call).await {
            Ok(answer) => answer,
            Err(_) => Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer from Redis within the limiter's timeout",
            ))),
        }
    }
}

#[async_trait::async_trait]
impl Limiter for RedisLimiter {
    async fn reserve(&self, rules: &[Rule], max_wait: Duration) -> Result<Reservation, LimitError> {
        self.reserve_traced(rules, max_wait).await.map(|(r, _)| r)
    }

    /// Held locally always (so that a fallback respects it), and in Redis when it answers.
    async fn hold(&self, key: &str, for_: Duration) -> Result<(), LimitError> {
        self.local.hold_now(key, for_);
        let mut invocation = self.hold.prepare_invoke();
        invocation.key(self.key(&format!("{key}:meta"))).arg(micros(for_));
        if let Err(e) = self.timed(invocation.invoke_async::<i64>(&mut self.conn.clone())).await {
            self.fall_back(&e);
        }
        Ok(())
    }
}
