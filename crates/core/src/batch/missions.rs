//! The active missions of a tenant, compiled once and indexed by the event types they
//! listen to: the engine's view of "which missions does this event concern".

use crate::id::MissionId;
use crate::mission::CompiledMission;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The missions that count new events now. A mission missing here (draft, paused, ended)
/// folds nothing new; a reversal may still take back what it counted (see
/// [`super::InactiveProgress`]).
#[derive(Debug, Clone, Default)]
pub struct ActiveMissions {
    by_id: BTreeMap<MissionId, Arc<CompiledMission>>,
    /// Per event type, the missions with a step listening to it, in mission-id order.
    by_type: BTreeMap<String, Vec<Arc<CompiledMission>>>,
}

impl ActiveMissions {
    /// Indexes `missions`; of two with the same id, the last one given stays.
    pub fn new(missions: impl IntoIterator<Item = Arc<CompiledMission>>) -> Self {
        let by_id: BTreeMap<MissionId, Arc<CompiledMission>> =
            missions.into_iter().map(|m| (MissionId::new(m.id()), m)).collect();
        let mut by_type: BTreeMap<String, Vec<Arc<CompiledMission>>> = BTreeMap::new();
        for m in by_id.values() {
            for t in m.event_types() {
                by_type.entry(t.clone()).or_default().push(m.clone());
            }
        }
        ActiveMissions { by_id, by_type }
    }

    /// The active missions with a step listening to `event_type`, in mission-id order.
    pub fn for_type(&self, event_type: &str) -> &[Arc<CompiledMission>] {
        self.by_type.get(event_type).map_or(&[], Vec::as_slice)
    }

    /// The active missions listening to any of `types` (a mission may appear more than once).
    pub fn for_type_any<'a>(&'a self, types: &'a BTreeSet<String>) -> impl Iterator<Item = &'a Arc<CompiledMission>> {
        types.iter().flat_map(|t| self.for_type(t))
    }

    /// Every event type some active mission listens to, sorted.
    pub fn event_types(&self) -> impl Iterator<Item = &str> {
        self.by_type.keys().map(String::as_str)
    }

    pub fn listens_to(&self, event_type: &str) -> bool {
        self.by_type.contains_key(event_type)
    }

    pub fn get(&self, mission_id: &str) -> Option<&Arc<CompiledMission>> {
        self.by_id.get(mission_id)
    }

    pub fn contains(&self, mission_id: &str) -> bool {
        self.by_id.contains_key(mission_id)
    }

    /// Every active mission, in mission-id order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<CompiledMission>> {
        self.by_id.values()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}
