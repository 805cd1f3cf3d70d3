//! Applying one batch of events, exactly once, in ONE write transaction (one unit of work).
//!
//! The engine decides; this module only loads what it asks for, calls it, and saves what it
//! decided, in the order the phases of `questline_core::batch` need. A batch is **prepared**
//! on a read-only snapshot (so that lanes prepare in parallel while another lane writes) and
//! then **written** in a short unit of work that first checks nothing the decision rests on
//! has changed:
//!
//! 1. Prepare: read the batch's users' progress (one row per user, with its version) and the
//!    originals that new reversals name; screen reversals; predict which events are new
//!    (an id already in the ledger, or earlier in the batch, is a duplicate); the engine
//!    plans which (mission, user) pairs the new events touch ([`batch::plan`]).
//! 2. Load, in one query each for the whole batch, the live rewards of those pairs and the
//!    reversals that arrived before their originals; the engine says whose ledger a refold
//!    needs ([`batch::BatchPlan::needs_ledger`]) from the pairs' progress; load those ledgers
//!    (as recorded before the batch), and for users whose events were reversed, their
//!    missions no longer active. The engine decides ([`batch::decide`]): new states,
//!    completions, grants, revokes, effects.
//! 3. Write: lock the users' rows and check their versions, the missions revision, and that
//!    the ledger insert finds exactly the predicted events new; any difference is a lost
//!    race (`Retryable`: prepared again, from the third attempt under the locks). Then
//!    budgets: lock the budget rows of the missions that grant, in mission order (one global
//!    order keeps concurrent batches from deadlocking), and let the engine take them
//!    ([`budget::take_budgets`]). Save progress (each changed user's row once), revokes,
//!    rewards and budgets, and commit. Only then do callers hear back.

use crate::index::{MissionIndex, Snapshot};
use crate::notify::{Notification, Subscribers, Topic, UnitJobs, WrittenRows};
use jiff::Timestamp;
use questline_core::batch::{
    self, BatchDecision, BatchInputs, BatchPlan, IgnoredReversal, InactiveProgress, Ledger, NewCompletion, PairKey,
};
use questline_core::budget;
use questline_core::event::Event;
use questline_core::id::{MissionId, TenantId, UserId};
use questline_core::mission::CompiledMission;
use questline_core::pointer::FieldError;
use questline_core::progress::ProgressState;
use questline_core::reward::Reward;
use questline_store::{BatchReads, MissionProgress, Result, Store, StoreError, UnitOfWork, UserProgress};
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};

/// How often a batch that lost a race (deadlock, serialization failure) is run again.
const ATTEMPTS: u32 = 5;

/// What became of one event of a committed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Recorded in the ledger and applied.
    New,
    /// Its id was recorded before (or earlier in the batch): no effect.
    Duplicate,
    /// A reversal that can never apply (its known original is another user's, or is a
    /// reversal): not recorded.
    Refused(FieldError),
}

/// What a committed batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// For each event in input order, what became of it.
    pub outcomes: Vec<Recorded>,
    pub completions: usize,
    pub rewards_granted: usize,
    pub rewards_revoked: usize,
}

