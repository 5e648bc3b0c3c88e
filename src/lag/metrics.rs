//! The lag metric families (a contract, like the request metrics), their
//! cached per-projection handles, the one-minute lag windows and the status
//! snapshot read by `/status` and the landing page.
//!
//! Families are registered into the daemon's registry before it is shared;
//! every known series exists from the start at zero. The hot path records
//! into handles indexed by projection: no label hashing or formatting, except
//! the exemplar's event id (one short string per observed probe event).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Serialize;

use super::audit_metrics::AuditMetrics;
use super::batch_metrics::BatchMetrics;
use super::estimate::Estimate;
use super::probe::Projection;
use crate::client::trace::TraceId;
use crate::metrics::histogram::{ExemplarIds, TracedFamily, TracedHistogram};
use crate::metrics::tap::RunTap;
use crate::metrics::window::{LatencyWindows, WindowSummaries, SLOTS, SLOT_PERIOD};
use crate::metrics::{registered, series, Exposition};

/// Bounds of the lag histograms: the contract's 0.025 ... 30 s plus finer
/// steps where a healthy pipeline lives, and 0.1 s / 1 s (the service's
/// target and critical p95) exactly. 4 projections × (16 + 3) = 76 series.
pub const LAG_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 30.0,
];

/// Longest event id kept in an exemplar: OpenMetrics caps an exemplar's
/// label set at 128 characters, and `trace_id` plus its value take 40,
/// `event_id` 8.
const MAX_EXEMPLAR_ID: usize = 80;

/// Recent samples kept per projection for `/status` and for comparing with a
/// ground truth sample by sample (about 30 KiB in all).
pub const RECENT_SAMPLES: usize = 256;

/// Recent samples shown per projection in `/status`.
const STATUS_SAMPLES: usize = 5;

/// One recorded lag sample.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LagSample {
    pub event_id: Box<str>,
    /// The client-side estimate, from acceptance.
    pub lag_seconds: f64,
    pub end_to_end_seconds: f64,
    /// The true lag lies within `lag_seconds ± uncertainty_seconds`.
    pub uncertainty_seconds: f64,
    /// From the service's own timestamps, when configured and readable.
    pub server_clock_seconds: Option<f64>,
    /// Seen only after `lag.timeout` (by the late watch).
    pub late: bool,
}

/// Why a probe event did not yield an in-time lag sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Not visible before `lag.timeout`.
    Lost,
    /// Visible after `lag.timeout` (it was first counted lost).
    Late,
    /// The POST failed in transport, or reads could not be judged.
    Error,
    /// The POST was answered with a non-2xx status.
    Rejected,
}

