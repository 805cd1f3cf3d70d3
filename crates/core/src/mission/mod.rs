//! Missions: their definition as users write it ([`spec`]), its validation and compilation
//! into a form that evaluates events without re-parsing anything ([`compile`]), and filter
//! evaluation ([`filter`]), and the notifications it declares ([`notice`]).

pub mod compile;
pub mod filter;
pub mod notice;
pub mod spec;
pub mod window;

pub use compile::{CompiledMission, CompiledStep};
pub use spec::{ActivePeriod, Mission, MissionSpec, MissionStatus};
