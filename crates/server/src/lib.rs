//! The `questline` service: configuration, HTTP API, auth and the business layer around the
//! pure engine (`questline-core`) and the store (`questline-store`).
//!
//! Entry points for the binary, tests and the demo: [`Config::load`], [`build_state`],
//! [`router`], [`serve::run`].

#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod demo;
pub mod error;
pub mod http;
pub mod serve;
pub mod service;
pub mod state;

pub use config::Config;
pub use http::router;
pub use serve::{StartError, build_state};
