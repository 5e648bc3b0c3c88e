//! The `[slo]` configuration section: each SLO's objective and threshold, the
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
    pub availability: ObjectiveConfig,
    pub latency: ThresholdObjectiveConfig,
    pub projection_lag: ThresholdObjectiveConfig,
    pub loss: ObjectiveConfig,
    pub throughput: ThroughputConfig,
}

impl Default for SloConfig {
    fn default() -> Self {
        SloConfig {
            window: Duration::from_secs(30 * 86_400),
            job: "rehab-canary".to_owned(),
            runbook_url: "docs/runbook.md".to_owned(),
            availability: ObjectiveConfig { objective: 99.9 },
            latency: ThresholdObjectiveConfig {
                objective: 95.0,
                threshold: Duration::from_millis(200),
            },
            projection_lag: ThresholdObjectiveConfig {
                objective: 95.0,
                threshold: Duration::from_millis(100),
            },
            loss: ObjectiveConfig { objective: 100.0 },
            throughput: ThroughputConfig {
                objective: 99.0,
                min_events_per_second: 1000.0,
            },
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

/// An SLO of the form "objective % of observations within threshold".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ThresholdObjectiveConfig {
    pub objective: f64,
    #[serde(with = "humantime_serde")]
    pub threshold: Duration,
}

impl Default for ThresholdObjectiveConfig {
    fn default() -> Self {
        ThresholdObjectiveConfig {
            objective: 95.0,
            threshold: Duration::from_millis(200),
        }
    }
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
}

impl Default for ThroughputConfig {
    fn default() -> Self {
        ThroughputConfig {
            objective: 99.0,
            min_events_per_second: 1000.0,
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
        // The rules read the bucket at the threshold, so it must be a bound.
        let thresholds: [(&str, Duration, &[f64], &str); 2] = [
            (
                "slo.latency.threshold",
                self.latency.threshold,
                &DURATION_BUCKETS,
                "rehab_canary_request_duration_seconds",
            ),
            (
                "slo.projection_lag.threshold",
                self.projection_lag.threshold,
                &LAG_SLO_BOUNDS,
                "rehab_canary_projection_lag_seconds",
            ),
        ];
        for (key, threshold, bounds, histogram) in thresholds {
            if !bounds.contains(&threshold.as_secs_f64()) {
                fail(
                    key,
                    format!("must be a bucket bound of {histogram} ({})", list(bounds)),
                );
            }
        }
        let min = self.throughput.min_events_per_second;
        if !(min.is_finite() && min >= 0.0) {
            fail(
                "slo.throughput.min_events_per_second",
                "must be a number >= 0".to_owned(),
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
