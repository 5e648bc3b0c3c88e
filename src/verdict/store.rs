//! The baseline memory: one snapshot per `verdict.snapshot_interval` of
//! every endpoint's latency and every projection's lag (HDR histograms,
//! encoded small) with the counts beside them, kept for
//! `verdict.retention` in a ring of fixed length, so memory never grows
//! with run time. Optionally written to `verdict.state_dir` (atomically,
//! one file) so a restart keeps the baseline.
//!
//! Encoding: the recorded buckets of a histogram as LEB128 pairs (value
//! delta, count). Decoding records each bucket's value back into a
//! histogram of the same bounds, so nothing is lost beyond HDR's own
//! resolution. A quiet minute of one endpoint costs a few dozen bytes.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::metrics::window::new_hist;

/// One histogram, encoded; empty when nothing was recorded.
pub type Encoded = Box<[u8]>;

/// One snapshot interval of every signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Wall-clock start, unix seconds.
    pub start: u64,
    /// Its length in seconds.
    pub seconds: u64,
    /// Per endpoint (`Endpoint::ALL` order).
    #[serde(with = "b64")]
    pub latency: Vec<Encoded>,
    pub requests: Vec<u64>,
    pub errors: Vec<u64>,
    /// Per projection (`Projection::ALL` order).
    #[serde(with = "b64")]
    pub lag: Vec<Encoded>,
    pub probes: Vec<u64>,
    pub lost: Vec<u64>,
}

impl Snapshot {
    /// Bytes this snapshot holds (for the memory bound).
    pub fn bytes(&self) -> usize {
        let hists: usize = self.latency.iter().chain(&self.lag).map(|e| e.len()).sum();
        let counts =
            8 * (self.requests.len() + self.errors.len() + self.probes.len() + self.lost.len());
        std::mem::size_of::<Snapshot>()
            + hists
            + counts
            + 16 * (self.latency.len() + self.lag.len())
    }
}

/// Histograms as base64 strings in the state file.
mod b64 {
    use super::Encoded;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[Encoded], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|e| STANDARD.encode(e)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Encoded>, D::Error> {
        let strings = Vec::<String>::deserialize(d)?;
        strings
            .into_iter()
            .map(|s| {
                STANDARD
                    .decode(s)
                    .map(Vec::into_boxed_slice)
                    .map_err(serde::de::Error::custom)
            })
            .collect()
    }
}

