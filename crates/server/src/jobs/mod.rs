//! The jobs questline runs for itself on the scheduler's durable lane (`questline_queue`, on
//! the store's own database): settlement (`settle.rs`) and webhook deliveries
//! (`deliver.rs`).
//!
//! Each granted reward gets a `reward.settle` job, enqueued in the batch's own unit of work
//! (a completion and its settlement commit together or not at all) to run when the reward's
//! hold ends ([`UnitQueue`]). The jobs of one claim (up to [`SETTLE_BATCH`]) are
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
//!
//! Points and coins that expire: a sweep (`balance.expire`, every [`EXPIRE_EVERY`], one job
//! per tick) takes back what is left of each expired credit, the oldest credit spent first
//! (`Service::expire_due`).
//!
//! Finished jobs are pruned every ten minutes (a cron schedule, `jobs.prune`): succeeded and
//! cancelled ones after a day, dead ones after two weeks.
//!
//! Notifications (`reward.granted`, `reward.revoked`, `reward.failed`, `mission.completed`)
//! are decided in the unit of work that makes them true (`questline_service::notify`): one
//! `webhook.deliver` job per subscribed webhook, unique per (webhook, `webhook-id`), carrying
//! the body as it was at that commit; delivered the same way, retried with the webhook's
//! backoff until answered 2xx or out of attempts (then dead, listed in `/v1/jobs`).

mod deliver;
mod notice;
mod settle;

use crate::delivery::Deliverer;
use crate::state::AppState;
use async_trait::async_trait;
use jiff::Timestamp;
use questline_core::id::TenantId;
use questline_core::message::Message;
use questline_core::reward::Reward;
use questline_queue::{
    Backend, Cadence, NewJob, Outbox, Outcome, Policies, QueueConfig, QueueError, RedisQueue, RetryPolicy, SqlQueue,
    Worker, WorkerConfig,
};
use questline_service::Service;
use questline_service::notices::NoticeDue;
use questline_service::notify::{Delivery, UnitJobs};
use questline_store::{StoreError, UnitOfWork};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The job kind that settles one reward; its payload is `{"reward_id": "…"}`.
pub const SETTLE: &str = "reward.settle";
/// The job kind that delivers one reward's `reward.fulfil` webhook; payload `{"reward_id"}`.
pub const FULFIL: &str = "reward.fulfil";
/// The job kind that delivers one notification to one webhook; payload: [`Delivery`]'s
/// webhook id, type, `webhook-id` and body.
pub const DELIVER: &str = "webhook.deliver";
/// A mission's notification due for a user (`jobs/notice.rs`); payload: a `NoticeDue`.
pub const NOTICE: &str = "notice.send";
/// Attempts of a notice: it only reads and queues a message; the message's own job retries
/// the provider.
pub const NOTICE_ATTEMPTS: u32 = 8;
/// The job kind of a settlement sweep.
pub const SETTLE_DUE: &str = "reward.settle_due";
/// How often the sweep looks for due rewards without a job.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Rewards one sweep settles at most; the next tick takes the rest.
pub const SWEEP_BATCH: u32 = 500;
/// The job kind that takes back what is left of expired points and coins.
pub const EXPIRE: &str = "balance.expire";
/// How often expired credits are looked for: a credit outlives its expiry by about this.
pub const EXPIRE_EVERY: Duration = Duration::from_secs(10);
/// Balances one expiry sweep deals with at most; the next tick takes the rest.
pub const EXPIRE_BATCH: u32 = 500;
/// The job kind that deletes finished jobs past their retention.
pub const PRUNE: &str = "jobs.prune";
/// When finished jobs are pruned: every ten minutes, on the clock.
pub const PRUNE_CRON: &str = "*/10 * * * *";
/// How long succeeded and cancelled jobs stay listable in `/v1/jobs`.
pub const KEEP_FINISHED: Duration = Duration::from_secs(24 * 3600);
/// How long dead jobs stay, with their errors, to be looked at and re-driven.
pub const KEEP_DEAD: Duration = Duration::from_secs(14 * 24 * 3600);
/// A send job's attempts: the message fails after its own attempts at providers
/// (`MAX_MESSAGE_ATTEMPTS`); the rest are for the database failing under it.
pub const SEND_ATTEMPTS: u32 = 20;
/// Rewards settled together in one unit of work, from one claim.
pub const SETTLE_BATCH: usize = 100;

/// The queue's settings for questline's own kinds: settlement retries a database error
/// quickly, a few times, then the sweep is the safety net.
pub fn queue_config() -> QueueConfig {
    let settle = RetryPolicy { max_attempts: 10, ..RetryPolicy::default() };
    QueueConfig { policies: Policies::default().with(SETTLE, settle), ..QueueConfig::default() }
}

