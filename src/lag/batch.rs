//! The batch probe: Broadway batch latency, as a client feels it. Every
//! `lag.probes.batch.interval` it posts one marked batch of
//! `lag.probes.batch.size` session starts to `POST /api/v1/events/batch` on
//! its own probe patient, then polls the read (the patient's stream by
//! default) until every event of the batch is visible.
//!
//! One run yields two samples from the same polls and the same estimator as
//! the single-event probes (`estimate.rs`): the time until the *first* event
//! is visible, and until *every* event is (the bracket of the last poll that
//! missed one and the first that showed them all), each with its error bar.
//! Events still missing at `lag.timeout` count as lost, one by one; a later
//! read that shows them counts them late.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use reqwest::Url;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::batch_metrics::{BatchFailure, BatchMetrics, BatchRecord};
use super::estimate::{self, Estimate, Poll, Span};
use super::marker::MarkerPrefix;
use super::probe::{session_start, Setup, CORRELATION_ID};
use super::run::{drain, far_future, first_poll, timed_read, PollDone, Polls};
use super::tracker::Tracker;
use super::visibility::{ReadFailure, Visibility};
use super::{Once, ProbeContext, RttFloors};
use crate::api::EventKind;
use crate::client::trace::TraceId;
use crate::client::Outcome;
use crate::config::lag::{BatchProbeConfig, Projection, RuleKind};
use crate::traffic::journeys::{Meta, PayloadWriter};

/// The configured batch probe.
#[derive(Debug)]
pub struct BatchProbe {
    pub prefix: MarkerPrefix,
    pub size: u64,
    pub interval: std::time::Duration,
    batch_url: Url,
    read_url: Url,
    rule: Visibility,
    writer: PayloadWriter,
    patient: String,
    therapist: String,
    consent: String,
}

impl BatchProbe {
    pub fn new(cfg: &BatchProbeConfig, setup: &Setup) -> Result<BatchProbe, url::ParseError> {
        let ns = &setup.namespace;
        let patient = format!("{ns}probe-batch");
        let therapist = format!("{ns}probe-therapist");
        let read = cfg
            .route
            .replace("{patient}", &patient)
            .replace("{therapist}", &therapist);
        Ok(BatchProbe {
            prefix: MarkerPrefix::new(ns, "batch", setup.run),
            size: cfg.size as u64,
            interval: cfg.interval,
            batch_url: setup.base.join("api/v1/events/batch")?,
            read_url: setup.base.join(&read)?,
            rule: Visibility {
                kind: RuleKind::Marker,
                pointer: cfg.pointer.clone(),
                expect: String::new(),
            },
            writer: PayloadWriter::new(&setup.payload),
            patient,
            therapist,
            consent: format!("{ns}probe-consent"),
        })
    }

    /// The batch of sequences `first..first + size`, as one JSON array.
    pub fn body(&self, first: u64) -> Bytes {
        let meta = Meta {
            consent_id: self.consent.clone(),
            therapist: &self.therapist,
            correlation_id: CORRELATION_ID.to_owned(),
        };
        let mut out = Vec::with_capacity(400 * self.size as usize);
        out.push(b'[');
        for seq in first..first + self.size {
            if seq > first {
                out.push(b',');
            }
            let marker = self.prefix.marker(seq);
            let ev = self
                .writer
                .render(EventKind::ExerciseSession, &self.patient, &meta, |b| {
                    session_start(b, &marker)
                });
            out.extend_from_slice(&ev);
        }
        out.push(b']');
        out.into()
    }
}

/// The batch probe with its bookkeeping.
#[derive(Debug)]
pub(super) struct BatchState {
    pub probe: BatchProbe,
    pub tracker: Tracker,
    floors: parking_lot::Mutex<RttFloors>,
    poll_slots: Arc<Semaphore>,
}

impl BatchState {
    pub fn new(probe: BatchProbe, poll_max_in_flight: usize) -> Self {
        BatchState {
            probe,
            // One patient stream, but a batch's events share one
            // acknowledgement: order within it is the service's to choose.
            tracker: Tracker::new(false),
            floors: parking_lot::Mutex::new(RttFloors::default()),
            poll_slots: Arc::new(Semaphore::new(poll_max_in_flight)),
        }
    }
}

/// The service's id of the batch's first event, when its 201 lists them.
fn first_event_id(body: &Bytes) -> Option<Box<str>> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let events = v.get("events").unwrap_or(&v);
    Some(events.pointer("/0/event_id")?.as_str()?.into())
}

