//! An in-memory stand-in for the store and the service, for tests. It does what the service
//! does with the phases — load what the plan asks for, call [`plan`], [`BatchPlan::needs_ledger`],
//! [`decide`] and [`take_budgets`], save what they decide — and decides nothing itself.

use super::{BatchDecision, BatchInputs, BatchPlan, InactiveProgress, Ledger, PairKey, decide, plan, reversal_targets};
use crate::batch::ActiveMissions;
use crate::budget::{BudgetOutcome, BudgetRow, ended_at, take_budgets};
use crate::event::Event;
use crate::id::{MissionId, UserId};
use crate::mission::{ActivePeriod, CompiledMission};
use crate::net::net_events;
use crate::progress::{ProgressState, replay};
use crate::reward::{Reward, RewardStatus};
use jiff::{SignedDuration, Timestamp};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// A stored mission: its rules, lifecycle and budget.
#[derive(Debug, Clone)]
pub(crate) struct StoredMission {
    rules: Arc<CompiledMission>,
    periods: Vec<ActivePeriod>,
    pub active: bool,
    pub ended: bool,
    pub granted: u64,
    pub max_rewards: Option<u64>,
}

/// What one ingest call did, for assertions.
#[derive(Debug, Clone)]
pub(crate) struct Ingested {
    pub plan: BatchPlan,
    pub decision: BatchDecision,
    pub budgets: BudgetOutcome,
}

#[derive(Debug, Clone)]
pub(crate) struct World {
    pub missions: BTreeMap<MissionId, StoredMission>,
    /// Every recorded event, with `received_at`.
    pub ledger: Vec<Event>,
    ids: HashSet<String>,
    pub progress: HashMap<PairKey, ProgressState>,
    pub rewards: Vec<Reward>,
    clock: Timestamp,
    /// Rule breaks the store would have to absorb: a revoke of a reward that is not pending.
    pub violations: Vec<String>,
}

impl World {
    /// A world whose `missions` (with their `max_rewards`) are active from the start.
    pub fn new(missions: impl IntoIterator<Item = (Arc<CompiledMission>, Option<u64>)>) -> Self {
        let clock: Timestamp = "2026-10-01T00:00:00Z".parse().unwrap();
        let missions = missions
            .into_iter()
            .map(|(rules, max_rewards)| {
                let m = StoredMission {
                    rules,
                    periods: vec![ActivePeriod { from: clock, until: None }],
                    active: true,
                    ended: false,
                    granted: 0,
                    max_rewards,
                };
                (MissionId::new(m.rules.id()), m)
            })
            .collect();
        World {
            missions,
            ledger: Vec::new(),
            ids: HashSet::new(),
            progress: HashMap::new(),
            rewards: Vec::new(),
            clock,
            violations: Vec::new(),
        }
    }

    fn tick(&mut self) -> Timestamp {
        self.clock += SignedDuration::from_secs(1);
        self.clock
    }

    /// The mission compiled with its active periods, as `CompiledMission::for_mission` does.
    pub fn compiled(&self, mission: &str) -> Arc<CompiledMission> {
        let m = &self.missions[mission];
        Arc::new((*m.rules).clone().with_active_periods(m.periods.clone()))
    }

    fn set_active(&mut self, mission: &str, active: bool, at: Timestamp) {
        let m = self.missions.get_mut(mission).unwrap();
        if active && !m.active && !m.ended {
            m.periods.push(ActivePeriod { from: at, until: None });
            m.active = true;
        } else if !active && m.active {
            m.periods.last_mut().unwrap().until = Some(at);
            m.active = false;
        }
    }

    pub fn pause(&mut self, mission: &str) {
        let at = self.tick();
        self.set_active(mission, false, at);
    }

    pub fn resume(&mut self, mission: &str) {
        let at = self.tick();
        self.set_active(mission, true, at);
    }

    /// Settles a pending reward (what the settlement worker will do).
    pub fn settle(&mut self, index: usize) {
        if let Some(r) = self.rewards.get_mut(index).filter(|r| r.status == RewardStatus::Pending) {
            r.status = RewardStatus::Granted;
        }
    }

