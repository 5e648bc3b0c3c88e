//! `[profiles.NAME]`: the one-shot run profiles as configured. The data,
//! the built-in profiles (the seed's `smoke | load | stress | broadway` plus
//! `capacity`) as if written in the config, how an entry layers over its
//! built-in, and every check of a profile's keys, so a bad profile is
//! reported with the rest of the config. Resolving a profile into a run
//! (rates, thresholds from `[slo]`) is the one-shot runner's job
//! (`oneshot::profile`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::load::Errors;
use super::Config;

/// The built-in profile names, in the order `--help` and errors list them.
pub const BUILTIN: [&str; 5] = ["smoke", "load", "stress", "broadway", "capacity"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeKind {
    /// One rate (plus bursts) for the whole run, judged at the end.
    Steady,
    /// Stepwise ramp until an SLO breaks, then refine.
    Capacity,
    /// The seed's Broadway scenario: sustained, bursts as batches, a ramp
    /// of batched ingestion, backpressure (`oneshot::broadway`).
    Broadway,
}

impl ModeKind {
    /// The word `summary.json`, the table and the page use (as serde writes it).
    pub const fn as_str(self) -> &'static str {
        match self {
            ModeKind::Steady => "steady",
            ModeKind::Capacity => "capacity",
            ModeKind::Broadway => "broadway",
        }
    }
}

/// `[profiles.NAME]`: every key optional; unset keys come from the built-in
/// profile of that name, else from `[traffic]` and `[slo]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProfileConfig {
    pub mode: Option<ModeKind>,
    /// Run length (`--for` wins); for `capacity`, the budget of the whole ramp.
    #[serde(with = "humantime_serde")]
    pub duration: Option<Duration>,
    pub events_per_second: Option<f64>,
    #[serde(with = "humantime_serde")]
    pub ramp_up: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub burst_every: Option<Duration>,
    /// `0s` turns bursts off.
    #[serde(with = "humantime_serde")]
    pub burst_duration: Option<Duration>,
    pub burst_multiplier: Option<f64>,
    /// End the run as soon as a threshold can no longer pass.
    pub abort_on_fail: Option<bool>,
    pub thresholds: ThresholdsConfig,
    pub capacity: CapacityConfig,
    pub broadway: BroadwayConfig,
}

/// The `broadway` mode's phases (see `oneshot::broadway`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BroadwayConfig {
    /// Share of sessions uploaded as batches in the first two phases
    /// (default 0.2); the last two batch every session.
    pub batch_share: Option<f64>,
    /// The ramp climbs from the rate to this multiple of it (default 2).
    pub ramp_multiplier: Option<f64>,
    pub ramp_steps: Option<u32>,
    /// The backpressure phase runs at this multiple of the rate (default 3),
    /// never past `traffic.max_events_per_second`.
    pub backpressure_multiplier: Option<f64>,
}

/// [`BroadwayConfig`] with its defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BroadwayPhases {
    pub batch_share: f64,
    pub ramp_multiplier: f64,
    pub ramp_steps: u32,
    pub backpressure_multiplier: f64,
}

impl BroadwayConfig {
    pub fn phases(&self) -> BroadwayPhases {
        BroadwayPhases {
            batch_share: self.batch_share.unwrap_or(0.2),
            ramp_multiplier: self.ramp_multiplier.unwrap_or(2.0),
            ramp_steps: self.ramp_steps.unwrap_or(4),
            backpressure_multiplier: self.backpressure_multiplier.unwrap_or(3.0),
        }
    }
}

/// k6-style thresholds; unset ones come from `[slo]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ThresholdsConfig {
    /// Which latency percentile is judged (default `slo.latency.objective`).
    pub latency_percentile: Option<f64>,
    /// Its ceiling (default `slo.latency.threshold`).
    #[serde(with = "humantime_serde")]
    pub latency: Option<Duration>,
    /// Percent of requests that may fail (default 100 − `slo.availability.objective`).
    pub max_error_percent: Option<f64>,
    /// Absolute floor of accepted events/s; by default
    /// `slo.throughput.objective` % of the rate the run scheduled.
    pub min_events_per_second: Option<f64>,
    /// Which projection-lag percentile is judged (default `slo.projection_lag.objective`).
    pub lag_percentile: Option<f64>,
    /// Its ceiling (default `slo.projection_lag.threshold`).
    #[serde(with = "humantime_serde")]
    pub lag: Option<Duration>,
    /// Probe events that may be lost (default 0).
    pub max_lost_events: Option<u64>,
}

