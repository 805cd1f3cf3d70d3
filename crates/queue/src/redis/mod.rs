//! The fast lane: jobs on Redis, for micro-tasks where a sub-millisecond pickup matters more
//! than surviving the Redis server's loss (see `docs/queue-redis.md` for durability: jobs
//! born in a SQL unit of work reach Redis through the [`crate::outbox`], never lost up to
//! Redis).
//!
//! Every change that must be atomic is one Lua script (`scripts.rs`, `lua/`): enqueue,
//! claim (promoting due jobs first), heartbeat, prune, and `put`, which writes back what the
//! shared state machine (`transition.rs`) decided in Rust for an acknowledgement, a rescue,
//! a re-drive or a cancel, as a compare-and-set on the job's revision: the rules stay
//! written once for every lane, and a job that changed between the read and the write (a
//! heartbeat, another rescuer) is read again. Time is the caller's `now`, as on every lane;
//! the server's clock is never read.
//!
//! Codemap: `keys.rs` (key layout, a job's hash fields), `scripts.rs` + `lua/`, `writes.rs`
//! (acks, rescue, retry, cancel: read, decide, put), `reads.rs` (get, list, depth),
//! `listen.rs` (wake-ups by pub/sub).

mod keys;
mod listen;
mod reads;
mod scripts;
mod writes;

use crate::backend::{Backend, QueueConfig, wake};
use crate::error::{QueueError, Result};
use crate::model::{Ack, Claim, ClaimRequest, Depth, Job, JobId, ListFilter, NewJob, Page, add};
use async_trait::async_trait;
use jiff::Timestamp;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use scripts::Scripts;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Jobs per enqueue script: a big enqueue is split so that no one script holds the server
/// (which runs nothing else meanwhile) for long.
const ENQUEUE_CHUNK: usize = 1000;

/// Jobs a claim may pass over (their concurrency key at its limit) before it gives up
/// looking: the bound on one claim's script. A flood of one saturated key larger than this
/// hides the jobs behind it until its jobs finish.
const CLAIM_SCAN: usize = 5000;

/// How long a command may take before the call fails. The client's default (500 ms) is for
/// single commands; a script over a thousand jobs on a busy machine may take longer, and
/// failing it would only make the caller run it again.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

impl From<redis::RedisError> for QueueError {
    fn from(err: redis::RedisError) -> Self {
        Self::Redis(err.to_string())
    }
}

/// The Redis lane, under one namespace: every key it touches starts with its prefix.
pub struct RedisQueue {
    client: redis::Client,
    /// Multiplexed and reconnecting: cloned per call, one connection underneath.
    conn: ConnectionManager,
    prefix: String,
    config: QueueConfig,
    scripts: Scripts,
    wakeups: watch::Sender<u64>,
}

impl RedisQueue {
    /// Connects to the Redis at `url` (`redis://host:port/db`) and keeps the queue under
    /// `namespace` (e.g. `questline`; tests use one per test). Keys are `namespace:…`.
    pub async fn open(url: &str, namespace: &str, config: QueueConfig) -> Result<Self> {
        let client = redis::Client::open(url)?;
        let timeouts = ConnectionManagerConfig::new().set_response_timeout(Some(RESPONSE_TIMEOUT));
        let conn = ConnectionManager::new_with_config(client.clone(), timeouts).await?;
        Ok(Self {
            client,
            conn,
            prefix: format!("{namespace}:"),
            config,
            scripts: Scripts::new(),
            wakeups: watch::channel(0).0,
        })
    }

    /// The namespace's key prefix (what an operator would `SCAN` for).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Runs `script` with ARGV = the prefix, then `args`.
    async fn run<T: redis::FromRedisValue>(&self, script: &redis::Script, args: &[String]) -> Result<T> {
        let mut invocation = script.prepare_invoke();
        invocation.arg(&self.prefix);
        for arg in args {
            invocation.arg(arg);
        }
        Ok(invocation.invoke_async(&mut self.connection()).await?)
    }

    /// The jobs `news` become, made here as on every lane (ids, default attempts, state).
    pub(crate) fn make(&self, news: Vec<NewJob>, now: Timestamp) -> Vec<Job> {
        news.into_iter()
            .map(|new| {
                let max_attempts = self.config.policies.get(&new.kind).max_attempts;
                Job::from_new(new, JobId::generate(), max_attempts, now)
            })
            .collect()
    }

    /// Inserts jobs already made (their ids decided: a relayed outbox row keeps its own, so
    /// relaying it twice finds it). Returns, per job, the job that stands: itself, or the
    /// one of the same id or unique key found instead.
    pub(crate) async fn insert(&self, jobs: Vec<Job>) -> Result<Vec<Job>> {
        let mut out = Vec::with_capacity(jobs.len());
        for chunk in jobs.chunks(ENQUEUE_CHUNK) {
            let mut args = Vec::new();
            for job in chunk {
                push_job(&mut args, job);
            }
            let standing: Vec<Option<Vec<String>>> = self.run(&self.scripts.enqueue, &args).await?;
            for (job, standing) in chunk.iter().zip(standing) {
                match standing {
                    None => {
                        crate::metrics::enqueued(self.lane(), job);
                        out.push(job.clone());
                    }
                    Some(fields) => out.push(decode_fields(fields)?),
                }
            }
        }
        wake(&self.wakeups);
        Ok(out)
    }
}

