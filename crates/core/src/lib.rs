//! questline's engagement engine, as pure functions.
//!
//! This crate knows missions, events, progress and rewards, and nothing of HTTP, SQL, clocks
//! or threads: time comes in as a parameter and every function is deterministic. That is what
//! lets the same code serve live ingest, dry-runs (`simulate`) and recomputation from the
//! ledger, and what makes its invariants cheap to check with property tests.
//!
//! The path through it: an [`event::Event`] is parsed at the edge; [`net::net_events`] turns
//! originals and their reversals into the *net* events; a [`mission::CompiledMission`] folds
//! net events, in `(occurred_at, id)` order, into a [`progress::ProgressState`], reporting
//! each [`progress::Completion`]; [`progress::ProgressView`] renders a state for readers.
//!
//! Live ingest decides a whole batch here, in phases the caller interleaves with loading
//! (see [`batch`]): [`batch::plan`] finds the (mission, user) pairs the batch's new events
//! touch among the [`batch::ActiveMissions`] and what to load; [`batch::BatchPlan::needs_ledger`]
//! says whose ledger a refold needs; [`batch::decide`] returns every effect — changed progress,
//! new completions, [`batch::Grant`]s, [`batch::Revoke`]s, [`batch::Effect`]s — and
//! [`budget::take_budgets`] decides which grants the budgets allow and which take ends a
//! mission. The service only loads, calls and saves.

#![forbid(unsafe_code)]

pub mod batch;
pub mod budget;
pub mod contact;
pub mod decimal;
pub mod event;
pub mod id;
pub mod message;
pub mod mission;
pub mod net;
pub mod pointer;
pub mod progress;
pub mod reward;
pub mod time;
pub mod wallet;

/// The app (tenant) a row belongs to. One default tenant for now; every stored row carries it
/// so that serving many apps is a feature later, not a migration.
pub const DEFAULT_TENANT: &str = "default";
