//! Phase 1 and 2 of a batch: what it touches, and what must be loaded to decide it.

use super::{ActiveMissions, Ledger, PairKey};
use crate::event::Event;
use crate::id::{EventId, MissionId, UserId};
use crate::mission::CompiledMission;
use crate::pointer::FieldError;
use crate::progress::ProgressState;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// A new reversal that names another user's event: it is ignored (a user's progress moves
/// only with that user's own events). Returned so that the caller can log it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredReversal {
    pub reversal: EventId,
    /// Who sent the reversal.
    pub user_id: UserId,
    pub original: EventId,
    /// Whose the original is.
    pub owner: UserId,
}

/// What a batch must do, decided from its new events alone. Tells the caller what to load
/// for [`super::decide`]: progress and live rewards of [`BatchPlan::pairs`], reversals of
/// [`BatchPlan::early_reversal_ids`], ledgers of [`BatchPlan::needs_ledger`], and the
/// inactive-mission progress of [`BatchPlan::refold_users`].
#[derive(Debug, Clone, Default)]
pub struct BatchPlan {
    /// By user id.
    pub(super) users: Vec<(UserId, UserWork)>,
    /// Every (mission, user) the batch touches, in that order, with the active mission.
    pub(super) pairs: Vec<Pair>,
    /// The batch's new reversals: they apply to the batch's own originals at fold time.
    pub(super) fresh_reversals: Vec<Event>,
    active: BTreeSet<MissionId>,
    ledger_types: Vec<String>,
    ignored: Vec<IgnoredReversal>,
}

/// A (mission, user) pair the batch touches.
#[derive(Debug, Clone)]
pub(super) struct Pair {
    pub(super) key: PairKey,
    pub(super) mission: Arc<CompiledMission>,
    /// The user's place in [`BatchPlan::users`].
    pub(super) user: usize,
}

#[derive(Debug, Clone, Default)]
pub(super) struct UserWork {
    /// New originals of this user that some active mission listens to, in fold order.
    pub(super) originals: Vec<Event>,
    /// Event types whose counted events a new reversal changed: refold those missions.
    pub(super) refold_types: BTreeSet<String>,
}

/// Per event of a batch, in order: why it is refused before anything is recorded, if it is
/// a reversal that can never apply — its original is known (recorded before, `stored`, or
/// earlier in this batch) and belongs to another user, or is itself a reversal. A reversal
/// whose original has not arrived yet is not refused: it waits in the ledger, and if the
/// original turns out to be another user's, the plan ignores it ([`BatchPlan::ignored`]).
pub fn screen_reversals(batch: &[Event], stored: &[Event]) -> Vec<Option<FieldError>> {
    let stored: HashMap<&str, &Event> = stored.iter().map(|e| (e.id(), e)).collect();
    // The first of a repeated id is the one the ledger keeps; a recorded one wins over both.
    let mut in_batch: HashMap<&str, &Event> = HashMap::new();
    for e in batch {
        in_batch.entry(e.id()).or_insert(e);
    }
    batch
        .iter()
        .map(|e| {
            let target = e.reverses()?;
            let original = stored.get(target).or_else(|| in_batch.get(target))?;
            if original.reverses().is_some() {
                Some(FieldError::new(
                    "/reverses",
                    format!("{target:?} is itself a reversal; only originals are reversed"),
                ))
            } else if original.user_id() != e.user_id() {
                Some(FieldError::new("/reverses", format!("{target:?} is another user's event")))
            } else {
                None
            }
        })
        .collect()
}

/// The originals that a batch's new reversals name, sorted and unique: load these from the
/// ledger (by id, whoever they belong to) for [`plan`].
pub fn reversal_targets<'a>(fresh: impl IntoIterator<Item = &'a Event>) -> Vec<EventId> {
    let targets: BTreeSet<EventId> = fresh.into_iter().filter_map(|e| e.reverses()).map(EventId::from).collect();
    targets.into_iter().collect()
}