/// Enqueues, in a unit of work, the jobs its business rows call for: a granted reward's
/// settlement (the durable lane), a notification's deliveries (the fast lane's outbox when
/// Redis is configured, else the durable lane).
pub struct UnitQueue {
    pub sql: Arc<SqlQueue>,
    pub fast: Option<Arc<Outbox>>,
}

#[async_trait]
impl UnitJobs for UnitQueue {
    async fn enqueue_settlements(
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
        self.enqueue_in(unit, jobs, now).await
    }

    async fn enqueue_messages(
        &self,
        unit: &mut dyn UnitOfWork,
        tenant: &TenantId,
        messages: &[Message],
        now: Timestamp,
    ) -> questline_store::Result<()> {
        let jobs = messages
            .iter()
            .map(|m| {
                NewJob::new(crate::dispatch::SEND, serde_json::json!({ "id": m.id }))
                    .tenant(tenant.as_str())
                    .priority(i16::from(m.priority))
                    .max_attempts(SEND_ATTEMPTS)
                    .unique_key(format!("{}:{}", crate::dispatch::SEND, m.id))
            })
            .collect();
        self.enqueue_in(unit, jobs, now).await
    }

    async fn enqueue_notices(
        &self,
        unit: &mut dyn UnitOfWork,
        tenant: &TenantId,
        notices: Vec<NoticeDue>,
        now: Timestamp,
    ) -> questline_store::Result<()> {
        let jobs = notices
            .into_iter()
            .map(|due| {
                let unique = format!("{NOTICE}:{}", due.id);
                let run_at = due.run_at;
                NewJob::new(NOTICE, serde_json::to_value(due).expect("a notice serializes"))
                    .tenant(tenant.as_str())
                    .run_at(run_at)
                    .max_attempts(NOTICE_ATTEMPTS)
                    .unique_key(unique)
            })
            .collect();
        self.enqueue_in(unit, jobs, now).await
    }

    async fn enqueue_deliveries(
        &self,
        unit: &mut dyn UnitOfWork,
        tenant: &TenantId,
        deliveries: Vec<Delivery>,
        now: Timestamp,
    ) -> questline_store::Result<()> {
        let jobs: Vec<NewJob> = deliveries
            .into_iter()
            .map(|d| {
                let unique = format!("{DELIVER}:{}:{}", d.webhook_id, d.msg_id);
                let payload = serde_json::json!({
                    "webhook_id": d.webhook_id, "type": d.topic.as_str(), "msg_id": d.msg_id, "body": d.body,
                });
                NewJob::new(DELIVER, payload).tenant(tenant.as_str()).max_attempts(d.max_attempts).unique_key(unique)
            })
            .collect();
        match &self.fast {
            Some(outbox) => outbox.enqueue_in(unit.connection(), jobs, now).await.map(drop).map_err(store_error),
            None => self.enqueue_in(unit, jobs, now).await,
        }
    }
}

impl UnitQueue {
    async fn enqueue_in(
        &self,
        unit: &mut dyn UnitOfWork,
        jobs: Vec<NewJob>,
        now: Timestamp,
    ) -> questline_store::Result<()> {
        self.sql.enqueue_in(unit.connection(), jobs, now).await.map(drop).map_err(store_error)
    }
}

fn store_error(e: QueueError) -> StoreError {
    match e {
        QueueError::Store(e) => e,
        other => StoreError::Corrupt(format!("enqueueing jobs in a unit of work: {other}")),
    }
}

/// The fast lane on the Redis at `url` under `namespace`, and its outbox in `store`'s
/// database.
pub async fn fast_lane(
    url: &str,
    namespace: &str,
    store: Arc<dyn questline_store::Store>,
) -> Result<Outbox, QueueError> {
    let redis = RedisQueue::open(url, namespace, queue_config()).await?;
    Outbox::open(store, Arc::new(redis)).await
}

/// The workers of one process: the durable lane's, and with Redis the fast lane's and the
/// outbox relay that feeds it.
pub struct Workers {
    sql: Worker,
    fast: Option<(Worker, Arc<Outbox>)>,
    /// `message.send`, with its own concurrency; `None` without providers.
    dispatch: Option<(Worker, Arc<crate::dispatch::Dispatcher>)>,
}

