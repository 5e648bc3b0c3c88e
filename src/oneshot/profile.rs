//! Profiles of one-shot runs (`run --profile NAME --for DURATION`): the
//! seed's `smoke | load | stress | broadway` plus `capacity`, built in, and
//! any number defined or adjusted under `[profiles.NAME]` in the config.
//!
//! A config entry only overrides: `[profiles.load] duration = "2m"` keeps the
//! built-in load profile's rate. Thresholds default to the `[slo]` section, so
//! the release gate and the always-on SLOs judge by the same numbers.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Config, ConfigError, TrafficConfig};

/// The built-in profile names, in the order `--help` and errors list them.
pub const BUILTIN: [&str; 5] = ["smoke", "load", "stress", "broadway", "capacity"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeKind {
    /// One rate (plus bursts) for the whole run, judged at the end.
    Steady,
    /// Stepwise ramp until an SLO breaks, then refine.
    Capacity,
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

/// Thresholds ready to judge with.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// Quantile in (0, 1).
    pub latency_quantile: f64,
    pub latency: Duration,
    /// Fraction in [0, 1].
    pub max_error_ratio: f64,
    pub min_events_per_second: Option<f64>,
    /// Fraction of the scheduled rate that must be accepted, when
    /// `min_events_per_second` is not set.
    pub throughput_ratio: f64,
    pub lag_quantile: f64,
    pub lag: Duration,
    pub max_lost_events: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CapacityPlan {
    pub start: f64,
    pub step: f64,
    pub step_duration: Duration,
    pub settle: Duration,
    pub refine_steps: u32,
    /// `traffic.max_events_per_second`: the ramp never passes the safety rail.
    pub ceiling: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Steady,
    Capacity(CapacityPlan),
}

/// A profile resolved against the config: what the run does and how it is judged.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    pub mode: Mode,
    pub duration: Duration,
    pub traffic: TrafficConfig,
    pub thresholds: Thresholds,
    pub abort_on_fail: bool,
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The built-in settings of `name`, as if written in the config.
fn builtin(name: &str) -> Option<ProfileConfig> {
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
        // Sensor uploads: every minute a 5 s burst at twice the rate, i.e.
        // 5000 events on top of the sustained 1000/s; the peak (2000/s) stays
        // within the default rate ceiling.
        "broadway" => ProfileConfig {
            burst_every: Some(secs(60)),
            burst_duration: Some(secs(5)),
            burst_multiplier: Some(2.0),
            ..steady(300, 1000.0)
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
fn merge(mut base: ProfileConfig, top: &ProfileConfig) -> ProfileConfig {
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
    base
}

/// The profile as configured: built-in (if any) under the config's entry.
fn layered(profiles: &BTreeMap<String, ProfileConfig>, name: &str) -> Option<ProfileConfig> {
    match (builtin(name), profiles.get(name)) {
        (None, None) => None,
        (Some(b), None) => Some(b),
        (None, Some(c)) => Some(c.clone()),
        (Some(b), Some(c)) => Some(merge(b, c)),
    }
}

/// Every profile name a run can use: the built-ins, then the config's own.
pub fn names(cfg: &Config) -> Vec<String> {
    let mut names: Vec<String> = BUILTIN.iter().map(|s| (*s).to_owned()).collect();
    names.extend(
        cfg.profiles
            .keys()
            .filter(|k| !BUILTIN.contains(&k.as_str()))
            .cloned(),
    );
    names
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("unknown profile {name:?}; known profiles: {known}")]
    Unknown { name: String, known: String },
    #[error("profile {name:?} is invalid:\n{errors}")]
    Invalid {
        name: String,
        errors: crate::config::ConfigErrors,
    },
}

/// Resolves `name` against `cfg`; `run_for` (`--for`) replaces the duration.
pub fn resolve(
    cfg: &Config,
    name: &str,
    run_for: Option<Duration>,
) -> Result<Profile, ProfileError> {
    let Some(p) = layered(&cfg.profiles, name) else {
        return Err(ProfileError::Unknown {
            name: name.to_owned(),
            known: names(cfg).join(", "),
        });
    };
    let key = |field: &str| format!("profiles.{name}.{field}");
    let mut errors = check(&p, &key);

    let mut traffic = cfg.traffic.clone();
    traffic.events_per_second = match p.events_per_second {
        Some(rate) => rate,
        // Only stress leaves its rate unset: 150 % of whatever load resolves to.
        None => {
            let load = layered(&cfg.profiles, "load")
                .and_then(|l| l.events_per_second)
                .unwrap_or(traffic.events_per_second);
            1.5 * load
        }
    };
    overlay_traffic(&mut traffic, &p);
    let mode = match p.mode.unwrap_or(ModeKind::Steady) {
        ModeKind::Steady => Mode::Steady,
        ModeKind::Capacity => {
            let c = &p.capacity;
            let plan = CapacityPlan {
                start: c.start_events_per_second.unwrap_or(100.0),
                step: c.step_events_per_second.unwrap_or(100.0),
                step_duration: c.step_duration.unwrap_or(secs(30)),
                settle: c.settle.unwrap_or(secs(5)),
                refine_steps: c.refine_steps.unwrap_or(3),
                ceiling: traffic.max_events_per_second,
            };
            if plan.settle >= plan.step_duration {
                errors.push(ConfigError::invalid(
                    &key("capacity.settle"),
                    "must be shorter than capacity.step_duration",
                ));
            }
            if plan.start > plan.ceiling {
                errors.push(ConfigError::invalid(
                    &key("capacity.start_events_per_second"),
                    format!(
                        "{} is above traffic.max_events_per_second ({})",
                        plan.start, plan.ceiling
                    ),
                ));
            }
            // The ramp's first rate is what the engine starts with.
            traffic.events_per_second = plan.start.min(plan.ceiling);
            Mode::Capacity(plan)
        }
    };
    if matches!(mode, Mode::Steady) && traffic.events_per_second > traffic.max_events_per_second {
        errors.push(ConfigError::invalid(
            &key("events_per_second"),
            format!(
                "{} is above the rate ceiling traffic.max_events_per_second ({}); raise the \
                 ceiling deliberately if the target can take it",
                traffic.events_per_second, traffic.max_events_per_second
            ),
        ));
    }
    if !errors.is_empty() {
        return Err(ProfileError::Invalid {
            name: name.to_owned(),
            errors: crate::config::ConfigErrors(errors),
        });
    }
    let t = &p.thresholds;
    let slo = &cfg.slo;
    let thresholds = Thresholds {
        latency_quantile: t.latency_percentile.unwrap_or(slo.latency.objective) / 100.0,
        latency: t.latency.unwrap_or(slo.latency.threshold),
        // Rounded so 100 − 99.9 reads 0.1 %, not 0.09999999999999432 %.
        max_error_ratio: (t
            .max_error_percent
            .unwrap_or(100.0 - slo.availability.objective)
            * 1e9)
            .round()
            / 1e11,
        min_events_per_second: t.min_events_per_second,
        throughput_ratio: slo.throughput.objective / 100.0,
        lag_quantile: t.lag_percentile.unwrap_or(slo.projection_lag.objective) / 100.0,
        lag: t.lag.unwrap_or(slo.projection_lag.threshold),
        max_lost_events: t.max_lost_events.unwrap_or(0),
    };
    Ok(Profile {
        name: name.to_owned(),
        mode,
        duration: run_for.or(p.duration).unwrap_or(secs(60)),
        traffic,
        thresholds,
        abort_on_fail: p.abort_on_fail.unwrap_or(false),
    })
}

fn overlay_traffic(traffic: &mut TrafficConfig, p: &ProfileConfig) {
    if let Some(r) = p.ramp_up {
        traffic.ramp_up = r;
    }
    if let Some(e) = p.burst_every {
        traffic.burst.every = e;
    }
    if let Some(d) = p.burst_duration {
        traffic.burst.duration = d;
    }
    if let Some(m) = p.burst_multiplier {
        traffic.burst.multiplier = m;
    }
}

/// Range checks of one profile's keys, each error naming its key.
fn check(p: &ProfileConfig, key: &dyn Fn(&str) -> String) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    let mut fail = |field: &str, msg: &str| errs.push(ConfigError::invalid(&key(field), msg));
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
    errs
}

/// Config-time checks of every `[profiles.NAME]` entry (built-ins merged in),
/// so `check-config` catches a bad profile before a CI job runs it.
pub fn validate(cfg: &Config) -> Vec<ConfigError> {
    cfg.profiles
        .keys()
        .filter_map(|name| match resolve(cfg, name, None) {
            Err(ProfileError::Invalid { errors, .. }) => Some(errors.0),
            _ => None,
        })
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg_with(toml: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, toml).unwrap();
        Config::load_with_env(Some(&path), Vec::new()).unwrap()
    }

    #[test]
    fn builtins_mirror_the_seed_and_take_slo_thresholds() {
        let cfg = Config::default();
        let load = resolve(&cfg, "load", None).unwrap();
        assert_eq!(load.duration, secs(600));
        assert_eq!(load.traffic.events_per_second, 1000.0);
        assert!(!load.traffic.burst.enabled());
        assert_eq!(load.thresholds.latency, Duration::from_millis(200));
        assert!((load.thresholds.latency_quantile - 0.95).abs() < 1e-9);
        assert!((load.thresholds.max_error_ratio - 0.001).abs() < 1e-9);
        assert_eq!(load.thresholds.lag, Duration::from_millis(100));
        assert_eq!(load.thresholds.max_lost_events, 0);
        let stress = resolve(&cfg, "stress", None).unwrap();
        assert_eq!(stress.traffic.events_per_second, 1500.0);
        let smoke = resolve(&cfg, "smoke", Some(secs(5))).unwrap();
        assert_eq!(smoke.duration, secs(5));
        let broadway = resolve(&cfg, "broadway", None).unwrap();
        let b = &broadway.traffic.burst;
        assert!(b.enabled());
        let extra = (b.multiplier - 1.0) * 1000.0 * b.duration.as_secs_f64();
        assert_eq!(extra, 5000.0, "each burst adds 5000 events");
        assert!(matches!(
            resolve(&cfg, "capacity", None).unwrap().mode,
            Mode::Capacity(_)
        ));
    }

    #[test]
    fn config_entries_override_key_by_key_and_add_profiles() {
        let cfg = cfg_with(
            "[profiles.load]\nduration = \"2m\"\n[profiles.load.thresholds]\nlatency = \"300ms\"\n\
             [profiles.nightly]\nevents_per_second = 30\nabort_on_fail = true\n",
        );
        let load = resolve(&cfg, "load", None).unwrap();
        assert_eq!(load.duration, secs(120));
        assert_eq!(
            load.traffic.events_per_second, 1000.0,
            "kept from the built-in"
        );
        assert_eq!(load.thresholds.latency, Duration::from_millis(300));
        let nightly = resolve(&cfg, "nightly", None).unwrap();
        assert_eq!(nightly.traffic.events_per_second, 30.0);
        assert!(nightly.abort_on_fail);
        assert!(names(&cfg).contains(&"nightly".to_owned()));
        let stress = resolve(&cfg, "stress", None).unwrap();
        assert_eq!(stress.traffic.events_per_second, 1500.0);
    }

    #[test]
    fn unknown_profile_lists_the_known_ones() {
        let err = resolve(&Config::default(), "soak", None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("soak") && msg.contains("smoke, load"), "{msg}");
    }

    #[test]
    fn bad_profile_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[profiles.x]\nevents_per_second = -5\nwhat = 1\n[profiles.x.thresholds]\nlatency_percentile = 120\n",
        )
        .unwrap();
        let err = Config::load_with_env(Some(&path), Vec::new()).unwrap_err();
        let keys: Vec<_> = err.0.iter().filter_map(|e| e.key()).collect();
        assert!(keys.contains(&"profiles.x.what"), "{keys:?}");
        assert!(keys.contains(&"profiles.x.events_per_second"), "{keys:?}");
        assert!(
            keys.contains(&"profiles.x.thresholds.latency_percentile"),
            "{keys:?}"
        );
    }

    #[test]
    fn a_profile_rate_above_the_ceiling_is_refused() {
        let cfg = cfg_with("[traffic]\nmax_events_per_second = 1000\n");
        let err = resolve(&cfg, "stress", None).unwrap_err();
        assert!(
            err.to_string()
                .contains("profiles.stress.events_per_second"),
            "{err}"
        );
    }
}
