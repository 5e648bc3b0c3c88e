//! The reference Rehab API (`rehab-canary sim`): a stand-in for the real
//! service that ingests events, applies them asynchronously in batches, serves
//! lagging read models, injects faults on demand and exports its ground truth.
//!
//! Contract used by the rest of the crate (keep these signatures):
//! - `SimConfig: Default + Deserialize` (all keys defaulted, unknown keys rejected)
//! - `start(listen, SimConfig) -> Result<SimHandle, SimError>` binds (port 0 ok)
//! - `SimHandle::addr()` and `SimHandle::shutdown().await`
