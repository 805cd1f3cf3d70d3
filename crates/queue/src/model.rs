//! The job model every lane stores: what a producer asks for ([`NewJob`]), what the queue
//! keeps ([`Job`]), and what a handler answers ([`Outcome`]).
//!
//! A job's life: `scheduled` (its `run_at` is ahead) or `available` → `running` (claimed,
//! under a lease) → `succeeded`, or `retrying` (waiting for its next `run_at`) and round
//! again, or `dead` (out of attempts, discarded, or quarantined after crashes, with every
//! attempt's error kept). A job that has not started can be `cancelled`.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// The tenant a job belongs to when the producer names none.
pub const DEFAULT_TENANT: &str = "default";

/// A job's id: a UUID v7 in its simple (hex) form, so ids sort by creation time and pages by
/// id list the oldest first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    /// A new, unique id (the queue makes every job id).
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().simple().to_string())
    }

    /// An id as stored or as a client sent it.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a job is in its life; exactly the states of API.md's `Job`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for a `run_at` still ahead.
    Scheduled,
    /// Due: the next claim may take it.
    Available,
    /// Claimed by a worker, under a lease.
    Running,
    /// An attempt failed; waiting for the `run_at` of the next one (then available).
    Retrying,
    Succeeded,
    Cancelled,
    /// Out of attempts, discarded by its handler, or quarantined after repeated crashes.
    Dead,
}

impl JobState {
    pub const ALL: [JobState; 7] =
        [Self::Scheduled, Self::Available, Self::Running, Self::Retrying, Self::Succeeded, Self::Cancelled, Self::Dead];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Available => "available",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Succeeded => "succeeded",
            Self::Cancelled => "cancelled",
            Self::Dead => "dead",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Waiting to run: a claim may take it once its `run_at` has come.
    pub fn is_waiting(self) -> bool {
        matches!(self, Self::Scheduled | Self::Available | Self::Retrying)
    }

    /// Finished for good (until someone re-drives a dead job).
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Cancelled | Self::Dead)
    }
}

/// One failed attempt, kept on the job for as long as the job is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptError {
    pub at: Timestamp,
    pub attempt: u32,
    pub error: String,
}

/// At most `limit` jobs of a tenant with this key run at once (across every worker and
/// process), so that one tenant's flood does not take every worker from the others. Jobs
/// of one key should carry one limit; each job is held to its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Concurrency {
    pub key: String,
    pub limit: u32,
}

/// A job as a producer asks for it. Built with [`NewJob::new`] and the setters.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub kind: String,
    pub payload: serde_json::Value,
    pub tenant_id: String,
    /// Not before this instant; `None`: now.
    pub run_at: Option<Timestamp>,
    /// Lower runs first.
    pub priority: i16,
    /// `None`: the kind's default ([`crate::RetryPolicy::max_attempts`]).
    pub max_attempts: Option<u32>,
    /// While a job of this tenant with this key is not finished, enqueueing another returns
    /// that job instead.
    pub unique_key: Option<String>,
    pub concurrency: Option<Concurrency>,
}

impl NewJob {
    pub fn new(kind: impl Into<String>, payload: serde_json::Value) -> Self {
        Self {
            kind: kind.into(),
            payload,
            tenant_id: DEFAULT_TENANT.to_owned(),
            run_at: None,
            priority: 0,
            max_attempts: None,
            unique_key: None,
            concurrency: None,
        }
    }

    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant_id = tenant.into();
        self
    }

    pub fn run_at(mut self, at: Timestamp) -> Self {
        self.run_at = Some(at);
        self
    }

    pub fn priority(mut self, priority: i16) -> Self {
        self.priority = priority;
        self
    }

    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }

    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    pub fn concurrency(mut self, key: impl Into<String>, limit: u32) -> Self {
        self.concurrency = Some(Concurrency { key: key.into(), limit });
        self
    }
}

/// A job as the queue keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub tenant_id: String,
    pub kind: String,
    pub payload: serde_json::Value,
    pub state: JobState,
    /// Attempts started so far (a snoozed or released attempt is given back).
    pub attempt: u32,
    pub max_attempts: u32,
    pub run_at: Timestamp,
    pub priority: i16,
    pub errors: Vec<AttemptError>,
    pub unique_key: Option<String>,
    pub concurrency: Option<Concurrency>,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// How many times the job was claimed: the fencing token of a claim, so that the
    /// acknowledgement of a claim whose lease lapsed (and was claimed again) changes nothing.
    pub claims: u32,
    /// How many times a worker died holding it (its lease lapsed).
    pub crashes: u32,
    /// While running: until when the claim holds.
    pub leased_until: Option<Timestamp>,
}

