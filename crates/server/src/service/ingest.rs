//! Applying one batch of events, exactly once, in ONE transaction.
//!
//! 1. Record the events in the ledger; an id seen before is a duplicate and does nothing.
//! 2. Find what the new events touch: each new original's user and the active missions that
//!    listen to its type; each new reversal's original (if it has arrived), whose progress
//!    must be refolded.
//! 3. Per (mission, user): fold the new net events onto the stored state when they all sort
//!    after it; otherwise refold the user's net events from the ledger (a late event, or a
//!    reversal of something already counted). Either way the pure engine decides.
//! 4. Reconcile rewards with the completions: grant new ones within the budget, revoke
//!    pending ones whose completion a reversal took back.
//! 5. Commit. Only then does the caller acknowledge.

use super::index::{MissionIndex, Snapshot};
use jiff::Timestamp;
use questline_core::event::Event;
use questline_core::mission::CompiledMission;
use questline_core::net::net_events;
use questline_core::progress::{Completion, ProgressState, fold, replay};
use questline_core::reward::{self, RewardStatus};
use questline_store::{IngestTx, Result, Store, StoreError, StoredProgress};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// What became of each event of a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// For each event in input order: whether it was new (false: a duplicate).
    pub new: Vec<bool>,
    pub completions: usize,
    pub rewards_granted: usize,
    pub rewards_revoked: usize,
}

pub struct Ingestor {
    store: Arc<dyn Store>,
    missions: Arc<MissionIndex>,
}

/// The work a batch does for one user.
#[derive(Default)]
struct UserWork<'a> {
    /// New originals of this user, in fold order.
    originals: Vec<&'a Event>,
    /// Event types whose counted events a new reversal changed: refold those missions.
    refold_types: BTreeSet<String>,
}

impl Ingestor {
    pub fn new(store: Arc<dyn Store>, missions: Arc<MissionIndex>) -> Self {
        Ingestor { store, missions }
    }

