//! Phase 3 of a batch: every effect it has, from what the plan asked to load.

use super::{BatchPlan, PairKey};
use crate::event::Event;
use crate::id::{MissionId, UserId};
use crate::mission::CompiledMission;
use crate::mission::notice::Trigger;
use crate::mission::spec::RewardSpec;
use crate::mission::window::Bounds;
use crate::net::net_events;
use crate::progress::{Completion, ProgressState, fold, replay};
use crate::reward::{self, Reward, RewardStatus};
use jiff::Timestamp;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// A user's recorded events, the input of a refold: originals (of the types asked for) and
/// every reversal naming one of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ledger {
    pub originals: Vec<Event>,
    pub reversals: Vec<Event>,
}

/// A user's stored progress in a mission that is not active (paused, ended) and that
/// [`BatchPlan::checks_inactive`] asked for: refolded to take back what reversals changed.
/// It revokes, and never grants.
#[derive(Debug, Clone)]
pub struct InactiveProgress {
    /// Compiled with its active periods (`CompiledMission::for_mission`), so that only the
    /// events received while it was active count.
    pub mission: Arc<CompiledMission>,
    pub user_id: UserId,
    pub stored: ProgressState,
    /// The user's originals of `mission.event_types`, with their reversals.
    pub ledger: Ledger,
    /// The pair's live (not revoked) rewards.
    pub live_rewards: Vec<Reward>,
}

/// Everything [`decide`] reads, as loaded for the plan.
#[derive(Debug, Clone)]
pub struct BatchInputs {
    /// Stored progress of [`BatchPlan::pairs`]; a pair without a row is absent.
    pub stored: HashMap<PairKey, ProgressState>,
    /// Reversals of [`BatchPlan::early_reversal_ids`] (this batch's own may be among them).
    pub early_reversals: Vec<Event>,
    /// The ledger of every user of [`BatchPlan::needs_ledger`].
    pub ledgers: HashMap<UserId, Ledger>,
    /// Live (not revoked) rewards of the pairs of the users a refold needs
    /// ([`BatchPlan::needs_ledger`]); a pair with none may be absent. Other pairs only add
    /// completions, so they need none: their grants are checked afterwards against the
    /// rewards that exist ([`BatchDecision::drop_rewarded`]).
    pub live_rewards: HashMap<PairKey, Vec<Reward>>,
    /// Progress in missions no longer active, for [`BatchPlan::refold_users`].
    pub inactive: Vec<InactiveProgress>,
    /// The batch's time: rows changed, rewards created and revoked now.
    pub now: Timestamp,
}

/// A progress row to save (insert or replace).
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressChange {
    pub mission_id: MissionId,
    pub user_id: UserId,
    pub state: ProgressState,
    pub updated_at: Timestamp,
}

/// A completion this batch caused in an active mission: the user's `ordinal`-th.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCompletion {
    pub mission_id: MissionId,
    pub user_id: UserId,
    pub ordinal: u32,
    /// The completing event's `occurred_at`.
    pub at: Timestamp,
    pub reward_amount: Option<Decimal>,
}

/// A pending reward to create if the budget allows ([`crate::budget::take_budgets`]). It has
/// no id: the caller mints one ([`Grant::into_reward`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub mission_id: MissionId,
    pub user_id: UserId,
    /// Which of the user's completions earns it (1-based).
    pub completion: u32,
    pub reward: RewardSpec,
    pub amount: Option<Decimal>,
    /// When it is created: the batch's time.
    pub at: Timestamp,
}

impl Grant {
    /// The pending reward, under the id the caller minted.
    pub fn into_reward(self, id: String) -> Reward {
        reward::pending(
            id,
            self.mission_id.as_str(),
            self.user_id.as_str(),
            self.completion,
            &self.reward,
            self.amount,
            self.at,
        )
    }

    /// The order grants are taken in: budget rows are locked in mission order.
    pub fn order_key(&self) -> (&MissionId, &UserId, u32) {
        (&self.mission_id, &self.user_id, self.completion)
    }
}

