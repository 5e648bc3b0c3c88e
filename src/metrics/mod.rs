//! TEMPORARY interface stub; replaced by the metrics branch at merge.
use std::sync::Arc;
use std::time::Duration;

use crate::api::{Endpoint, EventKind};

pub struct BuildInfo {
    pub version: &'static str,
    pub revision: &'static str,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Status(u16),
    Timeout,
    ConnectError,
    IoError,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    MaxInFlight,
    CircuitOpen,
    Paused,
    RateLimited,
}
pub struct Metrics;
pub struct InFlightGuard;
impl Metrics {
    pub fn new(_b: BuildInfo) -> Self {
        Metrics
    }
    pub fn record_request(&self, _ep: Endpoint, _o: Outcome, _l: Duration) {}
    pub fn record_schedule_delay(&self, _d: Duration) {}
    pub fn event_sent(&self, _k: EventKind) {}
    pub fn event_accepted(&self, _k: EventKind) {}
    pub fn iteration_dropped(&self, _r: DropReason) {}
    pub fn set_target_rate(&self, _r: f64) {}
    pub fn set_burst_active(&self, _a: bool) {}
    pub fn in_flight_start(self: &Arc<Self>) -> InFlightGuard {
        InFlightGuard
    }
    pub fn rotate_windows(&self) {}
    pub fn encode(&self) -> String {
        String::new()
    }
}
