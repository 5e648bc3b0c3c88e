//! Resolving a one-shot profile (`run --profile NAME --for DURATION`) into
//! a run: the rate and bursts it sends, its mode (steady or a capacity ramp)
//! and the thresholds it is judged by, which default to the `[slo]` section
//! so the release gate and the always-on SLOs judge by the same numbers. The
//! profiles as configured (built-ins, `[profiles.NAME]`, their checks) are
//! `config::profile`.

use std::time::Duration;

use super::thresholds::FailOn;
use crate::config::load::Errors;
use crate::config::profile::{layered, problems, rate, secs, ModeKind, ProfileConfig, BUILTIN};
use crate::config::{Config, ConfigErrors, TrafficConfig};

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

/// Thresholds ready to judge with, at two levels: each target, and its
/// critical level (never stricter than the target).
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// Quantile in (0, 1).
    pub latency_quantile: f64,
    pub latency: Duration,
    pub latency_critical: Duration,
    /// Fraction in [0, 1].
    pub max_error_ratio: f64,
    pub max_error_ratio_critical: f64,
    pub min_events_per_second: Option<f64>,
    /// Fraction of the scheduled rate that must be accepted, when
    /// `min_events_per_second` is not set.
    pub throughput_ratio: f64,
    /// The critical floor as a fraction of the target's basis: of the
    /// scheduled rate, or of `min_events_per_second` when that is set.
    pub throughput_critical_share: f64,
    pub lag_quantile: f64,
    pub lag: Duration,
    pub lag_critical: Duration,
    pub batch_quantile: f64,
    pub batch: Duration,
    pub batch_critical: Duration,
    /// One level: any loss beyond it fails.
    pub max_lost_events: u64,
}

