//! The index of active missions: compiled once, looked up by event type.
//!
//! Every mission write bumps the tenant's `missions_revision` in the database. An ingest
//! batch reads the revision inside its transaction and asks for the snapshot at that
//! revision, so a mission activated by any process (or ended by a spent budget) is seen by
//! the next batch, without re-reading and re-compiling missions per batch.

use questline_core::mission::CompiledMission;
use questline_store::{Result, Store};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

/// The active missions of one tenant at one revision.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub revision: i64,
    by_type: HashMap<String, Vec<Arc<CompiledMission>>>,
}

impl Snapshot {
    pub fn new(revision: i64, missions: impl IntoIterator<Item = Arc<CompiledMission>>) -> Self {
        let mut by_type: HashMap<String, Vec<Arc<CompiledMission>>> = HashMap::new();
        for m in missions {
            for t in &m.event_types {
                by_type.entry(t.clone()).or_default().push(m.clone());
            }
        }
        Snapshot { revision, by_type }
    }

    /// The active missions with a step listening to `event_type`.
    pub fn for_type(&self, event_type: &str) -> &[Arc<CompiledMission>] {
        self.by_type.get(event_type).map_or(&[], Vec::as_slice)
    }

    /// Every event type some active mission listens to.
    pub fn event_types(&self) -> impl Iterator<Item = &str> {
        self.by_type.keys().map(String::as_str)
    }

    /// The active missions listening to any of `types` (a mission may appear more than once).
    pub fn for_type_any<'a>(&'a self, types: &'a BTreeSet<String>) -> impl Iterator<Item = &'a Arc<CompiledMission>> {
        types.iter().flat_map(|t| self.for_type(t))
    }

    pub fn listens_to(&self, event_type: &str) -> bool {
        self.by_type.contains_key(event_type)
    }
}

pub struct MissionIndex {
    store: Arc<dyn Store>,
    snapshots: RwLock<HashMap<String, Arc<Snapshot>>>,
}

impl MissionIndex {
    pub fn new(store: Arc<dyn Store>) -> Self {
        MissionIndex { store, snapshots: RwLock::new(HashMap::new()) }
    }

    /// The tenant's active missions as of `revision`, reloading them if the cached snapshot
    /// is older.
    pub async fn at(&self, tenant: &str, revision: i64) -> Result<Arc<Snapshot>> {
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
        self.snapshots.write().expect("index lock poisoned").insert(tenant.to_owned(), snapshot.clone());
        Ok(snapshot)
    }

    /// The snapshot at the tenant's current revision.
    pub async fn current(&self, tenant: &str) -> Result<Arc<Snapshot>> {
        let revision = self.store.missions_revision(tenant).await?;
        self.at(tenant, revision).await
    }

    fn cached(&self, tenant: &str) -> Option<Arc<Snapshot>> {
        self.snapshots.read().expect("index lock poisoned").get(tenant).cloned()
    }
}
