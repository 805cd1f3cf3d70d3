//! One attempt of a webhook delivery: a reward's `reward.fulfil`, whose answer decides the
//! reward, or a notification, whose answer decides only the job.

use super::FULFIL;
use super::settle::AWAIT_FULFILMENT;
use crate::delivery::{Answer, Deliverer};
use questline_core::id::TenantId;
use questline_core::reward::RewardStatus;
use questline_queue::{Jitter, Job, Outcome, RetryPolicy};
use questline_service::Service;
use questline_service::webhooks::Endpoint;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// How long a fulfilment waits after its outcome could not be recorded.
const RECORD_AGAIN: Duration = Duration::from_secs(5);

/// One attempt of a reward's `reward.fulfil` delivery, and what its answer decides.
pub(super) async fn fulfil(service: Arc<Service>, deliverer: Deliverer, job: Job) -> Outcome {
    let tenant = TenantId::new(&job.tenant_id);
    let Some(reward_id) = job.payload.get("reward_id").and_then(|v| v.as_str()) else {
        return Outcome::discard("the payload names no reward_id");
    };
    let reward = match service.reward(&tenant, reward_id).await {
        Ok(Some(reward)) => reward,
        Ok(None) => return Outcome::Done,
        Err(e) => return Outcome::retry(e.to_string()),
    };
    // Revoked by a reversal meanwhile, or decided by an earlier run: nothing to deliver.
    if reward.status != RewardStatus::Pending {
        return Outcome::Done;
    }
    let endpoint = match service.fulfilment_endpoint(&tenant).await {
        Ok(Some(endpoint)) => endpoint,
        // Deleted since: the reward waits for the next endpoint, spending no attempt.
        Ok(None) => return Outcome::Snooze(AWAIT_FULFILMENT),
        Err(e) => return Outcome::retry(e.to_string()),
    };
    let body = serde_json::json!({ "type": FULFIL, "timestamp": reward.hold_until, "data": reward });
    let body = serde_json::to_vec(&body).expect("a reward serializes");
    let msg_id = format!("msg_{reward_id}");
    let attempt = job.attempt.max(1);
    let last = attempt >= job.max_attempts.min(endpoint.webhook.max_attempts);
    let answer = deliverer.deliver(&endpoint, &msg_id, &body).await;
    tracing::info!(reward_id, attempt, webhook_id = %endpoint.webhook.id, answer = ?answer, "reward.fulfil delivered");
    let (result, outcome) = match answer {
        Answer::Delivered => (Ok(()), Outcome::Done),
        Answer::Refused(reason) => (Err(reason.clone()), Outcome::discard(reason)),
        Answer::Failed { reason, .. } if last => {
            let reason = format!("{reason} (after {attempt} attempts)");
            (Err(reason.clone()), Outcome::discard(reason))
        }
        Answer::Failed { reason, retry_after } => return retry(&endpoint, attempt, reason, retry_after),
    };
    match service.finish_fulfilment(&tenant, reward_id, result, attempt).await {
        Ok(settled) => {
            tracing::info!(reward_id, attempt, ?settled, "fulfilment decided");
            outcome
        }
        // The answer stands; recording it failed. Run again soon without spending an attempt
        // (the endpoint sees the same webhook-id again, and answers it as before).
        Err(e) => {
            tracing::warn!(reward_id, error = %e, "could not record the fulfilment's outcome");
            Outcome::Snooze(RECORD_AGAIN)
        }
    }
}

/// A notification job's payload, as `UnitQueue::enqueue_deliveries` wrote it.
#[derive(Deserialize)]
struct Notification {
    webhook_id: String,
    msg_id: String,
    body: serde_json::Value,
}

/// One attempt of a notification's delivery to one webhook: 2xx is done; a final 4xx, or a
/// webhook deleted since, is dead at once; anything a retry may help retries with the
/// webhook's backoff (or `Retry-After`), until the job's attempts (the webhook's
/// `max_attempts`) are spent.
pub(super) async fn notify(service: Arc<Service>, deliverer: Deliverer, job: Job) -> Outcome {
    let tenant = TenantId::new(&job.tenant_id);
    let note: Notification = match serde_json::from_value(job.payload.clone()) {
        Ok(note) => note,
        Err(e) => return Outcome::discard(format!("a malformed delivery payload: {e}")),
    };
    let endpoint = match service.webhook_endpoint(&tenant, &note.webhook_id).await {
        Ok(Some(endpoint)) => endpoint,
        Ok(None) => return Outcome::discard(format!("webhook {} was deleted", note.webhook_id)),
        Err(e) => return Outcome::retry(e.to_string()),
    };
    let body = serde_json::to_vec(&note.body).expect("a JSON value serializes");
    let attempt = job.attempt.max(1);
    let answer = deliverer.deliver(&endpoint, &note.msg_id, &body).await;
    tracing::info!(job_id = %job.id, msg_id = %note.msg_id, attempt, webhook_id = %note.webhook_id, answer = ?answer,
        "notification delivered");
    match answer {
        Answer::Delivered => Outcome::Done,
        Answer::Refused(reason) => Outcome::discard(reason),
        Answer::Failed { reason, retry_after } => retry(&endpoint, attempt, reason, retry_after),
    }
}

/// Another attempt after the webhook's own backoff (exponential, jittered, capped at its
/// `max`), or after the endpoint's `Retry-After`.
fn retry(endpoint: &Endpoint, attempt: u32, reason: String, retry_after: Option<Duration>) -> Outcome {
    let policy = RetryPolicy {
        max_attempts: endpoint.webhook.max_attempts,
        initial: endpoint.webhook.retry_initial,
        cap: endpoint.webhook.retry_max,
        jitter: Jitter::Equal,
    };
    let after = retry_after.unwrap_or_else(|| policy.delay(attempt, rand::random()));
    Outcome::Retry { error: reason, after: Some(after) }
}
