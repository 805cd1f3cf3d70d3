//! The jobs a unit of work enqueues beside its business rows: settlements, and the
//! notifications the tenant's webhooks subscribe to (`reward.granted`, `reward.revoked`,
//! `reward.failed`, `mission.completed`).
//!
//! A notification is decided in the unit that makes it true (the batch that completes a
//! mission or revokes a reward, the settlement that grants one), so it is sent for what
//! committed and never for a rolled-back batch. The unit reads who subscribes; only then is
//! a body built, so a tenant without webhooks pays one indexed read per unit that has
//! something to tell. Each (webhook, notification) becomes one delivery job, whose
//! `webhook-id` is fixed here: the same on every attempt, in every process.

use jiff::Timestamp;
use questline_core::id::TenantId;
use questline_core::id::{MissionId, UserId};
use questline_core::mission::CompiledMission;
use questline_core::progress::ProgressView;
use questline_core::reward::Reward;
use questline_store::{MissionProgress, UnitOfWork, UserProgress, Webhook};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// What the scheduler writes in a unit of work. Implemented by the server's job queue
/// (`server/src/jobs.rs`); without one, only the periodic sweep settles and nothing is
/// notified.
#[async_trait::async_trait]
pub trait UnitJobs: Send + Sync {
    /// Settlement jobs for rewards just granted, to run when their hold is over.
    async fn enqueue_settlements(
        &self,
        unit: &mut dyn UnitOfWork,
        tenant: &TenantId,
        rewards: &[Reward],
        now: Timestamp,
    ) -> questline_store::Result<()>;

    /// One send job per message accepted.
    async fn enqueue_messages(
        &self,
        unit: &mut dyn UnitOfWork,
        tenant: &TenantId,
        messages: &[questline_core::message::Message],
        now: Timestamp,
    ) -> questline_store::Result<()>;

    /// One `notice.send` job per mission notification due, to run at its `run_at`.
    async fn enqueue_notices(
        &self,
        unit: &mut dyn UnitOfWork,
        tenant: &TenantId,
        notices: Vec<crate::notices::NoticeDue>,
        now: Timestamp,
    ) -> questline_store::Result<()>;

    /// One delivery job per entry.
    async fn enqueue_deliveries(
        &self,
        unit: &mut dyn UnitOfWork,
        tenant: &TenantId,
        deliveries: Vec<Delivery>,
        now: Timestamp,
    ) -> questline_store::Result<()>;
}

/// The notification types, as webhooks subscribe to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    RewardGranted,
    RewardRevoked,
    RewardFailed,
    MissionCompleted,
}

impl Topic {
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::RewardGranted => "reward.granted",
            Topic::RewardRevoked => "reward.revoked",
            Topic::RewardFailed => "reward.failed",
            Topic::MissionCompleted => "mission.completed",
        }
    }
}

/// One notification to one webhook: what its delivery job carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub webhook_id: String,
    /// The webhook's own retry settings apply to its deliveries.
    pub max_attempts: u32,
    pub topic: Topic,
    /// The `webhook-id` of every attempt.
    pub msg_id: String,
    /// `{"type", "timestamp", "data"}`, as it was when the unit committed.
    pub body: Value,
}

/// A notification before it is addressed.
#[derive(Debug, Clone)]
pub struct Notification {
    pub topic: Topic,
    pub msg_id: String,
    pub body: Value,
}

impl Notification {
    /// A reward's `reward.granted`, `reward.revoked` or `reward.failed`: one per reward and
    /// type, ever (a reward reaches each state once).
    pub fn of_reward(topic: Topic, reward: &Reward, at: Timestamp) -> Self {
        let suffix = topic.as_str().trim_start_matches("reward.");
        Notification {
            topic,
            msg_id: format!("msg_{}_{suffix}", reward.id),
            body: json!({"type": topic.as_str(), "timestamp": at, "data": reward}),
        }
    }

