//! `[verdict]`: the baseline memory behind the deploy verdict and the
//! tolerances it judges by (`src/verdict/`). Read once at start.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::load::Errors;

/// The one-minute windows' slot (`metrics::window::SLOT_PERIOD`, kept
/// equal by a test): snapshots are whole numbers of slots.
pub const SLOT_SECONDS: u64 = 10;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VerdictConfig {
    /// How long snapshots are kept: the longest `since` plus baseline a
    /// verdict can reach back.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// One snapshot per this span. Keep 1m in production; a multiple of 10s
    /// (the windows' slot).
    #[serde(with = "humantime_serde")]
    pub snapshot_interval: Duration,
    /// Where snapshots survive a restart (one file, written atomically each
    /// snapshot); unset keeps them in memory only.
    pub state_dir: Option<PathBuf>,
    /// The baseline window when a request names none.
    #[serde(with = "humantime_serde")]
    pub baseline: Duration,
    /// Fewer samples than this on either side of a signal: inconclusive.
    pub min_samples: u64,
    /// A worsening this significant (one-sided p below it) and past the
    /// tolerance fails the signal.
    pub alpha: f64,
    /// Significant at this level but within tolerance (or past it but not
    /// significant): marginal.
    pub marginal_alpha: f64,
    pub latency: DurationTolerance,
    pub lag: DurationTolerance,
    pub errors: RatioTolerance,
    pub loss: RatioTolerance,
}

impl Default for VerdictConfig {
    fn default() -> Self {
        VerdictConfig {
            retention: Duration::from_secs(24 * 3600),
            snapshot_interval: Duration::from_secs(60),
            state_dir: None,
            baseline: Duration::from_secs(3600),
            min_samples: 100,
            alpha: 0.001,
            marginal_alpha: 0.05,
            latency: DurationTolerance {
                relative: 0.1,
                absolute: Duration::from_millis(20),
            },
            lag: DurationTolerance {
                relative: 0.1,
                absolute: Duration::from_millis(20),
            },
            errors: RatioTolerance { absolute: 0.005 },
            loss: RatioTolerance { absolute: 0.01 },
        }
    }
}

/// "p95 may rise by `relative` or `absolute`, whichever is larger".
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DurationTolerance {
    pub relative: f64,
    #[serde(with = "humantime_serde")]
    pub absolute: Duration,
}

impl Default for DurationTolerance {
    fn default() -> Self {
        VerdictConfig::default().latency
    }
}

/// The ratio may rise by this much (0.005 = half a percentage point).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RatioTolerance {
    pub absolute: f64,
}

impl Default for RatioTolerance {
    fn default() -> Self {
        RatioTolerance { absolute: 0.005 }
    }
}

impl VerdictConfig {
    pub fn validate(&self, errs: &mut Errors) {
        let slot = SLOT_SECONDS;
        let every = self.snapshot_interval.as_secs();
        errs.check(
            every >= slot
                && every <= 3600
                && every.is_multiple_of(slot)
                && self.snapshot_interval.subsec_nanos() == 0,
            "verdict.snapshot_interval",
            "must be a whole multiple of 10s, at most 1h",
        );
        errs.check(
            self.retention >= self.snapshot_interval * 2
                && self.retention <= Duration::from_secs(7 * 24 * 3600),
            "verdict.retention",
            "must be at least two snapshot intervals and at most 7d",
        );
        errs.check(
            self.baseline >= self.snapshot_interval && self.baseline < self.retention,
            "verdict.baseline",
            "must be at least one snapshot interval and shorter than verdict.retention",
        );
        let p = |v: f64| v.is_finite() && v > 0.0 && v < 1.0;
        errs.check(
            p(self.alpha),
            "verdict.alpha",
            "must be a probability in (0, 1)",
        );
        errs.check(
            p(self.marginal_alpha) && self.marginal_alpha >= self.alpha,
            "verdict.marginal_alpha",
            "must be a probability in (0, 1), at least verdict.alpha",
        );
        for (key, t) in [
            ("verdict.latency", &self.latency),
            ("verdict.lag", &self.lag),
        ] {
            errs.check(
                t.relative.is_finite() && (0.0..=10.0).contains(&t.relative),
                &format!("{key}.relative"),
                "must be a share between 0 and 10",
            );
        }
        for (key, t) in [
            ("verdict.errors", &self.errors),
            ("verdict.loss", &self.loss),
        ] {
            errs.check(
                t.absolute.is_finite() && (0.0..=1.0).contains(&t.absolute),
                &format!("{key}.absolute"),
                "must be a ratio between 0 and 1",
            );
        }
        if let Some(dir) = &self.state_dir {
            errs.check(
                !dir.as_os_str().is_empty(),
                "verdict.state_dir",
                "must be a directory path, or unset",
            );
        }
    }

    /// Snapshots kept: the retention in snapshot intervals.
    pub fn capacity(&self) -> usize {
        (self.retention.as_secs() / self.snapshot_interval.as_secs().max(1)) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(c: &VerdictConfig) -> Vec<String> {
        Errors::collect(|e| c.validate(e))
            .iter()
            .map(|e| e.key().unwrap_or("-").to_owned())
            .collect()
    }

    #[test]
    fn defaults_are_valid_and_errors_name_their_key() {
        assert!(keys(&VerdictConfig::default()).is_empty());
        assert_eq!(VerdictConfig::default().capacity(), 1440);
        type Tweak = fn(&mut VerdictConfig);
        let cases: &[(Tweak, &str)] = &[
            (
                |c| c.snapshot_interval = Duration::from_secs(15),
                "verdict.snapshot_interval",
            ),
            (
                |c| c.retention = Duration::from_secs(60),
                "verdict.retention",
            ),
            (
                |c| c.baseline = Duration::from_secs(48 * 3600),
                "verdict.baseline",
            ),
            (|c| c.alpha = 0.0, "verdict.alpha"),
            (|c| c.marginal_alpha = 0.0001, "verdict.marginal_alpha"),
            (|c| c.latency.relative = -1.0, "verdict.latency.relative"),
            (|c| c.loss.absolute = 2.0, "verdict.loss.absolute"),
        ];
        for (tweak, key) in cases {
            let mut c = VerdictConfig::default();
            tweak(&mut c);
            assert!(keys(&c).iter().any(|k| k == key), "{key}: {:?}", keys(&c));
        }
    }
}
