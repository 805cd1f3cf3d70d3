//! The business layer between thin HTTP handlers and the store: it calls the pure engine
//! with what it loaded and writes what the engine decided.

pub mod index;
pub mod ingest;
pub mod missions;
pub mod progress;