    /// A completion's `mission.completed`, with the progress as the completing unit left it.
    /// Its id follows the completion (tenant, mission, user, ordinal), whose reward is one
    /// ever too: a completion a reversal took back and an event reached again is the same
    /// completion, and is announced under the same `webhook-id`. Hashed, since user ids may
    /// hold characters a header cannot.
    pub fn of_completion(tenant: &TenantId, progress: &ProgressView, ordinal: u32, at: Timestamp) -> Self {
        let parts = [tenant.as_str(), progress.mission_id.as_str(), progress.user_id.as_str()];
        let digest = stable_digest(&parts, &ordinal.to_be_bytes());
        Notification {
            topic: Topic::MissionCompleted,
            msg_id: format!("msg_{digest}"),
            body: json!({"type": Topic::MissionCompleted.as_str(), "timestamp": at, "data": progress}),
        }
    }
}

/// An id part that stays the same in every process and release: the first 16 bytes of the
/// SHA-256 of `parts` (each ended by a zero byte, so that no two lists of parts collide)
/// and `tail`, in hex. Ids made from it are fixed for good: changing this changes them.
pub(crate) fn stable_digest(parts: &[&str], tail: &[u8]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hash.update(tail);
    hex::encode(&hash.finalize()[..16])
}

/// The batch's progress rows as written, and each pair's Progress from them; the index by
/// user is built the first time one is asked for (most batches notify nothing).
pub(crate) struct WrittenRows<'a> {
    rows: &'a [UserProgress],
    by_user: std::sync::OnceLock<HashMap<&'a UserId, &'a UserProgress>>,
    now: Timestamp,
}

impl<'a> WrittenRows<'a> {
    pub(crate) fn new(rows: &'a [UserProgress], now: Timestamp) -> Self {
        WrittenRows { rows, by_user: std::sync::OnceLock::new(), now }
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.now
    }

    /// The user's stored state in `mission`, if the batch wrote one.
    pub(crate) fn state(&self, mission: &MissionId, user: &UserId) -> Option<&'a MissionProgress> {
        let by_user = self.by_user.get_or_init(|| self.rows.iter().map(|r| (&r.user_id, r)).collect());
        by_user.get(user).and_then(|r| r.missions.get(mission))
    }

    /// The user's Progress in `mission` as the batch left it.
    pub(crate) fn view(&self, mission: &CompiledMission, user: &UserId) -> ProgressView {
        let stored = self.state(&MissionId::new(mission.id()), user);
        ProgressView::new(mission, user.as_str(), stored.map(|m| &m.state), stored.map(|m| m.updated_at), self.now)
    }
}

/// Who hears of what a unit writes: the tenant's webhooks subscribed to any notification.
pub(crate) struct Subscribers(Vec<Webhook>);

impl Subscribers {
    /// Read in the unit; none without a scheduler (nothing could deliver).
    pub(crate) async fn of(
        jobs: Option<&dyn UnitJobs>,
        unit: &mut dyn UnitOfWork,
        tenant: &TenantId,
    ) -> questline_store::Result<Self> {
        if jobs.is_none() {
            return Ok(Subscribers(Vec::new()));
        }
        let mut hooks = unit.webhooks(tenant).await?;
        hooks.retain(|w| w.events.iter().any(|e| e != questline_store::webhooks::FULFIL_EVENT));
        Ok(Subscribers(hooks))
    }

    pub(crate) fn want(&self, topic: Topic) -> bool {
        self.0.iter().any(|w| subscribes(w, topic))
    }

    /// Enqueues each notification for each webhook subscribed to its type.
    pub(crate) async fn send(
        &self,
        jobs: Option<&dyn UnitJobs>,
        unit: &mut dyn UnitOfWork,
        tenant: &TenantId,
        notifications: Vec<Notification>,
        now: Timestamp,
    ) -> questline_store::Result<()> {
        let Some(jobs) = jobs else { return Ok(()) };
        let deliveries: Vec<Delivery> = notifications
            .iter()
            .flat_map(|n| {
                self.0.iter().filter(|w| subscribes(w, n.topic)).map(|w| Delivery {
                    webhook_id: w.id.clone(),
                    max_attempts: w.max_attempts,
                    topic: n.topic,
                    msg_id: n.msg_id.clone(),
                    body: n.body.clone(),
                })
            })
            .collect();
        if deliveries.is_empty() {
            return Ok(());
        }
        metrics::counter!("questline_notifications_enqueued_total").increment(deliveries.len() as u64);
        jobs.enqueue_deliveries(unit, tenant, deliveries, now).await
    }
}

fn subscribes(webhook: &Webhook, topic: Topic) -> bool {
    webhook.events.iter().any(|e| e == topic.as_str())
}