/// The capacity ramp.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CapacityConfig {
    pub start_events_per_second: Option<f64>,
    pub step_events_per_second: Option<f64>,
    /// How long each rate is held and judged.
    #[serde(with = "humantime_serde")]
    pub step_duration: Option<Duration>,
    /// The start of each step that is not judged (queues settle after a change).
    #[serde(with = "humantime_serde")]
    pub settle: Option<Duration>,
    /// Bisections between the last passing and the first failing rate.
    pub refine_steps: Option<u32>,
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The built-in settings of `name`, as if written in the config.
pub fn builtin(name: &str) -> Option<ProfileConfig> {
    let steady = |duration: u64, rate: f64| ProfileConfig {
        mode: Some(ModeKind::Steady),
        duration: Some(secs(duration)),
        events_per_second: Some(rate),
        ramp_up: Some(Duration::ZERO),
        burst_duration: Some(Duration::ZERO),
        abort_on_fail: Some(false),
        ..ProfileConfig::default()
    };
    Some(match name {
        // Quick validation: light traffic, every journey and probe exercised.
        "smoke" => steady(30, 20.0),
        // The seed's main performance test.
        "load" => steady(600, 1000.0),
        // 150 % of load; `resolve` derives the rate from the resolved load.
        "stress" => ProfileConfig {
            events_per_second: None,
            ..steady(600, 1500.0)
        },
        // The seed's Broadway scenario in four phases (`oneshot::broadway`):
        // 1000/s sustained, then every minute (at least twice per phase) a
        // 5 s burst at twice the rate uploaded as batches, then a ramp of
        // batched ingestion to 2000/s, then 3000/s capped at the ceiling.
        "broadway" => ProfileConfig {
            mode: Some(ModeKind::Broadway),
            burst_every: Some(secs(60)),
            burst_duration: Some(secs(5)),
            burst_multiplier: Some(2.0),
            ..steady(480, 1000.0)
        },
        "capacity" => ProfileConfig {
            mode: Some(ModeKind::Capacity),
            duration: Some(secs(900)),
            capacity: CapacityConfig {
                start_events_per_second: Some(200.0),
                step_events_per_second: Some(200.0),
                step_duration: Some(secs(30)),
                settle: Some(secs(5)),
                refine_steps: Some(3),
            },
            ..steady(900, 200.0)
        },
        _ => return None,
    })
}

macro_rules! overlay {
    ($base:expr, $top:expr, $($field:ident).+) => {
        if $top.$($field).+.is_some() {
            $base.$($field).+ = $top.$($field).+.clone();
        }
    };
}

/// `top`'s set keys over `base`.
pub fn merge(mut base: ProfileConfig, top: &ProfileConfig) -> ProfileConfig {
    overlay!(base, top, mode);
    overlay!(base, top, duration);
    overlay!(base, top, events_per_second);
    overlay!(base, top, ramp_up);
    overlay!(base, top, burst_every);
    overlay!(base, top, burst_duration);
    overlay!(base, top, burst_multiplier);
    overlay!(base, top, abort_on_fail);
    overlay!(base, top, thresholds.latency_percentile);
    overlay!(base, top, thresholds.latency);
    overlay!(base, top, thresholds.max_error_percent);
    overlay!(base, top, thresholds.min_events_per_second);
    overlay!(base, top, thresholds.lag_percentile);
    overlay!(base, top, thresholds.lag);
    overlay!(base, top, thresholds.max_lost_events);
    overlay!(base, top, capacity.start_events_per_second);
    overlay!(base, top, capacity.step_events_per_second);
    overlay!(base, top, capacity.step_duration);
    overlay!(base, top, capacity.settle);
    overlay!(base, top, capacity.refine_steps);
    overlay!(base, top, broadway.batch_share);
    overlay!(base, top, broadway.ramp_multiplier);
    overlay!(base, top, broadway.ramp_steps);
    overlay!(base, top, broadway.backpressure_multiplier);
    base
}

/// The profile as configured: built-in (if any) under the config's entry.
pub fn layered(profiles: &BTreeMap<String, ProfileConfig>, name: &str) -> Option<ProfileConfig> {
    match (builtin(name), profiles.get(name)) {
        (None, None) => None,
        (Some(b), None) => Some(b),
        (None, Some(c)) => Some(c.clone()),
        (Some(b), Some(c)) => Some(merge(b, c)),
    }
}

/// The event rate a steady profile runs at: its own, or for `stress` (the
/// only built-in without one) 150 % of whatever `load` resolves to.
pub fn rate(cfg: &Config, p: &ProfileConfig) -> f64 {
    match p.events_per_second {
        Some(rate) => rate,
        None => {
            let load = layered(&cfg.profiles, "load")
                .and_then(|l| l.events_per_second)
                .unwrap_or(cfg.traffic.events_per_second);
            1.5 * load
        }
    }
}

/// The capacity ramp with its defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ramp {
    pub start: f64,
    pub step: f64,
    pub step_duration: Duration,
    pub settle: Duration,
    pub refine_steps: u32,
}

impl CapacityConfig {
    pub fn ramp(&self) -> Ramp {
        Ramp {
            start: self.start_events_per_second.unwrap_or(100.0),
            step: self.step_events_per_second.unwrap_or(100.0),
            step_duration: self.step_duration.unwrap_or(secs(30)),
            settle: self.settle.unwrap_or(secs(5)),
            refine_steps: self.refine_steps.unwrap_or(3),
        }
    }
}