    /// Applies `events` (already validated) for `tenant` and commits, running the batch
    /// again if it lost a race with another process (a deadlock or serialization failure
    /// rolls it back whole, so a rerun is safe).
    pub async fn ingest(&self, tenant: &str, events: &[Event], now: Timestamp) -> Result<BatchOutcome> {
        const ATTEMPTS: u32 = 5;
        let mut attempt = 1;
        loop {
            match self.ingest_once(tenant, events, now).await {
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

    async fn ingest_once(&self, tenant: &str, events: &[Event], now: Timestamp) -> Result<BatchOutcome> {
        let mut tx = self.store.begin().await?;
        let users: BTreeSet<&str> = events.iter().map(|e| e.user_id.as_str()).collect();
        tx.lock_users(tenant, &users.into_iter().map(str::to_owned).collect::<Vec<_>>()).await?;
        let revision = tx.missions_revision(tenant).await?;
        let snapshot = self.missions.at(tenant, revision).await?;
        let new = tx.insert_events(tenant, events, now).await?;
        let fresh: Vec<&Event> = events.iter().zip(&new).filter(|(_, n)| **n).map(|(e, _)| e).collect();

        let mut outcome = BatchOutcome { new, ..BatchOutcome::default() };
        let work = plan(&mut *tx, tenant, &snapshot, &fresh).await?;
        let mut applier = Applier { tx: &mut *tx, tenant, now, outcome: &mut outcome };
        for (user, user_work) in &work {
            applier.apply_user(&snapshot, user, user_work).await?;
        }
        tx.commit().await?;
        metrics::counter!("questline_events_ingested_total").increment(fresh.len() as u64);
        metrics::counter!("questline_completions_total").increment(outcome.completions as u64);
        Ok(outcome)
    }
}

/// Groups the new events by user and finds the refolds that new reversals call for.
async fn plan<'a>(
    tx: &mut dyn IngestTx,
    tenant: &str,
    snapshot: &Snapshot,
    fresh: &[&'a Event],
) -> Result<BTreeMap<String, UserWork<'a>>> {
    let mut work: BTreeMap<String, UserWork<'a>> = BTreeMap::new();
    for e in fresh.iter().filter(|e| e.reverses.is_none() && snapshot.listens_to(&e.event_type)) {
        work.entry(e.user_id.clone()).or_default().originals.push(e);
    }
    for w in work.values_mut() {
        w.originals.sort_by(|a, b| (a.occurred_at, &a.id).cmp(&(b.occurred_at, &b.id)));
    }
    let targets: Vec<String> = fresh.iter().filter_map(|e| e.reverses.clone()).collect();
    if !targets.is_empty() {
        // Reversals whose original has arrived (earlier, or in this batch) change what that
        // original counts for; reversals that arrive first wait in the ledger.
        let originals = tx.events_by_id(tenant, &targets).await?;
        let fresh_ids: BTreeSet<&str> = fresh.iter().map(|e| e.id.as_str()).collect();
        for original in originals.iter().filter(|o| o.reverses.is_none() && snapshot.listens_to(&o.event_type)) {
            let w = work.entry(original.user_id.clone()).or_default();
            // An original in this batch gets its net form when it is folded; one counted
            // earlier must be taken back by a refold.
            if !fresh_ids.contains(original.id.as_str()) {
                w.refold_types.insert(original.event_type.clone());
            }
        }
    }
    Ok(work)
}

struct Applier<'t, 'o> {
    tx: &'t mut dyn IngestTx,
    tenant: &'t str,
    now: Timestamp,
    outcome: &'o mut BatchOutcome,
}

impl Applier<'_, '_> {
    async fn apply_user(&mut self, snapshot: &Snapshot, user: &str, work: &UserWork<'_>) -> Result<()> {
        let mut missions: BTreeMap<&str, &Arc<CompiledMission>> = BTreeMap::new();
        for t in
            work.originals.iter().map(|e| e.event_type.as_str()).chain(work.refold_types.iter().map(String::as_str))
        {
            for m in snapshot.for_type(t) {
                missions.insert(&m.id, m);
            }
        }
        if missions.is_empty() {
            return Ok(());
        }
        let keys: Vec<(String, String)> = missions.keys().map(|m| (m.to_string(), user.to_owned())).collect();
        let mut stored: HashMap<String, ProgressState> =
            self.tx.load_progress(self.tenant, &keys).await?.into_iter().map(|p| (p.mission_id, p.state)).collect();
        // Reversals that arrived before these originals.
        let ids: Vec<String> = work.originals.iter().map(|e| e.id.clone()).collect();
        let early_reversals = self.tx.reversals_of(self.tenant, &ids).await?;
        let mut ledger: Option<(Vec<Event>, Vec<Event>)> = None;

        let mut changed = Vec::new();
        for (mission_id, mission) in missions {
            let mine: Vec<&Event> =
                work.originals.iter().copied().filter(|e| mission.event_types.contains(&e.event_type)).collect();
            let before = stored.remove(mission_id);
            let state = before.clone().unwrap_or_else(|| ProgressState::new(mission));
            let must_refold = mission.event_types.iter().any(|t| work.refold_types.contains(t.as_str()))
                || mine.first().is_some_and(|e| !state.can_append(e));
            let (state, completions, refolded) = if must_refold {
                let (originals, reversals) = match &ledger {
                    Some(l) => l,
                    None => ledger.insert(self.user_ledger(snapshot, user).await?),
                };
                let (state, completions) = replay(mission, &net_events(originals.iter(), reversals));
                (state, completions, true)
            } else {
                let mut state = state;
                let net = net_events(mine.iter().copied(), &early_reversals);
                let completions = fold(mission, &mut state, &net);
                (state, completions, false)
            };
            self.reconcile_rewards(mission, user, &state, &completions, refolded).await?;
            if before.as_ref() != Some(&state) {
                changed.push(StoredProgress {
                    mission_id: mission_id.to_owned(),
                    user_id: user.to_owned(),
                    state,
                    updated_at: self.now,
                });
            }
        }
        self.tx.save_progress(self.tenant, &changed).await
    }

    /// All of the user's originals of every type the active missions listen to, with their
    /// reversals: the input of a refold. Loaded once per user and batch.
    async fn user_ledger(&mut self, snapshot: &Snapshot, user: &str) -> Result<(Vec<Event>, Vec<Event>)> {
        let types: Vec<String> = snapshot.event_types().map(str::to_owned).collect();
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
    ) -> Result<()> {
        let live = if refolded || !completions.is_empty() {
            self.tx.live_rewards(self.tenant, &mission.id, user).await?
        } else {
            return Ok(());
        };
        let rewarded: BTreeSet<u32> = live.iter().map(|r| r.completion).collect();
        if refolded {
            for r in live.iter().filter(|r| r.completion > state.completions) {
                // Only a reward not yet settled can be taken back.
                if r.status == RewardStatus::Pending {
                    self.tx.revoke_reward(self.tenant, &r.id, self.now).await?;
                    self.outcome.rewards_revoked += 1;
                }
            }
        }
        for c in completions.iter().filter(|c| !rewarded.contains(&c.ordinal)) {
            self.outcome.completions += 1;
            if self.tx.take_budget(self.tenant, &mission.id, self.now).await? {
                let id = uuid::Uuid::now_v7().to_string();
                let r = reward::pending(id, &mission.id, user, c.ordinal, &mission.reward, c.reward_amount, self.now);
                self.tx.insert_reward(self.tenant, &r).await?;
                self.outcome.rewards_granted += 1;
            }
        }
        Ok(())
    }
}
