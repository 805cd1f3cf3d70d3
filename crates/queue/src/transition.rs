//! The state machine, written once: every lane reads the jobs a change concerns, runs
//! them through these pure functions, and writes back what they return. Only claiming is
//! done by each lane itself (in SQL, one statement), and it changes nothing but the state,
//! the attempt and the lease.

use crate::model::{AttemptError, Job, JobState, Outcome, add};
use crate::policy::RetryPolicy;
use jiff::Timestamp;

/// The error recorded for an attempt whose worker stopped heartbeating.
pub const LEASE_LAPSED: &str = "lease lapsed: the worker holding the job stopped (crashed, killed or stuck)";

/// A running job after its handler answered `outcome` at `now`. `draw` is the random
/// number in `[0, 1)` the backoff's jitter takes.
pub fn settle(mut job: Job, outcome: &Outcome, policy: &RetryPolicy, now: Timestamp, draw: f64) -> Job {
    job.leased_until = None;
    match outcome {
        Outcome::Done => finish(&mut job, JobState::Succeeded, now),
        Outcome::Retry { error, after } => {
            record(&mut job, error, now);
            if job.attempt >= job.max_attempts {
                finish(&mut job, JobState::Dead, now);
            } else {
                let delay = after.unwrap_or_else(|| policy.delay(job.attempt, draw));
                job.state = JobState::Retrying;
                job.run_at = add(now, delay);
            }
        }
        Outcome::Snooze(after) => release(&mut job, add(now, *after), now),
        Outcome::Reschedule { at, priority } => {
            release(&mut job, *at, now);
            job.priority = *priority;
        }
        Outcome::Discard { error } => {
            record(&mut job, error, now);
            finish(&mut job, JobState::Dead, now);
        }
    }
    job
}

/// A running job whose lease lapsed (its worker died): the attempt counts and fails with
/// [`LEASE_LAPSED`]; it runs again at once, unless it is out of attempts or has now crashed
/// `max_crashes` times, when it is quarantined as dead for a person to look at.
pub fn rescue(mut job: Job, max_crashes: u32, now: Timestamp) -> Job {
    job.leased_until = None;
    job.crashes += 1;
    record(&mut job, LEASE_LAPSED, now);
    if job.crashes >= max_crashes || job.attempt >= job.max_attempts {
        finish(&mut job, JobState::Dead, now);
    } else {
        job.state = JobState::Retrying;
        job.run_at = now;
    }
    job
}

/// A dead or waiting job made to run now. A dead job gets one more attempt if it had used
/// them all, and its crash count starts again; its errors stay. `Err` is the state that
/// forbids it (running, succeeded, cancelled).
pub fn retry_now(mut job: Job, now: Timestamp) -> Result<Job, JobState> {
    match job.state {
        JobState::Dead => {
            job.max_attempts = job.max_attempts.max(job.attempt + 1);
            job.crashes = 0;
        }
        state if state.is_waiting() => {}
        state => return Err(state),
    }
    job.state = JobState::Available;
    job.run_at = now;
    job.finished_at = None;
    Ok(job)
}

/// A job that has not started, cancelled so that it never runs; cancelling a cancelled job
/// changes nothing. `Err` is the state that forbids it.
pub fn cancel(mut job: Job, now: Timestamp) -> Result<Job, JobState> {
    match job.state {
        JobState::Cancelled => Ok(job),
        state if state.is_waiting() => {
            finish(&mut job, JobState::Cancelled, now);
            Ok(job)
        }
        state => Err(state),
    }
}

/// Gives the attempt back and makes the job due again after `after`: a snooze, or a job a
/// stopping worker could not finish.
/// Back to waiting, from `run_at` (not before `now`), the attempt given back.
fn release(job: &mut Job, run_at: Timestamp, now: Timestamp) {
    job.attempt = job.attempt.saturating_sub(1);
    job.run_at = run_at.max(now);
    job.state = if job.run_at > now { JobState::Scheduled } else { JobState::Available };
}

fn record(job: &mut Job, error: &str, now: Timestamp) {
    job.errors.push(AttemptError { at: now, attempt: job.attempt, error: error.to_owned() });
}

fn finish(job: &mut Job, state: JobState, now: Timestamp) {
    job.state = state;
    job.finished_at = Some(now);
    job.leased_until = None;
}
