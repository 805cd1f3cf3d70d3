//! Notifications a mission declares, from the decision that makes one due to the message
//! the user receives.
//!
//! Two steps, so that ingest stays fast and nothing is lost:
//!
//! 1. **Due**, in the unit of work that makes it true: the batch that crosses a milestone,
//!    completes a mission or opens a window (`ingest/apply.rs`), the settlement that grants
//!    a reward (`wallet.rs`, `webhooks.rs`). Each becomes a [`NoticeDue`] and one
//!    `notice.send` job ([`crate::notify::UnitJobs::enqueue_notices`]), committed with the
//!    progress or reward it is about: never sent for a rolled-back batch, never lost for a
//!    committed one. A window's notice is due `before` its end.
//! 2. **Sent**, by the worker ([`Service::send_notice`]): the user's contact and preferences
//!    are read as they are then. An opted-out notice, or one for a user with no address on
//!    its channel, is skipped (counted, with the reason); one in the user's quiet hours is
//!    held until they end (the job snoozes, no attempt spent); a window that was completed
//!    or closed meanwhile has nothing to warn of. Otherwise the template is rendered with the
//!    user's data and the message queued with its send job ([`Service::send_messages`]'s
//!    path), under an id fixed by the notice, so a notice re-run is queued once.

use crate::notify::{WrittenRows, stable_digest};
use crate::{Result, Service, ServiceError};
use jiff::{Timestamp, tz::TimeZone};
use questline_core::batch::{Effect, NewCompletion};
use questline_core::id::{MissionId, TenantId, UserId};
use questline_core::mission::notice::{Notice, Trigger};
use questline_core::mission::window::Bounds;
use questline_core::mission::{CompiledMission, MissionStatus};
use questline_core::progress::ProgressView;
use questline_core::reward::Reward;
use questline_store::UnitOfWork;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// A notification due for one user: what its `notice.send` job carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoticeDue {
    /// The message's id: fixed by the mission, the user, the notice and what it is about, so
    /// a notice due twice (a batch re-run, a milestone crossed again) is sent once.
    pub id: String,
    pub mission_id: String,
    pub user_id: String,
    /// Its index in the mission's `notifications`.
    pub notice: usize,
    /// A window's notice: the window it warns of (checked still open when it is sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Bounds>,
    /// A window's notice: the user's completions when it opened (a completion since means
    /// there is nothing to warn of).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completions: Option<u32>,
    /// The template's data as the unit committed it (`progress`, `reward`, `percent`).
    pub data: Value,
    /// When the job runs (a window's notice: `before` its end).
    pub run_at: Timestamp,
}

/// What became of a notice the worker ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeOutcome {
    /// Its message is queued (now, or by an earlier run), under this id.
    Queued(String),
    /// Quiet hours: run it again then.
    HeldUntil(Timestamp),
    /// Not sent, for this reason (`opted_out`, `no_address`, …): final.
    Skipped(&'static str),
}

impl NoticeDue {
    /// `about`: what makes this notice due, unique among its user's notices of `notice`
    /// (the completion, the milestone's attempt and window, the reward, the window).
    fn new(
        tenant: &TenantId,
        (mission, notice): (&CompiledMission, &Notice),
        user: &str,
        about: &str,
        data: Value,
        run_at: Timestamp,
    ) -> Self {
        let digest = stable_digest(&[tenant.as_str(), mission.id(), user, &notice.index.to_string(), about], &[]);
        NoticeDue {
            id: format!("ntf_{digest}"),
            mission_id: mission.id().to_owned(),
            user_id: user.to_owned(),
            notice: notice.index,
            window: None,
            completions: None,
            data,
            run_at,
        }
    }
}

/// The notices a batch makes due: completions, milestones crossed, windows opened, in the
/// missions that declare them. `rows`: the users' progress as the batch wrote it.
pub(crate) fn of_batch(
    tenant: &TenantId,
    missions: &questline_core::batch::ActiveMissions,
    completions: &[NewCompletion],
    effects: &[Effect],
    rows: &WrittenRows<'_>,
) -> Vec<NoticeDue> {
    let now = rows.now();
    let mut due = Vec::new();
    for c in completions {
        let Some(mission) = missions.get(c.mission_id.as_str()) else { continue };
        for notice in mission.notices().iter().filter(|n| matches!(n.trigger, Trigger::Completed)) {
            let data = json!({"progress": rows.view(mission, &c.user_id), "completion": c.ordinal});
            let about = format!("completed:{}", c.ordinal);
            due.push(NoticeDue::new(tenant, (mission, notice), c.user_id.as_str(), &about, data, now));
        }
    }
    for effect in effects {
        match effect {
            Effect::MilestoneReached { mission_id, user_id, attempt, window, percent } => {
                let Some(mission) = missions.get(mission_id.as_str()) else { continue };
                let notices = mission.notices().iter();
                for notice in notices.filter(|n| matches!(n.trigger, Trigger::Progress(p) if p == *percent)) {
                    let start = window.map(|w| w.starts_at.to_string()).unwrap_or_default();
                    let about = format!("progress:{percent}:{attempt}:{start}");
                    let data = json!({"progress": rows.view(mission, user_id), "percent": percent});
                    due.push(NoticeDue::new(tenant, (mission, notice), user_id.as_str(), &about, data, now));
                }
            }
            Effect::WindowOpened { mission_id, user_id, window } => {
                let Some(mission) = missions.get(mission_id.as_str()) else { continue };
                for notice in mission.notices() {
                    let Trigger::WindowLapsing(before) = notice.trigger else { continue };
                    if window.ends_at <= now {
                        continue; // a late event opened a window already over
                    }
                    let warn_at = window.ends_at.to_zoned(TimeZone::UTC).checked_sub(before).map(|z| z.timestamp());
                    let about = format!("window:{}", window.starts_at);
                    // The data is read when it is sent: the progress then, and the window's end.
                    let run_at = warn_at.unwrap_or(now).max(now);
                    let mut d = NoticeDue::new(tenant, (mission, notice), user_id.as_str(), &about, json!({}), run_at);
                    d.window = Some(*window);
                    d.completions = Some(rows.state(mission_id, user_id).map_or(0, |m| m.state.completions));
                    due.push(d);
                }
            }
            Effect::MissionCompleted { .. } => {} // announced from `completions`, with the progress
        }
    }
    due
}

