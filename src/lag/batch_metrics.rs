//! The batch probe's families (a contract: the batch latency SLO, its
//! alerts and the dashboards read them) and its recent samples.
//!
//! The histograms carry one label, `projection`, naming the read model the
//! batch was watched on (`stream` with the default route), so a batch
//! latency panel sits beside the lag panels with the same selector.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use serde::Serialize;

use super::estimate::Estimate;
use super::metrics::{exemplar_ids, LAG_BUCKETS, RECENT_SAMPLES};
use crate::client::trace::TraceId;
use crate::metrics::histogram::{TracedFamily, TracedHistogram};
use crate::metrics::tap::RunTap;
use crate::metrics::{registered, series, Exposition};

/// The read model the default route watches (the `projection` label).
pub const READ_MODEL: &str = "stream";

/// One batch probe's outcome, for `/status` and ground-truth tests.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BatchSample {
    /// The service's id of the batch's first event (or its marker).
    pub event_id: Box<str>,
    pub events: u64,
    /// From acceptance until every event was visible; `None` when some
    /// never were before `lag.timeout`.
    pub visible_seconds: Option<f64>,
    pub visible_uncertainty_seconds: Option<f64>,
    /// From acceptance until the first event was visible.
    pub first_visible_seconds: Option<f64>,
    pub first_visible_uncertainty_seconds: Option<f64>,
    /// The batch POST's own latency.
    pub post_seconds: f64,
    /// Events not visible before `lag.timeout`.
    pub lost: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Why a batch probe yielded no sample at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchFailure {
    /// The POST failed in transport, or the reads could not be judged.
    Error,
    /// The POST was answered with a non-2xx status.
    Rejected,
}

#[derive(Debug)]
struct Inner {
    visible: TracedHistogram,
    first_visible: TracedHistogram,
    uncertainty: Histogram,
    post: Histogram,
    probes: Counter,
    events: Counter,
    lost: Counter,
    late: Counter,
    duplicated: Counter,
    reads: Counter,
    skipped: Counter,
    failures: [Counter; 2],
    recent: Mutex<VecDeque<BatchSample>>,
}

/// Cheap to clone; every clone records into the same series.
#[derive(Clone, Debug)]
pub struct BatchMetrics {
    inner: Arc<Inner>,
    tap: Arc<OnceLock<Arc<RunTap>>>,
}

fn one(name: &'static str, help: &'static str) -> TracedFamily {
    TracedFamily::new(name, help, "projection", vec![READ_MODEL], || {
        TracedHistogram::new(&LAG_BUCKETS)
    })
}

