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
//! Cash and vouchers wait `pending` for the fulfilment webhook (not built yet): their job
//! snoozes rather than spending attempts.

use async_trait::async_trait;
use jiff::Timestamp;
use questline_core::id::TenantId;
use questline_core::reward::Reward;
use questline_queue::{Job, NewJob, Outcome, Policies, QueueConfig, RetryPolicy, SqlQueue, Worker, WorkerConfig};
use questline_service::Service;
use questline_service::wallet::{Settled, SettlementJobs};
use questline_store::{StoreError, UnitOfWork};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The job kind that settles one reward; its payload is `{"reward_id": "…"}`.
pub const SETTLE: &str = "reward.settle";
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
    Worker::new(queue, config)
        .handle_batch(SETTLE, SETTLE_BATCH, move |jobs| settle_many(settler.clone(), jobs))
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
async fn settle_many(service: Arc<Service>, jobs: Vec<Job>) -> Vec<Outcome> {
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
                for ((i, _), settled) in items.iter().zip(settled) {
                    outcomes[*i] = Some(outcome_of(settled));
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
