//! The `questline` binary's library: configuration, the HTTP API (axum), authentication
//! extractors, the roles and the demo, over the business layer (`questline-service`).
//!
//! Entry points for the binary, tests and the demo: [`Config::load`], [`build_state`],
//! [`router`], [`serve::run`].

#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod delivery;
pub mod demo;
pub mod dispatch;
pub mod error;
pub mod http;
pub mod jobs;
pub mod serve;
pub mod state;

pub use config::Config;
pub use http::router;
pub use serve::{StartError, build_state};