/// ARGV for one new job: id, field count, field/value pairs.
fn push_job(args: &mut Vec<String>, job: &Job) {
    let fields = keys::fields(job);
    args.push(job.id.to_string());
    args.push(fields.len().to_string());
    for (field, value) in fields {
        args.push(field.to_owned());
        args.push(value);
    }
}

/// A job from a script's `HGETALL` (a flat list of fields and values).
fn decode_fields(flat: Vec<String>) -> Result<Job> {
    let mut hash = HashMap::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(field), Some(value)) = (it.next(), it.next()) {
        hash.insert(field, value);
    }
    keys::decode(hash)?.map(|(job, _)| job).ok_or_else(|| QueueError::Corrupt("a script returned an empty job".into()))
}

#[async_trait]
impl Backend for RedisQueue {
    fn lane(&self) -> &'static str {
        "redis"
    }

    async fn enqueue(&self, jobs: Vec<NewJob>, now: Timestamp) -> Result<Vec<Job>> {
        let jobs = self.make(jobs, now);
        self.insert(jobs).await
    }

    async fn enqueue_tick(&self, schedule: &str, tick: Timestamp, job: NewJob, now: Timestamp) -> Result<Option<Job>> {
        let job = self.make(vec![job], now).remove(0);
        let mut args = vec![schedule.to_owned(), keys::micros(tick)];
        push_job(&mut args, &job);
        let standing: Option<Vec<Option<Vec<String>>>> = self.run(&self.scripts.tick, &args).await?;
        let Some(mut standing) = standing else { return Ok(None) };
        let job = match standing.pop().flatten() {
            None => {
                crate::metrics::enqueued(self.lane(), &job);
                wake(&self.wakeups);
                job
            }
            Some(fields) => decode_fields(fields)?,
        };
        Ok(Some(job))
    }

    async fn claim(&self, request: &ClaimRequest, now: Timestamp) -> Result<Vec<Job>> {
        if request.kinds.is_empty() || request.limit == 0 {
            return Ok(Vec::new());
        }
        let mut args = vec![
            keys::micros(now),
            keys::micros(add(now, request.lease)),
            request.limit.to_string(),
            CLAIM_SCAN.max(request.limit).to_string(),
        ];
        args.extend(request.kinds.iter().cloned());
        let claimed: Vec<Vec<String>> = self.run(&self.scripts.claim, &args).await?;
        claimed.into_iter().map(decode_fields).collect()
    }

    async fn complete(&self, acks: Vec<Ack>, now: Timestamp) -> Result<Vec<Job>> {
        writes::complete(self, acks, now).await
    }

    async fn heartbeat(&self, claims: &[Claim], lease: Duration, now: Timestamp) -> Result<Vec<Claim>> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec![keys::micros(add(now, lease))];
        for claim in claims {
            args.push(claim.id.to_string());
            args.push(claim.claims.to_string());
        }
        let held: Vec<String> = self.run(&self.scripts.heartbeat, &args).await?;
        let held: std::collections::HashSet<String> = held.into_iter().collect();
        Ok(claims.iter().filter(|c| held.contains(c.id.as_str())).cloned().collect())
    }

    async fn rescue(&self, now: Timestamp) -> Result<Vec<Job>> {
        writes::rescue(self, now).await
    }

    async fn get(&self, id: &JobId, now: Timestamp) -> Result<Option<Job>> {
        reads::get(self, id, now).await
    }

    async fn depth(&self, now: Timestamp) -> Result<Vec<Depth>> {
        reads::depth(self, now).await
    }

    async fn list(&self, filter: &ListFilter, now: Timestamp) -> Result<Page> {
        reads::list(self, filter, now).await
    }

    async fn retry_now(&self, id: &JobId, now: Timestamp) -> Result<Job> {
        writes::retry_now(self, id, now).await
    }

    async fn cancel(&self, id: &JobId, now: Timestamp) -> Result<Job> {
        writes::cancel(self, id, now).await
    }

    async fn prune(&self, finished_before: Timestamp, dead_before: Option<Timestamp>) -> Result<u64> {
        const BATCH: u64 = 1000;
        let args =
            [keys::micros(finished_before), dead_before.map(keys::micros).unwrap_or_default(), BATCH.to_string()];
        let mut total = 0;
        loop {
            let deleted: u64 = self.run(&self.scripts.prune, &args).await?;
            total += deleted;
            if deleted < BATCH {
                return Ok(total);
            }
        }
    }

    fn wakeups(&self) -> watch::Receiver<u64> {
        self.wakeups.subscribe()
    }

    async fn listen(&self, stop: CancellationToken) -> Result<()> {
        listen::listen(&self.client, &keys::wake_channel(&self.prefix), &self.wakeups, &stop).await
    }
}