/// Plans a batch from its new events (`fresh`: duplicates already removed by the ledger;
/// moved into the plan) and
/// the stored events that its new reversals name (`originals`, as loaded for
/// [`reversal_targets`]; events of this batch among them are recognised and skipped).
///
/// - A new original counts for the active missions listening to its type: it is folded in.
/// - A new reversal of an original recorded before changes what that original counted: the
///   original's user refolds every mission listening to its type (active ones here, inactive
///   ones through [`super::InactiveProgress`]).
/// - A new reversal of an original in this same batch needs no refold: the original is folded
///   in its net form.
/// - A reversal whose original has not arrived waits in the ledger; one naming another user's
///   event is ignored and reported.
pub fn plan(missions: &ActiveMissions, fresh: Vec<Event>, originals: &[Event]) -> BatchPlan {
    let mut users: BTreeMap<UserId, UserWork> = BTreeMap::new();
    let fresh_by_id: HashMap<&str, &Event> = fresh.iter().map(|e| (e.id(), e)).collect();
    let stored_by_id: HashMap<&str, &Event> = originals.iter().map(|e| (e.id(), e)).collect();
    let mut ignored = Vec::new();
    let mut fresh_reversals = Vec::new();
    for r in fresh.iter().filter(|e| e.reverses().is_some()) {
        fresh_reversals.push(r.clone());
        let target = r.reverses().unwrap_or_default();
        let (original, in_batch) = match (fresh_by_id.get(target), stored_by_id.get(target)) {
            (Some(o), _) => (*o, true),
            (None, Some(o)) => (*o, false),
            (None, None) => continue, // not arrived yet: waits in the ledger
        };
        if original.reverses().is_some() {
            continue; // a reversal of a reversal takes nothing back
        }
        if original.user_id() != r.user_id() {
            ignored.push(IgnoredReversal {
                reversal: EventId::from(r.id()),
                user_id: UserId::from(r.user_id()),
                original: EventId::from(original.id()),
                owner: UserId::from(original.user_id()),
            });
            continue;
        }
        if !in_batch {
            // Recorded whatever the active missions listen to: a mission that is no longer
            // active may have counted it too.
            users
                .entry(UserId::from(original.user_id()))
                .or_default()
                .refold_types
                .insert(original.event_type().to_owned());
        }
    }
    drop(fresh_by_id);
    // Moved into the plan, not copied: the batch's events are spent here.
    for e in fresh.into_iter().filter(|e| e.reverses().is_none() && missions.listens_to(e.event_type())) {
        users.entry(UserId::from(e.user_id())).or_default().originals.push(e);
    }
    for w in users.values_mut() {
        w.originals.sort_by(|a, b| (a.occurred_at(), a.id()).cmp(&(b.occurred_at(), b.id())));
    }
    let users: Vec<(UserId, UserWork)> = users.into_iter().collect();

    let mut pairs = Vec::new();
    for (index, (user, work)) in users.iter().enumerate() {
        let types = work.originals.iter().map(|e| e.event_type()).chain(work.refold_types.iter().map(String::as_str));
        let mut touched: BTreeMap<&str, &Arc<CompiledMission>> = BTreeMap::new();
        for t in types {
            for m in missions.for_type(t) {
                touched.insert(m.id(), m);
            }
        }
        pairs.extend(touched.into_values().map(|m| Pair {
            key: (MissionId::new(m.id()), user.clone()),
            mission: m.clone(),
            user: index,
        }));
    }
    pairs.sort_by(|a, b| a.key.cmp(&b.key));

    BatchPlan {
        users,
        pairs,
        fresh_reversals,
        active: missions.iter().map(|m| MissionId::new(m.id())).collect(),
        ledger_types: missions.event_types().map(str::to_owned).collect(),
        ignored,
    }
}

impl BatchPlan {
    /// Every (mission, user) the batch touches, in `(mission, user)` order: load their stored
    /// progress and live (not revoked) rewards.
    pub fn pairs(&self) -> impl Iterator<Item = &PairKey> {
        self.pairs.iter().map(|p| &p.key)
    }

    /// The new originals some active mission listens to: load the reversals that arrived
    /// before them (`reversals_of` these ids).
    pub fn early_reversal_ids(&self) -> Vec<EventId> {
        self.users.iter().flat_map(|(_, w)| &w.originals).map(|e| EventId::from(e.id())).collect()
    }