/// Applies `events` (already validated) for `tenant` and commits, running the batch again
/// if it lost a race with another process (the conflict rolled it back whole, so a rerun is
/// safe). The entry point for every source of events: HTTP ingest lanes, broker sources,
/// tests.
pub async fn apply_batch(
    store: &dyn Store,
    missions: &MissionIndex,
    jobs: Option<&dyn UnitJobs>,
    tenant: &TenantId,
    events: &[Event],
    now: Timestamp,
) -> Result<Applied> {
    let mut attempt = 1;
    loop {
        // Prepared on a snapshot first; after losing races, under the users' locks, so that
        // a batch contended by another process still gets through.
        let locked = attempt >= LOCKED_FROM;
        match apply_once(store, missions, jobs, tenant, events, now, locked).await {
            Err(e) if e.is_retryable() && attempt < ATTEMPTS => {
                tracing::debug!(attempt, error = %e, "batch conflicted; retrying");
                metrics::counter!("questline_batch_retries_total").increment(1);
                tokio::time::sleep(std::time::Duration::from_millis(5 << attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// From which attempt a batch is prepared inside its transaction, under the users' locks.
const LOCKED_FROM: u32 = 3;

/// A batch decided on what it read, to be written if nothing it read has changed.
struct Prepared<'a> {
    users: Vec<UserId>,
    /// Each user's progress version as read, in `users`' order.
    versions: Vec<i64>,
    revision: i64,
    /// The events to record (refused reversals left out) and which of them the ledger did
    /// not hold.
    to_record: Cow<'a, [Event]>,
    new: Vec<bool>,
    applied: Applied,
    recorded: usize,
    refused: usize,
    ignored: Vec<IgnoredReversal>,
    decision: Option<BatchDecision>,
    progress: HashMap<UserId, UserProgress>,
}

/// One attempt. The batch is prepared (read, planned, decided) on a read-only snapshot,
/// outside any write transaction, so that lanes prepare in parallel on every core while
/// another lane writes; then the unit of work checks that nothing the decision rests on
/// changed (the users' progress versions, the missions revision, which events are new) and
/// writes it. A change is a lost race: `Retryable`, and the batch is prepared again. With
/// `locked`, the users are locked first and the batch prepared inside the unit.
async fn apply_once(
    store: &dyn Store,
    missions: &MissionIndex,
    jobs: Option<&dyn UnitJobs>,
    tenant: &TenantId,
    events: &[Event],
    now: Timestamp,
    locked: bool,
) -> Result<Applied> {
    let users: Vec<UserId> =
        events.iter().map(|e| UserId::new(e.user_id())).collect::<BTreeSet<_>>().into_iter().collect();
    // The active missions are taken before the snapshot opens: loading them needs a reader
    // connection of its own, and lanes holding every reader while waiting for one more
    // would wait forever. If the missions change meanwhile, the revision check catches it.
    let (mut tx, prepared, active) = if locked {
        let mut tx = store.begin().await?;
        tx.lock_versions(tenant, &users).await?;
        let revision = tx.missions_revision(tenant).await?;
        let active = missions.at(tenant, revision).await?;
        let prepared = prepare(&mut *tx, (revision, &active), tenant, events, users, now).await?;
        (tx, prepared, active)
    } else {
        let revision = store.missions_revision(tenant).await?;
        let active = missions.at(tenant, revision).await?;
        let mut snapshot = store.begin_read().await?;
        let prepared = prepare(&mut *snapshot, (revision, &active), tenant, events, users, now).await?;
        drop(snapshot);
        (store.begin().await?, prepared, active)
    };
    // Locked in `users` order, so a batch of another process that touches one of these
    // users runs wholly before or wholly after this one. A locked attempt took the locks
    // before it read, so what it read is current.
    if !locked && tx.lock_versions(tenant, &prepared.users).await? != prepared.versions {
        return Err(StoreError::Retryable("a user's progress changed while the batch was prepared".into()));
    }
    if tx.missions_revision(tenant).await? != prepared.revision {
        return Err(StoreError::Retryable("the missions changed while the batch was prepared".into()));
    }
    if tx.insert_events(tenant, &prepared.to_record, now).await? != prepared.new {
        return Err(StoreError::Retryable("an event was recorded while the batch was prepared".into()));
    }
    let Prepared { mut applied, decision, mut progress, recorded, refused, ignored, .. } = prepared;
    if let Some(decision) = decision {
        let scope = Scope { jobs, tenant, active: &active, now };
        save(&mut *tx, &scope, decision, &mut progress, &mut applied).await?;
    }
    tx.commit().await?;
    metrics::counter!("questline_events_rejected_total").increment(refused as u64);
    for ignored in ignored {
        // Its original arrived after it: recorded, and it never applies.
        metrics::counter!("questline_reversals_ignored_total").increment(1);
        tracing::warn!(
            reversal = %ignored.reversal, user = %ignored.user_id, original = %ignored.original, owner = %ignored.owner,
            "a reversal names another user's event; ignored"
        );
    }
    metrics::counter!("questline_events_ingested_total").increment(recorded as u64);
    metrics::counter!("questline_completions_total").increment(applied.completions as u64);
    Ok(applied)
}

/// Reads what the batch needs and lets the engine decide it; writes nothing.
async fn prepare<'a>(
    reads: &mut dyn BatchReads,
    (revision, snapshot): (i64, &Snapshot),
    tenant: &TenantId,
    events: &'a [Event],
    users: Vec<UserId>,
    now: Timestamp,
) -> Result<Prepared<'a>> {
    let progress: HashMap<UserId, UserProgress> =
        reads.read_progress(tenant, &users).await?.into_iter().map(|p| (p.user_id.clone(), p)).collect();
    let versions = users.iter().map(|u| progress.get(u).map_or(0, |p| p.version)).collect();
    // The originals the batch's reversals name, as recorded before it: reversals that can
    // never apply are refused before anything is written.
    let targets: Vec<String> = batch::reversal_targets(events).into_iter().map(|id| id.into_string()).collect();
    let originals = if targets.is_empty() { Vec::new() } else { reads.events_by_id(tenant, &targets).await? };
    let screened = batch::screen_reversals(events, &originals);
    let refused = screened.iter().filter(|s| s.is_some()).count();
    let to_record: Cow<'a, [Event]> = if refused == 0 {
        Cow::Borrowed(events)
    } else {
        Cow::Owned(events.iter().zip(&screened).filter(|(_, s)| s.is_none()).map(|(e, _)| e.clone()).collect())
    };
    let new = new_in_ledger(reads, tenant, &to_record).await?;
    // As recorded: stamped with the time the ledger holds for them.
    let fresh: Vec<Event> =
        to_record.iter().zip(&new).filter(|(_, n)| **n).map(|(e, _)| e.clone().received(now)).collect();
    let recorded = fresh.len();
    let plan = batch::plan(snapshot.active(), fresh, &originals);
    let mut is_new = new.iter().copied();
    let outcomes = screened
        .into_iter()
        .map(|refusal| match refusal {
            Some(reason) => Recorded::Refused(reason),
            None if is_new.next().unwrap_or(false) => Recorded::New,
            None => Recorded::Duplicate,
        })
        .collect();
    let decision = if plan.is_empty() {
        None
    } else {
        let inputs = load(reads, tenant, snapshot, &plan, &progress, now).await?;
        let mut decision = batch::decide(&plan, &inputs).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let keys = decision.grant_keys();
        if !keys.is_empty() {
            let rewarded: HashSet<_> = reads.live_completions(tenant, &keys).await?.into_iter().collect();
            decision.drop_rewarded(&rewarded);
        }
        Some(decision)
    };
    Ok(Prepared {
        users,
        versions,
        revision,
        to_record,
        new,
        applied: Applied { outcomes, ..Applied::default() },
        recorded,
        refused,
        ignored: plan.ignored().to_vec(),
        decision,
        progress,
    })
}

/// For each event, whether recording it would be new: its id is not in the ledger and not
/// earlier in the slice (what [`questline_store::LedgerTx::insert_events`] will answer if
/// nothing is recorded meanwhile).
async fn new_in_ledger(reads: &mut dyn BatchReads, tenant: &TenantId, events: &[Event]) -> Result<Vec<bool>> {
    let ids: Vec<String> = events.iter().map(|e| e.id().to_owned()).collect();
    let mut seen: HashSet<String> = reads.known_ids(tenant, &ids).await?.into_iter().collect();
    Ok(ids.into_iter().map(|id| seen.insert(id)).collect())
}

/// Everything the engine asked for, read on the batch's snapshot (or in its unit); `progress`
/// is the batch's users' progress, as read.
async fn load(
    tx: &mut dyn BatchReads,
    tenant: &TenantId,
    snapshot: &Snapshot,
    plan: &BatchPlan,
    progress: &HashMap<UserId, UserProgress>,
    now: Timestamp,
) -> Result<BatchInputs> {
    let pairs: Vec<PairKey> = plan.pairs().cloned().collect();
    let stored: HashMap<PairKey, ProgressState> = pairs
        .iter()
        .filter_map(|key @ (mission, user)| {
            let state = progress.get(user)?.missions.get(mission)?.state.clone();
            Some((key.clone(), state))
        })
        .collect();
    // Only refolded users' pairs can lose completions (revokes) or need to know what was
    // rewarded before; the others' grants are checked against existing rewards afterwards.
    let refolded = plan.needs_ledger(&stored);
    let refold_pairs: Vec<PairKey> = pairs.iter().filter(|(_, u)| refolded.contains(u)).cloned().collect();
    let mut live_rewards: HashMap<PairKey, Vec<Reward>> = HashMap::new();
    for r in tx.live_rewards(tenant, &refold_pairs).await? {
        live_rewards
            .entry((MissionId::new(r.mission_id.as_str()), UserId::new(r.user_id.as_str())))
            .or_default()
            .push(r);
    }
    let early_ids: Vec<String> = plan.early_reversal_ids().into_iter().map(|id| id.into_string()).collect();
    let early_reversals = if early_ids.is_empty() { Vec::new() } else { tx.reversals_of(tenant, &early_ids).await? };
    let mut ledgers = HashMap::new();
    for user in refolded {
        let ledger = user_ledger(tx, tenant, &user, plan.ledger_types()).await?;
        ledgers.insert(user, ledger);
    }
    let mut inactive = Vec::new();
    for user in plan.refold_users() {
        let Some(user_progress) = progress.get(user) else { continue };
        for (mission_id, stored) in &user_progress.missions {
            if snapshot.active().contains(mission_id.as_str()) {
                continue; // active: the plan has it
            }
            let Some(mission) = tx.get_mission(tenant, mission_id).await? else { continue };
            let Ok(compiled) = CompiledMission::for_mission(&mission) else { continue };
            if !plan.checks_inactive(user.as_str(), &compiled) {
                continue;
            }
            let key = (mission_id.clone(), user.clone());
            let live = tx.live_rewards(tenant, std::slice::from_ref(&key)).await?;
            let ledger = user_ledger(tx, tenant, user, compiled.event_types()).await?;
            inactive.push(InactiveProgress {
                mission: compiled,
                user_id: user.clone(),
                stored: stored.state.clone(),
                ledger,
                live_rewards: live,
            });
        }
    }
    Ok(BatchInputs { stored, early_reversals, ledgers, live_rewards, inactive, now })
}

/// A user's originals of `types` with every reversal of them: the input of a refold.
async fn user_ledger(tx: &mut dyn BatchReads, tenant: &TenantId, user: &UserId, types: &[String]) -> Result<Ledger> {
    let originals = tx.user_originals(tenant, user, types).await?;
    let ids: Vec<String> = originals.iter().map(|e| e.id().to_owned()).collect();
    let reversals = if ids.is_empty() { Vec::new() } else { tx.reversals_of(tenant, &ids).await? };
    Ok(Ledger { originals, reversals })
}

/// What a batch's writes are for: the tenant, its active missions, the scheduler, the time.
struct Scope<'a> {
    jobs: Option<&'a dyn UnitJobs>,
    tenant: &'a TenantId,
    active: &'a Snapshot,
    now: Timestamp,
}

/// Writes what the engine decided, takes the budgets for its grants, and enqueues their
/// settlements and the notifications subscribed to. Each user whose progress changed is
/// written once, whatever number of missions changed.
async fn save(
    tx: &mut dyn UnitOfWork,
    scope: &Scope<'_>,
    mut decision: BatchDecision,
    progress: &mut HashMap<UserId, UserProgress>,
    applied: &mut Applied,
) -> Result<()> {
    let Scope { jobs, tenant, now, .. } = *scope;
    let mut changed = BTreeSet::new();
    // Moved, not copied: the decision is spent here.
    for p in std::mem::take(&mut decision.progress) {
        let user = progress.entry(p.user_id.clone()).or_insert_with(|| UserProgress::empty(p.user_id.clone()));
        user.missions.insert(p.mission_id, MissionProgress { state: p.state, updated_at: p.updated_at });
        changed.insert(p.user_id);
    }
    let rows: Vec<UserProgress> = changed.iter().filter_map(|u| progress.remove(u)).collect();
    tx.save_progress(tenant, &rows).await?;
    let revoked = if decision.revokes.is_empty() {
        Vec::new()
    } else {
        let ids: Vec<String> = decision.revokes.iter().map(|r| r.reward_id.clone()).collect();
        tx.revoke_rewards(tenant, &ids, now).await?
    };
    applied.rewards_revoked += revoked.len();
    applied.completions += decision.completions.len();
    let written = WrittenRows::new(&rows, now);
    if !decision.completions.is_empty() || !revoked.is_empty() {
        notify(tx, scope, &decision.completions, &written, &revoked).await?;
    }
    if let Some(jobs) = jobs {
        let due =
            crate::notices::of_batch(tenant, scope.active.active(), &decision.completions, &decision.effects, &written);
        if !due.is_empty() {
            jobs.enqueue_notices(tx, tenant, due, now).await?;
        }
    }
    if decision.grants.is_empty() {
        return Ok(());
    }
    let budgets = tx.lock_budgets(tenant, &decision.grant_missions()).await?;
    let outcome = budget::take_budgets(&budgets, decision.grants);
    // Ids are made here, never by the engine (it has no randomness).
    let rewards: Vec<Reward> =
        outcome.taken.into_iter().map(|grant| grant.into_reward(uuid::Uuid::now_v7().to_string())).collect();
    tx.insert_rewards(tenant, &rewards).await?;
    if let Some(jobs) = jobs {
        jobs.enqueue_settlements(tx, tenant, &rewards, now).await?;
    }
    applied.rewards_granted += rewards.len();
    for update in outcome.updates {
        let end_at = update.ends_mission.then(|| budget::ended_at(now));
        tx.set_budget(tenant, &update.mission_id, update.granted, end_at).await?;
    }
    Ok(())
}

/// `mission.completed` for the batch's completions (with the progress as written) and
/// `reward.revoked` for the rewards it revoked, to the webhooks subscribed to them.
async fn notify(
    tx: &mut dyn UnitOfWork,
    scope: &Scope<'_>,
    completions: &[NewCompletion],
    rows: &WrittenRows<'_>,
    revoked: &[Reward],
) -> Result<()> {
    let Scope { jobs, tenant, active, now } = *scope;
    let subscribers = Subscribers::of(jobs, tx, tenant).await?;
    let mut notifications = Vec::new();
    if subscribers.want(Topic::MissionCompleted) {
        for c in completions {
            let Some(mission) = active.active().get(c.mission_id.as_str()) else { continue };
            let view = rows.view(mission, &c.user_id);
            notifications.push(Notification::of_completion(tenant, &view, c.ordinal, now));
        }
    }
    if subscribers.want(Topic::RewardRevoked) {
        notifications.extend(revoked.iter().map(|r| Notification::of_reward(Topic::RewardRevoked, r, now)));
    }
    subscribers.send(jobs, tx, tenant, notifications, now).await
}
