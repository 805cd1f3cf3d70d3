//! The changes decided by the shared state machine (`transition.rs`): acknowledgements,
//! rescues, re-drives and cancels. Each reads the jobs, decides in Rust, and writes back
//! with `put.lua`, which writes a job only if it is still at the revision read (every script
//! bumps it): a job that changed meanwhile (a heartbeat, a claim, another rescuer) is read
//! and decided again.

use super::{RedisQueue, keys, reads};
use crate::error::{QueueError, Result};
use crate::memory::as_read;
use crate::model::{Ack, Job, JobId, JobState};
use crate::transition;
use jiff::Timestamp;
use questline_store::StoreError;
use std::collections::HashMap;

/// Rounds of read, decide, write before a change that keeps losing races is given up.
const TRIES: usize = 5;

/// Running jobs a rescue handles; the worker rescues again on its next round.
const RESCUE_BATCH: usize = 500;

/// How one job's write went.
enum Put {
    Written,
    /// It changed since it was read.
    Changed,
    /// Its unique key is held by this other unfinished job.
    KeyTaken(JobId),
}

/// Reads `ids`, runs each through `change` (`None`: leave it alone), and writes back the
/// changed ones; a job that changed in between goes round again. Returns the jobs written.
async fn rewrite(
    queue: &RedisQueue,
    ids: Vec<JobId>,
    mut change: impl FnMut(Job) -> Result<Option<Job>>,
) -> Result<Vec<Job>> {
    let mut pending = ids;
    pending.sort();
    pending.dedup();
    let mut written = Vec::with_capacity(pending.len());
    for _ in 0..TRIES {
        if pending.is_empty() {
            return Ok(written);
        }
        let mut changes = Vec::new();
        for (job, rev) in reads::fetch(queue, &pending).await? {
            if let Some(changed) = change(job)? {
                changes.push((changed, rev));
            }
        }
        pending.clear();
        for ((job, _), put) in changes.iter().zip(put(queue, &changes).await?) {
            match put {
                Put::Written => written.push(job.clone()),
                Put::Changed => pending.push(job.id.clone()),
                Put::KeyTaken(holder) => return Err(QueueError::UniqueKeyTaken { id: job.id.clone(), holder }),
            }
        }
    }
    if pending.is_empty() {
        return Ok(written);
    }
    Err(QueueError::Store(StoreError::Retryable(format!("{} jobs kept changing while being written", pending.len()))))
}

async fn put(queue: &RedisQueue, changes: &[(Job, String)]) -> Result<Vec<Put>> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = Vec::new();
    for (job, rev) in changes {
        let fields = keys::mutable_fields(job);
        args.push(job.id.to_string());
        args.push(rev.clone());
        args.push(fields.len().to_string());
        for (field, value) in fields {
            args.push(field.to_owned());
            args.push(value);
        }
    }
    let results: Vec<String> = queue.run(&queue.scripts.put, &args).await?;
    Ok(results
        .into_iter()
        .map(|r| match r.as_str() {
            "1" => Put::Written,
            "0" => Put::Changed,
            holder => Put::KeyTaken(JobId::new(holder)),
        })
        .collect())
}

pub(super) async fn complete(queue: &RedisQueue, acks: Vec<Ack>, now: Timestamp) -> Result<Vec<Job>> {
    let ids: Vec<JobId> = acks.iter().map(|a| a.claim.id.clone()).collect();
    let by_id: HashMap<&JobId, &Ack> = acks.iter().map(|a| (&a.claim.id, a)).collect();
    // An ack whose claim no longer holds leaves its job alone.
    let done = rewrite(queue, ids, |job| {
        let Some(ack) = by_id.get(&job.id).filter(|a| job.is_held_by(&a.claim)) else { return Ok(None) };
        let policy = queue.config.policies.get(&job.kind);
        Ok(Some(transition::settle(job, &ack.outcome, policy, now, rand::random())))
    })
    .await?;
    // Other processes hear of retried and snoozed jobs from `put.lua`; this one at once.
    if done.iter().any(|j| j.state.is_waiting()) {
        crate::backend::wake(&queue.wakeups);
    }
    Ok(done)
}

pub(super) async fn rescue(queue: &RedisQueue, now: Timestamp) -> Result<Vec<Job>> {
    let lapsed: Vec<String> = redis::cmd("ZRANGEBYSCORE")
        .arg(format!("{}running", queue.prefix))
        .arg("-inf")
        .arg(format!("({}", keys::micros(now)))
        .arg("LIMIT")
        .arg(0)
        .arg(RESCUE_BATCH)
        .query_async(&mut queue.connection())
        .await?;
    let ids = lapsed.into_iter().map(JobId::new).collect();
    let max_crashes = queue.config.max_crashes;
    let rescued = rewrite(queue, ids, |job| {
        let lapsed = job.state == JobState::Running && job.leased_until.is_some_and(|t| t < now);
        Ok(lapsed.then(|| transition::rescue(job, max_crashes, now)))
    })
    .await?;
    if !rescued.is_empty() {
        crate::backend::wake(&queue.wakeups);
    }
    Ok(rescued)
}

/// Changes the one job `id` with `change`; `Err(state)` is the state that forbids it.
async fn update(
    queue: &RedisQueue,
    id: &JobId,
    action: &'static str,
    change: impl Fn(Job) -> Result<Job, JobState>,
) -> Result<Job> {
    let step =
        |job: Job| change(job).map(Some).map_err(|state| QueueError::WrongState { id: id.clone(), state, action });
    let mut changed = rewrite(queue, vec![id.clone()], step).await?;
    changed.pop().ok_or_else(|| QueueError::NotFound(id.clone()))
}

pub(super) async fn retry_now(queue: &RedisQueue, id: &JobId, now: Timestamp) -> Result<Job> {
    // A dead job's unique key is free, and may have been taken since: `put.lua` refuses it.
    let job = update(queue, id, "retried", |job| transition::retry_now(job, now)).await?;
    crate::backend::wake(&queue.wakeups);
    Ok(as_read(job, now))
}

pub(super) async fn cancel(queue: &RedisQueue, id: &JobId, now: Timestamp) -> Result<Job> {
    let job = update(queue, id, "cancelled", |job| transition::cancel(job, now)).await?;
    Ok(as_read(job, now))
}
