//! Mission lifecycle: create, change (JSON merge patch), delete drafts, and simulate.
//!
//! Rules here, not in handlers or SQL: which status changes are allowed, that the rules of a
//! mission that has been active are immutable, which fields are read-only.

use crate::parse::pointer_of;
use crate::{Result, Service, ServiceError};
use jiff::Timestamp;
use questline_core::budget;
use questline_core::event::Event;
use questline_core::id::{MissionId, TenantId};
use questline_core::mission::compile::is_valid_mission_id;
use questline_core::mission::{CompiledMission, Mission, MissionSpec, MissionStatus};
use questline_core::net::net_events;
use questline_core::pointer::{FieldError, ValidationErrors};
use questline_core::progress::{Completion, ProgressView, replay};
use questline_store::Page;
use questline_store::StoreError;
use serde_json::{Map, Value};

/// Fields only the service writes.
const READ_ONLY: [&str; 5] = ["rewards_granted", "activated_at", "active_periods", "created_at", "updated_at"];
/// Fields that make up a mission's rules: immutable once it has been active.
const RULES: [&str; 3] = ["steps", "window", "sequential"];

/// What given events alone would do for one user; writes nothing.
#[derive(Debug, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Simulation {
    pub progress: ProgressView,
    /// Each completion the events cause, in order, with the reward it would earn.
    pub completions: Vec<SimulatedCompletion>,
    /// Event ids that the simulation ignored as duplicates.
    pub duplicates: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SimulatedCompletion {
    pub ordinal: u32,
    pub at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>))]
    pub reward_amount: Option<rust_decimal::Decimal>,
}

