//! The `questline` service: configuration, HTTP API, auth and the business layer around the
//! pure engine (`questline-core`) and the store (`questline-store`).

#![forbid(unsafe_code)]

pub mod auth;
pub mod error;
pub mod http;
pub mod service;
pub mod state;
