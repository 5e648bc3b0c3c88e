//! rehab-canary: an always-on synthetic traffic canary for the Rehab Exercise
//! Tracking API, with its own reference implementation of that API (`sim`).
//!
//! `main.rs` only parses the command line; everything runs from this library so
//! integration tests can start the daemon and the simulator in-process.
#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod app;
pub mod client;
pub mod config;
pub mod credentials;
pub mod exit;
pub mod html;
pub mod lag;
pub mod lifecycle;
pub mod metrics;
pub mod oneshot;
pub mod reload;
pub mod sim;
pub mod slo;
pub mod status;
pub mod telemetry;
pub mod traffic;
pub mod verdict;
