//! Rotating HDR latency windows: per-endpoint latency quantiles, request and
//! error counts over roughly the last minute, in constant memory.
//!
//! Each endpoint owns a ring of [`SLOTS`] HDR histograms. Requests record into
//! the current slot under a short `parking_lot` mutex (never held across an
//! `.await`: every method here is synchronous). A timer calls [`LatencyWindows::rotate`]
//! every [`SLOT_PERIOD`]; rotation makes the oldest slot current and clears it.
//! Reading merges the live slots into one scratch histogram that is allocated
//! once, so a scrape does not allocate. No sample is kept, only bucket counts.

use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model as pb;
use std::fmt::Write;

/// Number of slots in a ring. With [`SLOT_PERIOD`] this makes the window cover
/// between 50 s (just after a rotation) and 60 s (just before the next one).
pub const SLOTS: usize = 6;

/// How often the owner should call `rotate`; the window spans `SLOTS` periods.
pub const SLOT_PERIOD: Duration = Duration::from_secs(10);

/// Quantiles exported per endpoint, with their label values (as in a summary).
pub const QUANTILES: [(f64, &str); 4] = [
    (0.5, "0.5"),
    (0.95, "0.95"),
    (0.99, "0.99"),
    (0.999, "0.999"),
];

/// Values are recorded in microseconds: a local target answers in well under a
/// millisecond, so milliseconds would flatten p50 to zero.
const LOWEST_US: u64 = 1;
/// Anything slower is clamped here (`saturating_record`); request timeouts are
/// far below five minutes, so nothing real is clamped.
const HIGHEST_US: u64 = 300_000_000;
/// Two significant digits bound the relative error below 1 % (sub-bucket
/// resolution 1/128), which is plenty for a dashboard quantile. Three digits
/// would cost about 7x the memory (≈80 KB per slot instead of ≈12 KB) and 7x the
/// merge time per scrape, for precision nobody reads.
const SIGFIGS: u8 = 2;

/// What a window says about one endpoint.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WindowSummary {
    /// Requests recorded in the window (every outcome).
    pub requests: u64,
    /// Requests in the window whose outcome was an error.
    pub errors: u64,
    /// Latency quantiles in seconds, in the order of [`QUANTILES`]; `None`
    /// when the window holds no request (there is nothing honest to report).
    pub quantiles: Option<[f64; QUANTILES.len()]>,
}

struct Slot {
    hist: Histogram<u32>,
    requests: u64,
    errors: u64,
}

impl Slot {
    fn clear(&mut self) {
        self.hist.reset();
        self.requests = 0;
        self.errors = 0;
    }
}

struct Ring {
    slots: [Slot; SLOTS],
    current: usize,
    /// Since start, never rotated: a summary's `_count` and `_sum` are
    /// cumulative, only its quantiles cover the window.
    total: u64,
    total_us: u64,
}

/// One ring of slots per series (per endpoint), plus one merge scratch.
pub struct LatencyWindows {
    rings: Box<[Mutex<Ring>]>,
    scratch: Mutex<Histogram<u32>>,
}

impl std::fmt::Debug for LatencyWindows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyWindows")
            .field("series", &self.rings.len())
            .field("slots", &SLOTS)
            .finish()
    }
}

pub(crate) fn new_hist() -> Histogram<u32> {
    // The bounds are constants that hdrhistogram accepts; a failure here is a
    // programming error caught by every test, not a runtime condition.
    let mut h = Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGFIGS)
        .expect("constant HDR bounds are valid");
    // Never grow: memory must stay constant.
    h.auto(false);
    h
}

impl LatencyWindows {
    /// Windows for `series` independent series (index `0..series`).
    pub fn new(series: usize) -> Self {
        let rings = (0..series)
            .map(|_| {
                Mutex::new(Ring {
                    slots: std::array::from_fn(|_| Slot {
                        hist: new_hist(),
                        requests: 0,
                        errors: 0,
                    }),
                    current: 0,
                    total: 0,
                    total_us: 0,
                })
            })
            .collect();
        LatencyWindows {
            rings,
            scratch: Mutex::new(new_hist()),
        }
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.rings.len()
    }

    /// True when there are no series at all.
    pub fn is_empty(&self) -> bool {
        self.rings.is_empty()
    }

    /// Record one request of series `idx`. Out-of-range indices are ignored
    /// (they cannot happen with `Endpoint::index`, and a metric must never panic).
    pub fn record(&self, idx: usize, latency: Duration, error: bool) {
        let Some(ring) = self.rings.get(idx) else {
            return;
        };
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let mut ring = ring.lock();
        ring.total += 1;
        ring.total_us = ring.total_us.saturating_add(us);
        let cur = ring.current;
        let slot = &mut ring.slots[cur];
        slot.hist.saturating_record(us.max(LOWEST_US));
        slot.requests += 1;
        slot.errors += u64::from(error);
    }

