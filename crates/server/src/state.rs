//! What every handler can reach. Passed explicitly; no globals.

use crate::auth::UserTokens;
use questline_service::Service;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    /// The business layer: every handler calls exactly one of its functions.
    pub service: Arc<Service>,
    /// Verifies the app's user tokens (`/v1/me/…`); `None` when no secret is configured.
    pub user_tokens: Option<Arc<UserTokens>>,
    /// Renders `/metrics`; `None` when no recorder is installed (e.g. several servers in one
    /// test process).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// The job queue's durable lane on the service's database: what `/v1/jobs` reads, what
    /// ingest enqueues settlement jobs into, what the worker claims from.
    pub jobs: Arc<questline_queue::SqlQueue>,
    /// The fast lane on Redis, reached through its outbox in the store's database, when
    /// `QUESTLINE_REDIS_URL` is set: where notification deliveries go.
    pub fast: Option<Arc<questline_queue::Outbox>>,
    /// Sends messages through the configured providers (none configured: it has none, and
    /// `POST /v1/messages` refuses every channel).
    pub dispatcher: Arc<crate::dispatch::Dispatcher>,
}