    /// The users whose new reversals changed counted events: their progress in missions that
    /// are no longer active must be checked too (see [`BatchPlan::checks_inactive`]).
    pub fn refold_users(&self) -> impl Iterator<Item = &UserId> {
        self.users.iter().filter(|(_, w)| !w.refold_types.is_empty()).map(|(u, _)| u)
    }

    /// The event types whose counted events a new reversal of `user` changed.
    pub fn refold_types(&self, user: &str) -> Option<&BTreeSet<String>> {
        self.work(user).map(|w| &w.refold_types).filter(|t| !t.is_empty())
    }

    /// `user`'s ledger as recorded before the batch, with the batch's own new originals of
    /// that user and `batch_reversals` (the batch's new reversals, and those recorded before
    /// that name its new originals): what a refold folds. An event both in `ledger` and among
    /// the others counts once.
    pub(super) fn with_batch<'s>(
        &'s self,
        user: &UserId,
        ledger: &'s Ledger,
        batch_reversals: impl IntoIterator<Item = &'s Event>,
    ) -> (Vec<&'s Event>, Vec<Event>) {
        let recorded: HashSet<&str> = ledger.originals.iter().map(Event::id).collect();
        let batch = self.work(user.as_str()).map(|w| w.originals.as_slice()).unwrap_or_default();
        let originals = ledger.originals.iter().chain(batch.iter().filter(|e| !recorded.contains(e.id()))).collect();
        let recorded: HashSet<&str> = ledger.reversals.iter().map(Event::id).collect();
        let mut reversals = ledger.reversals.clone();
        reversals.extend(
            batch_reversals.into_iter().filter(|r| r.user_id() == user.as_str() && !recorded.contains(r.id())).cloned(),
        );
        (originals, reversals)
    }

    fn work(&self, user: &str) -> Option<&UserWork> {
        let i = self.users.binary_search_by(|(u, _)| u.as_str().cmp(user)).ok()?;
        Some(&self.users[i].1)
    }

    /// Whether `user`'s stored progress in `mission`, a mission that is not active, must be
    /// refolded (revoke-only): a new reversal changed an event of a type it listens to. Load
    /// its ledger for `mission.event_types()` and pass it as an [`super::InactiveProgress`].
    pub fn checks_inactive(&self, user: &str, mission: &CompiledMission) -> bool {
        !self.active.contains(mission.id())
            && self.refold_types(user).is_some_and(|types| mission.event_types().iter().any(|t| types.contains(t)))
    }

    /// The event types a user's ledger is loaded for: all those the active missions listen to.
    pub fn ledger_types(&self) -> &[String] {
        &self.ledger_types
    }

    /// New reversals that named another user's event, and were ignored.
    pub fn ignored(&self) -> &[IgnoredReversal] {
        &self.ignored
    }

    /// Whether the batch touches no progress at all.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty() && self.refold_users().next().is_none()
    }

    /// Phase 2: the users whose full ledger (originals of [`BatchPlan::ledger_types`] and
    /// their reversals) must be loaded because some pair of theirs is refolded. `stored`
    /// holds the stored progress of [`BatchPlan::pairs`]; a pair without a row has none.
    pub fn needs_ledger(&self, stored: &HashMap<PairKey, ProgressState>) -> BTreeSet<UserId> {
        self.pairs.iter().filter(|p| self.must_refold(p, stored.get(&p.key))).map(|p| p.key.1.clone()).collect()
    }

    /// The new originals of the pair's user that its mission listens to, in fold order.
    pub(super) fn new_events<'s>(&'s self, pair: &'s Pair) -> impl Iterator<Item = &'s Event> {
        let types = pair.mission.event_types();
        self.users[pair.user].1.originals.iter().filter(move |e| types.iter().any(|t| t == e.event_type()))
    }

    /// A pair is refolded from the ledger when a reversal changed an event of a type its
    /// mission listens to, or when its first new event sorts before what the stored state
    /// has folded (a late event). Otherwise its new net events fold onto the stored state.
    pub(super) fn must_refold(&self, pair: &Pair, stored: Option<&ProgressState>) -> bool {
        let work = &self.users[pair.user].1;
        let reversed =
            !work.refold_types.is_empty() && pair.mission.event_types().iter().any(|t| work.refold_types.contains(t));
        reversed || stored.is_some_and(|s| self.new_events(pair).next().is_some_and(|e| !s.can_append(e)))
    }
}
