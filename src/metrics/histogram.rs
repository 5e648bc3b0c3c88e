//! A histogram with the classic buckets (the contract dashboards and rules
//! were written for) and a Prometheus native histogram side by side, plus
//! one exemplar per classic bucket carrying the request's trace id.
//!
//! prometheus-client's own histograms cannot combine native buckets with
//! exemplars, and grow their sparse buckets by insertion; this one is dense
//! and fixed, so recording is an index computation and two increments.
//!
//! **Native buckets.** Schema 3: eight buckets per power of two, each
//! 9.05 % wider than the one before it, so a quantile read from them is off
//! by at most one bucket (≤ 9.05 % relative). Values at or below
//! [`ZERO_THRESHOLD`] (≈ 0.95 µs) go to the zero bucket, values above
//! 2^12 s (68 min, past any timeout) to the top bucket: at most
//! [`NATIVE_BUCKETS`] buckets per series by construction. The schema never
//! degrades and nothing ever resets except a restart, so `rate()` and
//! `increase()` see one monotonic series.
//!
//! **Exemplars.** Per classic bucket, the slowest observation since the last
//! scrape (an exemplar shown once stays until a newer one replaces it, so a
//! second scraper still sees it).

use std::fmt::Write;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model as pb;

use crate::client::trace::TraceId;

/// The native histogram's schema: 2^(2^-3) growth per bucket.
pub const SCHEMA: i8 = 3;
const PER_OCTAVE: i32 = 1 << SCHEMA;
/// Width of the zero bucket: 2^-20 s.
pub const ZERO_THRESHOLD: f64 = 1.0 / 1_048_576.0;
/// First bucket above the zero bucket: (2^-20, 2^(-20 + 1/8)].
const MIN_INDEX: i32 = -20 * PER_OCTAVE + 1;
/// Top bucket: upper bound 2^12 s.
const MAX_INDEX: i32 = 12 * PER_OCTAVE;
/// Buckets per native series, at most.
pub const NATIVE_BUCKETS: usize = (MAX_INDEX - MIN_INDEX + 1) as usize;

/// Upper bounds of the eight buckets within one octave, as mantissas in
/// (1, 2]: 2^(k/8) for k = 1..=8.
const OCTAVE_BOUNDS: [f64; 8] = [
    1.090_507_732_665_257_7,
    1.189_207_115_002_721,
    1.296_839_554_651_009_6,
    std::f64::consts::SQRT_2,
    1.542_210_825_407_940_7,
    1.681_792_830_507_429,
    1.834_008_086_409_342_4,
    2.0,
];

/// The native bucket index of `v > ZERO_THRESHOLD`: bucket `i` holds
/// (2^((i-1)/8), 2^(i/8)]. Exact at the boundaries (no logarithm).
fn native_index(v: f64) -> i32 {
    if !v.is_finite() {
        return MAX_INDEX;
    }
    let bits = v.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32 - 1023;
    let mantissa = f64::from_bits((bits & ((1 << 52) - 1)) | (1023 << 52));
    let index = if mantissa == 1.0 {
        exp * PER_OCTAVE
    } else {
        let k = OCTAVE_BOUNDS
            .iter()
            .position(|b| mantissa <= *b)
            .unwrap_or(7) as i32;
        exp * PER_OCTAVE + k + 1
    };
    index.clamp(MIN_INDEX, MAX_INDEX)
}

/// Upper bound of native bucket `i`, in seconds.
pub fn native_upper_bound(i: i32) -> f64 {
    (f64::from(i) / f64::from(PER_OCTAVE)).exp2()
}

/// What an exemplar says besides its value.
#[derive(Clone, Debug, PartialEq)]
pub struct ExemplarIds {
    pub trace: TraceId,
    /// The probe event's id (lag histograms only).
    pub event: Option<Box<str>>,
}

#[derive(Debug)]
struct Kept {
    value: f64,
    ids: ExemplarIds,
    at: SystemTime,
    /// Not yet shown to a scraper: only a slower observation replaces it.
    fresh: bool,
}

#[derive(Debug)]
struct State {
    sum: f64,
    count: u64,
    /// Per classic bucket (the last is +Inf), not cumulative.
    classic: Box<[u64]>,
    exemplars: Box<[Option<Kept>]>,
    zero: u64,
    /// Dense native buckets, `MIN_INDEX..=MAX_INDEX`; `None` for classic-only.
    native: Option<Box<[u64]>>,
}

/// A classic + native histogram with trace exemplars. Cloning shares it.
#[derive(Clone, Debug)]
pub struct TracedHistogram {
    bounds: &'static [f64],
    created: SystemTime,
    state: Arc<Mutex<State>>,
}

