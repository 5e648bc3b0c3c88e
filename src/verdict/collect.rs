//! Fills the snapshots: the window timer hands over each finished 10 s slot
//! of every endpoint's latency and every projection's lag; every
//! `snapshot_interval` the slots gathered are sealed into one snapshot. The
//! hot path records nothing more than it already did.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use parking_lot::Mutex;

use super::store::{encode, Snapshot, Store};
use crate::api::Endpoint;
use crate::lag::{LagMetrics, Projection};
use crate::metrics::window::{new_hist, SLOT_PERIOD};
use crate::metrics::Metrics;

const ENDPOINTS: usize = Endpoint::ALL.len();
const PROJECTIONS: usize = Projection::ALL.len();

/// One snapshot in the making.
struct Acc {
    latency: [Histogram<u32>; ENDPOINTS],
    requests: [u64; ENDPOINTS],
    errors: [u64; ENDPOINTS],
    lag: [Histogram<u32>; PROJECTIONS],
    /// Probe and lost counts at the snapshot's start.
    counts_at_start: [(u64, u64); PROJECTIONS],
    start: u64,
    slots: u64,
}

/// The daemon's baseline memory and what fills it.
pub struct Collector {
    acc: Mutex<Acc>,
    slots_per_snapshot: u64,
    store: Arc<Mutex<Store>>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("slots_per_snapshot", &self.slots_per_snapshot)
            .finish_non_exhaustive()
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn counts(lag: &LagMetrics) -> [(u64, u64); PROJECTIONS] {
    Projection::ALL.map(|p| lag.counts(p))
}

impl Collector {
    pub fn new(
        snapshot_every: std::time::Duration,
        store: Arc<Mutex<Store>>,
        lag: &LagMetrics,
    ) -> Self {
        Collector {
            acc: Mutex::new(Acc {
                latency: std::array::from_fn(|_| new_hist()),
                requests: [0; ENDPOINTS],
                errors: [0; ENDPOINTS],
                lag: std::array::from_fn(|_| new_hist()),
                counts_at_start: counts(lag),
                start: unix_now(),
                slots: 0,
            }),
            slots_per_snapshot: (snapshot_every.as_secs() / SLOT_PERIOD.as_secs()).max(1),
            store,
        }
    }

    /// One window rotation: takes every finished slot, and seals a snapshot
    /// when enough have gathered.
    pub fn rotate(&self, metrics: &Metrics, lag: &LagMetrics) {
        let sealed = {
            let mut acc = self.acc.lock();
            let a = &mut *acc;
            metrics.rotate_windows_with(|i, h, requests, errors| {
                if let Some(into) = a.latency.get_mut(i) {
                    let _ = into.add(h);
                    a.requests[i] += requests;
                    a.errors[i] += errors;
                }
            });
            lag.rotate_with(|i, h| {
                if let Some(into) = a.lag.get_mut(i) {
                    let _ = into.add(h);
                }
            });
            a.slots += 1;
            (a.slots >= self.slots_per_snapshot).then(|| seal(a, lag))
        };
        if let Some(s) = sealed {
            if let Err(e) = self.store.lock().push(s) {
                tracing::warn!(
                    "verdict: the snapshot could not be written to verdict.state_dir: {e}"
                );
            }
        }
    }
}

/// The gathered slots as one snapshot; the accumulation starts over.
fn seal(a: &mut Acc, lag: &LagMetrics) -> Snapshot {
    let now = counts(lag);
    let delta =
        |k: usize, f: fn((u64, u64)) -> u64| f(now[k]).saturating_sub(f(a.counts_at_start[k]));
    let s = Snapshot {
        start: a.start,
        seconds: a.slots * SLOT_PERIOD.as_secs(),
        latency: a.latency.iter().map(encode).collect(),
        requests: a.requests.to_vec(),
        errors: a.errors.to_vec(),
        lag: a.lag.iter().map(encode).collect(),
        probes: (0..PROJECTIONS).map(|k| delta(k, |c| c.0)).collect(),
        lost: (0..PROJECTIONS).map(|k| delta(k, |c| c.1)).collect(),
    };
    for h in a.latency.iter_mut().chain(a.lag.iter_mut()) {
        h.reset();
    }
    a.requests = [0; ENDPOINTS];
    a.errors = [0; ENDPOINTS];
    a.counts_at_start = now;
    a.start = unix_now();
    a.slots = 0;
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_config_knows_the_slot() {
        assert_eq!(
            crate::config::verdict::SLOT_SECONDS,
            crate::metrics::window::SLOT_PERIOD.as_secs()
        );
    }
}
