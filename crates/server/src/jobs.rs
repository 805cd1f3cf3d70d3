//! The jobs questline runs for itself on the scheduler's durable lane (`questline_queue`, on
//! the store's own database). Today: settlement.
//!
//! Each granted reward gets a `reward.settle` job, enqueued in the batch's own unit of work
//! (a completion and its settlement commit together or not at all) to run when the reward's
//! hold ends ([`SettlementQueue`]). The jobs of one claim (up to [`SETTLE_BATCH`]) are
//! settled together in one unit of work that checks each reward is still pending, so a
//! reward is settled once however often its job runs, and a commit serves many rewards. A sweep (`reward.settle_due`, one job per tick however many workers run) settles
//! what has no job: rewards from before jobs existed, or whose job died.
//!
//! Cash and vouchers are the tenant's fulfilment endpoint's to decide: a settle job that finds
//! one enqueues a `reward.fulfil` job ([`FULFIL`], unique per reward, with the webhook's own
//! `max_attempts`) and is done; without an endpoint it snoozes, and the reward waits
//! `pending`. A fulfil job delivers the signed `reward.fulfil` webhook (`crate::delivery`)
//! under the `webhook-id` `msg_<reward id>` (the same on every attempt, in every process)
//! and reports the answer to `Service::finish_fulfilment`: 2xx grants, a final 4xx fails
//! the reward at once, anything a retry may help retries after the webhook's own backoff
//! (exponential, jittered, capped at its `max`; `Retry-After` when the endpoint sends one),
//! and the last attempt's failure fails the reward with its reason. No transaction is held
//! while a delivery is in flight.

use crate::delivery::{Answer, Deliverer};
use async_trait::async_trait;
use jiff::Timestamp;
use questline_core::id::TenantId;
use questline_core::reward::{Reward, RewardStatus};
use questline_queue::{
    Backend, Jitter, Job, NewJob, Outcome, Policies, QueueConfig, RetryPolicy, SqlQueue, Worker, WorkerConfig,
};
use questline_service::Service;
use questline_service::wallet::{Settled, SettlementJobs};
use questline_store::{StoreError, UnitOfWork};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The job kind that settles one reward; its payload is `{"reward_id": "…"}`.
pub const SETTLE: &str = "reward.settle";
/// The job kind that delivers one reward's `reward.fulfil` webhook; payload `{"reward_id"}`.
pub const FULFIL: &str = "reward.fulfil";
/// How long a fulfilment waits after its outcome could not be recorded.
const RECORD_AGAIN: Duration = Duration::from_secs(5);
/// The job kind of a settlement sweep.
pub const SETTLE_DUE: &str = "reward.settle_due";
/// How often the sweep looks for due rewards without a job.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Rewards one sweep settles at most; the next tick takes the rest.
pub const SWEEP_BATCH: u32 = 500;
/// Rewards settled together in one unit of work, from one claim.
pub const SETTLE_BATCH: usize = 100;
/// How long a reward waiting for its fulfilment endpoint sleeps between looks.
const AWAIT_FULFILMENT: Duration = Duration::from_secs(60);

/// The queue's settings for questline's own kinds: settlement retries a database error
/// quickly, a few times, then the sweep is the safety net.
pub fn queue_config() -> QueueConfig {
    let settle = RetryPolicy { max_attempts: 10, ..RetryPolicy::default() };
    QueueConfig { policies: Policies::default().with(SETTLE, settle), ..QueueConfig::default() }
}

/// Enqueues a granted reward's settlement job in the batch's unit of work.
pub struct SettlementQueue(pub Arc<SqlQueue>);

#[async_trait]
impl SettlementJobs for SettlementQueue {
    async fn enqueue(
        &self,
        unit: &mut dyn UnitOfWork,
        tenant: &TenantId,
        rewards: &[Reward],
        now: Timestamp,
    ) -> questline_store::Result<()> {
        let jobs = rewards
            .iter()
            .map(|r| {
                NewJob::new(SETTLE, serde_json::json!({ "reward_id": r.id }))
                    .tenant(tenant.as_str())
                    .run_at(r.hold_until)
                    .unique_key(format!("{SETTLE}:{}", r.id))
            })
            .collect();
        self.0.enqueue_in(unit.connection(), jobs, now).await.map(drop).map_err(|e| match e {
            questline_queue::QueueError::Store(e) => e,
            other => StoreError::Corrupt(format!("enqueueing settlement jobs: {other}")),
        })
    }
}

