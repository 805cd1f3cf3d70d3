//! A batch of events, decided whole: which progress changes, which completions it causes,
//! which rewards it grants and revokes, and what it enqueues. Pure, like the rest of the
//! engine; the caller only loads, calls and saves, in phases, because what must be loaded
//! depends on earlier decisions:
//!
//! 1. [`plan`] — from the batch's new events (the ledger already removed duplicates) and the
//!    stored originals its new reversals name ([`reversal_targets`]), against the
//!    [`ActiveMissions`]: the (mission, user) pairs it touches ([`BatchPlan::pairs`]), the new
//!    originals whose early reversals must be loaded ([`BatchPlan::early_reversal_ids`]), the
//!    users whose reversals force a refold, also of missions no longer active
//!    ([`BatchPlan::refold_users`], [`BatchPlan::checks_inactive`]), and the reversals it
//!    ignores because they name another user's event ([`BatchPlan::ignored`]).
//! 2. [`BatchPlan::needs_ledger`] — given the stored progress of the pairs: whose ledger must
//!    be loaded, because a pair is refolded (a reversal changed a counted event, or a new
//!    event sorts before what the state has folded).
//! 3. [`decide`] — from [`BatchInputs`]: the [`BatchDecision`] (changed progress, new
//!    completions, [`Grant`]s without ids, [`Revoke`]s of pending rewards, [`Effect`]s).
//! 4. [`crate::budget::take_budgets`] — with the budget rows of
//!    [`BatchDecision::grant_missions`], locked in that order: which grants are taken, and
//!    the new counts (the take that spends a budget ends its mission).

mod decide;
mod missions;
mod plan;

pub use decide::{
    BatchDecision, BatchInputs, DecideError, Effect, Grant, InactiveProgress, Ledger, NewCompletion, ProgressChange,
    Revoke, decide,
};
pub use missions::ActiveMissions;
pub use plan::{BatchPlan, IgnoredReversal, plan, reversal_targets, screen_reversals};

use crate::id::{MissionId, UserId};

/// Where a mission and a user meet: the key of a progress row and of its rewards.
pub type PairKey = (MissionId, UserId);

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
