//! The Redis lane's key layout and how a job is laid out in its hash. The Lua scripts
//! (`lua/lib.lua`) build the same keys from the prefix; the table is in
//! `docs/queue-redis.md`.
//!
//! Under a namespace prefix `P` (each [`super::RedisQueue`] has one, so tests and
//! deployments share a server without seeing each other's jobs):
//! - `P job:<id>` — a hash per job, the fields of [`fields`];
//! - `P ids` — every job by id (a sorted set of equal scores, read by lex: pages by id);
//! - `P available:<kind>` — available jobs in claim order: members are [`order`] strings;
//! - `P timed:<kind>` — scheduled and retrying jobs by `run_at` (promoted when due);
//! - `P running` — running jobs by lease expiry (what rescue scans);
//! - `P done`, `P dead` — finished jobs by `finished_at` (what prune scans);
//! - `P unique` — `tenant\0key` → the unfinished job holding the unique key;
//! - `P concurrency` — `tenant\0key` → how many jobs of a concurrency key run;
//! - `P counts` — `kind\0state` → unfinished jobs (the depth);
//! - `P kinds`, `P ticks` (periodic schedules' last ticks), and the channel `P wake`.

use crate::error::{QueueError, Result};
use crate::model::{AttemptError, Concurrency, Job, JobId, JobState};
use jiff::Timestamp;
use std::collections::HashMap;

pub(super) fn job(prefix: &str, id: &JobId) -> String {
    format!("{prefix}job:{id}")
}

pub(super) fn ids(prefix: &str) -> String {
    format!("{prefix}ids")
}

pub(super) fn wake_channel(prefix: &str) -> String {
    format!("{prefix}wake")
}

/// A job's place in claim order as a string that sorts bytewise as (priority, run_at, id):
/// fixed-width decimal priority and `run_at` (both offset to be non-negative), then the id.
/// The scripts take the id back as everything after the first 25 characters.
pub(super) fn order(job: &Job) -> String {
    let priority = i32::from(job.priority) + 32_768;
    let run_at = (i128::from(job.run_at.as_microsecond()) + (1i128 << 63)) as u128;
    format!("{priority:05}{run_at:020}{}", job.id)
}

/// Every field of a new job, as `insert` in `lib.lua` stores it.
pub(super) fn fields(job: &Job) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("id", job.id.to_string()),
        ("tenant", job.tenant_id.clone()),
        ("kind", job.kind.clone()),
        ("payload", job.payload.to_string()),
        ("created_at", micros(job.created_at)),
        ("claims", job.claims.to_string()),
        ("rev", "0".to_owned()),
    ];
    if let Some(key) = &job.unique_key {
        out.push(("ukey", key.clone()));
    }
    if let Some(c) = &job.concurrency {
        out.push(("ckey", c.key.clone()));
        out.push(("climit", c.limit.to_string()));
    }
    out.extend(mutable_fields(job).into_iter().filter(|(_, v)| !v.is_empty()));
    out
}

/// The fields the state machine may change (what `put.lua` writes back); an empty value
/// deletes the field.
pub(super) fn mutable_fields(job: &Job) -> Vec<(&'static str, String)> {
    vec![
        ("state", job.state.as_str().to_owned()),
        ("priority", job.priority.to_string()),
        ("attempt", job.attempt.to_string()),
        ("max_attempts", job.max_attempts.to_string()),
        ("run_at", micros(job.run_at)),
        ("order", order(job)),
        ("errors", serde_json::to_string(&job.errors).expect("attempt errors serialize")),
        ("crashes", job.crashes.to_string()),
        ("finished_at", job.finished_at.map(micros).unwrap_or_default()),
        ("leased_until", job.leased_until.map(micros).unwrap_or_default()),
    ]
}

/// A job from its hash, with the `rev` it was read at; `None` for an empty hash (no such
/// job: `HGETALL` of a missing key).
pub(super) fn decode(mut hash: HashMap<String, String>) -> Result<Option<(Job, String)>> {
    if hash.is_empty() {
        return Ok(None);
    }
    let mut take = |field: &str| hash.remove(field);
    let id = JobId::new(required(take("id"), "id")?);
    let state = required(take("state"), "state")?;
    let state = JobState::parse(&state).ok_or_else(|| corrupt(format!("job state {state:?}")))?;
    let payload = required(take("payload"), "payload")?;
    let errors = required(take("errors"), "errors")?;
    let concurrency = match (take("ckey"), take("climit")) {
        (Some(key), Some(limit)) => Some(Concurrency { key, limit: number(&limit, "climit")? }),
        _ => None,
    };
    let job = Job {
        tenant_id: required(take("tenant"), "tenant")?,
        kind: required(take("kind"), "kind")?,
        payload: serde_json::from_str(&payload).map_err(|e| corrupt(format!("payload: {e}")))?,
        state,
        attempt: number(&required(take("attempt"), "attempt")?, "attempt")?,
        max_attempts: number(&required(take("max_attempts"), "max_attempts")?, "max_attempts")?,
        run_at: instant(&required(take("run_at"), "run_at")?)?,
        priority: number(&required(take("priority"), "priority")?, "priority")?,
        errors: serde_json::from_str::<Vec<AttemptError>>(&errors).map_err(|e| corrupt(format!("errors: {e}")))?,
        unique_key: take("ukey"),
        concurrency,
        created_at: instant(&required(take("created_at"), "created_at")?)?,
        finished_at: take("finished_at").map(|t| instant(&t)).transpose()?,
        claims: number(&required(take("claims"), "claims")?, "claims")?,
        crashes: number(&required(take("crashes"), "crashes")?, "crashes")?,
        leased_until: take("leased_until").map(|t| instant(&t)).transpose()?,
        id,
    };
    let rev = take("rev").unwrap_or_default();
    Ok(Some((job, rev)))
}

pub(super) fn micros(t: Timestamp) -> String {
    t.as_microsecond().to_string()
}

fn instant(text: &str) -> Result<Timestamp> {
    let us: i64 = number(text, "instant")?;
    Timestamp::from_microsecond(us).map_err(|e| corrupt(format!("instant {us}: {e}")))
}

fn number<T: std::str::FromStr>(text: &str, field: &str) -> Result<T> {
    text.parse().map_err(|_| corrupt(format!("{field} {text:?}")))
}

fn required(value: Option<String>, field: &str) -> Result<String> {
    value.ok_or_else(|| corrupt(format!("job without {field}")))
}

fn corrupt(what: String) -> QueueError {
    QueueError::Corrupt(what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NewJob;

    #[test]
    fn order_sorts_as_priority_then_run_at_then_id() {
        let at = |s| Timestamp::from_second(s).unwrap();
        let make = |priority, run_at, id: &str| {
            let new = NewJob::new("k", serde_json::json!(null)).priority(priority).run_at(run_at);
            order(&Job::from_new(new, JobId::new(id), 1, at(0)))
        };
        let mut orders = vec![
            make(1, at(10), "b"),
            make(-5, at(1_000_000), "z"),
            make(1, at(-10), "c"),
            make(1, at(10), "a"),
            make(i16::MAX, at(0), "a"),
            make(i16::MIN, at(99), "a"),
        ];
        let expected = vec![
            orders[5].clone(),
            orders[1].clone(),
            orders[2].clone(),
            orders[3].clone(),
            orders[0].clone(),
            orders[4].clone(),
        ];
        orders.sort();
        assert_eq!(orders, expected);
        assert!(orders.iter().all(|o| o.len() == 26));
    }
}
