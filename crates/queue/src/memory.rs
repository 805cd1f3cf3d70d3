//! The in-memory lane: the same semantics as the SQL lane, in one process, lost when it
//! stops. For tests and for work that may be lost.
//!
//! One mutex over the jobs and their indexes: available jobs in claim order, scheduled and
//! retrying jobs by `run_at` (a claim first makes those that are due available, as the SQL
//! lane does, so it never walks past jobs whose time has not come), unfinished jobs by
//! unique key, running jobs by concurrency key. Every change goes through [`Inner::put`], which keeps
//! the indexes in step, so no method can forget one. Critical sections are short and
//! never await.

use crate::backend::{Backend, QueueConfig, wake};
use crate::error::{QueueError, Result};
use crate::model::{Ack, Claim, ClaimRequest, Depth, Job, JobId, JobState, ListFilter, NewJob, Page, add};
use crate::{metrics, transition};
use async_trait::async_trait;
use jiff::Timestamp;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

pub struct MemoryQueue {
    config: QueueConfig,
    inner: Mutex<Inner>,
    wakeups: watch::Sender<u64>,
}

#[derive(Default)]
struct Inner {
    jobs: BTreeMap<JobId, Job>,
    /// Available jobs in claim order: (priority, run_at, id).
    available: BTreeSet<(i16, Timestamp, JobId)>,
    /// Scheduled and retrying jobs by when they are due.
    timed: BTreeSet<(Timestamp, JobId)>,
    /// Unfinished jobs by (tenant, unique key).
    unique: HashMap<(String, String), JobId>,
    /// Running jobs by (tenant, concurrency key).
    running: HashMap<(String, String), u32>,
    /// The last tick each periodic schedule enqueued.
    ticks: HashMap<String, Timestamp>,
}

impl Inner {
    /// Stores `job`, replacing its previous version and its index entries.
    fn put(&mut self, job: Job) {
        if let Some(old) = self.jobs.remove(&job.id) {
            self.unindex(&old);
        }
        match job.state {
            JobState::Available => {
                self.available.insert((job.priority, job.run_at, job.id.clone()));
            }
            JobState::Scheduled | JobState::Retrying => {
                self.timed.insert((job.run_at, job.id.clone()));
            }
            _ => {}
        }
        if let (Some(key), false) = (&job.unique_key, job.state.is_finished()) {
            self.unique.insert((job.tenant_id.clone(), key.clone()), job.id.clone());
        }
        if let (Some(c), JobState::Running) = (&job.concurrency, job.state) {
            *self.running.entry((job.tenant_id.clone(), c.key.clone())).or_default() += 1;
        }
        self.jobs.insert(job.id.clone(), job);
    }

    fn unindex(&mut self, job: &Job) {
        self.available.remove(&(job.priority, job.run_at, job.id.clone()));
        self.timed.remove(&(job.run_at, job.id.clone()));
        if let Some(key) = &job.unique_key {
            let k = (job.tenant_id.clone(), key.clone());
            if self.unique.get(&k) == Some(&job.id) {
                self.unique.remove(&k);
            }
        }
        if let (Some(c), JobState::Running) = (&job.concurrency, job.state) {
            let k = (job.tenant_id.clone(), c.key.clone());
            if let Some(n) = self.running.get_mut(&k) {
                *n -= 1;
                if *n == 0 {
                    self.running.remove(&k);
                }
            }
        }
    }

    /// Makes the scheduled and retrying jobs due at `now` available.
    fn promote(&mut self, now: Timestamp) {
        let due: Vec<JobId> = self.timed.iter().take_while(|(at, _)| *at <= now).map(|(_, id)| id.clone()).collect();
        for id in due {
            let mut job = self.jobs[&id].clone();
            job.state = JobState::Available;
            self.put(job);
        }
    }

    fn running_of(&self, job: &Job) -> Option<(u32, u32)> {
        let c = job.concurrency.as_ref()?;
        let n = self.running.get(&(job.tenant_id.clone(), c.key.clone())).copied().unwrap_or(0);
        Some((n, c.limit))
    }
}