impl TracedHistogram {
    /// Classic buckets at `bounds` (ascending, finite; +Inf is implied) and
    /// native buckets beside them.
    pub fn new(bounds: &'static [f64]) -> Self {
        Self::build(bounds, true)
    }

    /// Classic buckets only, with exemplars.
    pub fn classic(bounds: &'static [f64]) -> Self {
        Self::build(bounds, false)
    }

    fn build(bounds: &'static [f64], native: bool) -> Self {
        let n = bounds.len() + 1;
        TracedHistogram {
            bounds,
            created: SystemTime::now(),
            state: Arc::new(Mutex::new(State {
                sum: 0.0,
                count: 0,
                classic: vec![0; n].into(),
                exemplars: (0..n).map(|_| None).collect(),
                zero: 0,
                native: native.then(|| vec![0; NATIVE_BUCKETS].into()),
            })),
        }
    }

    /// Records `v` seconds; with `ids`, it may become its bucket's exemplar.
    /// NaN is ignored, negative values count in the zero bucket.
    pub fn observe(&self, v: f64, ids: Option<ExemplarIds>) {
        if v.is_nan() {
            return;
        }
        let bucket = self.bounds.partition_point(|b| *b < v);
        let native = (v > ZERO_THRESHOLD).then(|| (native_index(v) - MIN_INDEX) as usize);
        let mut s = self.state.lock();
        s.sum += v;
        s.count += 1;
        s.classic[bucket] += 1;
        match (native, s.native.as_mut()) {
            (Some(i), Some(buckets)) => buckets[i] += 1,
            (None, Some(_)) => s.zero += 1,
            _ => {}
        }
        let Some(ids) = ids else { return };
        let slot = &mut s.exemplars[bucket];
        if slot.as_ref().is_none_or(|k| !k.fresh || v >= k.value) {
            *slot = Some(Kept {
                value: v,
                ids,
                at: SystemTime::now(),
                fresh: true,
            });
        }
    }

    /// Observations so far and their sum (for tests and the status page).
    pub fn count_and_sum(&self) -> (u64, f64) {
        let s = self.state.lock();
        (s.count, s.sum)
    }
}

/// The native buckets as Prometheus spans and deltas. Runs of up to two
/// empty buckets are sent as zeros rather than a new span, as client_golang
/// does: fewer spans, same size on the wire.
fn spans_and_deltas(buckets: &[u64]) -> Sparse {
    let (mut spans, mut deltas) = (Vec::<(i32, u32)>::new(), Vec::new());
    let (mut prev, mut last) = (0i64, None::<i32>);
    for (k, &c) in buckets.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let index = MIN_INDEX + k as i32;
        match (last, spans.last_mut()) {
            (Some(l), Some(span)) if index - l - 1 <= 2 => {
                for _ in 0..index - l - 1 {
                    deltas.push(-prev);
                    prev = 0;
                }
                span.1 += (index - l) as u32;
            }
            (Some(l), _) => spans.push((index - l - 1, 1)),
            (None, _) => spans.push((index, 1)),
        }
        let c = i64::try_from(c).unwrap_or(i64::MAX);
        deltas.push(c - prev);
        prev = c;
        last = Some(index);
    }
    (spans, deltas)
}

/// Native buckets as Prometheus spans (offset, length) and count deltas.
type Sparse = (Vec<(i32, u32)>, Vec<i64>);

/// One histogram's state at a scrape.
struct Snapshot {
    sum: f64,
    count: u64,
    /// Cumulative, per classic bound (+Inf last).
    cumulative: Vec<u64>,
    exemplars: Vec<Option<(f64, ExemplarIds, SystemTime)>>,
    zero: u64,
    native: Option<Sparse>,
}

