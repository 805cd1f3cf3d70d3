//! Applying one batch of events, exactly once, in ONE transaction.
//!
//! 1. Lock the batch's users (across processes), record the events in the ledger; an id seen
//!    before is a duplicate and does nothing.
//! 2. Find what the new events touch: each new original's user and the active missions that
//!    listen to its type; each new reversal's original (if it has arrived), whose progress
//!    must be refolded.
//! 3. Load, in one query each for the whole batch, the stored progress of every touched
//!    (mission, user) and the reversals that arrived before their originals.
//! 4. Per (mission, user): fold the new net events onto the stored state when they all sort
//!    after it; otherwise refold the user's net events from the ledger (a late event, or a
//!    reversal of something already counted). Either way the pure engine decides.
//! 5. Reconcile rewards with the completions: revoke pending ones whose completion a reversal
//!    took back; grant new ones within the budget, at the end of the batch in mission order
//!    (budget takes lock mission rows; one global order keeps concurrent batches from
//!    deadlocking).
//! 6. Save the changed progress in one statement and commit. Only then do callers hear back.

use crate::index::{MissionIndex, Snapshot};
use jiff::Timestamp;
use questline_core::event::Event;
use questline_core::mission::CompiledMission;
use questline_core::net::net_events;
use questline_core::progress::{Completion, ProgressState, fold, replay};
use questline_core::reward::{self, RewardStatus};
use questline_store::{IngestTx, Result, Store, StoreError, StoredProgress};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// How often a batch that lost a race (deadlock, serialization failure) is run again.
const ATTEMPTS: u32 = 5;

/// What a committed batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// For each event in input order: whether it was new (false: a duplicate).
    pub new: Vec<bool>,
    pub completions: usize,
    pub rewards_granted: usize,
    pub rewards_revoked: usize,
}