impl BatchMetrics {
    /// Registers the families; `tap` is the lag metrics' one-shot tap.
    pub(super) fn register(exposition: &mut Exposition, tap: Arc<OnceLock<Arc<RunTap>>>) -> Self {
        let visible = one(
            "rehab_canary_batch_visible_seconds",
            "Broadway batch latency: time from a probe batch's acceptance (its POST's midpoint) \
             until every event of it is visible in the read (the bracket of the last poll that \
             missed one and the first that showed all). Error bar: \
             rehab_canary_batch_visible_uncertainty_seconds. Classic and native buckets; \
             exemplar: the batch's first event id and its POST's trace id",
        );
        let first_visible = one(
            "rehab_canary_batch_first_visible_seconds",
            "Time from a probe batch's acceptance until its first event is visible",
        );
        let visible_h = visible.histograms[0].clone();
        let first_h = first_visible.histograms[0].clone();
        exposition.add_histograms(visible);
        exposition.add_histograms(first_visible);
        let r = &mut exposition.registry;
        let inner = Inner {
            visible: visible_h,
            first_visible: first_h,
            uncertainty: registered(
                r,
                "rehab_canary_batch_visible_uncertainty_seconds",
                "Per-sample error bar of rehab_canary_batch_visible_seconds: the truth lies within \
                 the sample plus or minus this (the same estimator as the lag probes)",
                Histogram::new(LAG_BUCKETS),
            ),
            post: registered(
                r,
                "rehab_canary_batch_post_duration_seconds",
                "Latency of the batch probe's POST /api/v1/events/batch",
                Histogram::new(LAG_BUCKETS),
            ),
            probes: registered(
                r,
                "rehab_canary_batch_probes",
                "Probe batches attempted (POSTs sent)",
                Counter::default(),
            ),
            events: registered(
                r,
                "rehab_canary_batch_probe_events",
                "Events in probe batches the service accepted",
                Counter::default(),
            ),
            lost: registered(
                r,
                "rehab_canary_batch_events_lost",
                "Events of accepted probe batches not visible before lag.timeout",
                Counter::default(),
            ),
            late: registered(
                r,
                "rehab_canary_batch_events_late",
                "Events of probe batches seen after lag.timeout (also counted lost)",
                Counter::default(),
            ),
            duplicated: registered(
                r,
                "rehab_canary_batch_events_duplicated",
                "Events of probe batches whose marker a read showed more than once",
                Counter::default(),
            ),
            reads: registered(
                r,
                "rehab_canary_batch_probe_reads",
                "Reads sent by the batch probe",
                Counter::default(),
            ),
            skipped: registered(
                r,
                "rehab_canary_batch_probes_skipped",
                "Batch probe ticks not run because lag.max_in_flight was full",
                Counter::default(),
            ),
            failures: series(
                r,
                "rehab_canary_batch_probe_failures",
                "Probe batches without any sample, by reason: error (POST transport failure or \
                 unreadable reads), rejected (non-2xx POST)",
                [
                    ReasonLabels { reason: "error" },
                    ReasonLabels { reason: "rejected" },
                ],
            ),
            recent: Mutex::new(VecDeque::new()),
        };
        BatchMetrics {
            inner: Arc::new(inner),
            tap,
        }
    }

    pub fn probe_sent(&self) {
        self.inner.probes.inc();
    }

    pub fn read_sent(&self) {
        self.inner.reads.inc();
    }

    pub fn skipped(&self) {
        self.inner.skipped.inc();
    }

    pub fn accepted(&self, events: u64) {
        self.inner.events.inc_by(events);
    }

    pub fn failure(&self, f: BatchFailure) {
        self.inner.failures[f as usize].inc();
    }

    pub fn duplicated(&self, n: u64) {
        self.inner.duplicated.inc_by(n);
    }

    pub fn late(&self, n: u64) {
        self.inner.late.inc_by(n);
        if let Some(tap) = self.tap.get() {
            (0..n).for_each(|_| tap.late());
        }
    }

    /// One resolved batch: its samples (where it had them), its lost events.
    pub fn record(&self, r: BatchRecord<'_>) {
        let i = &self.inner;
        let ids = || exemplar_ids(r.event_id, r.trace);
        i.post.observe(r.post.as_secs_f64());
        if let Some(e) = r.visible {
            i.visible.observe(e.lag.as_secs_f64(), ids());
            i.uncertainty.observe(e.uncertainty.as_secs_f64());
        }
        if let Some(e) = r.first_visible {
            i.first_visible.observe(e.lag.as_secs_f64(), ids());
        }
        i.lost.inc_by(r.lost);
        if let Some(tap) = self.tap.get() {
            if let Some(e) = r.visible {
                tap.record_batch(e.lag);
            }
            (0..r.lost).for_each(|_| tap.lost());
        }
        let secs = |e: Option<Estimate>| e.map(|e| e.lag.as_secs_f64());
        let unc = |e: Option<Estimate>| e.map(|e| e.uncertainty.as_secs_f64());
        let mut recent = i.recent.lock();
        if recent.len() == RECENT_SAMPLES {
            recent.pop_front();
        }
        recent.push_back(BatchSample {
            event_id: r.event_id.into(),
            events: r.events,
            visible_seconds: secs(r.visible),
            visible_uncertainty_seconds: unc(r.visible),
            first_visible_seconds: secs(r.first_visible),
            first_visible_uncertainty_seconds: unc(r.first_visible),
            post_seconds: r.post.as_secs_f64(),
            lost: r.lost,
        });
    }