impl Thresholds {
    /// The thresholds whose targets are `level`'s: the critical levels for
    /// [`FailOn::Critical`], the targets themselves for [`FailOn::Warn`].
    pub fn at(&self, level: FailOn) -> Thresholds {
        match level {
            FailOn::Warn => self.clone(),
            FailOn::Critical => Thresholds {
                latency: self.latency_critical,
                max_error_ratio: self.max_error_ratio_critical,
                min_events_per_second: self
                    .min_events_per_second
                    .map(|m| m * self.throughput_critical_share),
                throughput_ratio: self.throughput_critical_share,
                lag: self.lag_critical,
                batch: self.batch_critical,
                ..self.clone()
            },
        }
    }
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

/// The `broadway` mode's phases, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct BroadwayPlan {
    pub batch_share: f64,
    pub ramp_multiplier: f64,
    pub ramp_steps: u32,
    pub backpressure_multiplier: f64,
    /// The bursts phase's bursts (the profile's burst settings).
    pub burst_every: Duration,
    pub burst_duration: Duration,
    pub burst_multiplier: f64,
    /// `traffic.max_events_per_second`: no phase passes the safety rail.
    pub ceiling: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Steady,
    Capacity(CapacityPlan),
    Broadway(BroadwayPlan),
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

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("unknown profile {name:?}; known profiles: {known}")]
    Unknown { name: String, known: String },
    #[error("profile {name:?} is invalid:\n{errors}")]
    Invalid { name: String, errors: ConfigErrors },
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
    let mut errors = Errors::default();
    problems(cfg, name, &p, &mut errors);
    if !errors.is_empty() {
        return Err(ProfileError::Invalid {
            name: name.to_owned(),
            errors: ConfigErrors(errors.into_vec()),
        });
    }
    let mut traffic = cfg.traffic.clone();
    traffic.events_per_second = rate(cfg, &p);
    overlay_traffic(&mut traffic, &p);
    let mode = match p.mode.unwrap_or(ModeKind::Steady) {
        ModeKind::Steady => Mode::Steady,
        ModeKind::Capacity => {
            let r = p.capacity.ramp();
            let plan = CapacityPlan {
                start: r.start,
                step: r.step,
                step_duration: r.step_duration,
                settle: r.settle,
                refine_steps: r.refine_steps,
                ceiling: traffic.max_events_per_second,
            };
            // The ramp's first rate is what the engine starts with.
            traffic.events_per_second = plan.start.min(plan.ceiling);
            Mode::Capacity(plan)
        }
        ModeKind::Broadway => {
            let b = p.broadway.phases();
            let plan = BroadwayPlan {
                batch_share: b.batch_share,
                ramp_multiplier: b.ramp_multiplier,
                ramp_steps: b.ramp_steps,
                backpressure_multiplier: b.backpressure_multiplier,
                burst_every: traffic.burst.every,
                burst_duration: traffic.burst.duration,
                burst_multiplier: traffic.burst.multiplier,
                ceiling: traffic.max_events_per_second,
            };
            // The phases set the bursts themselves: the first has none.
            traffic.burst.duration = Duration::ZERO;
            traffic.batch.share = b.batch_share;
            Mode::Broadway(plan)
        }
    };
    let t = &p.thresholds;
    let slo = &cfg.slo;
    // Rounded so 100 − 99.9 reads 0.1 %, not 0.09999999999999432 %.
    let error_ratio = |percent: f64| (percent * 1e9).round() / 1e11;
    let latency = t.latency.unwrap_or(slo.latency.threshold);
    let max_error_ratio = error_ratio(
        t.max_error_percent
            .unwrap_or(100.0 - slo.availability.objective),
    );
    let throughput_ratio = slo.throughput.objective / 100.0;
    let lag = t.lag.unwrap_or(slo.projection_lag.threshold);
    // A profile may loosen a target past its critical level; the critical
    // level then follows it (the row is judged at one level).
    let thresholds = Thresholds {
        latency_quantile: t.latency_percentile.unwrap_or(slo.latency.objective) / 100.0,
        latency,
        latency_critical: slo.latency.critical.max(latency),
        max_error_ratio,
        max_error_ratio_critical: error_ratio(100.0 - slo.availability.critical)
            .max(max_error_ratio),
        min_events_per_second: t.min_events_per_second,
        throughput_ratio,
        throughput_critical_share: slo.throughput.critical_share().min(throughput_ratio),
        lag_quantile: t.lag_percentile.unwrap_or(slo.projection_lag.objective) / 100.0,
        lag,
        lag_critical: slo.projection_lag.critical.max(lag),
        batch_quantile: slo.batch_latency.objective / 100.0,
        batch: slo.batch_latency.threshold,
        batch_critical: slo.batch_latency.critical,
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
        // The seed's critical levels.
        assert_eq!(load.thresholds.latency_critical, Duration::from_millis(500));
        assert!((load.thresholds.max_error_ratio_critical - 0.01).abs() < 1e-12);
        assert_eq!(load.thresholds.throughput_critical_share, 0.5);
        assert_eq!(load.thresholds.lag_critical, Duration::from_secs(1));
        assert_eq!(load.thresholds.batch, Duration::from_secs(1));
        assert_eq!(load.thresholds.batch_critical, Duration::from_secs(2));
        assert!((load.thresholds.batch_quantile - 0.95).abs() < 1e-9);
        let stress = resolve(&cfg, "stress", None).unwrap();
        assert_eq!(stress.traffic.events_per_second, 1500.0);
        let smoke = resolve(&cfg, "smoke", Some(secs(5))).unwrap();
        assert_eq!(smoke.duration, secs(5));
        let broadway = resolve(&cfg, "broadway", None).unwrap();
        let Mode::Broadway(b) = &broadway.mode else {
            panic!("{:?}", broadway.mode)
        };
        let extra = (b.burst_multiplier - 1.0) * 1000.0 * b.burst_duration.as_secs_f64();
        assert_eq!(extra, 5000.0, "each burst adds 5000 events");
        assert_eq!((b.batch_share, b.ramp_steps), (0.2, 4));
        assert_eq!(
            b.ceiling, 2000.0,
            "the backpressure phase stops at the rail"
        );
        assert!(
            !broadway.traffic.burst.enabled(),
            "the first phase has no bursts"
        );
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
        // Looser than the 500 ms critical level: the critical level follows.
        let cfg_loose = cfg_with("[profiles.load.thresholds]\nlatency = \"1s\"\n");
        let loose = resolve(&cfg_loose, "load", None).unwrap().thresholds;
        assert_eq!(loose.latency_critical, Duration::from_secs(1));
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
            "[profiles.x]\nevents_per_second = -5\nwhat = 1\n[profiles.x.thresholds]\nlatency_percentile = 120\n\
             [profiles.x.broadway]\nbatch_share = 2\nramp_steps = 0\nbackpressure_multiplier = 0.5\n",
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
        for k in [
            "profiles.x.broadway.batch_share",
            "profiles.x.broadway.ramp_steps",
            "profiles.x.broadway.backpressure_multiplier",
        ] {
            assert!(keys.contains(&k), "{k}: {keys:?}");
        }
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
