//! The deploy marker: `POST /-/deploy` records that a new version of the
//! target went out, so a verdict can start at `since=last-deploy` and the
//! dashboards can draw it. Exported as
//! `rehab_canary_target_deploy_timestamp_seconds` and one
//! `rehab_canary_target_deploy_info{version}` series: only the latest
//! version's, so the label stays bounded however many deploys happen.

use std::sync::atomic::AtomicU64;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::metrics::registered;

/// Longest version string accepted (it becomes a label value).
pub const MAX_VERSION: usize = 128;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

/// One recorded deploy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Deploy {
    pub version: String,
    /// Unix seconds.
    pub at: f64,
}

#[derive(Debug)]
pub struct Deploys {
    last: Mutex<Option<Deploy>>,
    timestamp: Gauge<f64, AtomicU64>,
    info: Family<VersionLabels, Gauge>,
}

/// Why a version string is refused, if it is.
pub fn version_problem(v: &str) -> Option<&'static str> {
    if v.is_empty() {
        Some("must not be empty")
    } else if v.len() > MAX_VERSION {
        Some("must be at most 128 bytes")
    } else if v.chars().any(char::is_control) {
        Some("must not contain control characters")
    } else {
        None
    }
}

impl Deploys {
    pub fn register(registry: &mut Registry) -> Self {
        Deploys {
            last: Mutex::new(None),
            timestamp: registered(
                registry,
                "rehab_canary_target_deploy_timestamp_seconds",
                "When the last deploy of the target was recorded (POST /-/deploy), unix seconds; \
                 0 before the first",
                Gauge::default(),
            ),
            info: registered(
                registry,
                "rehab_canary_target_deploy_info",
                "1 for the version of the last recorded deploy (only the latest version has a \
                 series)",
                Family::default(),
            ),
        }
    }

    /// Records a deploy (the caller checked `version` with
    /// [`version_problem`]).
    pub fn record(&self, d: Deploy) {
        let mut last = self.last.lock();
        if let Some(old) = last.as_ref() {
            self.info.remove(&VersionLabels {
                version: old.version.clone(),
            });
        }
        self.info
            .get_or_create(&VersionLabels {
                version: d.version.clone(),
            })
            .set(1);
        self.timestamp.set(d.at);
        *last = Some(d);
    }

    pub fn last(&self) -> Option<Deploy> {
        self.last.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_latest_version_has_a_series() {
        let mut r = Registry::default();
        let d = Deploys::register(&mut r);
        d.record(Deploy {
            version: "v1".into(),
            at: 100.0,
        });
        d.record(Deploy {
            version: "v2".into(),
            at: 200.5,
        });
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        assert!(text.contains("rehab_canary_target_deploy_info{version=\"v2\"} 1"));
        assert!(!text.contains("v1"), "{text}");
        assert!(text.contains("rehab_canary_target_deploy_timestamp_seconds 200.5"));
        assert_eq!(d.last().unwrap().version, "v2");
        assert!(version_problem("").is_some());
        assert!(version_problem("a\nb").is_some());
        assert!(version_problem(&"x".repeat(129)).is_some());
        assert!(version_problem("2026.12.01-abc123").is_none());
    }
}
