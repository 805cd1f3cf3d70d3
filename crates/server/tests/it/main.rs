//! End-to-end tests: each starts the real `questline` binary on port 0 with its own SQLite
//! database (or, in `multiprocess`, several binaries on one PostgreSQL database of the
//! test's own), and speaks HTTP to it. One test binary; one module per area.

mod auth;
mod demo;
mod durability;
mod events;
mod fixtures;
mod harness;
mod keys;
mod missions;
mod multiprocess;
mod ops;
mod problems;
mod progress;
mod properties;
