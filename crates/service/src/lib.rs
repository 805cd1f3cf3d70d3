//! questline's business layer: the functions every entry point calls — HTTP handlers today,
//! broker sources and workers next — with no HTTP in sight.
//!
//! A [`Service`] owns the store, the index of active missions, the ingest lanes and the
//! clock. Its methods are the business functions, grouped by concern: [`missions`]
//! (lifecycle, simulation), [`keys`] (API keys: bootstrap, authentication, administration),
//! [`progress`] (what users achieved), [`wallet`] (settling rewards into balances and
//! entitlements), [`messages`] (accepting, rendering and recording messages to users), [`contacts`] (how a user is reached, what they agreed to hear), [`notices`] (missions' notifications, from due to queued), [`webhooks`] (endpoints, sealed secrets, what a fulfilment's answer
//! decides), [`ingest`] (micro-batching lanes in front of [`ingest::apply_batch`], the
//! one-transaction apply). Each returns a [`ServiceError`], whose
//! variants name one cause each; the HTTP layer maps them to problem types exhaustively.
//!
//! Architecture invariant: ids and timestamps are made here. The clock is read once, at the
//! entry of a public method, and passed down; handlers never read it, and `core` never does.

#![forbid(unsafe_code)]

pub mod clock;
pub mod contacts;
pub mod error;
pub mod index;
pub mod ingest;
pub mod keys;
pub mod messages;
pub mod missions;
pub mod notices;
pub mod notify;
pub mod parse;
pub mod progress;
pub mod wallet;
pub mod webhooks;

pub use clock::{Clock, SystemClock};
pub use error::{Result, ServiceError};

use index::MissionIndex;
use ingest::{BatchConfig, Ingestor};
use questline_core::event::Event;
use questline_core::id::TenantId;
use questline_store::Store;
use std::sync::Arc;

/// The business layer, shared by every entry point of one process.
pub struct Service {
    store: Arc<dyn Store>,
    missions: Arc<MissionIndex>,
    ingestor: Ingestor,
    keys: keys::KeyUse,
    clock: Arc<dyn Clock>,
    jobs: Option<Arc<dyn notify::UnitJobs>>,
    webhooks: webhooks::WebhookSettings,
    messages: Arc<messages::MessageSettings>,
}

impl Service {
    /// Starts the ingest lanes (tasks on the current runtime); [`Service::shutdown`] drains them.
    pub fn new(store: Arc<dyn Store>, batches: BatchConfig, clock: Arc<dyn Clock>) -> Self {
        Self::with_jobs(store, batches, clock, None)
    }

    /// Like [`Service::new`]; every batch that grants rewards also enqueues their settlement
    /// jobs through `jobs`, in its unit of work.
    pub fn with_jobs(
        store: Arc<dyn Store>,
        batches: BatchConfig,
        clock: Arc<dyn Clock>,
        jobs: Option<Arc<dyn notify::UnitJobs>>,
    ) -> Self {
        let missions = Arc::new(MissionIndex::new(store.clone()));
        let ingestor = Ingestor::new(store.clone(), missions.clone(), batches, jobs.clone());
        Service {
            store,
            missions,
            ingestor,
            keys: keys::KeyUse::default(),
            clock,
            jobs,
            webhooks: webhooks::WebhookSettings::default(),
            messages: Arc::default(),
        }
    }

    /// Whether the database answers.
    pub async fn ready(&self) -> Result<()> {
        Ok(self.store.ping().await?)
    }

    /// Stops taking events and waits until every batch already handed to a lane is committed
    /// (or failed) and answered.
    pub async fn shutdown(&self) {
        self.ingestor.shutdown().await;
    }

    /// Applies one batch of valid events in one transaction, now, without a lane: for a
    /// source that forms its own batches (a broker partition's messages, a worker, a test).
    /// Returns after the commit; per event, whether it was new.
    pub async fn apply_batch(&self, tenant: &TenantId, events: &[Event]) -> Result<ingest::Applied> {
        let jobs = self.jobs.as_deref();
        Ok(ingest::apply_batch(&*self.store, &self.missions, jobs, tenant, events, self.clock.now()).await?)
    }

    /// The store, for what only configuration and tests need (migrations, benchmarks).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}
