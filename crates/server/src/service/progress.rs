//! What users have achieved: progress per mission and rewards, rendered for readers.

use crate::error::{ApiError, ApiResult};
use jiff::Timestamp;
use questline_core::mission::CompiledMission;
use questline_core::progress::ProgressView;
use questline_core::reward::Reward;
use questline_store::Store;
use std::collections::BTreeMap;

/// The user's progress in every mission they have progress in, plus every active mission
/// they have not started (`not_started`), ordered by mission id.
pub async fn user_missions(
    store: &dyn Store,
    tenant: &str,
    user: &str,
    now: Timestamp,
) -> ApiResult<Vec<ProgressView>> {
    let rows = store.user_progress(tenant, user, None).await?;
    let mut views = BTreeMap::new();
    for row in rows {
        // Missions deleted or no longer compiling are left out rather than failing the list.
        let Some(mission) = store.get_mission(tenant, &row.mission_id).await? else { continue };
        let Ok(compiled) = CompiledMission::compile(&mission.id, &mission.spec) else { continue };
        let view = ProgressView::new(&compiled, user, Some(&row.state), Some(row.updated_at), now);
        views.insert(mission.id, view);
    }
    for mission in store.active_missions(tenant).await? {
        if views.contains_key(&mission.id) {
            continue;
        }
        if let Ok(compiled) = CompiledMission::compile(&mission.id, &mission.spec) {
            views.insert(mission.id, ProgressView::new(&compiled, user, None, None, now));
        }
    }
    Ok(views.into_values().collect())
}

/// The user's progress in one mission; `not_started` for an existing mission without any.
pub async fn user_mission(
    store: &dyn Store,
    tenant: &str,
    user: &str,
    mission_id: &str,
    now: Timestamp,
) -> ApiResult<ProgressView> {
    let mission = store
        .get_mission(tenant, mission_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no mission {mission_id:?}")))?;
    let compiled = CompiledMission::compile(&mission.id, &mission.spec).map_err(ApiError::internal)?;
    let row = store.user_progress(tenant, user, Some(mission_id)).await?.into_iter().next();
    Ok(ProgressView::new(&compiled, user, row.as_ref().map(|r| &r.state), row.as_ref().map(|r| r.updated_at), now))
}

pub async fn user_rewards(store: &dyn Store, tenant: &str, user: &str) -> ApiResult<Vec<Reward>> {
    Ok(store.user_rewards(tenant, user).await?)
}
