//! The read-model integrity audit: once a probe event has been seen, the
//! lag probe never looks at it again, so a projection rebuild or replay
//! that silently loses old events would go unnoticed. The audit remembers
//! each confirmed-visible event (bounded per probe, oldest dropped first),
//! and every `lag.audit.interval` re-reads a random sample of those
//! confirmed between `lag.audit.min_age` and `lag.audit.max_age` ago
//! through the probe's audit route (Loki canary's "spot checks").
//!
//! An event the read no longer shows counts `vanished`; one the read now
//! shows more than once (and that was not already duplicated when it was
//! confirmed) counts `duplicated`; each event at most once per reason. A
//! read that fails (status, transport, body) judges nothing: it is counted
//! apart and the event stays remembered. With a version pointer the audit
//! also tells "removed from the read model" from "past the service's
//! retention": an absent event counts `vanished` only when the read still
//! reaches back before it (lists an older version); otherwise it is
//! forgotten and counted `retention`, never as a failure.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::Rng;
use serde_json::Value;
use tokio::time::Instant;

use super::marker::MarkerPrefix;
use super::visibility::{ReadFailure, Visibility};
use super::{Once, ProbeContext, ProbeState};

/// Why an audited event could not be judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unjudged {
    Read(ReadFailure),
    /// The read no longer reaches back to the event's version: past the
    /// service's retention, not lost by the read model.
    Retention,
}

impl Unjudged {
    /// The `reason` label values of
    /// `rehab_canary_projection_integrity_unjudged_total`.
    pub const REASONS: [&'static str; 5] =
        ["status", "transport", "not_json", "shape", "retention"];

    pub const fn index(self) -> usize {
        match self {
            Unjudged::Read(f) => f.index(),
            Unjudged::Retention => 4,
        }
    }
}

/// What one audit read says of one remembered event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Present,
    Vanished,
    Duplicated,
}

/// One confirmed-visible probe event.
#[derive(Clone, Copy, Debug)]
struct Entry {
    confirmed: Instant,
    version: Option<u64>,
    vanished: bool,
    duplicated: bool,
}

/// One event picked for an audit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pick {
    pub seq: u64,
    pub version: Option<u64>,
}

/// What to count for one judged event: each reason once per event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counted {
    pub vanished: bool,
    pub duplicated: bool,
}

/// The confirmed events of one probe, at most `cap` (the lowest sequence
/// numbers, i.e. the oldest, are dropped first).
#[derive(Debug)]
pub struct AuditMemory {
    cap: usize,
    entries: Mutex<BTreeMap<u64, Entry>>,
}

impl AuditMemory {
    pub fn new(cap: usize) -> Self {
        AuditMemory {
            cap: cap.max(1),
            entries: Mutex::new(BTreeMap::new()),
        }
    }