impl Failure {
    pub const ALL: [Failure; 4] = [
        Failure::Lost,
        Failure::Late,
        Failure::Error,
        Failure::Rejected,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Failure::Lost => "lost",
            Failure::Late => "late",
            Failure::Error => "error",
            Failure::Rejected => "rejected",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectionLabels {
    projection: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    projection: &'static str,
    reason: &'static str,
}

/// Classic and native buckets; exemplar: the probe event's id and the
/// trace id of its POST.
fn lag_histogram() -> TracedHistogram {
    TracedHistogram::new(&LAG_BUCKETS)
}

/// Classic only: the server-clock lag is a cross-check, not worth a
/// second native series per projection.
fn classic_lag_histogram() -> TracedHistogram {
    TracedHistogram::classic(&LAG_BUCKETS)
}

const N: usize = Projection::ALL.len();

/// One histogram per projection, created with the family so every series
/// exists from the start.
fn per_projection<H>(registry: &mut Registry, name: &str, help: &str, make: fn() -> H) -> [H; N]
where
    H: prometheus_client::metrics::TypedMetric
        + prometheus_client::encoding::EncodeMetric
        + Clone
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let family = Family::<ProjectionLabels, H, fn() -> H>::new_with_constructor(make);
    registry.register(name, help, family.clone());
    Projection::ALL.map(|p| {
        family
            .get_or_create(&ProjectionLabels {
                projection: p.as_str(),
            })
            .clone()
    })
}

/// Lost events per projection in each window slot, rotated with the lag
/// windows so "lost in the last minute" covers the same span.
#[derive(Debug)]
struct LostRing {
    slots: [[u64; SLOTS]; N],
    current: usize,
}

#[derive(Debug)]
struct Inner {
    lag: [TracedHistogram; N],
    end_to_end: [TracedHistogram; N],
    uncertainty: [Histogram; N],
    server_clock: [TracedHistogram; N],
    server_clock_errors: [Counter; N],
    weak: [Counter; N],
    reads: [Counter; N],
    probes: [Counter; N],
    failures: [[Counter; Failure::ALL.len()]; N],
    duplicated: [Counter; N],
    out_of_order: [Counter; N],
    skipped: [Counter; N],
    tracked: [Gauge; N],
    in_flight: Gauge,
    idle: tokio::sync::Notify,
    windows: Arc<LatencyWindows>,
    uncertainty_windows: LatencyWindows,
    server_windows: LatencyWindows,
    recent: Mutex<[VecDeque<LagSample>; N]>,
    lost: Mutex<LostRing>,
    /// Last lag per projection, as `f64` bits; NaN until the first sample.
    last: [AtomicU64; N],
    enabled: [AtomicBool; N],
    /// Set only in a one-shot run; shared with the batch metrics.
    tap: Arc<OnceLock<Arc<RunTap>>>,
    batch: BatchMetrics,
    audit: AuditMetrics,
}

/// Cheap to clone; every clone records into the same series.
#[derive(Clone, Debug)]
pub struct LagMetrics {
    inner: Arc<Inner>,
}

/// Counts a probe run as in flight while it lives (abort included), and
/// wakes [`LagMetrics::idle`] when the last one ends.
pub struct InFlight(Arc<Inner>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.dec() == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// One projection's lag at a glance.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProjectionSnapshot {
    pub projection: &'static str,
    pub enabled: bool,
    /// Seconds; `null` before the first sample.
    pub last_seconds: Option<f64>,
    /// Over the last minute; `null` without a sample in it.
    pub p50_seconds: Option<f64>,
    pub p95_seconds: Option<f64>,
    /// The 95th percentile of the samples' uncertainty over the last
    /// minute: the `±` shown beside p95.
    pub p95_uncertainty_seconds: Option<f64>,
    /// Server-clock lag over the last minute, where configured.
    pub server_clock_p50_seconds: Option<f64>,
    pub server_clock_p95_seconds: Option<f64>,
    pub samples_last_minute: u64,
    pub lost_last_minute: u64,
    pub probes_total: u64,
    pub lost_total: u64,
    pub late_total: u64,
    pub error_total: u64,
    pub rejected_total: u64,
    pub duplicated_total: u64,
    pub out_of_order_total: u64,
    pub weak_total: u64,
    pub reads_total: u64,
    pub server_clock_errors_total: u64,
    /// The newest few samples, newest first.
    pub recent: Vec<LagSample>,
}

impl LagMetrics {
    /// Registers every lag family and pre-creates each series.
    pub fn register(exposition: &mut Exposition) -> Self {
        let registry = &mut exposition.registry;
        let label = |p: Projection| ProjectionLabels {
            projection: p.as_str(),
        };
        let lag_family = TracedFamily::new(
            "rehab_canary_projection_lag_seconds",
            "Time from a probe event's acceptance (its POST's midpoint) to its first visibility \
             in the projection's read (middle of the bracket of the last poll that missed it and \
             the first that saw it, each at its own midpoint); late events included. Error bar: \
             rehab_canary_projection_lag_uncertainty_seconds. Classic buckets and a native \
             histogram (schema 3). Exemplar: the probe event's id and its POST's trace id",
            "projection",
            Projection::ALL.iter().map(|p| p.as_str()).collect(),
            lag_histogram,
        );
        let lag: [TracedHistogram; N] = std::array::from_fn(|i| lag_family.histograms[i].clone());
        let end_to_end_family = TracedFamily::new(
            "rehab_canary_projection_lag_end_to_end_seconds",
            "Like rehab_canary_projection_lag_seconds, but from the moment the probe's POST was \
             sent (ingest latency included). Classic and native buckets; exemplar as there",
            "projection",
            Projection::ALL.iter().map(|p| p.as_str()).collect(),
            lag_histogram,
        );
        let end_to_end: [TracedHistogram; N] =
            std::array::from_fn(|i| end_to_end_family.histograms[i].clone());
        let uncertainty = per_projection(
            registry,
            "rehab_canary_projection_lag_uncertainty_seconds",
            "Per-sample error bar of rehab_canary_projection_lag_seconds: the true lag lies within \
             the sample plus or minus this (half the poll bracket, plus the round trips' excess \
             over their recent minimum, plus half the POST-read cost difference)",
            || Histogram::new(LAG_BUCKETS),
        );
        let server_clock_family = TracedFamily::new(
            "rehab_canary_projection_lag_server_clock_seconds",
            "Projection lag from the service's own timestamps (applied minus committed, both on \
             its clock), for probes with server_clock pointers configured. Exemplar: the probe \
             event's id and its POST's trace id",
            "projection",
            Projection::ALL.iter().map(|p| p.as_str()).collect(),
            classic_lag_histogram,
        );
        let server_clock: [TracedHistogram; N] =
            std::array::from_fn(|i| server_clock_family.histograms[i].clone());
        let counter_family = |registry: &mut Registry, name: &str, help: &str| {
            series::<_, Counter, N>(registry, name, help, Projection::ALL.map(label))
        };
        let probes = counter_family(
            registry,
            "rehab_canary_lag_probes",
            "Probe events attempted (POSTs sent), by projection",
        );
        let failure_family = registered(
            registry,
            "rehab_canary_lag_probe_failures",
            "Probe events without an in-time lag sample, by projection and reason: lost (not \
             visible before lag.timeout), late (visible after it; also counted lost), error \
             (POST transport failure or unreadable reads), rejected (non-2xx POST)",
            Family::<FailureLabels, Counter>::default(),
        );
        let failures = Projection::ALL.map(|p| {
            Failure::ALL.map(|f| {
                failure_family.get_or_create_owned(&FailureLabels {
                    projection: p.as_str(),
                    reason: f.as_str(),
                })
            })
        });
        let duplicated = counter_family(
            registry,
            "rehab_canary_events_duplicated",
            "Probe events whose marker a read showed more than once, by projection",
        );
        let out_of_order = counter_family(
            registry,
            "rehab_canary_events_out_of_order",
            "Probe events that became visible after a later one of the same stream although \
             acknowledged before it was sent, by projection",
        );
        let skipped = counter_family(
            registry,
            "rehab_canary_lag_probes_skipped",
            "Probe ticks not run, by projection: lag.max_in_flight was full, or an increment \
             probe's previous event was still pending",
        );
        let weak = counter_family(
            registry,
            "rehab_canary_projection_lag_weak_samples",
            "Lag samples whose uncertainty exceeds lag.weak_share of their value (recorded all \
             the same), by projection",
        );
        let reads = counter_family(
            registry,
            "rehab_canary_lag_probe_reads",
            "Reads sent by the probes (polls, baseline and late-watch reads), by projection",
        );
        let server_clock_errors = counter_family(
            registry,
            "rehab_canary_lag_server_clock_errors",
            "Probe events seen whose server-clock lag could not be read (timestamp missing, \
             unparseable, or applied before committed), by projection",
        );
        let tracked = series::<_, Gauge, N>(
            registry,
            "rehab_canary_lag_tracked_events",
            "Probe events the loss and order bookkeeping holds, by projection: the ones being \
             watched, plus those resolved within max(lag.late_window, lag.timeout, 60s). \
             Bounded by construction; it never grows with run time",
            Projection::ALL.map(label),
        );
        let in_flight = registered(
            registry,
            "rehab_canary_lag_probes_in_flight",
            "Probe runs in progress (events being watched, late-watch reads, cleanups)",
            Gauge::default(),
        );
        let summaries = WindowSummaries::new(
            "rehab_canary_projection_lag_window_seconds",
            "Projection lag per projection: quantiles over the last minute, from rotating \
             HDR histograms (absent when the projection had no in-time or late sample in \
             the window), count and sum since start",
            "projection",
            Projection::ALL.iter().map(|p| p.as_str()).collect(),
        );
        let windows = summaries.windows.clone();
        exposition.add_summaries(summaries);
        for f in [lag_family, end_to_end_family, server_clock_family] {
            exposition.add_histograms(f);
        }
        let tap = Arc::new(OnceLock::new());
        LagMetrics {
            inner: Arc::new(Inner {
                lag,
                end_to_end,
                uncertainty,
                server_clock,
                server_clock_errors,
                weak,
                reads,
                probes,
                failures,
                duplicated,
                out_of_order,
                skipped,
                tracked,
                in_flight,
                idle: tokio::sync::Notify::new(),
                windows,
                uncertainty_windows: LatencyWindows::new(N),
                // For `/status` only: Prometheus has the histogram.
                server_windows: LatencyWindows::new(N),
                recent: Mutex::new(std::array::from_fn(|_| VecDeque::new())),
                lost: Mutex::new(LostRing {
                    slots: [[0; SLOTS]; N],
                    current: 0,
                }),
                last: std::array::from_fn(|_| AtomicU64::new(f64::NAN.to_bits())),
                enabled: std::array::from_fn(|_| AtomicBool::new(false)),
                batch: BatchMetrics::register(exposition, tap.clone()),
                audit: AuditMetrics::register(exposition),
                tap,
            }),
        }
    }