impl MemoryQueue {
    pub fn new(config: QueueConfig) -> Self {
        Self { config, inner: Mutex::new(Inner::default()), wakeups: watch::channel(0).0 }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the maps consistent (each change is one
        // `put`), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads a job, changes it with `change`, and stores the result.
    fn update(
        &self,
        id: &JobId,
        action: &'static str,
        change: impl FnOnce(Job) -> Result<Job, JobState>,
    ) -> Result<Job> {
        let mut inner = self.lock();
        let job = inner.jobs.get(id).cloned().ok_or_else(|| QueueError::NotFound(id.clone()))?;
        let changed = change(job).map_err(|state| QueueError::WrongState { id: id.clone(), state, action })?;
        inner.put(changed.clone());
        Ok(changed)
    }
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self::new(QueueConfig::default())
    }
}

#[async_trait]
impl Backend for MemoryQueue {
    fn lane(&self) -> &'static str {
        "memory"
    }

    async fn enqueue(&self, jobs: Vec<NewJob>, now: Timestamp) -> Result<Vec<Job>> {
        let mut out = Vec::with_capacity(jobs.len());
        {
            let mut inner = self.lock();
            for new in jobs {
                let existing = new
                    .unique_key
                    .as_ref()
                    .and_then(|key| inner.unique.get(&(new.tenant_id.clone(), key.clone())))
                    .and_then(|id| inner.jobs.get(id));
                if let Some(existing) = existing {
                    out.push(existing.clone());
                    continue;
                }
                let max_attempts = self.config.policies.get(&new.kind).max_attempts;
                let job = Job::from_new(new, JobId::generate(), max_attempts, now);
                metrics::enqueued(self.lane(), &job);
                inner.put(job.clone());
                out.push(job);
            }
        }
        wake(&self.wakeups);
        Ok(out)
    }

    async fn enqueue_tick(&self, schedule: &str, tick: Timestamp, job: NewJob, now: Timestamp) -> Result<Option<Job>> {
        {
            let mut inner = self.lock();
            if inner.ticks.get(schedule).is_some_and(|last| *last >= tick) {
                return Ok(None);
            }
            inner.ticks.insert(schedule.to_owned(), tick);
        }
        Ok(self.enqueue(vec![job], now).await?.pop())
    }

    async fn claim(&self, request: &ClaimRequest, now: Timestamp) -> Result<Vec<Job>> {
        let mut inner = self.lock();
        inner.promote(now);
        // Claimed in this call, per concurrency key, on top of those already running.
        let mut taken: HashMap<(String, String), u32> = HashMap::new();
        let mut picked = Vec::new();
        for (_, run_at, id) in &inner.available {
            if picked.len() >= request.limit {
                break;
            }
            if *run_at > now {
                continue;
            }
            let job = &inner.jobs[id];
            if !request.kinds.contains(&job.kind) {
                continue;
            }
            if let Some((running, limit)) = inner.running_of(job) {
                let key = (job.tenant_id.clone(), job.concurrency.as_ref().map(|c| c.key.clone()).unwrap_or_default());
                let mine = taken.entry(key).or_default();
                if running + *mine >= limit {
                    continue;
                }
                *mine += 1;
            }
            picked.push(id.clone());
        }
        let lease_until = add(now, request.lease);
        let mut claimed = Vec::with_capacity(picked.len());
        for id in picked {
            let mut job = inner.jobs[&id].clone();
            job.state = JobState::Running;
            job.attempt += 1;
            job.claims += 1;
            job.leased_until = Some(lease_until);
            inner.put(job.clone());
            claimed.push(job);
        }
        Ok(claimed)
    }

    async fn complete(&self, acks: Vec<Ack>, now: Timestamp) -> Result<Vec<Job>> {
        let mut done = Vec::with_capacity(acks.len());
        {
            let mut inner = self.lock();
            for ack in acks {
                let Some(job) = inner.jobs.get(&ack.claim.id).filter(|j| j.is_held_by(&ack.claim)).cloned() else {
                    continue;
                };
                let policy = self.config.policies.get(&job.kind);
                let job = transition::settle(job, &ack.outcome, policy, now, rand::random());
                inner.put(job.clone());
                done.push(job);
            }
        }
        if done.iter().any(|j| j.state.is_waiting()) {
            wake(&self.wakeups);
        }
        Ok(done)
    }

    async fn heartbeat(&self, claims: &[Claim], lease: Duration, now: Timestamp) -> Result<Vec<Claim>> {
        let mut inner = self.lock();
        let mut held = Vec::with_capacity(claims.len());
        for claim in claims {
            if let Some(job) = inner.jobs.get_mut(&claim.id).filter(|j| j.is_held_by(claim)) {
                // The lease is not an index key, so it is changed in place.
                job.leased_until = Some(add(now, lease));
                held.push(claim.clone());
            }
        }
        Ok(held)
    }