/// The `reward_granted` notices of rewards a unit granted, read with their missions in it.
pub(crate) async fn of_rewards(
    unit: &mut dyn UnitOfWork,
    tenant: &TenantId,
    granted: &[&Reward],
    now: Timestamp,
) -> questline_store::Result<Vec<NoticeDue>> {
    let mut missions: BTreeMap<&str, Option<std::sync::Arc<CompiledMission>>> = BTreeMap::new();
    let mut due = Vec::new();
    for reward in granted {
        if !missions.contains_key(reward.mission_id.as_str()) {
            let stored = unit.get_mission(tenant, &MissionId::new(reward.mission_id.as_str())).await?;
            let compiled = stored.and_then(|m| CompiledMission::for_mission(&m).ok());
            missions.insert(reward.mission_id.as_str(), compiled);
        }
        let Some(Some(mission)) = missions.get(reward.mission_id.as_str()) else { continue };
        for notice in mission.notices().iter().filter(|n| matches!(n.trigger, Trigger::RewardGranted)) {
            let about = format!("reward:{}", reward.id);
            due.push(NoticeDue::new(
                tenant,
                (mission, notice),
                &reward.user_id,
                &about,
                json!({"reward": reward}),
                now,
            ));
        }
    }
    Ok(due)
}

impl Service {
    /// Sends a notice that is due, as the user's contact and preferences stand now: queues
    /// its message, holds it through quiet hours, or skips it (see the module's docs).
    pub async fn send_notice(&self, tenant: &TenantId, due: &NoticeDue) -> Result<NoticeOutcome> {
        let outcome = self.decide_notice(tenant, due).await?;
        let label = match &outcome {
            NoticeOutcome::Queued(_) => "queued",
            NoticeOutcome::HeldUntil(_) => "held",
            NoticeOutcome::Skipped(reason) => reason,
        };
        metrics::counter!("questline_notices_total", "outcome" => label).increment(1);
        Ok(outcome)
    }

    async fn decide_notice(&self, tenant: &TenantId, due: &NoticeDue) -> Result<NoticeOutcome> {
        let now = self.clock.now();
        let mission_id = MissionId::new(due.mission_id.as_str());
        let Some(mission) = self.store.get_mission(tenant, &mission_id).await? else {
            return Ok(NoticeOutcome::Skipped("mission_deleted"));
        };
        let compiled = CompiledMission::for_mission(&mission)
            .map_err(|e| ServiceError::Internal(format!("stored mission {:?} does not compile: {e}", mission.id)))?;
        // The notice as the mission declares it now: a product team may have changed it.
        let Some(notice) = compiled.notices().get(due.notice) else {
            return Ok(NoticeOutcome::Skipped("notice_removed"));
        };
        let contact = self.store.contact(tenant, &due.user_id).await?.unwrap_or_default();
        if !contact.preferences.allows(notice.channel, &mission.id) {
            return Ok(NoticeOutcome::Skipped("opted_out"));
        }
        let Some(to) = contact.points.address(notice.channel) else {
            return Ok(NoticeOutcome::Skipped("no_address"));
        };
        let mut data = due.data.clone();
        if let Some(window) = due.window {
            // Nothing to warn of once the window was completed, closed, or the mission ended.
            let user = UserId::new(due.user_id.as_str());
            let row = self.store.user_progress(tenant, &user, Some(&mission_id)).await?.into_iter().next();
            let open = row.as_ref().is_some_and(|r| {
                r.state.window == Some(window)
                    && !r.state.period_done
                    && due.completions.is_none_or(|c| r.state.completions == c)
            });
            if !open || mission.status != MissionStatus::Active || window.ends_at <= now {
                return Ok(NoticeOutcome::Skipped("window_closed"));
            }
            let view = ProgressView::new(&compiled, &due.user_id, row.as_ref().map(|r| &r.state), None, now);
            data = json!({"progress": view, "ends_at": window.ends_at});
        }
        if let Some(quiet) = &contact.preferences.quiet_hours {
            let release = quiet.release(&contact.points.zone(), now);
            if release > now {
                return Ok(NoticeOutcome::HeldUntil(release));
            }
        }
        if let Value::Object(map) = &mut data {
            map.insert("mission".into(), json!({"id": mission.id, "name": mission.spec.name}));
        }
        let document = json!({
            "id": due.id, "channel": notice.channel, "to": to, "template": notice.template,
            "data": data, "user_id": due.user_id,
        });
        match self.send_message(tenant, &document).await {
            Ok(accepted) => Ok(NoticeOutcome::Queued(accepted.message.id)),
            // Queued by an earlier run, before the contact changed: sent once.
            Err(ServiceError::MessageIdTaken(id)) => Ok(NoticeOutcome::Queued(id)),
            Err(ServiceError::Invalid(problems)) => {
                // The template or the address no longer fits (a configuration change): an
                // error to see, not a retry that cannot succeed.
                tracing::warn!(notice = %due.id, mission = %mission.id, %problems, "a notice cannot be rendered; skipped");
                Ok(NoticeOutcome::Skipped("unrenderable"))
            }
            Err(other) => Err(other),
        }
    }
}