    /// Event `seq` was confirmed visible at `at`, with `version` when the
    /// read said it; `duplicated` when that read already showed it twice
    /// (the live probe counted it, the audit does not again).
    pub fn remember(&self, seq: u64, at: Instant, version: Option<u64>, duplicated: bool) {
        let mut e = self.entries.lock();
        e.insert(
            seq,
            Entry {
                confirmed: at,
                version,
                vanished: false,
                duplicated,
            },
        );
        while e.len() > self.cap {
            e.pop_first();
        }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    /// Forgets what was confirmed more than `max_age` before `now`, then
    /// picks up to `n` events at random among those confirmed between
    /// `min_age` and `max_age` ago and not already counted vanished.
    pub fn pick(
        &self,
        now: Instant,
        min_age: Duration,
        max_age: Duration,
        n: usize,
        rng: &mut impl Rng,
    ) -> Vec<Pick> {
        let mut e = self.entries.lock();
        e.retain(|_, v| now.saturating_duration_since(v.confirmed) <= max_age);
        let mut eligible: Vec<Pick> = e
            .iter()
            .filter(|(_, v)| !v.vanished && now.saturating_duration_since(v.confirmed) >= min_age)
            .map(|(seq, v)| Pick {
                seq: *seq,
                version: v.version,
            })
            .collect();
        drop(e);
        // A partial Fisher–Yates shuffle: the first `n` are a uniform sample.
        let n = n.min(eligible.len());
        for i in 0..n {
            let j = rng.random_range(i..eligible.len());
            eligible.swap(i, j);
        }
        eligible.truncate(n);
        eligible.sort_unstable_by_key(|p| p.seq);
        eligible
    }

    /// Records the verdict of `seq`'s audit read; says what to count.
    pub fn settle(&self, seq: u64, v: Verdict) -> Counted {
        let mut e = self.entries.lock();
        let Some(entry) = e.get_mut(&seq) else {
            return Counted::default();
        };
        let mut c = Counted::default();
        match v {
            Verdict::Present => {}
            Verdict::Vanished => {
                c.vanished = !std::mem::replace(&mut entry.vanished, true);
            }
            Verdict::Duplicated => {
                c.duplicated = !std::mem::replace(&mut entry.duplicated, true);
            }
        }
        c
    }

    /// Forgets `seq` (past the service's retention).
    pub fn forget(&self, seq: u64) {
        self.entries.lock().remove(&seq);
    }
}

/// Whether `v` (any depth) holds exactly the marker of `seq`.
fn holds(v: &Value, prefix: &MarkerPrefix, seq: u64) -> bool {
    match v {
        Value::String(s) => prefix.parse(s) == Some(seq),
        Value::Array(items) => items.iter().any(|i| holds(i, prefix, seq)),
        Value::Object(map) => map.values().any(|i| holds(i, prefix, seq)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// The items a marker-rule read lists: the array's elements, or the
/// object's values.
fn items(root: &Value) -> Box<dyn Iterator<Item = &Value> + '_> {
    match root {
        Value::Array(items) => Box::new(items.iter()),
        Value::Object(map) => Box::new(map.values()),
        other => Box::new(std::iter::once(other)),
    }
}

/// A version: a non-negative integer, or a string of one.
fn as_version(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The version of event `seq` in a read that shows it: read at `pointer`
/// in the listed item holding its marker.
pub fn version_of(
    doc: &Value,
    rule: &Visibility,
    prefix: &MarkerPrefix,
    seq: u64,
    pointer: &str,
) -> Option<u64> {
    let root = rule.at(doc)?;
    items(root)
        .find(|i| holds(i, prefix, seq))
        .and_then(|i| i.pointer(pointer))
        .and_then(as_version)
}

/// The oldest version a read lists (at `pointer` in each listed item).
pub fn oldest_listed(doc: &Value, rule: &Visibility, pointer: &str) -> Option<u64> {
    let root = rule.at(doc)?;
    items(root)
        .filter_map(|i| i.pointer(pointer).and_then(as_version))
        .min()
}

/// Judges event `seq` (of `version`, if known) in one audit read.
/// `version_pointer` points into each listed item at its version; with it
/// and a known version an absent event is `vanished` only when this read
/// lists an older version (the stream still reaches back before it; one
/// read is one consistent view, while between two reads retention may trim
/// on). Otherwise the event is past retention. Two neighbours both lost are
/// therefore judged past retention: the audit under-counts a loss of
/// fraction f by about f.
pub fn judge(
    doc: &Value,
    rule: &Visibility,
    prefix: &MarkerPrefix,
    seq: u64,
    version: Option<u64>,
    version_pointer: Option<&str>,
) -> Result<Verdict, Unjudged> {
    let mut seqs = Vec::new();
    rule.markers(doc, prefix, &mut seqs)
        .map_err(Unjudged::Read)?;
    match seqs.iter().filter(|s| **s == seq).count() {
        0 => {}
        1 => return Ok(Verdict::Present),
        _ => return Ok(Verdict::Duplicated),
    }
    let (Some(v), Some(ptr)) = (version, version_pointer) else {
        return Ok(Verdict::Vanished);
    };
    // (A stream's first version has nothing before it: its absence is never
    // told from retention, so it is never counted.)
    if oldest_listed(doc, rule, ptr).is_some_and(|o| o < v) {
        Ok(Verdict::Vanished)
    } else {
        Err(Unjudged::Retention)
    }
}

/// One audit of one probe: re-reads its sample one event at a time (an
/// audit is a trickle, never a burst) and counts.
pub(super) async fn run(shared: Arc<ProbeContext>, p: Arc<ProbeState>) {
    let Some(memory) = p.audit.as_ref() else {
        return;
    };
    let a = &shared.audit;
    let picks = {
        let mut rng = rand::rng();
        memory.pick(Instant::now(), a.min_age, a.max_age, a.sample, &mut rng)
    };
    let proj = p.probe.projection;
    let m = shared.metrics.audit();
    let mut report = AuditReport::default();
    let ptr = p.probe.audit_version();
    for pick in picks {
        let Some(url) = p.probe.audit_url(pick.seq, pick.version) else {
            continue;
        };
        let judged = super::run::read(&shared.client, &url)
            .await
            .map_err(Unjudged::Read)
            .and_then(|doc| {
                judge(
                    &doc,
                    &p.probe.rule,
                    &p.probe.prefix,
                    pick.seq,
                    pick.version,
                    ptr,
                )
            });
        match judged {
            Ok(v) => {
                m.checked(proj);
                report.checked.push(pick.seq);
                let c = memory.settle(pick.seq, v);
                if c.vanished {
                    m.vanished(proj);
                    report.vanished.push(pick.seq);
                }
                if c.duplicated {
                    m.duplicated(proj);
                    report.duplicated.push(pick.seq);
                }
            }
            Err(u) => {
                m.unjudged(proj, u);
                match u {
                    Unjudged::Retention => memory.forget(pick.seq),
                    Unjudged::Read(f) => shared.log_once(Once::AuditRead(f), proj, &f),
                }
            }
        }
    }
    m.finished(proj, memory.len(), report, &p.probe.prefix);
}

/// The sequence numbers of one audit, for `/status` and ground-truth
/// tests.
#[derive(Debug, Default)]
pub struct AuditReport {
    pub checked: Vec<u64>,
    pub vanished: Vec<u64>,
    pub duplicated: Vec<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::lag::RuleKind;
    use crate::lag::marker::RunId;
    use rand::SeedableRng;
    use serde_json::json;

    fn s(v: u64) -> Duration {
        Duration::from_secs(v)
    }

    #[test]
    fn memory_is_bounded_and_drops_the_oldest() {
        let m = AuditMemory::new(100);
        let t0 = Instant::now();
        for seq in 1..=1000 {
            m.remember(seq, t0, Some(seq), false);
            assert!(m.len() <= 100);
        }
        assert_eq!(m.len(), 100);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let all = m.pick(t0, Duration::ZERO, s(10), 1000, &mut rng);
        assert_eq!(all.len(), 100);
        assert_eq!(all[0].seq, 901, "the oldest went first");
        assert_eq!(
            all[99],
            Pick {
                seq: 1000,
                version: Some(1000)
            }
        );
    }

    #[test]
    fn picks_only_the_age_window_and_forgets_past_max_age() {
        let m = AuditMemory::new(1000);
        let t0 = Instant::now();
        // Confirmed at t0 + seq seconds, 1..=100.
        for seq in 1..=100 {
            m.remember(seq, t0 + s(seq), None, false);
        }
        let now = t0 + s(100);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(2);
        // Ages 10..=50 s: seqs 50..=90.
        let picks = m.pick(now, s(10), s(50), 1000, &mut rng);
        let seqs: Vec<u64> = picks.iter().map(|p| p.seq).collect();
        assert_eq!(seqs, (50..=90).collect::<Vec<_>>());
        assert_eq!(m.len(), 51, "older than max_age forgotten");
    }

    #[test]
    fn sampling_is_uniform_and_without_repeats() {
        let m = AuditMemory::new(1000);
        let t0 = Instant::now();
        for seq in 0..100 {
            m.remember(seq, t0, None, false);
        }
        let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
        let mut hits = [0u32; 100];
        for _ in 0..2000 {
            let picks = m.pick(t0, Duration::ZERO, s(1), 10, &mut rng);
            assert_eq!(picks.len(), 10);
            let mut seqs: Vec<u64> = picks.iter().map(|p| p.seq).collect();
            seqs.dedup();
            assert_eq!(seqs.len(), 10, "no event twice in one sample");
            for p in picks {
                hits[p.seq as usize] += 1;
            }
        }
        // Each is picked 200 times on average; binomial sd ≈ 13.4.
        for (seq, h) in hits.iter().enumerate() {
            assert!((130..=270).contains(h), "seq {seq} picked {h} times");
        }
    }

    #[test]
    fn each_event_counts_once_per_reason() {
        let m = AuditMemory::new(10);
        let t0 = Instant::now();
        m.remember(1, t0, None, false);
        m.remember(2, t0, None, true);
        assert_eq!(m.settle(1, Verdict::Present), Counted::default());
        let dup = Counted {
            duplicated: true,
            vanished: false,
        };
        assert_eq!(m.settle(1, Verdict::Duplicated), dup);
        assert_eq!(m.settle(1, Verdict::Duplicated), Counted::default());
        let gone = Counted {
            duplicated: false,
            vanished: true,
        };
        assert_eq!(m.settle(1, Verdict::Vanished), gone);
        assert_eq!(m.settle(1, Verdict::Vanished), Counted::default());
        // Already duplicated when confirmed: the live probe counted it.
        assert_eq!(m.settle(2, Verdict::Duplicated), Counted::default());
        // Counted vanished: no longer picked.
        let mut rng = rand::rngs::SmallRng::seed_from_u64(4);
        let picks = m.pick(t0, Duration::ZERO, s(1), 10, &mut rng);
        assert_eq!(picks.iter().map(|p| p.seq).collect::<Vec<_>>(), vec![2]);
        m.forget(2);
        assert_eq!(m.len(), 1);
        assert_eq!(m.settle(7, Verdict::Vanished), Counted::default());
    }

    #[test]
    fn audit_reads_are_judged() {
        let p = MarkerPrefix::new("canary-", "stream", RunId(1));
        let rule = Visibility {
            kind: RuleKind::Marker,
            pointer: "/events".into(),
            expect: String::new(),
        };
        let ev = |v: u64, seq: u64| json!({"version": v, "body": {"session_id": p.marker(seq)}});
        let read = |evs: Vec<Value>| json!({"events": evs});
        let ptr = Some("/version");
        // start_version = 9: versions 9, 10, 11 hold seqs 4, 5, 6.
        let doc = read(vec![ev(9, 4), ev(10, 5), ev(11, 6)]);
        assert_eq!(version_of(&doc, &rule, &p, 5, "/version"), Some(10));
        assert_eq!(version_of(&doc, &rule, &p, 7, "/version"), None);
        assert_eq!(
            judge(&doc, &rule, &p, 5, Some(10), ptr),
            Ok(Verdict::Present)
        );
        // Version 10 left out by a rebuild; 9 still there: vanished.
        let doc = read(vec![ev(9, 4), ev(11, 6), ev(12, 7)]);
        assert_eq!(
            judge(&doc, &rule, &p, 5, Some(10), ptr),
            Ok(Verdict::Vanished)
        );
        // Nothing before it any more: past retention, not a failure.
        let doc = read(vec![ev(40, 30), ev(41, 31)]);
        assert_eq!(
            judge(&doc, &rule, &p, 5, Some(10), ptr),
            Err(Unjudged::Retention)
        );
        assert_eq!(
            judge(&read(vec![]), &rule, &p, 5, Some(10), ptr),
            Err(Unjudged::Retention)
        );
        // Versions 9 and 10 both left out: nothing older listed, so it
        // cannot be told from retention (under-counted, never over-counted).
        let doc = read(vec![ev(11, 6), ev(12, 7), ev(13, 8)]);
        assert_eq!(oldest_listed(&doc, &rule, "/version"), Some(11));
        assert_eq!(
            judge(&doc, &rule, &p, 5, Some(10), ptr),
            Err(Unjudged::Retention)
        );
        // Without a version: absent is vanished.
        assert_eq!(judge(&doc, &rule, &p, 5, None, None), Ok(Verdict::Vanished));
        // Twice now.
        let doc = read(vec![ev(9, 4), ev(10, 5), ev(11, 5)]);
        assert_eq!(
            judge(&doc, &rule, &p, 5, Some(10), ptr),
            Ok(Verdict::Duplicated)
        );
        // A body without the list judges nothing.
        assert_eq!(
            judge(&json!({"nope": 1}), &rule, &p, 5, Some(10), ptr),
            Err(Unjudged::Read(ReadFailure::Shape))
        );
    }
}