impl TracedHistogram {
    fn snapshot(&self) -> Snapshot {
        let mut s = self.state.lock();
        let mut total = 0;
        let cumulative = s
            .classic
            .iter()
            .map(|c| {
                total += c;
                total
            })
            .collect();
        let exemplars = s
            .exemplars
            .iter_mut()
            .map(|k| {
                let k = k.as_mut()?;
                k.fresh = false;
                Some((k.value, k.ids.clone(), k.at))
            })
            .collect();
        Snapshot {
            sum: s.sum,
            count: s.count,
            cumulative,
            exemplars,
            zero: s.zero,
            native: s.native.as_deref().map(spans_and_deltas),
        }
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn exemplar_labels(ids: &ExemplarIds) -> impl Iterator<Item = (&'static str, String)> + '_ {
    let event = ids.event.as_deref().map(|e| ("event_id", e.to_owned()));
    let trace = (!ids.trace.is_none()).then(|| ("trace_id", ids.trace.to_hex()));
    event.into_iter().chain(trace)
}

/// A family of traced histograms, one per value of one label, written by
/// [`super::Exposition`] in every format: prometheus-client can neither
/// build an exemplar for a custom metric nor pair one with native buckets.
#[derive(Debug)]
pub struct TracedFamily {
    pub name: &'static str,
    pub help: &'static str,
    pub label: &'static str,
    pub values: Vec<&'static str>,
    pub histograms: Vec<TracedHistogram>,
}

impl TracedFamily {
    /// One histogram per value of `label`, made by `make`.
    pub fn new(
        name: &'static str,
        help: &'static str,
        label: &'static str,
        values: Vec<&'static str>,
        make: impl Fn() -> TracedHistogram,
    ) -> Self {
        let histograms = values.iter().map(|_| make()).collect();
        TracedFamily {
            name,
            help,
            label,
            values,
            histograms,
        }
    }

    /// Classic buckets, `_sum` and `_count`; exemplars in OpenMetrics only
    /// (the 0.0.4 text format has no syntax for them).
    pub fn write_text(&self, out: &mut String, openmetrics: bool) {
        let (name, label) = (self.name, self.label);
        let _ = writeln!(out, "# HELP {name} {}.", self.help);
        let _ = writeln!(out, "# TYPE {name} histogram");
        if openmetrics {
            let _ = writeln!(out, "# UNIT {name} seconds");
        }
        for (value, h) in self.values.iter().zip(&self.histograms) {
            let s = h.snapshot();
            let bounds = h
                .bounds
                .iter()
                .copied()
                .chain(std::iter::once(f64::INFINITY));
            for ((le, n), ex) in bounds.zip(&s.cumulative).zip(&s.exemplars) {
                // `le` first, as prometheus-client writes its histograms.
                out.push_str(name);
                out.push_str("_bucket{le=\"");
                match (le.is_finite(), openmetrics) {
                    (false, _) => out.push_str("+Inf"),
                    // OpenMetrics wants a canonical float ("1.0"), 0.0.4 Go's ("1").
                    (true, true) => {
                        let _ = write!(out, "{le:?}");
                    }
                    (true, false) => {
                        let _ = write!(out, "{le}");
                    }
                }
                let _ = write!(out, "\",{label}=\"{value}\"}} {n}");
                if let (true, Some((v, ids, at))) = (openmetrics, ex) {
                    out.push_str(" # {");
                    for (k, (key, val)) in exemplar_labels(ids).enumerate() {
                        let sep = if k == 0 { "" } else { "," };
                        let _ = write!(out, "{sep}{key}=\"{}\"", escape(&val));
                    }
                    let _ = write!(out, "}} {v} {:.3}", unix_seconds(*at));
                }
                out.push('\n');
            }
            let _ = writeln!(out, "{name}_sum{{{label}=\"{value}\"}} {}", s.sum);
            let _ = writeln!(out, "{name}_count{{{label}=\"{value}\"}} {}", s.count);
        }
    }

    /// Classic buckets with their exemplars, and the native buckets.
    pub fn to_protobuf(&self) -> pb::MetricFamily {
        let pair = |name: &str, value: String| pb::LabelPair {
            name: name.to_owned(),
            value,
        };
        let metric = self
            .values
            .iter()
            .zip(&self.histograms)
            .map(|(value, h)| {
                let s = h.snapshot();
                let exemplar = |ex: &Option<(f64, ExemplarIds, SystemTime)>| {
                    ex.as_ref().map(|(v, ids, at)| pb::Exemplar {
                        label: exemplar_labels(ids).map(|(k, v)| pair(k, v)).collect(),
                        value: *v,
                        timestamp: Some(timestamp(*at)),
                    })
                };
                // +Inf is implied by the count, as client_golang writes it.
                let bucket = h
                    .bounds
                    .iter()
                    .zip(&s.cumulative)
                    .zip(&s.exemplars)
                    .map(|((le, n), ex)| pb::Bucket {
                        cumulative_count: *n,
                        upper_bound: *le,
                        exemplar: exemplar(ex),
                        ..Default::default()
                    })
                    .collect();
                let mut histogram = pb::Histogram {
                    sample_count: s.count,
                    sample_sum: s.sum,
                    bucket,
                    start_timestamp: Some(timestamp(h.created)),
                    ..Default::default()
                };
                if let Some((mut spans, deltas)) = s.native {
                    if spans.is_empty() {
                        // An empty native histogram still has to look native.
                        spans.push((0, 0));
                    }
                    histogram.schema = i32::from(SCHEMA);
                    histogram.zero_threshold = ZERO_THRESHOLD;
                    histogram.zero_count = s.zero;
                    histogram.positive_span = spans
                        .into_iter()
                        .map(|(offset, length)| pb::BucketSpan { offset, length })
                        .collect();
                    histogram.positive_delta = deltas;
                    // Newer Prometheus reads native exemplars here; 2.42
                    // takes them from the classic buckets.
                    histogram.exemplars = s.exemplars.iter().filter_map(exemplar).collect();
                }
                pb::Metric {
                    label: vec![pair(self.label, (*value).to_owned())],
                    histogram: Some(histogram),
                    ..Default::default()
                }
            })
            .collect();
        pb::MetricFamily {
            name: self.name.to_owned(),
            help: format!("{}.", self.help),
            r#type: pb::MetricType::Histogram as i32,
            metric,
            unit: String::new(),
        }
    }
}

fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// Label values in the text formats escape `\\`, `"` and newlines.
fn escape(v: &str) -> std::borrow::Cow<'_, str> {
    if v.contains(['\\', '"', '\n']) {
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
            .into()
    } else {
        v.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_index_matches_the_schema_3_boundaries() {
        // Bucket i holds (2^((i-1)/8), 2^(i/8)]: each bound is in its own
        // bucket, and the next float above it in the next one.
        for i in MIN_INDEX..MAX_INDEX {
            let upper = native_upper_bound(i);
            assert_eq!(native_index(upper), i, "upper bound of {i}");
            assert_eq!(native_index(upper * (1.0 + 1e-12)), i + 1, "above {i}");
        }
        for k in 0..8 {
            let want = (f64::from(k + 1) / 8.0).exp2();
            assert!((OCTAVE_BOUNDS[k as usize] - want).abs() < 1e-15);
        }
        assert_eq!(native_index(1.0), 0);
        assert_eq!(native_index(0.1), -26); // 2^(-27/8)=0.0964 < 0.1 <= 2^(-26/8)=0.1051
        assert_eq!(native_index(1e9), MAX_INDEX);
        assert_eq!(native_index(f64::INFINITY), MAX_INDEX);
        assert_eq!(native_index(ZERO_THRESHOLD * 1.0001), MIN_INDEX);
        assert_eq!(NATIVE_BUCKETS, 256);
    }

    #[test]
    fn spans_and_deltas_encode_sparse_counts() {
        let mut b = vec![0u64; NATIVE_BUCKETS];
        let at = |i: i32| (i - MIN_INDEX) as usize;
        b[at(0)] = 3;
        b[at(1)] = 5;
        b[at(4)] = 1; // gap of 2: same span, zeros sent
        b[at(10)] = 2; // gap of 5: new span
        let (spans, deltas) = spans_and_deltas(&b);
        assert_eq!(spans, vec![(0, 5), (5, 1)]);
        assert_eq!(deltas, vec![3, 2, -5, 0, 1, 1]);
        assert_eq!(spans_and_deltas(&vec![0; NATIVE_BUCKETS]), (vec![], vec![]));
    }

    #[test]
    fn the_slowest_observation_per_bucket_is_the_exemplar_until_scraped() {
        let h = TracedHistogram::new(&[0.1, 1.0]);
        let ids = |t: u128| {
            Some(ExemplarIds {
                trace: TraceId(t),
                event: None,
            })
        };
        h.observe(0.05, ids(1));
        h.observe(0.08, ids(2)); // slower: replaces
        h.observe(0.02, ids(3)); // faster: kept out
        let kept = |h: &TracedHistogram| {
            h.state.lock().exemplars[0]
                .as_ref()
                .map(|k| (k.ids.trace.0, k.fresh))
        };
        assert_eq!(kept(&h), Some((2, true)));
        let family = TracedFamily {
            name: "h_seconds",
            help: "h",
            label: "endpoint",
            values: vec!["a"],
            histograms: vec![h.clone()],
        };
        let mut out = String::new();
        family.write_text(&mut out, true);
        assert!(
            out.contains("h_seconds_bucket{le=\"0.1\",endpoint=\"a\"} 3 # {trace_id=\"00000000000000000000000000000002\"} 0.08 "),
            "{out}"
        );
        let mut plain = String::new();
        family.write_text(&mut plain, false);
        assert!(
            plain.contains("h_seconds_bucket{le=\"1\",endpoint=\"a\"} 3\n"),
            "{plain}"
        );
        assert!(!plain.contains('#') || !plain.contains("# {"), "{plain}");
        // Shown once: the next observation, however fast, takes its place.
        assert_eq!(kept(&h), Some((2, false)));
        h.observe(0.01, ids(4));
        assert_eq!(kept(&h), Some((4, true)));
        assert_eq!(h.count_and_sum().0, 4);
    }

    #[test]
    fn zero_negative_and_nan_values_are_bounded() {
        let h = TracedHistogram::new(&[0.1]);
        h.observe(0.0, None);
        h.observe(-1.0, None);
        h.observe(f64::NAN, None);
        h.observe(1e12, None);
        let s = h.state.lock();
        assert_eq!((s.count, s.zero), (3, 2));
        assert_eq!(s.native.as_ref().unwrap()[NATIVE_BUCKETS - 1], 1);
    }
}
