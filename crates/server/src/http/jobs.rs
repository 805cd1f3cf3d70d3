//! `/v1/jobs`: the job queue as an operator sees it — list and read jobs, run a dead or
//! waiting one now, cancel one that has not started. Thin handlers over the queue's durable
//! lane ([`questline_queue::Backend`]), whose state machine decides what a retry or a cancel
//! may do; only the caller's tenant's jobs are visible.
//!
//! The queue takes the time as a parameter of every decision; like its worker, these
//! handlers read the wall clock once per request and pass that instant down.

use crate::auth::{AdminCaller, ReadCaller};
use crate::error::{ApiError, ApiResult, Problem, ProblemType, problem};
use crate::http::extract::{Pagination, encode_cursor, query_pointer};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use jiff::Timestamp;
use questline_core::id::{TenantId, storable};
use questline_queue::{AttemptError, Backend, Job, JobId, JobState, ListFilter, QueueError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(get_one)).routes(routes!(retry)).routes(routes!(cancel))
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = JobState)]
pub enum JobStateBody {
    /// Waiting for a `run_at` still ahead.
    Scheduled,
    /// Due: the next claim of a worker may take it.
    Available,
    /// Claimed by a worker.
    Running,
    /// An attempt failed; waiting for the `run_at` of the next one.
    Retrying,
    Succeeded,
    Cancelled,
    /// Out of attempts, discarded by its handler, or quarantined after repeated crashes.
    Dead,
}

impl From<JobState> for JobStateBody {
    fn from(state: JobState) -> Self {
        match state {
            JobState::Scheduled => Self::Scheduled,
            JobState::Available => Self::Available,
            JobState::Running => Self::Running,
            JobState::Retrying => Self::Retrying,
            JobState::Succeeded => Self::Succeeded,
            JobState::Cancelled => Self::Cancelled,
            JobState::Dead => Self::Dead,
        }
    }
}

/// One failed attempt.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = JobError)]
pub struct JobErrorBody {
    at: Timestamp,
    attempt: u32,
    error: String,
}

impl From<AttemptError> for JobErrorBody {
    fn from(e: AttemptError) -> Self {
        Self { at: stored(e.at), attempt: e.attempt, error: e.error }
    }
}

/// A job, as API.md's `Job`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Job)]
pub struct JobBody {
    #[schema(example = "0190f5a4c2b87d3e9a1b2c3d4e5f6a7b")]
    id: String,
    #[schema(example = "reward.settle_due")]
    kind: String,
    state: JobStateBody,
    /// Attempts started so far.
    attempt: u32,
    max_attempts: u32,
    /// When it runs (next): its first run, or the next attempt after a failure.
    run_at: Timestamp,
    /// Every failed attempt's error, oldest first.
    errors: Vec<JobErrorBody>,
    created_at: Timestamp,
    /// When it succeeded, was cancelled or died; `null` while unfinished.
    finished_at: Option<Timestamp>,
    /// Lower runs first.
    priority: i16,
    /// What its handler is given.
    #[schema(value_type = Object)]
    payload: serde_json::Value,
}

impl From<Job> for JobBody {
    fn from(job: Job) -> Self {
        Self {
            id: job.id.as_str().to_owned(),
            kind: job.kind,
            state: job.state.into(),
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            run_at: stored(job.run_at),
            errors: job.errors.into_iter().map(JobErrorBody::from).collect(),
            created_at: stored(job.created_at),
            finished_at: job.finished_at.map(stored),
            priority: job.priority,
            payload: job.payload,
        }
    }
}

/// `t` as the durable lane keeps it (microseconds): a job a retry or cancel just changed
/// carries the clock's nanoseconds, and its answer must match what a later read shows.
fn stored(t: Timestamp) -> Timestamp {
    Timestamp::from_microsecond(t.as_microsecond()).unwrap_or(t)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    pub items: Vec<JobBody>,
    /// Pass as `?cursor=` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Only jobs in this state (as of now: a scheduled job whose time has come is available).
    #[param(value_type = Option<JobStateBody>)]
    pub state: Option<String>,
    /// Only jobs of this kind, e.g. `reward.settle_due`.
    pub kind: Option<String>,
}

/// The state names a client may filter by, for the 422 that refuses another.
fn state_names() -> String {
    JobState::ALL.map(JobState::as_str).join(", ")
}

/// List the tenant's jobs, oldest first (by id), optionally by state and kind.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(ListQuery, Pagination),
    responses((status = 200, body = JobList), (status = 422, body = Problem)), security(("api_key" = [])))]