    /// The batch probe at a glance, for `/status` and the landing page.
    pub fn snapshot(&self) -> BatchSnapshot {
        let i = &self.inner;
        BatchSnapshot {
            probes_total: i.probes.get(),
            events_total: i.events.get(),
            lost_total: i.lost.get(),
            late_total: i.late.get(),
            duplicated_total: i.duplicated.get(),
            failed_total: i.failures.iter().map(Counter::get).sum(),
            recent: i
                .recent
                .lock()
                .iter()
                .rev()
                .take(STATUS_SAMPLES)
                .cloned()
                .collect(),
        }
    }

    /// The newest batch samples, oldest first.
    pub fn recent(&self) -> Vec<BatchSample> {
        self.inner.recent.lock().iter().cloned().collect()
    }
}

/// Batches shown in `/status`.
const STATUS_SAMPLES: usize = 5;

/// The batch probe's totals and newest samples (newest first).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BatchSnapshot {
    pub probes_total: u64,
    pub events_total: u64,
    pub lost_total: u64,
    pub late_total: u64,
    pub duplicated_total: u64,
    /// Batches with no sample at all (POST failed or rejected, reads
    /// unreadable).
    pub failed_total: u64,
    pub recent: Vec<BatchSample>,
}

/// What [`BatchMetrics::record`] records.
#[derive(Clone, Copy, Debug)]
pub struct BatchRecord<'a> {
    pub event_id: &'a str,
    pub trace: TraceId,
    pub events: u64,
    pub post: Duration,
    pub visible: Option<Estimate>,
    pub first_visible: Option<Estimate>,
    pub lost: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lag::LagMetrics;
    use crate::metrics::tap::IntervalData;
    use crate::metrics::Format;

    fn est(ms: u64, unc: u64) -> Estimate {
        Estimate {
            lag: Duration::from_millis(ms),
            end_to_end: Duration::from_millis(ms + 1),
            uncertainty: Duration::from_millis(unc),
        }
    }

    #[test]
    fn a_batch_lands_in_the_histograms_the_tap_and_the_snapshot() {
        let mut r = Exposition::default();
        let lag = LagMetrics::register(&mut r);
        let tap = Arc::new(RunTap::default());
        lag.attach_tap(tap.clone());
        let m = lag.batch();
        m.probe_sent();
        m.accepted(20);
        m.record(BatchRecord {
            event_id: "evt_first",
            trace: TraceId(0x1234),
            events: 20,
            post: Duration::from_millis(3),
            visible: Some(est(700, 4)),
            first_visible: Some(est(650, 4)),
            lost: 0,
        });
        // A batch with two events missing: no full-visibility sample.
        m.record(BatchRecord {
            event_id: "evt_next",
            trace: TraceId(0x5678),
            events: 20,
            post: Duration::from_millis(3),
            visible: None,
            first_visible: Some(est(40, 2)),
            lost: 2,
        });
        let text = String::from_utf8(r.encode(Format::OpenMetrics, 0)).unwrap();
        for line in [
            "rehab_canary_batch_visible_seconds_count{projection=\"stream\"} 1",
            "rehab_canary_batch_first_visible_seconds_count{projection=\"stream\"} 2",
            "rehab_canary_batch_visible_seconds_bucket{le=\"1.0\",projection=\"stream\"} 1",
            "rehab_canary_batch_events_lost_total 2",
            "rehab_canary_batch_probe_events_total 20",
            "rehab_canary_batch_probe_failures_total{reason=\"error\"} 0",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(text.contains("event_id=\"evt_first\""), "exemplar");
        let mut d = IntervalData::default();
        tap.take(&mut d);
        assert_eq!((d.batch.count(), d.lost), (1, 2));
        assert!((d.batch.quantile(0.95).unwrap() - 0.7).abs() < 0.01);
        let snap = m.snapshot();
        assert_eq!((snap.lost_total, snap.recent.len()), (2, 2));
        assert_eq!(&*snap.recent[0].event_id, "evt_next", "newest first");
    }
}