    /// The stored state of a pair, or the empty state without a row.
    pub fn state(&self, mission: &str, user: &str) -> ProgressState {
        let key = (MissionId::new(mission), UserId::new(user));
        self.progress.get(&key).cloned().unwrap_or_else(|| ProgressState::new(&self.missions[mission].rules))
    }

    /// What a recomputation of the pair from the whole ledger yields.
    pub fn replayed(&self, mission: &str, user: &str) -> (ProgressState, usize) {
        let compiled = self.compiled(mission);
        let originals: Vec<&Event> =
            self.ledger.iter().filter(|e| e.user_id() == user && e.reverses().is_none()).collect();
        let reversals: Vec<Event> = self.ledger.iter().filter(|e| e.reverses().is_some()).cloned().collect();
        let (state, completions) = replay(&compiled, net_events(originals, &reversals));
        (state, completions.len())
    }

    /// The pair's live (not revoked) rewards.
    pub fn live(&self, mission: &str, user: &str) -> Vec<&Reward> {
        self.rewards
            .iter()
            .filter(|r| r.mission_id == mission && r.user_id == user && r.status != RewardStatus::Revoked)
            .collect()
    }

    fn live_of(&self, key: &PairKey) -> Vec<Reward> {
        self.live(key.0.as_str(), key.1.as_str()).into_iter().cloned().collect()
    }

    /// A user's originals of `types` and every reversal naming one (by id, whoever sent it).
    fn ledger_of(&self, user: &str, types: &[String]) -> Ledger {
        let originals: Vec<Event> = self
            .ledger
            .iter()
            .filter(|e| e.user_id() == user && e.reverses().is_none() && types.iter().any(|t| t == e.event_type()))
            .cloned()
            .collect();
        let ids: HashSet<&str> = originals.iter().map(|e| e.id()).collect();
        let reversals = self.reversals_of(&ids);
        Ledger { originals, reversals }
    }

    fn reversals_of(&self, ids: &HashSet<&str>) -> Vec<Event> {
        self.ledger.iter().filter(|e| e.reverses().is_some_and(|t| ids.contains(t))).cloned().collect()
    }

