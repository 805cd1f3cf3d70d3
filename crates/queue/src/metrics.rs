//! The queue's metrics, named once (the `metrics` facade: recorded only where the binary
//! installs a recorder, e.g. the Prometheus exporter behind `/metrics`).
//!
//! Every series carries the lane (`memory`, `sqlite`, `postgres`, `redis`) and the job kind.
//! Counters: `questline_jobs_enqueued_total`, `_started_total`, `_succeeded_total`,
//! `_retried_total` (an attempt failed and will run again), `_dead_total`; the histogram
//! `questline_job_start_latency_seconds`: from when a job was due (enqueued, or its `run_at`
//! if later) to when a worker claimed it; the gauge `questline_jobs{kind, state}`: unfinished
//! jobs (the queue depth), refreshed by each worker's rescuer.

use crate::model::{Depth, Job, JobState};
use jiff::Timestamp;
use std::collections::BTreeSet;

pub(crate) fn enqueued(lane: &'static str, job: &Job) {
    metrics::counter!("questline_jobs_enqueued_total", "lane" => lane, "kind" => job.kind.clone()).increment(1);
}

/// A claimed job, at `now`.
pub(crate) fn started(lane: &'static str, job: &Job, now: Timestamp) {
    metrics::counter!("questline_jobs_started_total", "lane" => lane, "kind" => job.kind.clone()).increment(1);
    let due = job.run_at.max(job.created_at);
    let waited = now.duration_since(due).as_secs_f64().max(0.0);
    metrics::histogram!("questline_job_start_latency_seconds", "lane" => lane, "kind" => job.kind.clone())
        .record(waited);
}

/// The queue depth: the gauge `questline_jobs{kind, state}` for each unfinished kind and
/// state, and 0 for those reported before that have none now (`shown` carries them over
/// from one report to the next).
pub(crate) fn depth(lane: &'static str, depth: &[Depth], shown: &mut BTreeSet<(String, JobState)>) {
    let now: BTreeSet<(String, JobState)> = depth.iter().map(|d| (d.kind.clone(), d.state)).collect();
    for (kind, state) in shown.difference(&now) {
        metrics::gauge!("questline_jobs", "lane" => lane, "kind" => kind.clone(), "state" => state.as_str()).set(0.0);
    }
    for d in depth {
        // Precision is lost only past 2^53 jobs.
        #[allow(clippy::cast_precision_loss)]
        let jobs = d.jobs as f64;
        metrics::gauge!("questline_jobs", "lane" => lane, "kind" => d.kind.clone(), "state" => d.state.as_str())
            .set(jobs);
    }
    *shown = now;
}

/// A job after an acknowledgement or a rescue.
pub(crate) fn settled(lane: &'static str, job: &Job) {
    let name = match job.state {
        JobState::Succeeded => "questline_jobs_succeeded_total",
        JobState::Retrying => "questline_jobs_retried_total",
        JobState::Dead => "questline_jobs_dead_total",
        _ => return,
    };
    metrics::counter!(name, "lane" => lane, "kind" => job.kind.clone()).increment(1);
}