fn put_leb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn get_leb(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Most buckets one encoded histogram keeps: what bounds the memory by
/// construction (17 histograms × 128 pairs of at most ~6 bytes a snapshot).
pub const MAX_BUCKETS: usize = 128;

/// The recorded buckets of `h`. A histogram with more than
/// [`MAX_BUCKETS`] distinct buckets (a minute spread over decades) has runs
/// of adjacent ones merged into their highest value, so its resolution
/// coarsens to about its own range / 128 and never rounds a value down.
pub fn encode(h: &Histogram<u32>) -> Encoded {
    let pairs: Vec<(u64, u64)> = h
        .iter_recorded()
        .map(|v| {
            (
                h.highest_equivalent(v.value_iterated_to()),
                u64::from(v.count_at_value()),
            )
        })
        .collect();
    let run = pairs.len().div_ceil(MAX_BUCKETS).max(1);
    let mut out = Vec::with_capacity(6 * pairs.len().min(MAX_BUCKETS));
    let mut prev = 0;
    for group in pairs.chunks(run) {
        let value = group.last().map_or(0, |p| p.0);
        let count: u64 = group.iter().map(|p| p.1).sum();
        put_leb(&mut out, value - prev);
        put_leb(&mut out, count);
        prev = value;
    }
    out.into_boxed_slice()
}

/// Adds an encoded histogram into `into`; `false` when the bytes are not
/// an encoding (a damaged state file), in which case nothing is added past
/// the damage.
pub fn decode_into(bytes: &[u8], into: &mut Histogram<u32>) -> bool {
    let mut at = 0;
    let mut value = 0u64;
    while at < bytes.len() {
        let (Some(delta), Some(count)) = (get_leb(bytes, &mut at), get_leb(bytes, &mut at)) else {
            return false;
        };
        value = value.saturating_add(delta);
        let Ok(count) = u32::try_from(count) else {
            return false;
        };
        if into.record_n(value, count).is_err() {
            return false;
        }
    }
    true
}

/// Every signal merged over a span of snapshots.
#[derive(Debug, Clone)]
pub struct Merged {
    pub snapshots: usize,
    pub latency: Vec<Histogram<u32>>,
    pub requests: Vec<u64>,
    pub errors: Vec<u64>,
    pub lag: Vec<Histogram<u32>>,
    pub probes: Vec<u64>,
    pub lost: Vec<u64>,
}

impl Merged {
    fn new(endpoints: usize, projections: usize) -> Self {
        Merged {
            snapshots: 0,
            latency: (0..endpoints).map(|_| new_hist()).collect(),
            requests: vec![0; endpoints],
            errors: vec![0; endpoints],
            lag: (0..projections).map(|_| new_hist()).collect(),
            probes: vec![0; projections],
            lost: vec![0; projections],
        }
    }

    fn add(&mut self, s: &Snapshot) {
        self.snapshots += 1;
        for (h, e) in self.latency.iter_mut().zip(&s.latency) {
            decode_into(e, h);
        }
        for (h, e) in self.lag.iter_mut().zip(&s.lag) {
            decode_into(e, h);
        }
        let add = |a: &mut Vec<u64>, b: &[u64]| a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        add(&mut self.requests, &s.requests);
        add(&mut self.errors, &s.errors);
        add(&mut self.probes, &s.probes);
        add(&mut self.lost, &s.lost);
    }
}

/// The ring of snapshots.
#[derive(Debug)]
pub struct Store {
    ring: VecDeque<Snapshot>,
    capacity: usize,
    endpoints: usize,
    projections: usize,
    file: Option<PathBuf>,
}

/// The state file's name inside `verdict.state_dir`.
pub const STATE_FILE: &str = "verdict-snapshots.json";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("verdict.state_dir: cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("verdict.state_dir: {path} is not a snapshot file: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl Store {
    /// An empty ring of `capacity` snapshots; with `state_dir`, loads the
    /// snapshots a previous run left there (a missing file is an empty
    /// store; a damaged one is an error, so it is never silently lost).
    pub fn open(
        capacity: usize,
        endpoints: usize,
        projections: usize,
        state_dir: Option<&Path>,
    ) -> Result<Store, StoreError> {
        let mut store = Store {
            ring: VecDeque::with_capacity(capacity),
            capacity: capacity.max(1),
            endpoints,
            projections,
            file: state_dir.map(|d| d.join(STATE_FILE)),
        };
        if let Some(path) = &store.file {
            match std::fs::read(path) {
                Ok(bytes) => {
                    let saved: Vec<Snapshot> =
                        serde_json::from_slice(&bytes).map_err(|source| StoreError::Parse {
                            path: path.clone(),
                            source,
                        })?;
                    for s in saved {
                        store.push_in_memory(s);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(StoreError::Read {
                        path: path.clone(),
                        source,
                    })
                }
            }
        }
        Ok(store)
    }

    fn push_in_memory(&mut self, s: Snapshot) {
        // A snapshot of another shape (a file from another version) is
        // skipped rather than mixed in.
        if s.latency.len() != self.endpoints || s.lag.len() != self.projections {
            return;
        }
        if self.ring.len() == self.capacity {
            self.ring.pop_front();
        }
        self.ring.push_back(s);
    }

    /// Adds a snapshot, dropping the oldest past the retention, and writes
    /// the file if there is one.
    pub fn push(&mut self, s: Snapshot) -> io::Result<()> {
        self.push_in_memory(s);
        self.save()
    }

    /// Writes every snapshot to a temporary file, then renames it over the
    /// state file: a crash leaves the old file or the new one, never half.
    fn save(&self) -> io::Result<()> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(&self.ring).map_err(io::Error::other)?;
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)
    }

    /// The snapshots wholly inside `[from, to]` (unix seconds), merged: one
    /// that straddles an end (a deploy in its middle) belongs to neither
    /// side.
    pub fn merged(&self, from: f64, to: f64) -> Merged {
        let mut m = Merged::new(self.endpoints, self.projections);
        let inside = |s: &&Snapshot| s.start as f64 >= from && (s.start + s.seconds) as f64 <= to;
        for s in self.ring.iter().filter(inside) {
            m.add(s);
        }
        m
    }

    /// The oldest snapshot's start, if any.
    pub fn oldest(&self) -> Option<u64> {
        self.ring.front().map(|s| s.start)
    }

    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Bytes the ring holds.
    pub fn bytes(&self) -> usize {
        self.ring.iter().map(Snapshot::bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(values: &[u64]) -> Histogram<u32> {
        let mut h = new_hist();
        for v in values {
            h.record(*v).unwrap();
        }
        h
    }

    fn snap(start: u64, lat: &[u64]) -> Snapshot {
        Snapshot {
            start,
            seconds: 60,
            latency: vec![encode(&hist(lat)), encode(&new_hist())],
            requests: vec![lat.len() as u64, 0],
            errors: vec![1, 0],
            lag: vec![encode(&hist(&[40_000]))],
            probes: vec![1],
            lost: vec![0],
        }
    }

    #[test]
    fn encoding_round_trips_at_hdr_resolution() {
        let values = [1, 2, 900, 40_000, 40_100, 1_500_000, 59_000_000];
        let h = hist(&values);
        let mut back = new_hist();
        assert!(decode_into(&encode(&h), &mut back));
        assert_eq!(back.len(), h.len());
        for q in [0.0, 0.5, 0.9, 1.0] {
            assert!(back.equivalent(back.value_at_quantile(q), h.value_at_quantile(q)));
        }
        // A minute spread over decades keeps at most MAX_BUCKETS buckets,
        // every count, and never reads lower than it was.
        let mut wide = new_hist();
        for k in 0..5000u64 {
            wide.record(1000 + k * 397).unwrap();
        }
        let enc = encode(&wide);
        let mut back = new_hist();
        assert!(decode_into(&enc, &mut back));
        assert_eq!(back.len(), 5000);
        assert!(back.iter_recorded().count() <= MAX_BUCKETS);
        assert!(back.value_at_quantile(0.5) >= wide.value_at_quantile(0.5));
        let p95 = |h: &Histogram<u32>| h.value_at_quantile(0.95) as f64;
        assert!(
            p95(&back) <= p95(&wide) * 1.03,
            "{} vs {}",
            p95(&back),
            p95(&wide)
        );
        // An empty histogram encodes to nothing; garbage is refused.
        assert!(encode(&new_hist()).is_empty());
        assert!(!decode_into(&[0xff, 0xff], &mut new_hist()));
    }

    #[test]
    fn the_ring_keeps_its_capacity_and_merges_a_span() {
        let mut s = Store::open(3, 2, 1, None).unwrap();
        for k in 0..5 {
            s.push(snap(60 * k, &[1000 * (k + 1)])).unwrap();
        }
        assert_eq!((s.len(), s.oldest()), (3, Some(120)));
        let m = s.merged(120.0, 240.0);
        assert_eq!(m.snapshots, 2);
        assert_eq!((m.requests[0], m.errors[0], m.latency[0].len()), (2, 2, 2));
        assert_eq!(m.lag[0].len(), 2);
        assert_eq!(m.latency[1].len(), 0);
    }

    #[test]
    fn snapshots_survive_a_restart_and_a_damaged_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(10, 2, 1, Some(dir.path())).unwrap();
        s.push(snap(0, &[5000, 6000])).unwrap();
        s.push(snap(60, &[7000])).unwrap();
        let again = Store::open(10, 2, 1, Some(dir.path())).unwrap();
        assert_eq!(again.len(), 2);
        assert_eq!(again.merged(0.0, 120.0).latency[0].len(), 3);
        // A snapshot straddling an end is on neither side.
        assert_eq!(again.merged(30.0, 120.0).snapshots, 1);
        assert!(!dir.path().join("verdict-snapshots.json.tmp").exists());
        // A file of another shape is skipped, not mixed in.
        let other = Store::open(10, 3, 1, Some(dir.path())).unwrap();
        assert!(other.is_empty());
        std::fs::write(dir.path().join(STATE_FILE), "{not json").unwrap();
        let err = Store::open(10, 2, 1, Some(dir.path())).unwrap_err();
        assert!(err.to_string().contains("verdict.state_dir"), "{err}");
    }
}
