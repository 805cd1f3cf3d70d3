//! Placeholder: the index of active missions (owned by the lead).
pub struct MissionIndex;