/// Every problem of profile `name` (layered as `p`) against `cfg`: its keys'
/// ranges, and the rates it would run at against the rate ceiling.
pub fn problems(cfg: &Config, name: &str, p: &ProfileConfig, errs: &mut Errors) {
    let key = |field: &str| format!("profiles.{name}.{field}");
    check(p, &key, errs);
    let ceiling = cfg.traffic.max_events_per_second;
    match p.mode.unwrap_or(ModeKind::Steady) {
        ModeKind::Capacity => {
            let r = p.capacity.ramp();
            if r.settle >= r.step_duration {
                errs.invalid(
                    key("capacity.settle"),
                    "must be shorter than capacity.step_duration",
                );
            }
            if r.start > ceiling {
                errs.invalid(
                    key("capacity.start_events_per_second"),
                    format!(
                        "{} is above traffic.max_events_per_second ({ceiling})",
                        r.start
                    ),
                );
            }
        }
        ModeKind::Steady | ModeKind::Broadway => {
            let rate = rate(cfg, p);
            if rate > ceiling {
                errs.invalid(
                    key("events_per_second"),
                    format!(
                        "{rate} is above the rate ceiling traffic.max_events_per_second \
                         ({ceiling}); raise the ceiling deliberately if the target can take it"
                    ),
                );
            }
        }
    }
}

/// Range checks of one profile's keys, each error naming its key.
fn check(p: &ProfileConfig, key: &dyn Fn(&str) -> String, errs: &mut Errors) {
    let mut fail = |field: &str, msg: &str| errs.invalid(key(field), msg);
    let positive = |v: Option<f64>| v.is_none_or(|v| v.is_finite() && v > 0.0);
    let percent = |v: Option<f64>| v.is_none_or(|v| v.is_finite() && v > 0.0 && v < 100.0);
    if p.duration.is_some_and(|d| d < Duration::from_secs(1)) {
        fail("duration", "must be at least 1s");
    }
    if !positive(p.events_per_second) {
        fail("events_per_second", "must be a number above 0");
    }
    if !positive(p.burst_multiplier) {
        fail("burst_multiplier", "must be a number above 0");
    }
    if let (Some(every), Some(d)) = (p.burst_every, p.burst_duration) {
        if !d.is_zero() && d >= every {
            fail("burst_duration", "must be shorter than burst_every");
        }
    }
    let t = &p.thresholds;
    if !percent(t.latency_percentile) {
        fail(
            "thresholds.latency_percentile",
            "must be a percentile in (0, 100)",
        );
    }
    if !percent(t.lag_percentile) {
        fail(
            "thresholds.lag_percentile",
            "must be a percentile in (0, 100)",
        );
    }
    if t.latency.is_some_and(|d| d.is_zero()) {
        fail("thresholds.latency", "must be above 0");
    }
    if t.lag.is_some_and(|d| d.is_zero()) {
        fail("thresholds.lag", "must be above 0");
    }
    if t.max_error_percent
        .is_some_and(|v| !(v.is_finite() && (0.0..=100.0).contains(&v)))
    {
        fail(
            "thresholds.max_error_percent",
            "must be a percentage in [0, 100]",
        );
    }
    if t.min_events_per_second
        .is_some_and(|v| !(v.is_finite() && v >= 0.0))
    {
        fail(
            "thresholds.min_events_per_second",
            "must be a number, 0 or more",
        );
    }
    let c = &p.capacity;
    if !positive(c.start_events_per_second) {
        fail(
            "capacity.start_events_per_second",
            "must be a number above 0",
        );
    }
    if !positive(c.step_events_per_second) {
        fail(
            "capacity.step_events_per_second",
            "must be a number above 0",
        );
    }
    if c.step_duration.is_some_and(|d| d < Duration::from_secs(2)) {
        fail("capacity.step_duration", "must be at least 2s");
    }
    if c.refine_steps.is_some_and(|n| n > 10) {
        fail("capacity.refine_steps", "must be at most 10");
    }
    let b = &p.broadway;
    if b.batch_share.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
        fail("broadway.batch_share", "must be a share between 0 and 1");
    }
    for (field, v) in [
        ("broadway.ramp_multiplier", b.ramp_multiplier),
        (
            "broadway.backpressure_multiplier",
            b.backpressure_multiplier,
        ),
    ] {
        if v.is_some_and(|v| !(v.is_finite() && (1.0..=100.0).contains(&v))) {
            fail(field, "must be a number between 1 and 100");
        }
    }
    if b.ramp_steps.is_some_and(|n| !(1..=20).contains(&n)) {
        fail("broadway.ramp_steps", "must be between 1 and 20");
    }
}

/// Config-time checks of every `[profiles.NAME]` entry (built-ins merged in),
/// so `check-config` catches a bad profile before a CI job runs it.
pub fn validate(cfg: &Config, errs: &mut Errors) {
    for name in cfg.profiles.keys() {
        if let Some(p) = layered(&cfg.profiles, name) {
            problems(cfg, name, &p, errs);
        }
    }
}
