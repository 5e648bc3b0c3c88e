//! Per-probe-stream bookkeeping of sequence numbers: which events are
//! pending, seen, lost or late, and what the reads say about duplication and
//! order.
//!
//! Out of order is judged from *one* read, never from the timing of two
//! polls: when a read shows sequence `hi` while a lower `lo` is absent, and
//! the service had already acknowledged `lo` before `hi` was even sent, `lo`
//! is marked overtaken; if `lo` then appears (in time or late) it is counted
//! out of order. An overtaken event that never appears is only lost. Probes
//! whose events do not share one ordered stream (the work queue uses a fresh
//! patient per event) are created unordered and never count reordering.
//!
//! All methods are synchronous and hold the mutex briefly; nothing here is
//! held across an `.await`.

use crate::client::trace::TraceId;
use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use parking_lot::Mutex;

/// Resolved entries kept at most, whatever the windows, so memory stays
/// bounded (the oldest resolved go first).
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Its run is polling for it.
    Pending,
    Seen(Instant),
    /// Timed out; watched for a late appearance until pruned.
    Lost(Instant),
    Late(Instant),
    /// Its run ended without an answer (failed reads); kept only so a later
    /// copy is not taken for a duplicate of an unknown event.
    Unknown(Instant),
}

#[derive(Debug)]
struct Entry {
    sent: Instant,
    acked: Instant,
    state: State,
    overtaken: bool,
    dup_counted: bool,
    event_id: Box<str>,
    trace: TraceId,
}

#[derive(Debug, Default)]
struct Inner {
    entries: BTreeMap<u64, Entry>,
    next_seq: u64,
    lost_open: usize,
}

/// A lost event that appeared after its timeout.
#[derive(Debug, Clone, PartialEq)]
pub struct Late {
    pub seq: u64,
    pub lag: Duration,
    pub end_to_end: Duration,
    pub event_id: Box<str>,
    /// The trace id of the event's POST.
    pub trace: TraceId,
    pub out_of_order: bool,
}

/// What one read revealed beyond the probe's own event.
#[derive(Debug, Default, PartialEq)]
pub struct Observed {
    pub duplicated: u64,
    pub out_of_order: u64,
    pub late: Vec<Late>,
}

#[derive(Debug)]
pub struct Tracker {
    ordered: bool,
    inner: Mutex<Inner>,
}

