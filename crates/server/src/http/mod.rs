//! HTTP: routes (thin handlers), extractors, and the OpenAPI document built from them.

pub mod events;
pub mod missions;
pub mod progress;
