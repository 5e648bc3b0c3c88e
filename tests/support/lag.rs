//! Helpers of the lag probe tests: a reference API and a daemon sending no
//! load traffic (so the simulator's ground truth is the probes' alone), and
//! readers for the lag series.

use std::time::Duration;

use rehab_canary::app::Daemon;
use rehab_canary::config::Config;
use rehab_canary::lag::Projection;
use rehab_canary::sim::{Faults, SimConfig, SimHandle};

use super::stack::{
    daemon_config_for, shared_dev_token_file, start_sim as start_sim_with, with_faults,
};
pub use super::stack::{faults, start_daemon};
use super::Scrape;

pub const PROJECTIONS: [&str; 4] = ["stream", "adherence", "quality", "work_queue"];

pub async fn start_sim(faults: Faults, tweak: impl FnOnce(&mut SimConfig)) -> SimHandle {
    let mut cfg = with_faults(faults);
    tweak(&mut cfg);
    start_sim_with(cfg).await
}

/// A daemon against `sim` with no load traffic and only the named probes.
pub fn config(sim: &SimHandle, probes: &[&str], tweak: impl FnOnce(&mut Config)) -> Config {
    let mut cfg = daemon_config_for(sim, shared_dev_token_file());
    cfg.traffic.events_per_second = 0.0;
    for p in Projection::ALL {
        cfg.lag.probes[p].enabled = probes.contains(&p.as_str());
    }
    cfg.lag.probes.batch.enabled = probes.contains(&"batch");
    tweak(&mut cfg);
    cfg
}

pub fn failures(s: &Scrape, projection: &str, reason: &str) -> f64 {
    s.value(
        "rehab_canary_lag_probe_failures_total",
        &[("projection", projection), ("reason", reason)],
    )
}

/// Asserts that `projection` counted no failure of any reason.
pub fn no_failures(s: &Scrape, projection: &str, context: &str) {
    for reason in ["lost", "late", "error", "rejected"] {
        assert_eq!(
            failures(s, projection, reason),
            0.0,
            "{context} {projection} {reason}"
        );
    }
}

pub fn per(s: &Scrape, name: &str, projection: &str) -> f64 {
    s.value(name, &[("projection", projection)])
}

/// In-time and late lag samples.
pub fn samples(s: &Scrape, projection: &str) -> f64 {
    per(s, "rehab_canary_projection_lag_seconds_count", projection)
}

pub fn window(s: &Scrape, projection: &str, quantile: &str) -> Option<f64> {
    s.get(
        "rehab_canary_projection_lag_window_seconds",
        &[("projection", projection), ("quantile", quantile)],
    )
}

/// The `q` quantile of `values` by nearest rank (what an exact recorder says).
pub fn exact_quantile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// The accuracy bound.
pub fn tolerance(truth: f64) -> f64 {
    (0.1 * truth).max(0.005)
}

pub async fn set_faults(sim: &SimHandle, f: Faults) {
    sim.set_faults(f);
}