/// The workers for `state`'s lanes.
pub fn workers(state: &AppState, config: WorkerConfig) -> Workers {
    let sql = worker(state.service.clone(), state.jobs.clone(), config.clone());
    let fast = state.fast.clone().map(|outbox| {
        let (service, deliverer) = (state.service.clone(), Deliverer::new(state.service.allows_private_targets()));
        let lane: Arc<dyn Backend> = outbox.queue().clone();
        let worker = Worker::new(lane, config.clone())
            .handle(DELIVER, move |job| deliver::notify(service.clone(), deliverer.clone(), job));
        (worker, outbox)
    });
    let dispatch = state.dispatcher.has_providers().then(|| {
        let lane: Arc<dyn Backend> = state.jobs.clone();
        (state.dispatcher.worker(lane, config), state.dispatcher.clone())
    });
    Workers { sql, fast, dispatch }
}

/// How often the relay looks for outbox rows other processes committed (this process's own
/// enqueues ring it at once).
const RELAY_POLL: Duration = Duration::from_millis(500);

impl Workers {
    /// Runs every lane's worker (and the relay) until `stop`; the first error, if any.
    pub async fn run(self, stop: CancellationToken) -> Result<(), QueueError> {
        let Some((dispatch, dispatcher)) = self.dispatch else {
            return Self::run_lanes(self.sql, self.fast, stop).await;
        };
        let beat = {
            let stop = stop.clone();
            async move { dispatcher.run_heartbeat(stop).await }
        };
        let (lanes, sends, ()) =
            tokio::join!(Self::run_lanes(self.sql, self.fast, stop.clone()), dispatch.run(stop.clone()), beat);
        lanes.and(sends)
    }

    async fn run_lanes(
        sql: Worker,
        fast: Option<(Worker, Arc<Outbox>)>,
        stop: CancellationToken,
    ) -> Result<(), QueueError> {
        let Some((fast, outbox)) = fast else { return sql.run(stop).await };
        let relay_stop = CancellationToken::new();
        let relay = {
            let stop = relay_stop.clone();
            async move { outbox.run(RELAY_POLL, stop).await }
        };
        // The relay outlives the workers' drain, so that what they enqueue still reaches Redis.
        let workers = async {
            let (sql, fast) = tokio::join!(sql.run(stop.clone()), fast.run(stop.clone()));
            relay_stop.cancel();
            sql.and(fast)
        };
        let (result, ()) = tokio::join!(workers, relay);
        result
    }
}

/// The worker of this process's own jobs (`config`: how it runs, e.g. its concurrency).
pub fn worker(service: Arc<Service>, queue: Arc<SqlQueue>, config: WorkerConfig) -> Worker {
    let settler = service.clone();
    let fulfiller = service.clone();
    let notifier = service.clone();
    let noticer = service.clone();
    let expirer = service.clone();
    let pruned = queue.clone();
    let prune_cadence = Cadence::cron(PRUNE_CRON, jiff::tz::TimeZone::UTC).expect("a valid cron expression");
    let deliverer = Deliverer::new(service.allows_private_targets());
    let to_notifier = deliverer.clone();
    let enqueuer = queue.clone();
    Worker::new(queue, config)
        .handle_batch(SETTLE, SETTLE_BATCH, move |jobs| settle::settle_many(settler.clone(), enqueuer.clone(), jobs))
        .handle(FULFIL, move |job| deliver::fulfil(fulfiller.clone(), deliverer.clone(), job))
        .handle(DELIVER, move |job| deliver::notify(notifier.clone(), to_notifier.clone(), job))
        .handle(NOTICE, move |job| notice::send(noticer.clone(), job))
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
        .handle(EXPIRE, move |_job| {
            let service = expirer.clone();
            async move {
                match service.expire_due(&TenantId::default_tenant(), EXPIRE_BATCH).await {
                    Ok(taken) => {
                        if taken > 0 {
                            tracing::info!(entries = taken, "expired credits taken back");
                        }
                        Outcome::Done
                    }
                    Err(e) => Outcome::retry(e.to_string()),
                }
            }
        })
        .every("balance-expire", EXPIRE_EVERY, |_tick| NewJob::new(EXPIRE, serde_json::json!({})).max_attempts(3))
        .handle(PRUNE, move |_job| prune(pruned.clone()))
        .periodic("jobs-prune", prune_cadence, |_tick| NewJob::new(PRUNE, serde_json::json!({})).max_attempts(3))
}

/// Deletes succeeded and cancelled jobs older than [`KEEP_FINISHED`] and dead ones older
/// than [`KEEP_DEAD`].
async fn prune(queue: Arc<SqlQueue>) -> Outcome {
    let now = Timestamp::now();
    let before = |keep: Duration| now - jiff::SignedDuration::try_from(keep).unwrap_or(jiff::SignedDuration::ZERO);
    match queue.prune(before(KEEP_FINISHED), Some(before(KEEP_DEAD))).await {
        Ok(deleted) => {
            tracing::info!(deleted, "finished jobs pruned");
            Outcome::Done
        }
        Err(e) => Outcome::retry(e.to_string()),
    }
}
