//! The reference Rehab API (`rehab-canary sim`): a stand-in for the real
//! service that ingests events, applies them asynchronously in batches, serves
//! lagging read models, injects faults on demand and exports its ground truth.
//!
//! Contract used by the rest of the crate (keep these signatures):
//! - `SimConfig: Default + Deserialize` (all keys defaulted, unknown keys rejected)
//! - `start(listen, SimConfig) -> Result<SimHandle, SimError>` binds (port 0 ok)
//! - `SimHandle::addr()` and `SimHandle::shutdown().await`
//!
//! TEMPORARY interface stub; replaced by the sim branch at merge.
use std::net::SocketAddr;

#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct SimConfig {}
#[derive(Debug, thiserror::Error)]
#[error("sim")]
pub struct SimError;
pub struct SimHandle {
    addr: SocketAddr,
}
impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub async fn shutdown(self) {}
}
pub async fn start(listen: SocketAddr, _cfg: SimConfig) -> Result<SimHandle, SimError> {
    Ok(SimHandle { addr: listen })
}
pub async fn run_standalone(
    _listen: SocketAddr,
    _config_path: Option<&std::path::Path>,
) -> Result<(), SimError> {
    Ok(())
}