/// Which events of the batch one read shows.
struct Sighting {
    /// Sequences of this batch in the read.
    count: u64,
    all: bool,
}

fn sight(seqs: &[u64], first: u64, size: u64, seen: &mut [bool]) -> Sighting {
    let mut count = 0;
    let mut here = vec![false; seen.len()];
    for s in seqs {
        if let Some(k) = s.checked_sub(first).filter(|k| *k < size) {
            let k = k as usize;
            if !here[k] {
                here[k] = true;
                count += 1;
            }
            seen[k] = true;
        }
    }
    Sighting {
        count,
        all: count == size,
    }
}

/// One probe batch: post, poll on the lag probes' schedule until a read
/// shows every event (or the timeout and a last look), then both samples.
pub(super) async fn run(shared: Arc<ProbeContext>, b: Arc<BatchState>) {
    let m: &BatchMetrics = shared.metrics.batch();
    let t = &shared.timing;
    let size = b.probe.size;
    let first = b.tracker.next_seqs(size);
    let body = b.probe.body(first);
    m.probe_sent();
    let sent = Instant::now();
    let post = shared.client.post_json(b.probe.batch_url.clone(), body);
    tokio::pin!(post);
    let mut posted: Option<(Span, TraceId)> = None;
    let mut event_id: Box<str> = b.probe.prefix.marker(first).into();
    let mut deadline = far_future();
    let (mut gap, mut next) = first_poll(t, sent);
    // `all.done` holds each read as "showed every event"; `any` the same
    // reads as "showed at least one".
    let mut all = Polls::default();
    let mut any: Vec<Poll> = Vec::new();
    let mut seen = vec![false; size as usize];
    let mut running = FuturesUnordered::new();
    let mut seqs = Vec::new();
    let url = &b.probe.read_url;
    let new_poll = |k, slot| {
        m.read_sent();
        timed_read(&shared.client, url, k, slot)
    };
    let log = |what, detail: &dyn std::fmt::Display| {
        shared.log_once(what, Projection::Stream, detail);
    };

    loop {
        if posted.is_some()
            && all.settled()
            && (all.first_hit.is_some() || all.missed || all.unreadable)
        {
            break;
        }
        let seeing = all.first_hit.is_none();
        let slot = async {
            tokio::time::sleep_until(next).await;
            b.poll_slots.clone().acquire_owned().await
        };
        let last_look_due = match all.last_look_due {
            Some(due) if seeing => due,
            _ => far_future(),
        };
        let timeout_due = if seeing && !all.last_phase {
            deadline
        } else {
            far_future()
        };
        tokio::select! {
            resp = &mut post, if posted.is_none() => {
                let acked = Instant::now();
                let failure = match resp.outcome {
                    Outcome::Status(200..=299) => None,
                    Outcome::Status(_) => Some((Once::PostRejected, BatchFailure::Rejected)),
                    _ => Some((Once::PostTransport, BatchFailure::Error)),
                };
                if let Some((once, f)) = failure {
                    log(once, &format_args!("batch: {:?} (trace_id {})", resp.outcome, resp.trace));
                    m.failure(f);
                    drain(running);
                    return;
                }
                if let Some(id) = first_event_id(&resp.body) {
                    event_id = id;
                }
                for seq in first..first + size {
                    let id = if seq == first { event_id.clone() } else { b.probe.prefix.marker(seq).into() };
                    b.tracker.posted(seq, sent, acked, id, resp.trace);
                }
                m.accepted(size);
                let span = Span { sent, recv: acked };
                b.floors.lock().post.push(span.rtt());
                posted = Some((span, resp.trace));
                deadline = acked + t.timeout;
            }
            Some(done) = running.next(), if !running.is_empty() => {
                let mut done: PollDone = done;
                let result = std::mem::replace(&mut done.result, Err(ReadFailure::Shape));
                match result.and_then(|doc| b.probe.rule.markers(&doc, &b.probe.prefix, &mut seqs)) {
                    Ok(()) => {
                        b.floors.lock().read.push(done.span.rtt());
                        let s = sight(&seqs, first, size, &mut seen);
                        let observed = b.tracker.observe(&mut seqs, done.span.mid());
                        m.duplicated(observed.duplicated);
                        m.late(observed.late.len() as u64);
                        any.push(Poll { span: done.span, hit: s.count > 0 });
                        all.answered(&done, Some(s.all), t);
                    }
                    Err(f) => {
                        log(Once::Read(f), &format_args!("batch: {f}"));
                        all.answered(&done, None, t);
                    }
                }
            }
            slot = slot, if seeing && !all.last_phase => {
                let now = Instant::now();
                all.launch(&mut running, new_poll, slot.ok());
                gap = gap.mul_f64(t.poll_backoff).min(t.poll_max);
                next = (next + gap).max(now);
            }
            () = tokio::time::sleep_until(timeout_due), if timeout_due != far_future() => {
                all.last_phase = true;
                all.last_look_due = Some(Instant::now());
            }
            () = tokio::time::sleep_until(last_look_due), if last_look_due != far_future() => {
                all.last_look_due = None;
                let slot = b.poll_slots.clone().try_acquire_owned().ok();
                all.last_look = Some(all.launch(&mut running, new_poll, slot));
            }
        }
    }
    drain(running);
    let Some((post, trace)) = posted else {
        return;
    };
    let now = Instant::now();
    let mut lost = 0;
    for (k, seen) in seen.iter().enumerate() {
        let seq = first + k as u64;
        if *seen {
            b.tracker.seen(seq, now);
        } else if all.unreadable {
            b.tracker.gave_up(seq, now);
        } else {
            b.tracker.lost(seq, now);
            lost += 1;
        }
    }
    if all.unreadable && lost == 0 && all.first_hit.is_none() {
        m.failure(BatchFailure::Error);
    }
    let floors = {
        let f = b.floors.lock();
        estimate::Floors {
            post: f.post.min().unwrap_or(post.rtt()),
            read: f.read.min().unwrap_or(post.rtt()),
        }
    };
    let sample = |polls: &[Poll]| -> Option<Estimate> {
        let (miss, hit) = estimate::bracket(polls)?;
        Some(estimate::estimate(post, miss, hit, floors))
    };
    m.record(BatchRecord {
        event_id: &event_id,
        trace,
        events: size,
        post: post.rtt(),
        visible: sample(&all.done),
        first_visible: sample(&any),
        lost,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PayloadConfig, PayloadShape};
    use crate::lag::marker::RunId;

    fn probe(shape: PayloadShape) -> BatchProbe {
        let setup = Setup {
            base: Url::parse("http://127.0.0.1:1/rehab/").unwrap(),
            namespace: "canary-".into(),
            payload: PayloadConfig {
                shape,
                ..PayloadConfig::default()
            },
            run: RunId(7),
        };
        BatchProbe::new(&BatchProbeConfig::default(), &setup).unwrap()
    }

    #[test]
    fn a_probe_batch_is_one_patient_with_consecutive_markers() {
        for shape in [PayloadShape::Envelope, PayloadShape::Flat] {
            let p = probe(shape);
            let v: serde_json::Value = serde_json::from_slice(&p.body(5)).unwrap();
            let events = v.as_array().unwrap();
            assert_eq!(events.len(), 20);
            for (k, e) in events.iter().enumerate() {
                let sid = e
                    .pointer("/body/session_id")
                    .or_else(|| e.get("session_id"))
                    .and_then(|s| s.as_str())
                    .unwrap();
                assert_eq!(p.prefix.parse(sid), Some(5 + k as u64), "{shape:?}");
                let who = e.get("subject_id").or_else(|| e.get("patient_id")).unwrap();
                assert_eq!(who, "canary-probe-batch");
            }
        }
        assert_eq!(
            probe(PayloadShape::Envelope).read_url.as_str(),
            "http://127.0.0.1:1/rehab/api/v1/patients/canary-probe-batch/stream?limit=250"
        );
    }

    #[test]
    fn a_sighting_counts_this_batch_once_each() {
        let mut seen = vec![false; 3];
        let s = sight(&[1, 10, 10, 12, 13], 10, 3, &mut seen);
        assert_eq!((s.count, s.all), (2, false));
        assert_eq!(seen, [true, false, true]);
        let s = sight(&[10, 11, 12], 10, 3, &mut seen);
        assert!(s.all);
    }

    #[test]
    fn the_first_event_id_comes_from_the_201() {
        let body =
            Bytes::from_static(br#"{"count":2,"events":[{"event_id":"e1"},{"event_id":"e2"}]}"#);
        assert_eq!(first_event_id(&body).as_deref(), Some("e1"));
        let bare = Bytes::from_static(br#"[{"event_id":"e9"}]"#);
        assert_eq!(first_event_id(&bare).as_deref(), Some("e9"));
        assert_eq!(first_event_id(&Bytes::from_static(b"nope")), None);
    }
}
