//! End-to-end tests: each starts the real `questline` binary on port 0 with its own SQLite
//! database, and speaks HTTP to it. One test binary; one module per area.

mod auth;
mod demo;
mod durability;
mod events;
mod fixtures;
mod harness;
mod keys;
mod missions;
mod ops;
mod progress;
mod properties;