/// The worker of this process's own jobs (`config`: how it runs, e.g. its concurrency).
pub fn worker(service: Arc<Service>, queue: Arc<SqlQueue>, config: WorkerConfig) -> Worker {
    let settler = service.clone();
    let fulfiller = service.clone();
    let deliverer = Deliverer::new(service.allows_private_targets());
    let enqueuer = queue.clone();
    Worker::new(queue, config)
        .handle_batch(SETTLE, SETTLE_BATCH, move |jobs| settle_many(settler.clone(), enqueuer.clone(), jobs))
        .handle(FULFIL, move |job| fulfil(fulfiller.clone(), deliverer.clone(), job))
        .handle(SETTLE_DUE, move |_job| {
            let service = service.clone();
            async move {
                match service.settle_due(&TenantId::default_tenant(), SWEEP_BATCH).await {
                    Ok(granted) => {
                        if granted > 0 {
                            tracing::info!(granted, "the sweep settled rewards that had no job");
                        }
                        Outcome::Done
                    }
                    Err(e) => Outcome::retry(e.to_string()),
                }
            }
        })
        .every("settle-due", SWEEP_EVERY, |_tick| NewJob::new(SETTLE_DUE, serde_json::json!({})).max_attempts(3))
}

/// Settles a claim's rewards in one unit of work per tenant (one commit for many rewards,
/// not one each); one outcome per job, in order.
async fn settle_many(service: Arc<Service>, queue: Arc<SqlQueue>, jobs: Vec<Job>) -> Vec<Outcome> {
    let mut outcomes: Vec<Option<Outcome>> = vec![None; jobs.len()];
    let mut by_tenant: BTreeMap<&str, Vec<(usize, String)>> = BTreeMap::new();
    for (i, job) in jobs.iter().enumerate() {
        match job.payload.get("reward_id").and_then(|v| v.as_str()) {
            Some(id) => by_tenant.entry(job.tenant_id.as_str()).or_default().push((i, id.to_owned())),
            None => outcomes[i] = Some(Outcome::discard("the payload names no reward_id")),
        }
    }
    for (tenant, items) in by_tenant {
        let ids: Vec<String> = items.iter().map(|(_, id)| id.clone()).collect();
        match service.settle_rewards(&TenantId::new(tenant), &ids).await {
            Ok(settled) => {
                let mut awaiting = Vec::new();
                for ((i, id), settled) in items.iter().zip(settled) {
                    if settled == Settled::AwaitsFulfilment {
                        awaiting.push((*i, id.clone()));
                    }
                    outcomes[*i] = Some(outcome_of(settled));
                }
                if !awaiting.is_empty() {
                    let outcome = hand_to_fulfilment(&service, &queue, &TenantId::new(tenant), &awaiting).await;
                    for (i, _) in &awaiting {
                        outcomes[*i] = Some(outcome.clone());
                    }
                }
            }
            Err(e) => {
                let error = e.to_string();
                for (i, _) in &items {
                    outcomes[*i] = Some(Outcome::retry(error.clone()));
                }
            }
        }
    }
    outcomes.into_iter().map(|o| o.unwrap_or_else(|| Outcome::retry("not settled"))).collect()
}

fn outcome_of(settled: Settled) -> Outcome {
    match settled {
        Settled::Granted | Settled::AlreadyDone(_) | Settled::NotFound => Outcome::Done,
        Settled::NotDue(until) => {
            let wait = until.duration_since(Timestamp::now()).unsigned_abs();
            Outcome::Snooze(wait.max(Duration::from_secs(1)))
        }
        Settled::AwaitsFulfilment => Outcome::Snooze(AWAIT_FULFILMENT),
    }
}

/// Cash and vouchers due for their fulfilment endpoint: a `reward.fulfil` job each (unique
/// per reward, so a settle job run twice enqueues one), and the settle job is done; without
/// an endpoint the settle job snoozes and the rewards wait `pending`.
async fn hand_to_fulfilment(
    service: &Service,
    queue: &SqlQueue,
    tenant: &TenantId,
    rewards: &[(usize, String)],
) -> Outcome {
    let endpoint = match service.fulfilment_endpoint(tenant).await {
        Ok(Some(endpoint)) => endpoint,
        Ok(None) => return Outcome::Snooze(AWAIT_FULFILMENT),
        Err(e) => return Outcome::retry(e.to_string()),
    };
    let jobs = rewards
        .iter()
        .map(|(_, id)| {
            NewJob::new(FULFIL, serde_json::json!({ "reward_id": id }))
                .tenant(tenant.as_str())
                .max_attempts(endpoint.webhook.max_attempts)
                .unique_key(format!("{FULFIL}:{id}"))
        })
        .collect();
    match queue.enqueue(jobs, Timestamp::now()).await {
        Ok(_) => Outcome::Done,
        Err(e) => Outcome::retry(format!("enqueueing fulfilment: {e}")),
    }
}

/// One attempt of a reward's `reward.fulfil` delivery, and what its answer decides.
async fn fulfil(service: Arc<Service>, deliverer: Deliverer, job: Job) -> Outcome {
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
        Answer::Failed { reason, retry_after } => {
            let policy = RetryPolicy {
                max_attempts: endpoint.webhook.max_attempts,
                initial: endpoint.webhook.retry_initial,
                cap: endpoint.webhook.retry_max,
                jitter: Jitter::Equal,
            };
            let after = retry_after.unwrap_or_else(|| policy.delay(attempt, rand::random()));
            return Outcome::Retry { error: reason, after: Some(after) };
        }
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