impl Job {
    /// The job a [`NewJob`] becomes, enqueued at `now`.
    pub fn from_new(new: NewJob, id: JobId, max_attempts: u32, now: Timestamp) -> Self {
        let run_at = new.run_at.unwrap_or(now);
        Self {
            id,
            tenant_id: new.tenant_id,
            kind: new.kind,
            payload: new.payload,
            state: if run_at > now { JobState::Scheduled } else { JobState::Available },
            attempt: 0,
            max_attempts: new.max_attempts.unwrap_or(max_attempts).max(1),
            run_at,
            priority: new.priority,
            errors: Vec::new(),
            unique_key: new.unique_key,
            concurrency: new.concurrency,
            created_at: now,
            finished_at: None,
            claims: 0,
            crashes: 0,
            leased_until: None,
        }
    }

    /// This claim of the job, for acknowledging and heartbeating it.
    pub fn claim(&self) -> Claim {
        Claim { id: self.id.clone(), claims: self.claims }
    }

    /// Whether `claim` is the job's current claim (it is running, and was not claimed again
    /// since).
    pub fn is_held_by(&self, claim: &Claim) -> bool {
        self.state == JobState::Running && self.claims == claim.claims && self.id == claim.id
    }

    /// The state as a reader at `now` should see it: a scheduled or retrying job whose time
    /// has come is available (lanes rewrite such rows only when a claim comes).
    pub fn state_at(&self, now: Timestamp) -> JobState {
        match self.state {
            JobState::Scheduled | JobState::Retrying if self.run_at <= now => JobState::Available,
            state => state,
        }
    }

    /// Whether a claim at `now` may take it.
    pub fn is_due(&self, now: Timestamp) -> bool {
        self.state.is_waiting() && self.run_at <= now
    }
}

/// One claim of one job: what an acknowledgement or a heartbeat names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Claim {
    pub id: JobId,
    /// The job's [`Job::claims`] as the claim returned it.
    pub claims: u32,
}

/// What a handler answers for one run of a job.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done,
    /// The attempt failed; try again after `after` if given (e.g. a `Retry-After`),
    /// otherwise after the kind's backoff. Past `max_attempts` the job is dead.
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// Not now: run again after this long, without spending an attempt.
    Snooze(Duration),
    /// Not now, but first then: run again at `at` (an instant, not a delay: however late the
    /// acknowledgement is written) at `priority` (claimed before the jobs of a larger one),
    /// without spending an attempt. For a job that has booked its turn (a send slot) and
    /// must not come back late, or behind the work still waiting for one.
    Reschedule {
        at: Timestamp,
        priority: i16,
    },
    /// Retrying cannot help (a 4xx, a malformed payload): straight to dead.
    Discard {
        error: String,
    },
}

impl Outcome {
    pub fn retry(error: impl Into<String>) -> Self {
        Self::Retry { error: error.into(), after: None }
    }

    pub fn retry_after(error: impl Into<String>, after: Duration) -> Self {
        Self::Retry { error: error.into(), after: Some(after) }
    }

    pub fn discard(error: impl Into<String>) -> Self {
        Self::Discard { error: error.into() }
    }
}

/// An acknowledgement: this claim ended with this outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    pub claim: Claim,
    pub outcome: Outcome,
}

/// What a claim asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRequest {
    /// Only jobs of these kinds (what the worker has handlers for).
    pub kinds: Vec<String>,
    pub limit: usize,
    /// How long the claim holds without a heartbeat.
    pub lease: Duration,
}

/// Which jobs a list returns, and which page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListFilter {
    pub tenant_id: Option<String>,
    /// As [`Job::state_at`] reports it.
    pub state: Option<JobState>,
    pub kind: Option<String>,
    /// Jobs after this id (a [`Page::next_cursor`]).
    pub after: Option<JobId>,
    /// At most [`MAX_PAGE`]; 0 means the default of 50.
    pub limit: usize,
}

/// The largest page a list returns (API.md: `limit` at most 500).
pub const MAX_PAGE: usize = 500;
/// The page size when none is asked for.
pub const DEFAULT_PAGE: usize = 50;

impl ListFilter {
    /// The page size actually used.
    pub fn page_size(&self) -> usize {
        match self.limit {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        }
    }
}

/// How many unfinished jobs of one kind are in one state.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Depth {
    pub kind: String,
    pub state: JobState,
    pub jobs: u64,
}

/// One page of jobs, by id.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Job>,
    pub next_cursor: Option<JobId>,
}

/// `t` plus a duration, saturating at the largest instant rather than failing.
pub fn add(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d).ok().and_then(|d| t.checked_add(d).ok()).unwrap_or(Timestamp::MAX)
}