    async fn rescue(&self, now: Timestamp) -> Result<Vec<Job>> {
        let mut inner = self.lock();
        let lapsed: Vec<Job> = inner
            .jobs
            .values()
            .filter(|j| j.state == JobState::Running && j.leased_until.is_some_and(|t| t < now))
            .cloned()
            .collect();
        let mut rescued = Vec::with_capacity(lapsed.len());
        for job in lapsed {
            let job = transition::rescue(job, self.config.max_crashes, now);
            inner.put(job.clone());
            rescued.push(job);
        }
        drop(inner);
        if !rescued.is_empty() {
            wake(&self.wakeups);
        }
        Ok(rescued)
    }

    async fn get(&self, id: &JobId, now: Timestamp) -> Result<Option<Job>> {
        Ok(self.lock().jobs.get(id).map(|j| as_read(j.clone(), now)))
    }

    async fn depth(&self, now: Timestamp) -> Result<Vec<Depth>> {
        let mut counts: BTreeMap<(String, JobState), u64> = BTreeMap::new();
        for job in self.lock().jobs.values().filter(|j| !j.state.is_finished()) {
            *counts.entry((job.kind.clone(), job.state_at(now))).or_default() += 1;
        }
        Ok(counts.into_iter().map(|((kind, state), jobs)| Depth { kind, state, jobs }).collect())
    }

    async fn list(&self, filter: &ListFilter, now: Timestamp) -> Result<Page> {
        let inner = self.lock();
        let size = filter.page_size();
        let from = filter.after.as_ref().map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        let mut items: Vec<Job> = inner
            .jobs
            .range((from, std::ops::Bound::Unbounded))
            .map(|(_, j)| j)
            .filter(|j| filter.tenant_id.as_ref().is_none_or(|t| *t == j.tenant_id))
            .filter(|j| filter.kind.as_ref().is_none_or(|k| *k == j.kind))
            .filter(|j| filter.state.is_none_or(|s| s == j.state_at(now)))
            .take(size + 1)
            .map(|j| as_read(j.clone(), now))
            .collect();
        let next_cursor = (items.len() > size).then(|| {
            items.truncate(size);
            items[size - 1].id.clone()
        });
        Ok(Page { items, next_cursor })
    }

    async fn retry_now(&self, id: &JobId, now: Timestamp) -> Result<Job> {
        let job = {
            let inner = self.lock();
            let job = inner.jobs.get(id).ok_or_else(|| QueueError::NotFound(id.clone()))?;
            // A dead job's unique key is free, and may have been taken since.
            if let (JobState::Dead, Some(key)) = (job.state, &job.unique_key)
                && let Some(holder) = inner.unique.get(&(job.tenant_id.clone(), key.clone()))
            {
                return Err(QueueError::UniqueKeyTaken { id: id.clone(), holder: holder.clone() });
            }
            drop(inner);
            self.update(id, "retried", |job| transition::retry_now(job, now))?
        };
        wake(&self.wakeups);
        Ok(as_read(job, now))
    }

    async fn cancel(&self, id: &JobId, now: Timestamp) -> Result<Job> {
        self.update(id, "cancelled", |job| transition::cancel(job, now))
    }

    async fn prune(&self, finished_before: Timestamp, dead_before: Option<Timestamp>) -> Result<u64> {
        let mut inner = self.lock();
        let doomed: Vec<JobId> =
            inner.jobs.values().filter(|j| prunable(j, finished_before, dead_before)).map(|j| j.id.clone()).collect();
        for id in &doomed {
            if let Some(job) = inner.jobs.remove(id) {
                inner.unindex(&job);
            }
        }
        Ok(doomed.len() as u64)
    }

    fn wakeups(&self) -> watch::Receiver<u64> {
        self.wakeups.subscribe()
    }
}

/// A job as readers see it at `now`.
pub(crate) fn as_read(mut job: Job, now: Timestamp) -> Job {
    job.state = job.state_at(now);
    job
}

/// Whether prune deletes `job`.
fn prunable(job: &Job, finished_before: Timestamp, dead_before: Option<Timestamp>) -> bool {
    let Some(at) = job.finished_at else { return false };
    match job.state {
        JobState::Succeeded | JobState::Cancelled => at < finished_before,
        JobState::Dead => dead_before.is_some_and(|t| at < t),
        _ => false,
    }
}