    pub fn set_tracked(&self, p: Projection, events: usize) {
        self.inner.tracked[p.index()].set(i64::try_from(events).unwrap_or(i64::MAX));
    }

    pub fn set_enabled(&self, p: Projection, enabled: bool) {
        self.inner.enabled[p.index()].store(enabled, Ordering::Relaxed);
    }

    pub fn probe_sent(&self, p: Projection) {
        self.inner.probes[p.index()].inc();
    }

    /// One lag sample (in time or late) with its error bar and, where the
    /// service says when things happened, its server-clock lag; the event id
    /// is the exemplar. `weak` is the caller's verdict on the error bar.
    pub fn record_lag(&self, p: Projection, s: LagRecord<'_>) {
        let i = p.index();
        let id = || exemplar_ids(s.event_id, s.trace);
        let e = s.estimate;
        let secs = e.lag.as_secs_f64();
        let inner = &self.inner;
        inner.lag[i].observe(secs, id());
        inner.end_to_end[i].observe(e.end_to_end.as_secs_f64(), id());
        inner.uncertainty[i].observe(e.uncertainty.as_secs_f64());
        inner.windows.record(i, e.lag, false);
        inner.uncertainty_windows.record(i, e.uncertainty, false);
        if let Some(server) = s.server_clock {
            inner.server_clock[i].observe(server.as_secs_f64(), id());
            inner.server_windows.record(i, server, false);
        }
        if s.weak {
            inner.weak[i].inc();
        }
        inner.last[i].store(secs.to_bits(), Ordering::Relaxed);
        {
            let mut recent = inner.recent.lock();
            let ring = &mut recent[i];
            if ring.len() == RECENT_SAMPLES {
                ring.pop_front();
            }
            ring.push_back(LagSample {
                event_id: s.event_id.into(),
                lag_seconds: secs,
                end_to_end_seconds: e.end_to_end.as_secs_f64(),
                uncertainty_seconds: e.uncertainty.as_secs_f64(),
                server_clock_seconds: s.server_clock.map(|d| d.as_secs_f64()),
                late: s.late,
            });
        }
        if let Some(tap) = inner.tap.get() {
            tap.record_lag(e.lag);
        }
    }

