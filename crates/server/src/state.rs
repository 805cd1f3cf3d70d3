//! What every handler can reach. Passed explicitly; no globals.

use crate::auth::Authenticator;
use crate::service::index::MissionIndex;
use crate::service::ingest::Ingestor;
use questline_store::Store;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// Active missions by event type, compiled once, refreshed when their revision moves.
    pub missions: Arc<MissionIndex>,
    pub ingestor: Arc<Ingestor>,
    pub auth: Arc<Authenticator>,
    /// Renders `/metrics`; `None` when no recorder is installed (e.g. several servers in one
    /// test process).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}