impl Tracker {
    pub fn new(ordered: bool) -> Self {
        Tracker {
            ordered,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The next sequence number (1, 2, ...).
    pub fn next_seq(&self) -> u64 {
        let mut i = self.inner.lock();
        i.next_seq += 1;
        i.next_seq
    }

    /// The first of `n` consecutive sequence numbers (a probe batch).
    pub fn next_seqs(&self, n: u64) -> u64 {
        let mut i = self.inner.lock();
        let first = i.next_seq + 1;
        i.next_seq += n;
        first
    }

    /// The service acknowledged `seq` (sent at `sent` with trace `trace`,
    /// 201 at `acked`).
    pub fn posted(
        &self,
        seq: u64,
        sent: Instant,
        acked: Instant,
        event_id: Box<str>,
        trace: TraceId,
    ) {
        let mut i = self.inner.lock();
        i.entries.insert(
            seq,
            Entry {
                sent,
                acked,
                state: State::Pending,
                overtaken: false,
                dup_counted: false,
                event_id,
                trace,
            },
        );
        if i.entries.len() > MAX_ENTRIES {
            let resolved = i
                .entries
                .iter()
                .find(|(_, e)| !matches!(e.state, State::Pending | State::Lost(_)))
                .map(|(s, _)| *s);
            if let Some(s) = resolved {
                i.entries.remove(&s);
            }
        }
    }

    /// Its run saw `seq`; returns whether it came out of order.
    pub fn seen(&self, seq: u64, at: Instant) -> bool {
        let mut i = self.inner.lock();
        match i.entries.get_mut(&seq) {
            Some(e) if e.state == State::Pending => {
                e.state = State::Seen(at);
                self.ordered && e.overtaken
            }
            _ => false,
        }
    }

    /// Its run timed out on `seq`.
    pub fn lost(&self, seq: u64, at: Instant) {
        let mut i = self.inner.lock();
        let newly = match i.entries.get_mut(&seq) {
            Some(e) if e.state == State::Pending => {
                e.state = State::Lost(at);
                true
            }
            _ => false,
        };
        i.lost_open += usize::from(newly);
    }

    /// Its run ended without an answer.
    pub fn gave_up(&self, seq: u64, at: Instant) {
        if let Some(e) = self.inner.lock().entries.get_mut(&seq) {
            if e.state == State::Pending {
                e.state = State::Unknown(at);
            }
        }
    }

    /// Lost events still watched for.
    pub fn lost_open(&self) -> usize {
        self.inner.lock().lost_open
    }

    /// Digests the markers of one read taken at `at`. `seqs` is sorted in
    /// place.
    pub fn observe(&self, seqs: &mut [u64], at: Instant) -> Observed {
        let mut out = Observed::default();
        if seqs.is_empty() {
            return out;
        }
        seqs.sort_unstable();
        let mut i = self.inner.lock();
        if self.ordered {
            // The highest tracked sequence in the read.
            let hi = seqs
                .iter()
                .rev()
                .find_map(|s| i.entries.get(s).map(|e| (*s, e.sent)));
            if let Some((hi, hi_sent)) = hi {
                for (seq, e) in i.entries.range_mut(..hi) {
                    if matches!(e.state, State::Pending | State::Lost(_))
                        && e.acked < hi_sent
                        && seqs.binary_search(seq).is_err()
                    {
                        e.overtaken = true;
                    }
                }
            }
        }
        let mut k = 0;
        while k < seqs.len() {
            let seq = seqs[k];
            let n = seqs[k..].iter().take_while(|s| **s == seq).count();
            k += n;
            let Some(e) = i.entries.get_mut(&seq) else {
                continue; // older than what we remember: cannot be judged
            };
            if n > 1 && !e.dup_counted {
                e.dup_counted = true;
                out.duplicated += 1;
            }
            if let State::Lost(_) = e.state {
                e.state = State::Late(at);
                let ooo = self.ordered && e.overtaken;
                out.out_of_order += u64::from(ooo);
                // Lag from acceptance: the POST's midpoint, as for every
                // sample (see `estimate.rs`).
                let anchor = e.sent + e.acked.saturating_duration_since(e.sent) / 2;
                out.late.push(Late {
                    seq,
                    lag: at.saturating_duration_since(anchor),
                    end_to_end: at.saturating_duration_since(e.sent),
                    event_id: e.event_id.clone(),
                    trace: e.trace,
                    out_of_order: ooo,
                });
                i.lost_open -= 1;
            }
        }
        out
    }

    /// Forgets entries resolved more than `keep` ago. Returns the sequence
    /// numbers of lost events whose watch ended unseen, and of late events,
    /// in case their probe cleans up after itself.
    pub fn prune(&self, now: Instant, keep: Duration) -> Vec<u64> {
        let mut i = self.inner.lock();
        let mut expired = Vec::new();
        let mut lost_closed = 0;
        i.entries.retain(|seq, e| {
            let (at, lost) = match e.state {
                State::Pending => return true,
                State::Lost(at) => (at, true),
                State::Seen(at) | State::Late(at) | State::Unknown(at) => (at, false),
            };
            if now.saturating_duration_since(at) <= keep {
                return true;
            }
            if lost {
                expired.push(*seq);
                lost_closed += 1;
            }
            false
        });
        i.lost_open -= lost_closed;
        expired
    }

    /// Entries held: pending plus resolved within the prune window.
    pub fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// Posts `n` events, 100 ms apart, each acknowledged 5 ms after sending.
    fn tracker(ordered: bool, n: u64) -> (Tracker, Instant) {
        let t = Tracker::new(ordered);
        let t0 = Instant::now();
        for k in 0..n {
            let seq = t.next_seq();
            let sent = t0 + ms(100 * k);
            t.posted(
                seq,
                sent,
                sent + ms(5),
                format!("e{seq}").into(),
                TraceId::NONE,
            );
        }
        (t, t0)
    }

    #[test]
    fn duplicates_are_counted_once_per_event() {
        let (t, t0) = tracker(true, 3);
        let o = t.observe(&mut [1, 2, 2, 3], t0 + ms(400));
        assert_eq!(o.duplicated, 1);
        let o = t.observe(&mut [3, 2, 1, 2], t0 + ms(500));
        assert_eq!(o.duplicated, 0, "already counted");
        assert_eq!(o.out_of_order, 0);
    }

    #[test]
    fn reordering_is_judged_within_one_read() {
        let (t, t0) = tracker(true, 3);
        // 3 visible, 2 absent although acknowledged before 3 was sent.
        let o = t.observe(&mut [1, 3], t0 + ms(300));
        assert_eq!(o.out_of_order, 0, "not yet: 2 may be lost");
        assert!(!t.seen(1, t0 + ms(300)));
        assert!(!t.seen(3, t0 + ms(300)));
        assert!(t.seen(2, t0 + ms(350)), "2 appeared after 3");
    }

    #[test]
    fn overlapping_posts_are_not_reordering() {
        let t = Tracker::new(true);
        let t0 = Instant::now();
        // 2 was sent before 1's 201 came back: the service owes no order.
        t.posted(t.next_seq(), t0, t0 + ms(50), "a".into(), TraceId::NONE);
        t.posted(
            t.next_seq(),
            t0 + ms(10),
            t0 + ms(20),
            "b".into(),
            TraceId::NONE,
        );
        t.observe(&mut [2], t0 + ms(30));
        assert!(!t.seen(1, t0 + ms(60)));
    }

    #[test]
    fn lost_then_late_with_its_lag() {
        let (t, t0) = tracker(true, 2);
        t.lost(1, t0 + ms(1000));
        assert!(!t.seen(2, t0 + ms(150)));
        assert_eq!(t.lost_open(), 1);
        let o = t.observe(&mut [1, 2], t0 + ms(2005));
        assert_eq!(o.late.len(), 1);
        let late = &o.late[0];
        // Sent at 0, acknowledged at 5 ms: accepted at 2.5 ms.
        assert_eq!(
            (late.seq, late.lag, late.end_to_end),
            (1, Duration::from_micros(2_002_500), ms(2005))
        );
        assert_eq!(&*late.event_id, "e1");
        assert_eq!(t.lost_open(), 0);
        // Seen again: neither late twice nor a duplicate.
        assert_eq!(t.observe(&mut [1], t0 + ms(2100)), Observed::default());
    }

    #[test]
    fn a_lost_event_overtaken_then_late_is_also_out_of_order() {
        let (t, t0) = tracker(true, 2);
        t.observe(&mut [2], t0 + ms(200));
        t.lost(1, t0 + ms(1000));
        let o = t.observe(&mut [2, 1], t0 + ms(3000));
        assert_eq!((o.late.len(), o.out_of_order), (1, 1));
    }

    #[test]
    fn unordered_probes_never_count_reordering() {
        let (t, t0) = tracker(false, 2);
        t.observe(&mut [2], t0 + ms(300));
        assert!(!t.seen(1, t0 + ms(400)));
    }

    #[test]
    fn unknown_and_foreign_sequences_are_ignored() {
        let (t, t0) = tracker(true, 1);
        let o = t.observe(&mut [7, 7, 8], t0 + ms(10));
        assert_eq!(o, Observed::default());
    }

    #[test]
    fn prune_forgets_resolved_and_reports_expired_losses() {
        let (t, t0) = tracker(true, 3);
        t.seen(1, t0 + ms(10));
        t.lost(2, t0 + ms(20));
        // 3 stays pending: its run owns it.
        assert_eq!(t.prune(t0 + ms(30), ms(100)), Vec::<u64>::new());
        assert_eq!(t.len(), 3);
        assert_eq!(t.prune(t0 + ms(500), ms(100)), vec![2]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.lost_open(), 0);
    }

    /// Hours of probing at 20 events/s, a third lost, pruned every second
    /// with a 60 s memory: the bookkeeping never holds more than the
    /// memory's worth of events plus those in flight.
    #[test]
    fn entries_stay_bounded_over_hours() {
        let t = Tracker::new(true);
        let t0 = Instant::now();
        let (interval, memory) = (ms(50), Duration::from_secs(60));
        let bound = (memory.as_millis() / interval.as_millis()) as usize + 20 + 20;
        let mut peak = 0;
        for k in 0..(20 * 3600 * 2) {
            let now = t0 + interval * k;
            let seq = t.next_seq();
            t.posted(seq, now, now, "e".into(), TraceId::NONE);
            // Each resolves a second after it was posted.
            if seq > 20 {
                let done = seq - 20;
                if done.is_multiple_of(3) {
                    t.lost(done, now);
                } else {
                    t.seen(done, now);
                }
            }
            if k.is_multiple_of(20) {
                t.prune(now, memory);
            }
            peak = peak.max(t.len());
        }
        assert!(peak <= bound, "peak {peak} over {bound}");
        assert!(peak > bound / 2, "the memory window is used: {peak}");
    }
}