    /// The batch probe's families.
    pub fn batch(&self) -> &BatchMetrics {
        &self.inner.batch
    }

    /// The integrity audit's families.
    pub fn audit(&self) -> &AuditMetrics {
        &self.inner.audit
    }

    /// A probe event was seen but its server-clock lag could not be read.
    pub fn server_clock_error(&self, p: Projection) {
        self.inner.server_clock_errors[p.index()].inc();
    }

    /// A probe sent one read.
    pub fn read_sent(&self, p: Projection) {
        self.inner.reads[p.index()].inc();
    }

    /// The newest samples of `p`, oldest first (at most [`RECENT_SAMPLES`]).
    pub fn recent_samples(&self, p: Projection) -> Vec<LagSample> {
        self.inner.recent.lock()[p.index()]
            .iter()
            .cloned()
            .collect()
    }

    /// Feeds a one-shot run's tap from now on.
    pub fn attach_tap(&self, tap: Arc<RunTap>) {
        let _ = self.inner.tap.set(tap);
    }

    pub fn failure(&self, p: Projection, f: Failure) {
        self.inner.failures[p.index()][f.index()].inc();
        if let Some(tap) = self.inner.tap.get() {
            match f {
                Failure::Lost => tap.lost(),
                Failure::Late => tap.late(),
                Failure::Error | Failure::Rejected => {}
            }
        }
        if f == Failure::Lost {
            let mut ring = self.inner.lost.lock();
            let cur = ring.current;
            ring.slots[p.index()][cur] += 1;
        }
    }

