//! The `[slo]` configuration section: each SLO's objective, threshold and
//! critical level (the seed's two levels: target and critical), the
//! compliance window, and what the generated rules need to know about the
//! deployment (the scrape job name, where the runbook lives). The rules file
//! is generated from this, so rules and config cannot drift apart.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::load::Errors;
use crate::api::DURATION_BUCKETS;

/// Bounds of `rehab_canary_projection_lag_seconds` that an SLO threshold may
/// use (the issue 4 contract). A threshold must be a bucket bound so the
/// recording rule counts good probes exactly instead of interpolating.
pub const LAG_SLO_BOUNDS: [f64; 10] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Bounds of `rehab_canary_batch_visible_seconds` that a batch latency
/// threshold or critical level may use (a subset of the lag buckets, which the
/// batch probe's histogram shares), for the same reason as [`LAG_SLO_BOUNDS`].
pub const BATCH_SLO_BOUNDS: [f64; 9] = [0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SloConfig {
    /// The compliance window of every SLO (the error budget period).
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// The Prometheus `job` label the canary is scraped under; `up` and
    /// `absent()` alerts select it.
    pub job: String,
    /// Base of every alert's `runbook_url`; a section anchor is appended.
    pub runbook_url: String,
    pub availability: AvailabilityConfig,
    pub latency: LatencySlo,
    pub projection_lag: ProjectionLagSlo,
    pub batch_latency: BatchLatencySlo,
    pub loss: ObjectiveConfig,
    pub throughput: ThroughputConfig,
}

impl Default for SloConfig {
    fn default() -> Self {
        SloConfig {
            window: Duration::from_secs(30 * 86_400),
            job: "rehab-canary".to_owned(),
            runbook_url: "docs/runbook.md".to_owned(),
            availability: AvailabilityConfig::default(),
            latency: LatencySlo::default(),
            projection_lag: ProjectionLagSlo::default(),
            batch_latency: BatchLatencySlo::default(),
            loss: ObjectiveConfig { objective: 100.0 },
            throughput: ThroughputConfig::default(),
        }
    }
}

/// An SLO that is a plain percentage of good events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ObjectiveConfig {
    /// Percent of good events, in (0, 100].
    pub objective: f64,
}

impl Default for ObjectiveConfig {
    fn default() -> Self {
        ObjectiveConfig { objective: 99.9 }
    }
}

/// Availability: the objective, and the critical level below it (the seed's
/// errors < 0.1 %, critical 1 %), both as percent of good requests so the
/// two read alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AvailabilityConfig {
    pub objective: f64,
    pub critical: f64,
}

impl Default for AvailabilityConfig {
    fn default() -> Self {
        AvailabilityConfig {
            objective: 99.9,
            critical: 99.0,
        }
    }
}

/// SLOs of the form "objective % of observations within threshold", with a
/// critical level for the same percentile. One type per SLO so that a
/// partly written table (`[slo.batch_latency]` with only `objective`) keeps
/// that SLO's own defaults, not another SLO's.
macro_rules! threshold_slo {
    ($(#[$doc:meta])* $name:ident, $threshold_ms:expr, $critical_ms:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct $name {
            pub objective: f64,
            #[serde(with = "humantime_serde")]
            pub threshold: Duration,
            /// The percentile's level past which a run fails and the critical
            /// alert fires; never stricter than `threshold`.
            #[serde(with = "humantime_serde")]
            pub critical: Duration,
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    objective: 95.0,
                    threshold: Duration::from_millis($threshold_ms),
                    critical: Duration::from_millis($critical_ms),
                }
            }
        }

        impl $name {
            /// The levels, for code that treats every such SLO alike.
            pub fn levels(&self) -> ThresholdLevels {
                ThresholdLevels {
                    objective: self.objective,
                    threshold: self.threshold,
                    critical: self.critical,
                }
            }
        }
    };
}

threshold_slo!(
    /// The seed's p95 < 200 ms, critical 500 ms.
    LatencySlo, 200, 500
);
threshold_slo!(
    /// The seed's projection lag p95 < 100 ms, critical 1 s.
    ProjectionLagSlo, 100, 1000
);
threshold_slo!(
    /// The seed's Broadway batch latency < 1 s, critical 2 s.
    BatchLatencySlo, 1000, 2000
);

/// The levels of a threshold SLO (`LatencySlo` and its kin).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThresholdLevels {
    pub objective: f64,
    pub threshold: Duration,
    pub critical: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ThroughputConfig {
    /// Percent of the target event rate that must be accepted.
    pub objective: f64,
    /// Throughput alerts only fire while the canary is configured at least
    /// this high: a canary deliberately run at 50 events/s says nothing about
    /// the 1000 events/s target.
    pub min_events_per_second: f64,
    /// Accepted events/s at `min_events_per_second` that is critical (the
    /// seed's 500 of 1000). Other rates are judged in proportion
    /// ([`ThroughputConfig::critical_share`]), so a smoke run at 20/s is not
    /// held to 500/s.
    pub critical: f64,
}

impl Default for ThroughputConfig {
    fn default() -> Self {
        ThroughputConfig {
            objective: 99.0,
            min_events_per_second: 1000.0,
            critical: 500.0,
        }
    }
}

