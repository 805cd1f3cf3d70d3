//! What users have achieved: progress per mission and rewards, rendered for readers.

use crate::{Result, Service, ServiceError};
use questline_core::id::{MissionId, TenantId, UserId};
use questline_core::mission::CompiledMission;
use questline_core::progress::ProgressView;
use questline_core::reward::Reward;
use std::collections::BTreeMap;

impl Service {
    /// The user's progress in every mission they have progress in, plus every active mission
    /// they have not started (`not_started`), ordered by mission id.
    pub async fn user_missions(&self, tenant: &TenantId, user: &UserId) -> Result<Vec<ProgressView>> {
        let now = self.clock.now();
        let rows = if questline_core::id::storable(user.as_str()) {
            self.store.user_progress(tenant, user, None).await?
        } else {
            Vec::new()
        };
        let mut views = BTreeMap::new();
        for row in rows {
            // Missions deleted or no longer compiling are left out rather than failing the list.
            let Some(mission) = self.store.get_mission(tenant, &row.mission_id).await? else { continue };
            let Ok(compiled) = CompiledMission::compile(&mission.id, &mission.spec) else { continue };
            let view = ProgressView::new(&compiled, user.as_str(), Some(&row.state), Some(row.updated_at), now);
            views.insert(mission.id, view);
        }
        for mission in self.store.active_missions(tenant).await? {
            if views.contains_key(&mission.id) {
                continue;
            }
            if let Ok(compiled) = CompiledMission::compile(&mission.id, &mission.spec) {
                views.insert(mission.id, ProgressView::new(&compiled, user.as_str(), None, None, now));
            }
        }
        Ok(views.into_values().collect())
    }

    /// The user's progress in one mission; `not_started` for an existing mission without any.
    pub async fn user_mission(&self, tenant: &TenantId, user: &UserId, mission_id: &MissionId) -> Result<ProgressView> {
        let now = self.clock.now();
        let mission = self.mission(tenant, mission_id).await?;
        let compiled = CompiledMission::compile(&mission.id, &mission.spec)
            .map_err(|e| ServiceError::Internal(format!("stored mission {mission_id:?} does not compile: {e}")))?;
        let row = if questline_core::id::storable(user.as_str()) {
            self.store.user_progress(tenant, user, Some(mission_id)).await?.into_iter().next()
        } else {
            None
        };
        Ok(ProgressView::new(
            &compiled,
            user.as_str(),
            row.as_ref().map(|r| &r.state),
            row.as_ref().map(|r| r.updated_at),
            now,
        ))
    }

    /// The user's rewards, newest first.
    pub async fn user_rewards(&self, tenant: &TenantId, user: &UserId) -> Result<Vec<Reward>> {
        if !questline_core::id::storable(user.as_str()) {
            return Ok(Vec::new());
        }
        Ok(self.store.user_rewards(tenant, user).await?)
    }
}