    pub fn duplicated(&self, p: Projection, n: u64) {
        if n > 0 {
            self.inner.duplicated[p.index()].inc_by(n);
        }
    }

    pub fn out_of_order(&self, p: Projection, n: u64) {
        if n > 0 {
            self.inner.out_of_order[p.index()].inc_by(n);
        }
    }

    pub fn skipped(&self, p: Projection) {
        self.inner.skipped[p.index()].inc();
    }

    pub fn in_flight(&self) -> InFlight {
        self.inner.in_flight.inc();
        InFlight(self.inner.clone())
    }

    /// Resolves once no probe run is in flight.
    pub async fn idle(&self) {
        loop {
            let notified = self.inner.idle.notified();
            if self.inner.in_flight.get() <= 0 {
                return;
            }
            notified.await;
        }
    }

    pub fn in_flight_now(&self) -> i64 {
        self.inner.in_flight.get()
    }

    /// [`LagMetrics::rotate`], handing each projection's finished lag slot
    /// to `f` (projection index, histogram).
    pub fn rotate_with(&self, mut f: impl FnMut(usize, &hdrhistogram::Histogram<u32>)) {
        self.inner.windows.rotate_with(|i, h, _, _| f(i, h));
        self.rotate_rest();
    }

    /// Probe events sent and declared lost of `p`, since start.
    pub fn counts(&self, p: Projection) -> (u64, u64) {
        let i = &self.inner;
        (
            i.probes[p.index()].get(),
            i.failures[p.index()][Failure::Lost.index()].get(),
        )
    }

    /// Advances the one-minute windows; call every [`SLOT_PERIOD`].
    pub fn rotate(&self) {
        self.inner.windows.rotate();
        self.rotate_rest();
    }

    fn rotate_rest(&self) {
        self.inner.uncertainty_windows.rotate();
        self.inner.server_windows.rotate();
        let mut ring = self.inner.lost.lock();
        let next = (ring.current + 1) % SLOTS;
        for p in ring.slots.iter_mut() {
            p[next] = 0;
        }
        ring.current = next;
    }

