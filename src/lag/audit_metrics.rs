//! The integrity audit's families (a contract: the
//! `RehabCanaryReadModelLostEvents` alert reads them) and the last audit
//! of each probe, for `/status`.

use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;

use super::audit::{AuditReport, Unjudged};
use super::marker::MarkerPrefix;
use super::probe::Projection;
use crate::metrics::{series, Exposition};

const N: usize = Projection::ALL.len();

/// The `reason` values of the failures family.
pub const FAILURE_REASONS: [&str; 2] = ["vanished", "duplicated"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectionLabels {
    projection: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    projection: &'static str,
    reason: &'static str,
}

/// One projection's audit at a glance.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AuditSnapshot {
    pub projection: &'static str,
    /// Audits finished.
    pub audits_total: u64,
    /// Confirmed events remembered now.
    pub remembered: i64,
    pub checked_total: u64,
    pub vanished_total: u64,
    pub duplicated_total: u64,
    /// Events not judged: failed reads, or past the service's retention.
    pub unjudged_total: u64,
    /// The markers of the last audit's judged events, and of those it
    /// counted vanished or duplicated.
    pub last_checked: Vec<String>,
    pub last_vanished: Vec<String>,
    pub last_duplicated: Vec<String>,
}

#[derive(Debug)]
struct Inner {
    failures: [[Counter; 2]; N],
    checked: [Counter; N],
    unjudged: [[Counter; Unjudged::REASONS.len()]; N],
    audits: [Counter; N],
    remembered: [Gauge; N],
    last: Mutex<[LastAudit; N]>,
}

/// The markers of one probe's last audit.
#[derive(Clone, Debug, Default)]
struct LastAudit {
    checked: Vec<String>,
    vanished: Vec<String>,
    duplicated: Vec<String>,
}

/// Cheap to clone; every clone records into the same series.
#[derive(Clone, Debug)]
pub struct AuditMetrics {
    inner: Arc<Inner>,
}

impl AuditMetrics {
    pub(super) fn register(exposition: &mut Exposition) -> Self {
        let r = &mut exposition.registry;
        let per = Projection::ALL.map(|p| ProjectionLabels {
            projection: p.as_str(),
        });
        let failures = series::<_, Counter, { N * 2 }>(
            r,
            "rehab_canary_projection_integrity_failures",
            "Probe events confirmed visible earlier that a later audit read (lag.audit) found \
             changed, by projection and reason: vanished (no longer shown although the read \
             reaches back past it), duplicated (now shown more than once). Each event counts \
             at most once per reason",
            std::array::from_fn(|k| ReasonLabels {
                projection: Projection::ALL[k / 2].as_str(),
                reason: FAILURE_REASONS[k % 2],
            }),
        );
        let unjudged = series::<_, Counter, { N * 5 }>(
            r,
            "rehab_canary_projection_integrity_unjudged",
            "Audit reads that judged nothing, by projection and reason: status, transport, \
             not_json, shape (the read failed; the event stays remembered), retention (the \
             read no longer reaches back to the event: past the service's retention; the \
             event is forgotten). Never counted as failures",
            std::array::from_fn(|k| ReasonLabels {
                projection: Projection::ALL[k / 5].as_str(),
                reason: Unjudged::REASONS[k % 5],
            }),
        );
        let inner = Inner {
            failures: std::array::from_fn(|p| std::array::from_fn(|k| failures[p * 2 + k].clone())),
            checked: series(
                r,
                "rehab_canary_projection_integrity_checked",
                "Old probe events re-read and judged by the integrity audit, by projection (the \
                 denominator of the failures ratio)",
                per.clone(),
            ),
            unjudged: std::array::from_fn(|p| std::array::from_fn(|k| unjudged[p * 5 + k].clone())),
            audits: series(
                r,
                "rehab_canary_projection_integrity_audits",
                "Integrity audits finished, by projection",
                per.clone(),
            ),
            remembered: series(
                r,
                "rehab_canary_projection_integrity_remembered_events",
                "Confirmed probe events the audit remembers, by projection: at most \
                 lag.audit.max_remembered, and only those confirmed within lag.audit.max_age",
                per,
            ),
            last: Mutex::new(std::array::from_fn(|_| LastAudit::default())),
        };
        AuditMetrics {
            inner: Arc::new(inner),
        }
    }

    pub fn checked(&self, p: Projection) {
        self.inner.checked[p.index()].inc();
    }

    pub fn vanished(&self, p: Projection) {
        self.inner.failures[p.index()][0].inc();
    }

    pub fn duplicated(&self, p: Projection) {
        self.inner.failures[p.index()][1].inc();
    }

    pub fn unjudged(&self, p: Projection, u: Unjudged) {
        self.inner.unjudged[p.index()][u.index()].inc();
    }

    pub fn set_remembered(&self, p: Projection, n: usize) {
        self.inner.remembered[p.index()].set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// One audit of `p` is over.
    pub fn finished(
        &self,
        p: Projection,
        remembered: usize,
        r: AuditReport,
        prefix: &MarkerPrefix,
    ) {
        let i = p.index();
        self.set_remembered(p, remembered);
        let markers = |v: Vec<u64>| v.into_iter().map(|s| prefix.marker(s)).collect();
        self.inner.last.lock()[i] = LastAudit {
            checked: markers(r.checked),
            vanished: markers(r.vanished),
            duplicated: markers(r.duplicated),
        };
        self.inner.audits[i].inc();
    }

    pub fn snapshot(&self) -> Vec<AuditSnapshot> {
        let last = self.inner.last.lock();
        Projection::ALL
            .iter()
            .map(|p| {
                let i = p.index();
                let LastAudit {
                    checked,
                    vanished,
                    duplicated,
                } = last[i].clone();
                AuditSnapshot {
                    projection: p.as_str(),
                    audits_total: self.inner.audits[i].get(),
                    remembered: self.inner.remembered[i].get(),
                    checked_total: self.inner.checked[i].get(),
                    vanished_total: self.inner.failures[i][0].get(),
                    duplicated_total: self.inner.failures[i][1].get(),
                    unjudged_total: self.inner.unjudged[i].iter().map(Counter::get).sum(),
                    last_checked: checked,
                    last_vanished: vanished,
                    last_duplicated: duplicated,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_exists_from_the_start() {
        let mut r = Exposition::default();
        let m = AuditMetrics::register(&mut r);
        let text = String::from_utf8(r.encode(crate::metrics::Format::OpenMetrics, 0)).unwrap();
        for p in ["stream", "adherence", "quality", "work_queue"] {
            for reason in FAILURE_REASONS {
                let s = format!(
                    "rehab_canary_projection_integrity_failures_total{{projection=\"{p}\",reason=\"{reason}\"}} 0"
                );
                assert!(text.contains(&s), "missing {s}");
            }
            for reason in Unjudged::REASONS {
                let s = format!(
                    "rehab_canary_projection_integrity_unjudged_total{{projection=\"{p}\",reason=\"{reason}\"}} 0"
                );
                assert!(text.contains(&s), "missing {s}");
            }
            for name in [
                "rehab_canary_projection_integrity_checked_total",
                "rehab_canary_projection_integrity_audits_total",
                "rehab_canary_projection_integrity_remembered_events",
            ] {
                let s = format!("{name}{{projection=\"{p}\"}} 0");
                assert!(text.contains(&s), "missing {s}");
            }
        }
        m.vanished(Projection::Stream);
        m.unjudged(Projection::Stream, Unjudged::Retention);
        let s = &m.snapshot()[0];
        assert_eq!((s.vanished_total, s.unjudged_total), (1, 1));
    }
}
