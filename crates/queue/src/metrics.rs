//! The queue's metrics, named once (the `metrics` facade: recorded only where the binary
//! installs a recorder, e.g. the Prometheus exporter behind `/metrics`).
//!
//! Counters by kind: `questline_jobs_enqueued_total`, `_started_total`, `_succeeded_total`,
//! `_retried_total` (an attempt failed and will run again), `_dead_total`; the histogram
//! `questline_job_start_latency_seconds`: from when a job was due (enqueued, or its `run_at`
//! if later) to when a worker claimed it.

use crate::model::{Job, JobState};
use jiff::Timestamp;

pub(crate) fn enqueued(job: &Job) {
    metrics::counter!("questline_jobs_enqueued_total", "kind" => job.kind.clone()).increment(1);
}

/// A claimed job, at `now`.
pub(crate) fn started(job: &Job, now: Timestamp) {
    metrics::counter!("questline_jobs_started_total", "kind" => job.kind.clone()).increment(1);
    let due = job.run_at.max(job.created_at);
    let waited = now.duration_since(due).as_secs_f64().max(0.0);
    metrics::histogram!("questline_job_start_latency_seconds", "kind" => job.kind.clone()).record(waited);
}

/// A job after an acknowledgement or a rescue.
pub(crate) fn settled(job: &Job) {
    let name = match job.state {
        JobState::Succeeded => "questline_jobs_succeeded_total",
        JobState::Retrying => "questline_jobs_retried_total",
        JobState::Dead => "questline_jobs_dead_total",
        _ => return,
    };
    metrics::counter!(name, "kind" => job.kind.clone()).increment(1);
}