impl ThroughputConfig {
    /// The share of the offered rate below which throughput is critical;
    /// 0 (no critical floor) when `min_events_per_second` is 0.
    pub fn critical_share(&self) -> f64 {
        if self.min_events_per_second > 0.0 {
            (self.critical / self.min_events_per_second).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

/// The longest burn-rate window (3d); the compliance window must cover it.
const LONGEST_ALERT_WINDOW: Duration = Duration::from_secs(3 * 86_400);

impl SloConfig {
    /// Every violation, each naming its key.
    pub fn validate(&self, errs: &mut Errors) {
        let mut fail = |key: &str, msg: String| errs.invalid(key, msg);
        if self.window < LONGEST_ALERT_WINDOW || !self.window.as_secs().is_multiple_of(3600) {
            fail(
                "slo.window",
                "must be a whole number of hours, at least 3d (the longest burn-rate window)"
                    .to_owned(),
            );
        }
        if self.job.is_empty() || self.job.contains(['"', '\\', '\n']) {
            fail(
                "slo.job",
                "must be a non-empty job label without quotes or backslashes".to_owned(),
            );
        }
        if self.runbook_url.is_empty() || self.runbook_url.contains(['#', '\'', '\n']) {
            fail(
                "slo.runbook_url",
                "must be a non-empty URL or path without `#` (anchors are added per alert)"
                    .to_owned(),
            );
        }
        for (key, objective, allow_100) in [
            (
                "slo.availability.objective",
                self.availability.objective,
                false,
            ),
            ("slo.latency.objective", self.latency.objective, false),
            (
                "slo.projection_lag.objective",
                self.projection_lag.objective,
                false,
            ),
            (
                "slo.batch_latency.objective",
                self.batch_latency.objective,
                false,
            ),
            ("slo.loss.objective", self.loss.objective, true),
            ("slo.throughput.objective", self.throughput.objective, false),
        ] {
            // Burn-rate alerts divide by the error budget, so only the loss
            // SLO (alerted on every loss instead) may have none.
            let ok = objective.is_finite()
                && objective > 0.0
                && (objective < 100.0 || (allow_100 && objective == 100.0));
            if !ok {
                let range = if allow_100 { "(0, 100]" } else { "(0, 100)" };
                fail(key, format!("must be a percentage in {range}"));
            }
        }
        let a = &self.availability;
        if !(a.critical.is_finite() && a.critical > 0.0 && a.critical < 100.0) {
            fail(
                "slo.availability.critical",
                "must be a percentage in (0, 100)".to_owned(),
            );
        } else if a.critical > a.objective && a.objective > 0.0 && a.objective < 100.0 {
            fail(
                "slo.availability.critical",
                format!(
                    "must be at most slo.availability.objective ({}): the critical level \
                     (percent of good requests) may not be stricter than the target",
                    a.objective
                ),
            );
        }
        // The rules read the bucket at the threshold, and the critical alerts
        // the quantile at the critical level, so both must be bounds.
        let slos: [(&str, ThresholdLevels, &[f64], &str); 3] = [
            (
                "slo.latency",
                self.latency.levels(),
                &DURATION_BUCKETS,
                "rehab_canary_request_duration_seconds",
            ),
            (
                "slo.projection_lag",
                self.projection_lag.levels(),
                &LAG_SLO_BOUNDS,
                "rehab_canary_projection_lag_seconds",
            ),
            (
                "slo.batch_latency",
                self.batch_latency.levels(),
                &BATCH_SLO_BOUNDS,
                "rehab_canary_batch_visible_seconds",
            ),
        ];
        for (section, levels, bounds, histogram) in slos {
            let bound = |d: Duration| bounds.contains(&d.as_secs_f64());
            let not_a_bound =
                || format!("must be a bucket bound of {histogram} ({})", list(bounds));
            if !bound(levels.threshold) {
                fail(&format!("{section}.threshold"), not_a_bound());
            }
            if !bound(levels.critical) {
                fail(&format!("{section}.critical"), not_a_bound());
            } else if levels.critical < levels.threshold && bound(levels.threshold) {
                fail(
                    &format!("{section}.critical"),
                    format!(
                        "must be at least {section}.threshold ({}): the critical level may not \
                         be stricter than the target",
                        humantime::format_duration(levels.threshold)
                    ),
                );
            }
        }
        let t = &self.throughput;
        let min = t.min_events_per_second;
        if !(min.is_finite() && min >= 0.0) {
            fail(
                "slo.throughput.min_events_per_second",
                "must be a number >= 0".to_owned(),
            );
        } else if !(t.critical.is_finite() && t.critical >= 0.0 && t.critical <= min) {
            fail(
                "slo.throughput.critical",
                format!(
                    "must be a number of events/s between 0 and slo.throughput.min_events_per_second \
                     ({min}): throughput is judged at least, so the critical floor may not be \
                     above the target"
                ),
            );
        }
    }
}

fn list(bounds: &[f64]) -> String {
    bounds
        .iter()
        .map(|b| format!("{}s", b))
        .collect::<Vec<_>>()
        .join(", ")
}