/// A pending reward whose completion a reversal took back: mark it revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoke {
    pub reward_id: String,
    pub mission_id: MissionId,
    pub user_id: UserId,
    pub completion: u32,
    pub at: Timestamp,
}

/// Something to enqueue in the batch's transaction, for workers to act on after the commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A user completed an active mission for the `ordinal`-th time (at the completing event's
    /// `occurred_at`): what completion webhooks and notifications are sent for. Emitted once
    /// per completion, whether or not the budget grants it a reward.
    MissionCompleted { mission_id: MissionId, user_id: UserId, ordinal: u32, at: Timestamp },
    /// The user's `attempt`-th attempt (in `window`, if the mission has one) reached
    /// `percent` of its target, without completing in this batch. Emitted only for the
    /// percents the mission notifies of, and once per crossing: a reversal that takes it
    /// back under and an event that crosses again emit it again, under the same key.
    MilestoneReached { mission_id: MissionId, user_id: UserId, attempt: u32, window: Option<Bounds>, percent: u8 },
    /// A window opened for the user (their first counted event in it), in a mission that
    /// notifies when a window is about to lapse unfinished.
    WindowOpened { mission_id: MissionId, user_id: UserId, window: Bounds },
}

/// Every effect of a batch. Each list is sorted by `(mission, user, completion)`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatchDecision {
    /// Rows that changed, only those: a pair still at the empty state with no row gets none.
    pub progress: Vec<ProgressChange>,
    pub completions: Vec<NewCompletion>,
    /// New pending rewards, one per new completion without a live reward, before budgets.
    pub grants: Vec<Grant>,
    /// Pending rewards to revoke; a granted (settled) reward is never among them.
    pub revokes: Vec<Revoke>,
    pub effects: Vec<Effect>,
}

impl BatchDecision {
    /// The (mission, user, completion) of every grant: look up which already have a live
    /// reward, for [`BatchDecision::drop_rewarded`].
    pub fn grant_keys(&self) -> Vec<(MissionId, UserId, u32)> {
        self.grants.iter().map(|g| (g.mission_id.clone(), g.user_id.clone(), g.completion)).collect()
    }

    /// Drops the grants whose completion already has a live reward (`rewarded`, as
    /// (mission, user, completion)): a pair that was not refolded was decided without its
    /// live rewards, and may reach again a completion that was rewarded (and settled) before
    /// a reversal took it back. One reward per completion, ever.
    pub fn drop_rewarded(&mut self, rewarded: &HashSet<(MissionId, UserId, u32)>) {
        self.grants.retain(|g| !rewarded.contains(&(g.mission_id.clone(), g.user_id.clone(), g.completion)));
    }