async fn list(
    State(state): State<AppState>,
    caller: ReadCaller,
    Query(query): Query<ListQuery>,
    page: Pagination,
) -> ApiResult<Json<JobList>> {
    let job_state =
        match query.state.as_deref() {
            None => None,
            Some(s) => Some(JobState::parse(s).ok_or_else(|| {
                ApiError::invalid(&query_pointer("state"), format!("must be one of {}", state_names()))
            })?),
        };
    if query.kind.as_deref().is_some_and(|kind| !storable(kind)) {
        return Err(ApiError::invalid(&query_pointer("kind"), "must not contain NUL (U+0000)"));
    }
    let after = page.after()?;
    if after.as_deref().is_some_and(|after| !storable(after)) {
        // Never one of ours: job ids are hex.
        return Err(ApiError::invalid(&query_pointer("cursor"), "not a cursor this API returned"));
    }
    let filter = ListFilter {
        tenant_id: Some(caller.tenant.as_str().to_owned()),
        state: job_state,
        kind: query.kind,
        after: after.map(JobId::new),
        limit: page.limit() as usize,
    };
    let found = state.jobs.list(&filter, now()).await.map_err(|e| job_error(e, problem::JOB_NOT_FOUND))?;
    Ok(Json(JobList {
        items: found.items.into_iter().map(JobBody::from).collect(),
        next_cursor: found.next_cursor.as_ref().map(|id| encode_cursor(id.as_str())),
    }))
}

#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    responses((status = 200, body = JobBody), (status = 404, body = Problem)), security(("api_key" = [])))]
async fn get_one(
    State(state): State<AppState>,
    caller: ReadCaller,
    Path(id): Path<String>,
) -> ApiResult<Json<JobBody>> {
    Ok(Json(visible(&*state.jobs, &caller.tenant, &id, now()).await?.into()))
}

/// Run a dead or waiting job now: a dead one gets another attempt if it had used them all.
/// A running, succeeded or cancelled job cannot be retried (409).
#[utoipa::path(post, path = "/v1/jobs/{id}/retry", tag = "jobs",
    responses((status = 200, description = "The job, available now", body = JobBody), (status = 404, body = Problem),
        (status = 409, description = "The job is running or finished (succeeded, cancelled), or a job that \
            holds its unique key is unfinished", body = Problem)),
    security(("api_key" = [])))]
async fn retry(State(state): State<AppState>, caller: AdminCaller, Path(id): Path<String>) -> ApiResult<Json<JobBody>> {
    let now = now();
    let job = visible(&*state.jobs, &caller.tenant, &id, now).await?;
    let job = state.jobs.retry_now(&job.id, now).await.map_err(|e| job_error(e, problem::JOB_NOT_RETRYABLE))?;
    tracing::info!(job_id = %job.id, kind = %job.kind, by = %caller.key_id, "job retried");
    Ok(Json(job.into()))
}

/// Cancel a job that has not started, so that it never runs; cancelling a cancelled job
/// changes nothing. A running or finished job cannot be cancelled (409).
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs",
    responses((status = 200, description = "The job, cancelled", body = JobBody), (status = 404, body = Problem),
        (status = 409, description = "The job is running or finished", body = Problem)),
    security(("api_key" = [])))]
async fn cancel(
    State(state): State<AppState>,
    caller: AdminCaller,
    Path(id): Path<String>,
) -> ApiResult<Json<JobBody>> {
    let now = now();
    let job = visible(&*state.jobs, &caller.tenant, &id, now).await?;
    let job = state.jobs.cancel(&job.id, now).await.map_err(|e| job_error(e, problem::JOB_NOT_CANCELLABLE))?;
    tracing::info!(job_id = %job.id, kind = %job.kind, by = %caller.key_id, "job cancelled");
    Ok(Json(job.into()))
}

/// The instant a request's queue operations are decided at.
fn now() -> Timestamp {
    Timestamp::now()
}

/// The job `id` of `tenant`; another tenant's job is answered as if there were none.
async fn visible(jobs: &dyn Backend, tenant: &TenantId, id: &str, now: Timestamp) -> ApiResult<Job> {
    let not_found = || ApiError::new(problem::JOB_NOT_FOUND, format!("no job with id {id:?}"));
    if !storable(id) {
        return Err(not_found());
    }
    match jobs.get(&JobId::new(id), now).await.map_err(|e| job_error(e, problem::JOB_NOT_FOUND))? {
        Some(job) if job.tenant_id == tenant.as_str() => Ok(job),
        _ => Err(not_found()),
    }
}

/// The queue's errors as problems; `wrong_state` is the type for a job whose state does not
/// allow the operation (retry and cancel each have their own).
fn job_error(e: QueueError, wrong_state: ProblemType) -> ApiError {
    let detail = e.to_string();
    match e {
        QueueError::NotFound(_) => ApiError::new(problem::JOB_NOT_FOUND, detail),
        QueueError::WrongState { state, .. } => {
            ApiError::new(wrong_state, detail).with("state", serde_json::json!(state.as_str()))
        }
        QueueError::UniqueKeyTaken { holder, .. } => {
            ApiError::new(problem::JOB_UNIQUE_KEY_TAKEN, detail).with("holder", serde_json::json!(holder.as_str()))
        }
        QueueError::Store(e) if e.is_retryable() => {
            ApiError::new(problem::DATABASE_BUSY, "the database is busy; retry")
        }
        QueueError::Store(_) | QueueError::Redis(_) | QueueError::Corrupt(_) => ApiError::internal(detail),
    }
}