    /// Like [`LatencyWindows::rotate`], first handing each series' finished
    /// slot to `f` (index, histogram, requests, errors): how the verdict's
    /// snapshots are filled without a second recording on the hot path.
    pub fn rotate_with(&self, mut f: impl FnMut(usize, &Histogram<u32>, u64, u64)) {
        for (i, ring) in self.rings.iter().enumerate() {
            let mut ring = ring.lock();
            let cur = ring.current;
            let s = &ring.slots[cur];
            f(i, &s.hist, s.requests, s.errors);
            let next = (cur + 1) % SLOTS;
            ring.slots[next].clear();
            ring.current = next;
        }
    }

    /// Advance every ring by one slot, dropping the oldest slot's data.
    pub fn rotate(&self) {
        for ring in self.rings.iter() {
            let mut ring = ring.lock();
            let next = (ring.current + 1) % SLOTS;
            ring.slots[next].clear();
            ring.current = next;
        }
    }

    /// Observations of series `idx` since start, and their sum in seconds.
    pub fn totals(&self, idx: usize) -> (u64, f64) {
        self.rings.get(idx).map_or((0, 0.0), |r| {
            let r = r.lock();
            (r.total, r.total_us as f64 / 1e6)
        })
    }

    /// Summary of series `idx` over the live slots.
    pub fn summary(&self, idx: usize) -> WindowSummary {
        let empty = WindowSummary {
            requests: 0,
            errors: 0,
            quantiles: None,
        };
        let Some(ring) = self.rings.get(idx) else {
            return empty;
        };
        // Lock order is always scratch, then ring; `record` and `rotate` take
        // only ring locks, so there is no cycle.
        let mut scratch = self.scratch.lock();
        scratch.reset();
        let (mut requests, mut errors) = (0, 0);
        {
            let ring = ring.lock();
            for slot in &ring.slots {
                requests += slot.requests;
                errors += slot.errors;
                // Same bounds, no auto-resize: addition cannot exceed the range,
                // and if it somehow did, a slightly low quantile beats a panic.
                let _ = scratch.add(&slot.hist);
            }
        }
        if scratch.is_empty() {
            return WindowSummary {
                requests,
                errors,
                quantiles: None,
            };
        }
        let quantiles = QUANTILES.map(|(q, _)| scratch.value_at_quantile(q) as f64 / 1e6);
        WindowSummary {
            requests,
            errors,
            quantiles: Some(quantiles),
        }
    }