impl Service {
    /// Creates a mission from its JSON definition (a draft unless `status` says active); the
    /// id is generated when absent.
    pub async fn create_mission(&self, tenant: &TenantId, body: Value) -> Result<Mission> {
        let now = self.clock.now();
        let Value::Object(mut obj) = body else {
            return Err(ServiceError::invalid("", "a mission must be a JSON object"));
        };
        let mut errors = Vec::new();
        for field in READ_ONLY {
            if obj.contains_key(field) {
                errors.push(FieldError::new(format!("/{field}"), "read-only: set by the service"));
            }
        }
        let id = match obj.remove("id") {
            None | Some(Value::Null) => uuid::Uuid::now_v7().simple().to_string(),
            Some(Value::String(id)) if is_valid_mission_id(&id) => id,
            Some(_) => {
                errors.push(FieldError::new("/id", "must match [a-z0-9_-]{1,64}"));
                String::new()
            }
        };
        let status = match obj.remove("status") {
            None | Some(Value::Null) => MissionStatus::Draft,
            Some(v) => parse_status(&v).unwrap_or_else(|e| {
                errors.push(e);
                MissionStatus::Draft
            }),
        };
        if status == MissionStatus::Paused || status == MissionStatus::Ended {
            errors.push(FieldError::new("/status", "a new mission is draft or active"));
        }
        if !errors.is_empty() {
            return Err(ValidationErrors(errors).into());
        }
        let spec = parse_spec(obj)?;
        CompiledMission::compile(&id, &spec)?;
        self.messages.check_notifications(&spec)?;
        let mut mission = Mission {
            id,
            status: MissionStatus::Draft,
            spec,
            rewards_granted: 0,
            activated_at: None,
            active_periods: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        mission.set_status(status, now);
        let mut unit = self.store.begin().await?;
        match unit.insert_mission(tenant, &mission).await {
            Err(StoreError::Conflict(_)) => return Err(ServiceError::MissionIdTaken(mission.id)),
            other => other?,
        }
        unit.commit().await?;
        tracing::info!(mission = %mission.id, status = mission.status.as_str(), "mission created");
        Ok(mission)
    }

    pub async fn mission(&self, tenant: &TenantId, id: &MissionId) -> Result<Mission> {
        if !questline_core::id::storable(id.as_str()) {
            return Err(ServiceError::MissionNotFound(id.to_string()));
        }
        self.store.get_mission(tenant, id).await?.ok_or_else(|| ServiceError::MissionNotFound(id.to_string()))
    }

    /// One page of the tenant's missions, by id, optionally of one status.
    pub async fn list_missions(
        &self,
        tenant: &TenantId,
        status: Option<MissionStatus>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<Mission>> {
        Ok(self.store.list_missions(tenant, status, after, limit).await?)
    }

    /// Applies a JSON merge patch (RFC 7386) to a mission.
    pub async fn patch_mission(&self, tenant: &TenantId, id: &MissionId, patch: Value) -> Result<Mission> {
        let now = self.clock.now();
        if !patch.is_object() {
            return Err(ServiceError::invalid("", "a merge patch must be a JSON object"));
        }
        let current = self.mission(tenant, id).await?;
        let before = serde_json::to_value(&current).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let mut after = before.clone();
        merge_patch(&mut after, &patch);
        // In a merge patch `null` deletes, but `repeat.max_completions: null` means "unlimited":
        // keep it as a value rather than letting the default (1) come back.
        if patch.pointer("/repeat/max_completions").is_some_and(Value::is_null) {
            after["repeat"]["max_completions"] = Value::Null;
        }
        let Value::Object(mut obj) = after else { unreachable!("patching an object yields an object") };

        let mut errors = Vec::new();
        for field in READ_ONLY.iter().chain(&["id"]) {
            if obj.get(*field) != before.get(*field) {
                errors.push(FieldError::new(format!("/{field}"), "read-only"));
            }
        }
        let status = parse_status(obj.get("status").unwrap_or(&Value::Null)).unwrap_or_else(|e| {
            errors.push(e);
            current.status
        });
        if !errors.is_empty() {
            return Err(ValidationErrors(errors).into());
        }
        check_transition(current.status, status)?;
        if current.activated_at.is_some()
            && let Some(field) = RULES.iter().find(|f| obj.get(**f) != before.get(**f))
        {
            return Err(ServiceError::RulesImmutable { field });
        }
        for field in READ_ONLY.iter().chain(&["id", "status"]) {
            obj.remove(*field);
        }
        let spec = parse_spec(obj)?;
        CompiledMission::compile(id.as_str(), &spec)?;
        self.messages.check_notifications(&spec)?;
        // A budget lowered to what is already granted is spent: the mission ends, as it would
        // have on its last grant.
        let spent = budget::is_spent(current.rewards_granted, spec.budget.as_ref().map(|b| b.max_rewards));
        let status = if spent && status != MissionStatus::Draft { MissionStatus::Ended } else { status };
        let now = now.max(current.updated_at + jiff::SignedDuration::from_micros(1));
        // A mission its budget ended has an open period closed only by its `updated_at`:
        // close it for good before this edit moves `updated_at`, or the edit would reopen it
        // for everything received in between.
        let active_periods = current.effective_periods();
        let mut mission = Mission { spec, updated_at: now, active_periods, ..current.clone() };
        mission.set_status(status, now);
        let mut unit = self.store.begin().await?;
        if !unit.update_mission(tenant, &mission, current.updated_at).await? {
            return Err(ServiceError::StaleWrite);
        }
        unit.commit().await?;
        tracing::info!(mission = %id, status = mission.status.as_str(), "mission updated");
        Ok(mission)
    }

    /// Deletes a draft; other missions are ended with a patch instead.
    pub async fn delete_mission(&self, tenant: &TenantId, id: &MissionId) -> Result<()> {
        let mission = self.mission(tenant, id).await?;
        if mission.status != MissionStatus::Draft {
            return Err(ServiceError::NotADraft);
        }
        let mut unit = self.store.begin().await?;
        // Activated since it was read: no longer a draft.
        if !unit.delete_draft_mission(tenant, id).await? {
            return Err(ServiceError::NotADraft);
        }
        unit.commit().await?;
        Ok(())
    }

    /// What given events alone would do for one user; writes nothing.
    pub async fn simulate(&self, tenant: &TenantId, id: &MissionId, body: Value) -> Result<Simulation> {
        let now = self.clock.now();
        let mission = self.mission(tenant, id).await?;
        let compiled = CompiledMission::compile(&mission.id, &mission.spec)?;
        let Some(Value::Array(raw)) = body.get("events") else {
            return Err(ServiceError::invalid("/events", "required: an array of events"));
        };
        if raw.is_empty() || raw.len() > crate::ingest::MAX_BATCH {
            let detail = format!("must hold 1 to {} events, got {}", crate::ingest::MAX_BATCH, raw.len());
            return Err(ServiceError::invalid("/events", detail));
        }
        let mut events = Vec::with_capacity(raw.len());
        let mut errors = Vec::new();
        for (i, v) in raw.iter().enumerate() {
            match Event::parse(v, now) {
                Ok(e) => events.push(e),
                Err(e) => errors.push(FieldError::new(format!("/events/{i}{}", e.pointer), e.detail)),
            }
        }
        if !errors.is_empty() {
            return Err(ValidationErrors(errors).into());
        }
        let users: std::collections::BTreeSet<&str> = events.iter().map(|e| e.user_id()).collect();
        if users.len() > 1 {
            return Err(ServiceError::invalid(
                "/events",
                "simulate one user at a time: the events name several user_ids",
            ));
        }
        let user = users.first().copied().unwrap_or("simulated").to_owned();
        let mut seen = std::collections::HashSet::new();
        let mut duplicates = Vec::new();
        events.retain(|e| {
            seen.insert(e.id().to_owned()) || {
                duplicates.push(e.id().to_owned());
                false
            }
        });
        let (originals, reversals): (Vec<Event>, Vec<Event>) = events.into_iter().partition(|e| e.reverses().is_none());
        let (state, completions) = replay(&compiled, net_events(&originals, &reversals));
        let updated_at = state.last_counted_at;
        Ok(Simulation {
            progress: ProgressView::new(&compiled, &user, Some(&state), updated_at, now),
            completions: completions
                .into_iter()
                .map(|Completion { ordinal, at, reward_amount }| SimulatedCompletion { ordinal, at, reward_amount })
                .collect(),
            duplicates,
        })
    }
}

/// Parses the rule fields of a mission, naming the JSON pointer of the first structural
/// problem (unknown field, wrong type, missing field).
fn parse_spec(obj: Map<String, Value>) -> Result<MissionSpec> {
    let value = Value::Object(obj);
    serde_path_to_error::deserialize::<_, MissionSpec>(&value)
        .map_err(|e| ServiceError::invalid(pointer_of(e.path()), e.inner().to_string()))
}

fn parse_status(v: &Value) -> Result<MissionStatus, FieldError> {
    v.as_str()
        .and_then(MissionStatus::parse)
        .ok_or_else(|| FieldError::new("/status", "must be one of draft, active, paused, ended"))
}

fn check_transition(from: MissionStatus, to: MissionStatus) -> Result<()> {
    use MissionStatus::*;
    match (from, to) {
        (a, b) if a == b => Ok(()),
        (Ended, _) | (_, Draft) => Err(ServiceError::InvalidTransition { from, to }),
        _ => Ok(()),
    }
}

/// RFC 7386: objects merge recursively, `null` removes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else { return };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut doc, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}}));
    }

    #[test]
    fn status_transitions() {
        use MissionStatus::*;
        assert!(check_transition(Draft, Active).is_ok());
        assert!(check_transition(Active, Paused).is_ok());
        assert!(check_transition(Paused, Ended).is_ok());
        assert!(check_transition(Ended, Active).is_err());
        assert!(check_transition(Active, Draft).is_err());
    }
}
