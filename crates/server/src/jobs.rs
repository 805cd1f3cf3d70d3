//! The jobs questline runs for itself on the scheduler's durable lane (`questline_queue`, on
//! the store's own database). Today: settlement.
//!
//! Settlement is a periodic sweep rather than a job per reward: a pending reward *is* the
//! durable record of the work (it commits with its completion, in the batch's unit of work),
//! and `rewards_to_settle` (a partial index on pending rewards by `hold_until`) finds what is
//! due. Every tick enqueues one `reward.settle_due` job however many workers run; the job
//! settles up to [`SETTLE_BATCH`] due rewards, each in a unit of work of its own that checks
//! it is still pending, so a reward is settled once even if two sweeps overlap. Rewards the
//! fulfilment webhook must grant (cash, vouchers) are left pending for it.

use questline_core::id::TenantId;
use questline_queue::{NewJob, Outcome, QueueConfig, SqlQueue, Worker, WorkerConfig};
use questline_service::Service;
use std::sync::Arc;
use std::time::Duration;

/// The job kind of a settlement sweep.
pub const SETTLE_DUE: &str = "reward.settle_due";
/// How often due rewards are looked for: the most a reward waits after its hold.
pub const SETTLE_EVERY: Duration = Duration::from_secs(1);
/// Rewards one sweep settles at most; the next tick takes the rest.
pub const SETTLE_BATCH: u32 = 500;

/// The worker of this process's own jobs, on `service`'s database.
pub async fn worker(service: Arc<Service>, database_url: &str) -> Result<Worker, questline_queue::QueueError> {
    let queue = SqlQueue::open(service.store().clone(), QueueConfig::default()).await?.listening(database_url);
    let sweeper = service.clone();
    Ok(Worker::new(Arc::new(queue), WorkerConfig::default())
        .handle(SETTLE_DUE, move |_job| {
            let service = sweeper.clone();
            async move {
                match service.settle_due(&TenantId::default_tenant(), SETTLE_BATCH).await {
                    Ok(granted) => {
                        if granted > 0 {
                            tracing::info!(granted, "rewards settled");
                        }
                        Outcome::Done
                    }
                    Err(e) => Outcome::retry(e.to_string()),
                }
            }
        })
        .every("settle-due", SETTLE_EVERY, |_tick| NewJob::new(SETTLE_DUE, serde_json::json!({})).max_attempts(3)))
}