    pub fn snapshot(&self) -> Vec<ProjectionSnapshot> {
        let lost_minute: [u64; N] = {
            let ring = self.inner.lost.lock();
            std::array::from_fn(|i| ring.slots[i].iter().sum())
        };
        Projection::ALL
            .iter()
            .map(|p| {
                let i = p.index();
                let s = self.inner.windows.summary(i);
                let q = |k: usize| s.quantiles.map(|qs| qs[k]);
                let u = self.inner.uncertainty_windows.summary(i).quantiles;
                let sc = self.inner.server_windows.summary(i).quantiles;
                let recent: Vec<LagSample> = self.inner.recent.lock()[i]
                    .iter()
                    .rev()
                    .take(STATUS_SAMPLES)
                    .cloned()
                    .collect();
                let last = f64::from_bits(self.inner.last[i].load(Ordering::Relaxed));
                let fail = |f: Failure| self.inner.failures[i][f.index()].get();
                ProjectionSnapshot {
                    projection: p.as_str(),
                    enabled: self.inner.enabled[i].load(Ordering::Relaxed),
                    last_seconds: (!last.is_nan()).then_some(last),
                    p50_seconds: q(0),
                    p95_seconds: q(1),
                    p95_uncertainty_seconds: u.map(|qs| qs[1]),
                    server_clock_p50_seconds: sc.map(|qs| qs[0]),
                    server_clock_p95_seconds: sc.map(|qs| qs[1]),
                    samples_last_minute: s.requests,
                    lost_last_minute: lost_minute[i],
                    probes_total: self.inner.probes[i].get(),
                    lost_total: fail(Failure::Lost),
                    late_total: fail(Failure::Late),
                    error_total: fail(Failure::Error),
                    rejected_total: fail(Failure::Rejected),
                    duplicated_total: self.inner.duplicated[i].get(),
                    out_of_order_total: self.inner.out_of_order[i].get(),
                    weak_total: self.inner.weak[i].get(),
                    reads_total: self.inner.reads[i].get(),
                    server_clock_errors_total: self.inner.server_clock_errors[i].get(),
                    recent,
                }
            })
            .collect()
    }
}

/// A probe sample's exemplar: its event id, cut to fit OpenMetrics'
/// limit, and its POST's trace id.
pub(super) fn exemplar_ids(event_id: &str, trace: TraceId) -> Option<ExemplarIds> {
    let cut = event_id
        .char_indices()
        .nth(MAX_EXEMPLAR_ID)
        .map_or(event_id.len(), |(at, _)| at);
    Some(ExemplarIds {
        trace,
        event: Some(event_id[..cut].into()),
    })
}

/// What [`LagMetrics::record_lag`] records.
#[derive(Clone, Copy, Debug)]
pub struct LagRecord<'a> {
    pub estimate: Estimate,
    pub server_clock: Option<Duration>,
    pub event_id: &'a str,
    /// The trace id of the probe event's POST.
    pub trace: TraceId,
    pub weak: bool,
    pub late: bool,
}