    /// Bytes held by the histograms' count arrays (for tests and docs).
    #[cfg(test)]
    fn approx_bytes(&self) -> usize {
        let counts: usize = self
            .rings
            .iter()
            .map(|r| {
                r.lock()
                    .slots
                    .iter()
                    .map(|s| s.hist.distinct_values())
                    .sum::<usize>()
            })
            .sum::<usize>()
            + self.scratch.lock().distinct_values();
        counts * std::mem::size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn assert_close(got: f64, want: f64) {
        let rel = (got - want).abs() / want;
        assert!(rel < 0.01, "got {got}, want {want} (rel err {rel})");
    }

    #[test]
    fn quantiles_of_known_uniform_input() {
        let w = LatencyWindows::new(2);
        // 1..=1000 ms, one each: p50 = 500 ms, p95 = 950, p99 = 990, p99.9 = 999.
        for v in 1..=1000 {
            w.record(0, ms(v), v % 100 == 0);
        }
        let s = w.summary(0);
        assert_eq!(s.requests, 1000);
        assert_eq!(s.errors, 10);
        let q = s.quantiles.expect("has data");
        for (got, want) in q.iter().zip([0.5, 0.95, 0.99, 0.999]) {
            assert_close(*got, want);
        }
        // The other series is untouched.
        assert_eq!(w.summary(1).requests, 0);
        assert_eq!(w.summary(1).quantiles, None);
    }

    #[test]
    fn sub_millisecond_latencies_keep_resolution() {
        let w = LatencyWindows::new(1);
        for _ in 0..100 {
            w.record(0, Duration::from_micros(250), false);
        }
        let q = w.summary(0).quantiles.expect("has data");
        assert_close(q[0], 0.000_250);
    }

    #[test]
    fn data_rotates_out_after_the_window() {
        let w = LatencyWindows::new(1);
        w.record(0, ms(100), true);
        // Still visible for SLOTS-1 rotations (the window is SLOTS periods long).
        for _ in 0..SLOTS - 1 {
            w.rotate();
            let s = w.summary(0);
            assert_eq!((s.requests, s.errors), (1, 1));
        }
        w.rotate();
        let s = w.summary(0);
        assert_eq!((s.requests, s.errors, s.quantiles), (0, 0, None));
    }

    #[test]
    fn quantiles_merge_across_slots() {
        let w = LatencyWindows::new(1);
        for _ in 0..50 {
            w.record(0, ms(10), false);
        }
        w.rotate();
        for _ in 0..50 {
            w.record(0, ms(1000), false);
        }
        let q = w.summary(0).quantiles.expect("has data");
        assert_close(q[0], 0.010);
        assert_close(q[2], 1.0);
    }

    #[test]
    fn extreme_and_bogus_inputs_do_not_panic() {
        let w = LatencyWindows::new(1);
        w.record(0, Duration::ZERO, false);
        w.record(0, Duration::from_secs(100_000), false);
        w.record(7, ms(1), false); // out of range: ignored
        let s = w.summary(0);
        assert_eq!(s.requests, 2);
        let q = s.quantiles.expect("has data");
        // Clamped to the top of the range (300 s), within the 1 % resolution.
        assert!(q[3] <= 300.0 * 1.01, "clamped: {}", q[3]);
        assert_eq!(w.summary(7).requests, 0);
    }

    #[test]
    fn memory_is_small_and_constant() {
        let w = LatencyWindows::new(13);
        let before = w.approx_bytes();
        assert!(before < 2 * 1024 * 1024, "{before} bytes");
        for v in 0..10_000u64 {
            w.record((v % 13) as usize, Duration::from_micros(v * 997), false);
        }
        let _ = w.summary(3);
        assert_eq!(w.approx_bytes(), before);
    }
}

/// A set of windows exported as one summary family: per window, the
/// quantiles of the last minute and the cumulative `_count` and `_sum`, as
/// client_golang's summaries (`MaxAge`) do. A window with no sample has no
/// quantile series (absent is what "no data" should look like: a panel shows
/// a gap, an alert never fires on NaN or a fake 0); `_count` and `_sum` are
/// always there.
///
/// prometheus-client has no summary type, so [`super::Exposition`] writes
/// these families itself in every format.
#[derive(Debug)]
pub struct WindowSummaries {
    pub name: &'static str,
    pub help: &'static str,
    /// The label that tells the windows apart (`endpoint`, `projection`)...
    pub label: &'static str,
    /// ...and its value for each window, in window order.
    pub values: Vec<&'static str>,
    pub windows: Arc<LatencyWindows>,
}

impl WindowSummaries {
    /// New windows, one per value of `label`.
    pub fn new(
        name: &'static str,
        help: &'static str,
        label: &'static str,
        values: Vec<&'static str>,
    ) -> Self {
        let windows = Arc::new(LatencyWindows::new(values.len()));
        WindowSummaries {
            name,
            help,
            label,
            values,
            windows,
        }
    }

    /// The text exposition (the same in 0.0.4 and OpenMetrics).
    pub fn write_text(&self, out: &mut String) {
        let (name, label) = (self.name, self.label);
        let _ = writeln!(out, "# HELP {name} {}.", self.help);
        let _ = writeln!(out, "# TYPE {name} summary");
        for (i, value) in self.values.iter().enumerate() {
            if let Some(qs) = self.windows.summary(i).quantiles {
                for ((_, q), v) in QUANTILES.iter().zip(qs) {
                    let _ = writeln!(out, "{name}{{{label}=\"{value}\",quantile=\"{q}\"}} {v}");
                }
            }
            let (count, sum) = self.windows.totals(i);
            let _ = writeln!(out, "{name}_sum{{{label}=\"{value}\"}} {sum}");
            let _ = writeln!(out, "{name}_count{{{label}=\"{value}\"}} {count}");
        }
    }

    /// The protobuf family (`io.prometheus.client.MetricFamily`).
    pub fn to_protobuf(&self) -> pb::MetricFamily {
        let metric = self
            .values
            .iter()
            .enumerate()
            .map(|(i, value)| {
                let quantile = self
                    .windows
                    .summary(i)
                    .quantiles
                    .map(|qs| {
                        QUANTILES
                            .iter()
                            .zip(qs)
                            .map(|((q, _), v)| pb::Quantile {
                                quantile: *q,
                                value: v,
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let (sample_count, sample_sum) = self.windows.totals(i);
                pb::Metric {
                    label: vec![pb::LabelPair {
                        name: self.label.to_owned(),
                        value: (*value).to_owned(),
                    }],
                    summary: Some(pb::Summary {
                        sample_count,
                        sample_sum,
                        quantile,
                        ..Default::default()
                    }),
                    ..Default::default()
                }
            })
            .collect();
        pb::MetricFamily {
            name: self.name.to_owned(),
            help: format!("{}.", self.help),
            r#type: pb::MetricType::Summary as i32,
            metric,
            unit: String::new(),
        }
    }
}
