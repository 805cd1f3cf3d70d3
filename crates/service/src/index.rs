//! The index of active missions: compiled once, looked up by event type.
//!
//! Every mission write bumps the tenant's `missions_revision` in the database. An ingest
//! batch reads the revision inside its transaction and asks for the snapshot at that
//! revision, so a mission activated by any process (or ended by a spent budget) is seen by
//! the next batch, without re-reading and re-compiling missions per batch.

use questline_core::batch::ActiveMissions;
use questline_core::id::TenantId;
use questline_core::mission::CompiledMission;
use questline_store::{Result, Store};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The active missions of one tenant at one revision.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub revision: i64,
    active: ActiveMissions,
}

impl Snapshot {
    pub fn new(revision: i64, missions: impl IntoIterator<Item = Arc<CompiledMission>>) -> Self {
        Snapshot { revision, active: ActiveMissions::new(missions) }
    }

    /// The missions, indexed by the event types they listen to.
    pub fn active(&self) -> &ActiveMissions {
        &self.active
    }
}

pub struct MissionIndex {
    store: Arc<dyn Store>,
    snapshots: RwLock<HashMap<TenantId, Arc<Snapshot>>>,
}

impl MissionIndex {
    pub fn new(store: Arc<dyn Store>) -> Self {
        MissionIndex { store, snapshots: RwLock::new(HashMap::new()) }
    }

    /// The tenant's active missions as of `revision`, reloading them if the cached snapshot
    /// is older.
    pub async fn at(&self, tenant: &TenantId, revision: i64) -> Result<Arc<Snapshot>> {
        if let Some(s) = self.cached(tenant).filter(|s| s.revision == revision) {
            return Ok(s);
        }
        let missions = self.store.active_missions(tenant).await?;
        let compiled = missions.iter().filter_map(|m| match CompiledMission::for_mission(m) {
            Ok(c) => Some(c),
            Err(e) => {
                // Stored missions were valid when written; a failure here means the rules
                // tightened since. Skip it loudly rather than stop all ingest.
                tracing::error!(mission = %m.id, error = %e, "stored active mission no longer compiles; skipped");
                None
            }
        });
        let snapshot = Arc::new(Snapshot::new(revision, compiled));
        self.snapshots.write().unwrap_or_else(|e| e.into_inner()).insert(tenant.clone(), snapshot.clone());
        Ok(snapshot)
    }

    /// The snapshot at the tenant's current revision.
    pub async fn current(&self, tenant: &TenantId) -> Result<Arc<Snapshot>> {
        let revision = self.store.missions_revision(tenant).await?;
        self.at(tenant, revision).await
    }

    fn cached(&self, tenant: &TenantId) -> Option<Arc<Snapshot>> {
        self.snapshots.read().unwrap_or_else(|e| e.into_inner()).get(tenant).cloned()
    }
}