/// Applies `events` (already validated) for `tenant` and commits, running the batch again
/// if it lost a race with another process (the conflict rolled it back whole, so a rerun is
/// safe).
pub async fn apply_batch(
    store: &dyn Store,
    missions: &MissionIndex,
    tenant: &str,
    events: &[Event],
    now: Timestamp,
) -> Result<Applied> {
    let mut attempt = 1;
    loop {
        match apply_once(store, missions, tenant, events, now).await {
            Err(StoreError::Retryable(why)) if attempt < ATTEMPTS => {
                tracing::debug!(attempt, %why, "batch conflicted; retrying");
                metrics::counter!("questline_batch_retries_total").increment(1);
                tokio::time::sleep(std::time::Duration::from_millis(5 << attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

async fn apply_once(
    store: &dyn Store,
    missions: &MissionIndex,
    tenant: &str,
    events: &[Event],
    now: Timestamp,
) -> Result<Applied> {
    let mut tx = store.begin().await?;
    let users: BTreeSet<&str> = events.iter().map(|e| e.user_id.as_str()).collect();
    tx.lock_users(tenant, &users.into_iter().map(str::to_owned).collect::<Vec<_>>()).await?;
    let revision = tx.missions_revision(tenant).await?;
    let snapshot = missions.at(tenant, revision).await?;
    let new = tx.insert_events(tenant, events, now).await?;
    let fresh: Vec<&Event> = events.iter().zip(&new).filter(|(_, n)| **n).map(|(e, _)| e).collect();

    let mut applied = Applied { new, ..Applied::default() };
    let plan = Plan::make(&mut *tx, tenant, &snapshot, &fresh).await?;
    let mut batch =
        Batch { tx: &mut *tx, store, tenant, now, snapshot: &snapshot, applied: &mut applied, grants: Vec::new() };
    batch.run(&plan).await?;
    tx.commit().await?;
    metrics::counter!("questline_events_ingested_total").increment(fresh.len() as u64);
    metrics::counter!("questline_completions_total").increment(applied.completions as u64);
    Ok(applied)
}

/// What a batch must do, per user.
#[derive(Default)]
struct Plan<'a> {
    users: BTreeMap<&'a str, UserWork<'a>>,
}

#[derive(Default)]
struct UserWork<'a> {
    /// New originals of this user that some active mission listens to, in fold order.
    originals: Vec<&'a Event>,
    /// Event types whose counted events a new reversal changed: refold those missions.
    refold_types: BTreeSet<String>,
}

impl<'a> Plan<'a> {
    async fn make(tx: &mut dyn IngestTx, tenant: &str, snapshot: &Snapshot, fresh: &[&'a Event]) -> Result<Plan<'a>> {
        let mut plan = Plan::default();
        for e in fresh.iter().filter(|e| e.reverses.is_none() && snapshot.listens_to(&e.event_type)) {
            plan.users.entry(e.user_id.as_str()).or_default().originals.push(e);
        }
        for w in plan.users.values_mut() {
            w.originals.sort_by(|a, b| (a.occurred_at, &a.id).cmp(&(b.occurred_at, &b.id)));
        }
        let targets: Vec<String> = fresh.iter().filter_map(|e| e.reverses.clone()).collect();
        if targets.is_empty() {
            return Ok(plan);
        }
        // A reversal whose original has arrived (earlier, or in this batch) changes what the
        // original counts for; one that arrives first waits in the ledger for it.
        let fresh_ids: BTreeSet<&str> = fresh.iter().map(|e| e.id.as_str()).collect();
        // Every user that sent a reversal of each target (a stray reversal by someone else
        // must not hide the real one).
        let mut reversal_users: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        for e in fresh {
            if let Some(target) = e.reverses.as_deref() {
                reversal_users.entry(target).or_default().insert(e.user_id.as_str());
            }
        }
        for original in tx.events_by_id(tenant, &targets).await? {
            // An original in this batch gets its net form when it is folded; one counted
            // earlier must be taken back by a refold.
            // (Missions that are no longer active may have counted it too: the type is
            // recorded whatever the snapshot listens to.)
            if original.reverses.is_some() || fresh_ids.contains(original.id.as_str()) {
                continue;
            }
            // A reversal applies to its own user's original only (see `net_events`); that
            // user is also one this batch locked.
            let owner = original.user_id.as_str();
            let Some(user) = reversal_users.get(original.id.as_str()).and_then(|users| users.get(owner)).copied()
            else {
                tracing::warn!(original = %original.id, "a reversal names another user than its original; ignored");
                continue;
            };
            plan.users.entry(user).or_default().refold_types.insert(original.event_type);
        }
        Ok(plan)
    }
}

struct Batch<'t, 's> {
    tx: &'t mut dyn IngestTx,
    /// For reads outside the transaction that the batch's user locks keep consistent.
    store: &'t dyn Store,
    tenant: &'t str,
    now: Timestamp,
    snapshot: &'s Snapshot,
    applied: &'t mut Applied,
    /// Rewards earned in this batch, granted at its end (see [`Batch::grant`]).
    grants: Vec<reward::Reward>,
}

impl Batch<'_, '_> {
    async fn run(&mut self, plan: &Plan<'_>) -> Result<()> {
        // Every (mission, user) the batch touches, and their stored progress in one query.
        let mut touched: Vec<(&Arc<CompiledMission>, &str, &UserWork)> = Vec::new();
        for (user, work) in &plan.users {
            let mut missions: BTreeMap<&str, &Arc<CompiledMission>> = BTreeMap::new();
            let types = work
                .originals
                .iter()
                .map(|e| e.event_type.as_str())
                .chain(work.refold_types.iter().map(String::as_str));
            for t in types {
                for m in self.snapshot.for_type(t) {
                    missions.insert(&m.id, m);
                }
            }
            touched.extend(missions.into_values().map(|m| (m, *user, work)));
        }
        let keys: Vec<(String, String)> = touched.iter().map(|(m, u, _)| (m.id.clone(), u.to_string())).collect();
        let mut stored: HashMap<(String, String), ProgressState> = self
            .tx
            .load_progress(self.tenant, &keys)
            .await?
            .into_iter()
            .map(|p| ((p.mission_id, p.user_id), p.state))
            .collect();
        // Reversals that arrived before these originals, in one query.
        let ids: Vec<String> = plan.users.values().flat_map(|w| w.originals.iter().map(|e| e.id.clone())).collect();
        let early_reversals = self.tx.reversals_of(self.tenant, &ids).await?;

        let mut ledgers: HashMap<&str, (Vec<Event>, Vec<Event>)> = HashMap::new();
        let mut changed = Vec::new();
        for (mission, user, work) in touched {
            let before = stored.remove(&(mission.id.clone(), user.to_owned()));
            let state = before.clone().unwrap_or_else(|| ProgressState::new(mission));
            let mine: Vec<&Event> =
                work.originals.iter().copied().filter(|e| mission.event_types.contains(&e.event_type)).collect();
            let must_refold = mission.event_types.iter().any(|t| work.refold_types.contains(t))
                || mine.first().is_some_and(|e| !state.can_append(e));
            let (state, completions) = if must_refold {
                if !ledgers.contains_key(user) {
                    let ledger = self.user_ledger(user).await?;
                    ledgers.insert(user, ledger);
                }
                let (originals, reversals) = &ledgers[user];
                replay(mission, &net_events(originals.iter(), reversals))
            } else {
                let mut state = state;
                let net = net_events(mine.iter().copied(), &early_reversals);
                let completions = fold(mission, &mut state, &net);
                (state, completions)
            };
            self.reconcile_rewards(mission, user, &state, &completions, must_refold, true).await?;
            // A user none of whose events counted gets no row: `not_started` needs none.
            let untouched = match &before {
                Some(b) => *b == state,
                None => state == ProgressState::new(mission),
            };
            if !untouched {
                changed.push(StoredProgress {
                    mission_id: mission.id.clone(),
                    user_id: user.to_owned(),
                    state,
                    updated_at: self.now,
                });
            }
        }
        for (user, work) in &plan.users {
            if !work.refold_types.is_empty() {
                changed.extend(self.refold_inactive(user, &work.refold_types).await?);
            }
        }
        self.tx.save_progress(self.tenant, &changed).await?;
        self.grant().await
    }

    /// Takes the budget for every reward the batch earned, in mission order, and records
    /// those it could take. A budget take locks the mission's row until commit; taking them
    /// in one global order means two concurrent batches never wait on each other in a cycle.
    async fn grant(&mut self) -> Result<()> {
        let mut grants = std::mem::take(&mut self.grants);
        grants
            .sort_by(|a, b| (&a.mission_id, &a.user_id, a.completion).cmp(&(&b.mission_id, &b.user_id, b.completion)));
        for r in grants {
            if self.tx.take_budget(self.tenant, &r.mission_id, self.now).await? {
                self.tx.insert_reward(self.tenant, &r).await?;
                self.applied.rewards_granted += 1;
            }
        }
        Ok(())
    }

    /// A reversal also takes back what a mission that has since been paused or ended
    /// counted: refold the user's progress in those missions from the events received while
    /// each was active. Such a mission grants nothing any more, but it revokes.
    async fn refold_inactive(&mut self, user: &str, types: &BTreeSet<String>) -> Result<Vec<StoredProgress>> {
        let mut changed = Vec::new();
        for row in self.store.user_progress(self.tenant, user, None).await? {
            if self.snapshot.for_type_any(types).any(|m| m.id == row.mission_id) {
                continue; // active: refolded above
            }
            let Some(mission) = self.store.get_mission(self.tenant, &row.mission_id).await? else { continue };
            if !mission.spec.steps.iter().any(|s| types.contains(&s.event_type)) {
                continue;
            }
            let Ok(compiled) = CompiledMission::for_mission(&mission) else { continue };
            let originals = self.tx.user_originals(self.tenant, user, &compiled.event_types).await?;
            let ids: Vec<String> = originals.iter().map(|e| e.id.clone()).collect();
            let reversals = self.tx.reversals_of(self.tenant, &ids).await?;
            let (state, completions) = replay(&compiled, &net_events(originals.iter(), &reversals));
            self.reconcile_rewards(&compiled, user, &state, &completions, true, false).await?;
            if state != row.state {
                changed.push(StoredProgress {
                    mission_id: row.mission_id,
                    user_id: user.to_owned(),
                    state,
                    updated_at: self.now,
                });
            }
        }
        Ok(changed)
    }

    /// All of the user's originals of every type the active missions listen to, with their
    /// reversals: the input of a refold. Loaded at most once per user and batch.
    async fn user_ledger(&mut self, user: &str) -> Result<(Vec<Event>, Vec<Event>)> {
        let types: Vec<String> = self.snapshot.event_types().map(str::to_owned).collect();
        let originals = self.tx.user_originals(self.tenant, user, &types).await?;
        let ids: Vec<String> = originals.iter().map(|e| e.id.clone()).collect();
        let reversals = self.tx.reversals_of(self.tenant, &ids).await?;
        Ok((originals, reversals))
    }

    /// Makes the live rewards match the completions. After a fold, `completions` are the new
    /// ones; after a refold they are all of them, and live rewards beyond them are revoked.
    async fn reconcile_rewards(
        &mut self,
        mission: &CompiledMission,
        user: &str,
        state: &ProgressState,
        completions: &[Completion],
        refolded: bool,
        may_grant: bool,
    ) -> Result<()> {
        if !refolded && completions.is_empty() {
            return Ok(());
        }
        let live = self.tx.live_rewards(self.tenant, &mission.id, user).await?;
        let rewarded: BTreeSet<u32> = live.iter().map(|r| r.completion).collect();
        if refolded {
            for r in live.iter().filter(|r| r.completion > state.completions) {
                // Only a reward not yet settled can be taken back.
                if r.status == RewardStatus::Pending {
                    self.tx.revoke_reward(self.tenant, &r.id, self.now).await?;
                    self.applied.rewards_revoked += 1;
                }
            }
        }
        for c in completions.iter().filter(|c| may_grant && !rewarded.contains(&c.ordinal)) {
            self.applied.completions += 1;
            let id = uuid::Uuid::now_v7().to_string();
            self.grants.push(reward::pending(
                id,
                &mission.id,
                user,
                c.ordinal,
                &mission.reward,
                c.reward_amount,
                self.now,
            ));
        }
        Ok(())
    }
}