    /// Applies one batch, as the service does with one transaction: everything is read as
    /// recorded before the batch (the service prepares a batch on a snapshot, and records
    /// its events only when it writes), and the batch's events are recorded at the end.
    pub fn ingest(&mut self, batch: &[Event]) -> Ingested {
        let now = self.tick();
        // The ledger: an id recorded before (or earlier in this batch) is a duplicate.
        let mut fresh = Vec::new();
        for e in batch {
            if self.ids.insert(e.id().to_owned()) {
                fresh.push(e.clone().received(now));
            }
        }
        let active = ActiveMissions::new(
            self.missions.iter().filter(|(_, m)| m.active).map(|(id, _)| self.compiled(id.as_str())),
        );
        let targets: HashSet<String> = reversal_targets(&fresh).into_iter().map(|id| id.into_string()).collect();
        let originals: Vec<Event> = self.ledger.iter().filter(|e| targets.contains(e.id())).cloned().collect();
        let plan = plan(&active, fresh.to_vec(), &originals);

        let stored: HashMap<PairKey, ProgressState> =
            plan.pairs().filter_map(|k| self.progress.get(k).map(|s| (k.clone(), s.clone()))).collect();
        let early_ids: Vec<String> = plan.early_reversal_ids().into_iter().map(|id| id.into_string()).collect();
        let early_reversals = self.reversals_of(&early_ids.iter().map(String::as_str).collect());
        let refolded = plan.needs_ledger(&stored);
        let ledgers: HashMap<UserId, Ledger> = refolded
            .iter()
            .cloned()
            .map(|u| {
                let ledger = self.ledger_of(u.as_str(), plan.ledger_types());
                (u, ledger)
            })
            .collect();
        // As the service loads them: only for the users a refold needs.
        let live_rewards: HashMap<PairKey, Vec<Reward>> =
            plan.pairs().filter(|k| refolded.contains(&k.1)).map(|k| (k.clone(), self.live_of(k))).collect();
        let mut inactive = Vec::new();
        let refold_users: BTreeSet<&UserId> = plan.refold_users().collect();
        for ((mission, user), state) in &self.progress {
            if !refold_users.contains(user) || active.contains(mission.as_str()) {
                continue;
            }
            let compiled = self.compiled(mission.as_str());
            if plan.checks_inactive(user.as_str(), &compiled) {
                inactive.push(InactiveProgress {
                    ledger: self.ledger_of(user.as_str(), compiled.event_types()),
                    mission: compiled,
                    user_id: user.clone(),
                    stored: state.clone(),
                    live_rewards: self.live_of(&(mission.clone(), user.clone())),
                });
            }
        }
        let inputs = BatchInputs { stored, early_reversals, ledgers, live_rewards, inactive, now };
        let mut decision = decide(&plan, &inputs).expect("every ledger asked for was loaded");
        let rewarded: HashSet<(MissionId, UserId, u32)> = decision
            .grant_keys()
            .into_iter()
            .filter(|(m, u, c)| self.live(m.as_str(), u.as_str()).iter().any(|r| r.completion == *c))
            .collect();
        decision.drop_rewarded(&rewarded);
        self.ledger.extend(fresh);

        for p in &decision.progress {
            self.progress.insert((p.mission_id.clone(), p.user_id.clone()), p.state.clone());
        }
        for r in &decision.revokes {
            let reward = self.rewards.iter_mut().find(|x| x.id == r.reward_id).expect("revoke of a known reward");
            if reward.status != RewardStatus::Pending {
                self.violations.push(format!("revoked {:?} reward {}", reward.status, reward.id));
            }
            reward.status = RewardStatus::Revoked;
        }
        let rows: Vec<BudgetRow> = decision
            .grant_missions()
            .into_iter()
            .map(|id| {
                let m = &self.missions[&id];
                BudgetRow { mission_id: id, granted: m.granted, max_rewards: m.max_rewards }
            })
            .collect();
        let budgets = take_budgets(&rows, decision.grants.clone());
        for g in &budgets.taken {
            let id = format!("reward-{}", self.rewards.len());
            self.rewards.push(g.clone().into_reward(id));
        }
        for u in &budgets.updates {
            self.missions.get_mut(&u.mission_id).unwrap().granted = u.granted;
            if u.ends_mission {
                self.set_active(u.mission_id.as_str(), false, ended_at(now));
                self.missions.get_mut(&u.mission_id).unwrap().ended = true;
            }
        }
        Ingested { plan, decision, budgets }
    }
}

// ---- fixtures ----

pub(crate) fn mission(id: &str, spec: serde_json::Value) -> Arc<CompiledMission> {
    let spec: crate::mission::MissionSpec = serde_json::from_value(spec).unwrap();
    CompiledMission::compile(id, &spec).unwrap()
}

/// Minutes after the start of November 2026.
pub(crate) fn at(minute: i64) -> Timestamp {
    "2026-11-01T00:00:00Z".parse::<Timestamp>().unwrap() + SignedDuration::from_mins(minute)
}

pub(crate) fn event(id: &str, event_type: &str, user: &str, minute: i64, attributes: serde_json::Value) -> Event {
    Event::builder(id, event_type, user, at(minute)).attributes(attributes.as_object().unwrap().clone()).build()
}

pub(crate) fn payment(id: &str, user: &str, minute: i64, amount: rust_decimal::Decimal, merchant: &str) -> Event {
    let amount = crate::decimal::to_value(amount);
    event(id, "payment", user, minute, serde_json::json!({"amount": amount, "merchant": merchant}))
}

/// A refund of `of`, of `amount` (all of it without one).
pub(crate) fn refund(id: &str, user: &str, of: &str, amount: Option<rust_decimal::Decimal>) -> Event {
    let attributes =
        amount.map_or(serde_json::json!({}), |a| serde_json::json!({"amount": crate::decimal::to_value(a)}));
    event(id, "refund", user, 0, attributes).to_builder().reverses(of).build()
}
