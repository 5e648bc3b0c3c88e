//! "Did this deploy make it worse?": the baseline memory (`store.rs`,
//! filled by `collect.rs` from the one-minute windows at no cost to the hot
//! path), the deploy marker (`deploy.rs`), the statistics that compare two
//! windows (`stats.rs`) and the routes that answer (`api.rs`). Kayenta's
//! question, answered by the canary that already measures both windows.

pub mod api;
pub mod cli;
pub mod collect;
pub mod deploy;
pub mod stats;
pub mod store;