    /// The missions whose budget rows must be locked (in this order) to take the grants.
    pub fn grant_missions(&self) -> Vec<MissionId> {
        let ids: BTreeSet<&MissionId> = self.grants.iter().map(|g| &g.mission_id).collect();
        ids.into_iter().cloned().collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    /// [`BatchPlan::needs_ledger`] named this user, and no ledger was given.
    #[error("a refold of user {user_id:?} needs their ledger, which was not loaded")]
    MissingLedger { user_id: UserId },
}

/// Phase 3: decides the batch. Per pair, folds its new net events onto the stored state, or
/// refolds the user's ledger when [`BatchPlan::needs_ledger`] said so; then makes the live
/// rewards match the completions: pending rewards beyond them are revoked, and each new
/// completion (one the stored state had not reached) without a live reward gets a grant.
/// Inactive missions are refolded too, revoke-only: they grant nothing and report no
/// completion.
pub fn decide(plan: &BatchPlan, inputs: &BatchInputs) -> Result<BatchDecision, DecideError> {
    // The batch's originals take their net form from reversals that arrived before them and
    // from the batch's own, each counted once.
    let reversals: BTreeMap<&str, &Event> =
        inputs.early_reversals.iter().chain(&plan.fresh_reversals).map(|r| (r.id(), r)).collect();
    // What a refold adds to a ledger recorded before the batch.
    let batch_reversals: Vec<&Event> = reversals.values().copied().collect();
    // Indexed by the original they name, once per batch: a pair's fold then looks at the
    // reversals of its own events only, not at every reversal of the batch.
    let mut reversals_of: HashMap<&str, Vec<Event>> = HashMap::new();
    for r in reversals.into_values() {
        if let Some(target) = r.reverses() {
            reversals_of.entry(target).or_default().push(r.clone());
        }
    }
    let no_rewards = Vec::new();
    let mut out = BatchDecision::default();

    for pair in &plan.pairs {
        let (key, mission) = (&pair.key, &pair.mission);
        let (_, user_id) = key;
        let before = inputs.stored.get(key);
        let (state, completions) = if plan.must_refold(pair, before) {
            let ledger =
                inputs.ledgers.get(user_id).ok_or_else(|| DecideError::MissingLedger { user_id: user_id.clone() })?;
            let (originals, reversals) = plan.with_batch(user_id, ledger, batch_reversals.iter().copied());
            replay(mission, net_events(originals, &reversals))
        } else {
            let mut state = before.cloned().unwrap_or_else(|| ProgressState::new(mission));
            let mine: Vec<Event> =
                plan.new_events(pair).filter_map(|e| reversals_of.get(e.id())).flatten().cloned().collect();
            let net = net_events(plan.new_events(pair), &mine);
            let completions = fold(mission, &mut state, &net);
            (state, completions)
        };
        let live = inputs.live_rewards.get(key).unwrap_or(&no_rewards);
        let reached = before.map_or(0, |s| s.completions);
        out.reconcile(mission, key, &state, &completions, reached, live, inputs.now, true);
        out.announce(mission, key, before, &state);
        out.save(mission, key, before, state, inputs.now);
    }

    let mut seen: BTreeSet<PairKey> = plan.pairs.iter().map(|p| p.key.clone()).collect();
    for p in &inputs.inactive {
        let key = (MissionId::new(p.mission.id()), p.user_id.clone());
        if !plan.checks_inactive(p.user_id.as_str(), &p.mission) || !seen.insert(key.clone()) {
            continue;
        }
        let (originals, reversals) = plan.with_batch(&p.user_id, &p.ledger, batch_reversals.iter().copied());
        let (state, completions) = replay(&p.mission, net_events(originals, &reversals));
        out.reconcile(&p.mission, &key, &state, &completions, p.stored.completions, &p.live_rewards, inputs.now, false);
        out.save(&p.mission, &key, Some(&p.stored), state, inputs.now);
    }

    out.progress.sort_by(|a, b| (&a.mission_id, &a.user_id).cmp(&(&b.mission_id, &b.user_id)));
    out.completions.sort_by(|a, b| (&a.mission_id, &a.user_id, a.ordinal).cmp(&(&b.mission_id, &b.user_id, b.ordinal)));
    out.grants.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    out.revokes
        .sort_by(|a, b| (&a.mission_id, &a.user_id, a.completion).cmp(&(&b.mission_id, &b.user_id, b.completion)));
    out.effects.sort_by(|a, b| effect_key(a).cmp(&effect_key(b)));
    Ok(out)
}

/// The order of a batch's effects: by pair, then kind, then which completion, attempt,
/// percent or window.
fn effect_key(e: &Effect) -> (&MissionId, &UserId, u8, u32, u8, Option<Timestamp>) {
    match e {
        Effect::MissionCompleted { mission_id, user_id, ordinal, .. } => (mission_id, user_id, 0, *ordinal, 0, None),
        Effect::MilestoneReached { mission_id, user_id, attempt, percent, window } => {
            (mission_id, user_id, 1, *attempt, *percent, window.map(|w| w.starts_at))
        }
        Effect::WindowOpened { mission_id, user_id, window } => (mission_id, user_id, 2, 0, 0, Some(window.starts_at)),
    }
}

impl BatchDecision {
    /// Makes the pair's live rewards match `state`: revokes the pending ones beyond its
    /// completions; for each completion beyond `reached` (what the stored state had reached)
    /// reports it and, if it has no live reward, grants one. Completions the stored state had
    /// already reached are not new, whether or not the budget rewarded them then.
    #[allow(clippy::too_many_arguments)]
    fn reconcile(
        &mut self,
        mission: &CompiledMission,
        (mission_id, user_id): &PairKey,
        state: &ProgressState,
        completions: &[Completion],
        reached: u32,
        live: &[Reward],
        now: Timestamp,
        active: bool,
    ) {
        for r in live.iter().filter(|r| r.completion > state.completions && r.status == RewardStatus::Pending) {
            self.revokes.push(Revoke {
                reward_id: r.id.clone(),
                mission_id: mission_id.clone(),
                user_id: user_id.clone(),
                completion: r.completion,
                at: now,
            });
        }
        if !active {
            return;
        }
        // A live reward beyond the completions that was not revoked is settled: reaching its
        // completion again must not reward it twice.
        let rewarded: BTreeSet<u32> = live.iter().map(|r| r.completion).collect();
        for c in completions.iter().filter(|c| c.ordinal > reached) {
            self.completions.push(NewCompletion {
                mission_id: mission_id.clone(),
                user_id: user_id.clone(),
                ordinal: c.ordinal,
                at: c.at,
                reward_amount: c.reward_amount,
            });
            self.effects.push(Effect::MissionCompleted {
                mission_id: mission_id.clone(),
                user_id: user_id.clone(),
                ordinal: c.ordinal,
                at: c.at,
            });
            if !rewarded.contains(&c.ordinal) {
                self.grants.push(Grant {
                    mission_id: mission_id.clone(),
                    user_id: user_id.clone(),
                    completion: c.ordinal,
                    reward: mission.reward().clone(),
                    amount: c.reward_amount,
                    at: now,
                });
            }
        }
    }