/// The window span, for display.
pub fn window_seconds() -> f64 {
    (SLOT_PERIOD * SLOTS as u32).as_secs_f64()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn encode(r: &Exposition) -> String {
        String::from_utf8(r.encode(crate::metrics::Format::OpenMetrics, 0)).unwrap()
    }

    #[test]
    fn every_family_and_series_exists_from_the_start() {
        let mut r = Exposition::default();
        let _m = LagMetrics::register(&mut r);
        let text = encode(&r);
        for p in ["stream", "adherence", "quality", "work_queue"] {
            for reason in ["lost", "late", "error", "rejected"] {
                let s = format!(
                    "rehab_canary_lag_probe_failures_total{{projection=\"{p}\",reason=\"{reason}\"}} 0"
                );
                assert!(text.contains(&s), "missing {s}");
            }
            for name in [
                "rehab_canary_lag_probes_total",
                "rehab_canary_events_duplicated_total",
                "rehab_canary_events_out_of_order_total",
            ] {
                let s = format!("{name}{{projection=\"{p}\"}} 0");
                assert!(text.contains(&s), "missing {s}");
            }
            for le in [
                "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "30.0",
            ] {
                let s = format!(
                    "rehab_canary_projection_lag_seconds_bucket{{le=\"{le}\",projection=\"{p}\"}} 0"
                );
                assert!(text.contains(&s), "missing {s}");
            }
            assert!(text.contains(&format!(
                "rehab_canary_projection_lag_end_to_end_seconds_count{{projection=\"{p}\"}} 0"
            )));
        }
        assert!(text.contains("rehab_canary_lag_probes_in_flight 0"));
        assert!(text.contains("# TYPE rehab_canary_projection_lag_window_seconds summary"));
        assert!(!text.contains("rehab_canary_projection_lag_window_seconds{"));
        assert!(text
            .contains("rehab_canary_projection_lag_window_seconds_count{projection=\"stream\"} 0"));
    }

    /// A sample of `lag_ms ± unc_ms`, with an optional server-clock lag.
    pub(crate) fn record(
        m: &LagMetrics,
        p: Projection,
        lag_ms: u64,
        unc_ms: u64,
        server: Option<u64>,
    ) {
        let ms = Duration::from_millis;
        m.record_lag(
            p,
            LagRecord {
                estimate: Estimate {
                    lag: ms(lag_ms),
                    end_to_end: ms(lag_ms + 2),
                    uncertainty: ms(unc_ms),
                },
                server_clock: server.map(ms),
                event_id: "evt_1",
                trace: TraceId(0xabc),
                weak: unc_ms * 4 > lag_ms,
                late: false,
            },
        );
    }

    #[test]
    fn samples_show_with_exemplar_window_and_status() {
        let mut r = Exposition::default();
        let m = LagMetrics::register(&mut r);
        m.set_enabled(Projection::Stream, true);
        record(&m, Projection::Stream, 90, 3, Some(88));
        record(&m, Projection::Stream, 90, 30, None);
        m.failure(Projection::Stream, Failure::Lost);
        let text = encode(&r);
        assert!(
            text.contains(
                "rehab_canary_projection_lag_seconds_bucket{le=\"0.1\",projection=\"stream\"} 2 # {event_id=\"evt_1\",trace_id=\"00000000000000000000000000000abc\"} 0.09"
            ),
            "{text}"
        );
        assert!(text.contains(
            "rehab_canary_projection_lag_window_seconds{projection=\"stream\",quantile=\"0.5\"}"
        ));
        for s in [
            "rehab_canary_projection_lag_uncertainty_seconds_bucket{le=\"0.005\",projection=\"stream\"} 1",
            "rehab_canary_projection_lag_uncertainty_seconds_count{projection=\"stream\"} 2",
            "rehab_canary_projection_lag_server_clock_seconds_count{projection=\"stream\"} 1",
            "rehab_canary_projection_lag_weak_samples_total{projection=\"stream\"} 1",
        ] {
            assert!(text.contains(s), "missing {s} in {text}");
        }
        let s = &m.snapshot()[0];
        assert_eq!(s.projection, "stream");
        assert!(s.enabled);
        assert_eq!(s.last_seconds, Some(0.09));
        assert!((s.p50_seconds.unwrap() - 0.09).abs() < 0.001);
        assert!((s.p95_uncertainty_seconds.unwrap() - 0.03).abs() < 0.001);
        assert!((s.server_clock_p50_seconds.unwrap() - 0.088).abs() < 0.001);
        assert_eq!(s.weak_total, 1);
        assert_eq!(s.recent.len(), 2);
        assert_eq!(
            s.recent[1].server_clock_seconds,
            Some(0.088),
            "newest first"
        );
        assert_eq!(m.recent_samples(Projection::Stream).len(), 2);
        assert_eq!((s.lost_last_minute, s.lost_total), (1, 1));
        // The lost count leaves the window with the lag samples.
        for _ in 0..SLOTS {
            m.rotate();
        }
        let s = &m.snapshot()[0];
        assert_eq!(
            (s.lost_last_minute, s.p50_seconds, s.lost_total),
            (0, None, 1)
        );
        assert_eq!(s.last_seconds, Some(0.09), "last stays");
    }
}