    /// The effects mission notifications need: the progress milestones this batch crossed
    /// (within one attempt and window, so a completion announces itself instead) and a
    /// window it opened.
    fn announce(
        &mut self,
        mission: &CompiledMission,
        (mission_id, user_id): &PairKey,
        before: Option<&ProgressState>,
        state: &ProgressState,
    ) {
        if mission.notices().is_empty() {
            return;
        }
        let same_attempt = before.is_none_or(|b| b.completions == state.completions);
        if same_attempt && !state.is_finished(mission) {
            // Progress in another window than the stored one started again from zero.
            let from = before.filter(|b| b.window == state.window).map_or(Decimal::ZERO, |b| b.fraction(mission));
            let to = state.fraction(mission);
            for notice in mission.notices() {
                let Trigger::Progress(percent) = notice.trigger else { continue };
                let mark = Decimal::from(percent) / Decimal::ONE_HUNDRED;
                if from < mark && mark <= to {
                    self.effects.push(Effect::MilestoneReached {
                        mission_id: mission_id.clone(),
                        user_id: user_id.clone(),
                        attempt: state.completions + 1,
                        window: state.window,
                        percent,
                    });
                }
            }
        }
        if let Some(window) = state.window
            && before.is_none_or(|b| b.window != state.window)
            && !state.is_finished(mission)
            && !state.period_done
            && mission.notifies(|t| matches!(t, Trigger::WindowLapsing(_)))
        {
            self.effects.push(Effect::WindowOpened {
                mission_id: mission_id.clone(),
                user_id: user_id.clone(),
                window,
            });
        }
    }

    /// Records the pair's new state if it differs from the stored one (a pair with no row
    /// that is still at the empty state gets none: `not_started` needs no row).
    fn save(
        &mut self,
        mission: &CompiledMission,
        (mission_id, user_id): &PairKey,
        before: Option<&ProgressState>,
        state: ProgressState,
        now: Timestamp,
    ) {
        let unchanged = match before {
            Some(b) => *b == state,
            None => state == ProgressState::new(mission),
        };
        if !unchanged {
            self.progress.push(ProgressChange {
                mission_id: mission_id.clone(),
                user_id: user_id.clone(),
                state,
                updated_at: now,
            });
        }
    }
}
