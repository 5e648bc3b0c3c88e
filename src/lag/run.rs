//! One probe event from POST to verdict: the pre-read of an `increment`
//! probe, the POST, polls on the dithered geometric schedule from the
//! moment of sending (overlapping each other and the POST, bounded per
//! event), the last look at the timeout, and then the sample with its error
//! bar, or lost, or unreadable. Also the late watch and the cleanups, which
//! share the same reads.

use crate::client::trace::TraceId;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use reqwest::Url;
use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::estimate::{self, Estimate, Poll, Span};
use super::metrics::{Failure, LagRecord};
use super::probe::Projection;
use super::server_clock::{self, StampError};
use super::tracker::Observed;
use super::visibility::{Check, ReadFailure};
use super::{Once, ProbeContext, ProbeState, RuleKind, Timing, FINAL_ATTEMPTS};
use crate::client::Outcome;
use crate::client::TargetClient;

/// Clears an increment probe's busy flag however its run ends.
struct Busy<'a>(&'a ProbeState);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Release);
    }
}

/// GET and parse one read.
pub(super) async fn read(client: &TargetClient, url: &Url) -> Result<Value, ReadFailure> {
    let resp = client.get(url.clone()).await;
    match resp.outcome {
        Outcome::Status(200..=299) => super::visibility::parse(&resp.body),
        Outcome::Status(code) => Err(ReadFailure::Status(code)),
        Outcome::Timeout
        | Outcome::ConnectError
        | Outcome::TlsError
        | Outcome::IoError
        | Outcome::BodyTooLarge => Err(ReadFailure::Transport),
    }
}

/// The service's id of the created event, when its 201 body says it.
pub(super) fn event_id_of(body: &Bytes) -> Option<Box<str>> {
    #[derive(serde::Deserialize)]
    struct Created<'a> {
        #[serde(borrow)]
        event_id: Option<std::borrow::Cow<'a, str>>,
    }
    let c: Created<'_> = serde_json::from_slice(body).ok()?;
    c.event_id.map(|id| id.into())
}

/// One finished poll of a probe run.
pub(super) struct PollDone {
    /// Launch order within the run.
    pub k: u32,
    pub span: Span,
    pub result: Result<Value, ReadFailure>,
}

/// One read, timed from its launch to its answer. It holds its slot of the
/// probe's in-flight bound (if it took one) until the answer is in, also
/// when it finishes in the background after its run is over.
fn poll(
    shared: &Arc<ProbeContext>,
    proj: Projection,
    url: &Url,
    k: u32,
    slot: Option<OwnedSemaphorePermit>,
) -> impl std::future::Future<Output = PollDone> + Send + 'static {
    shared.metrics.read_sent(proj);
    timed_read(&shared.client, url, k, slot)
}

/// [`poll`] without the counting: the caller counts its own reads.
pub(super) fn timed_read(
    client: &TargetClient,
    url: &Url,
    k: u32,
    slot: Option<OwnedSemaphorePermit>,
) -> impl std::future::Future<Output = PollDone> + Send + 'static {
    let client = client.clone();
    let url = url.clone();
    let sent = Instant::now();
    async move {
        let result = read(&client, &url).await;
        drop(slot);
        PollDone {
            k,
            span: Span {
                sent,
                recv: Instant::now(),
            },
            result,
        }
    }
}

/// What the POST of a probe event came back with.
struct Posted {
    span: Span,
    trace: TraceId,
    committed: Option<Result<SystemTime, StampError>>,
}

/// The polls of one probe event (or batch) so far.
#[derive(Default)]
pub(super) struct Polls {
    pub done: Vec<Poll>,
    launched: u32,
    /// Launch order and instant of the polls still in flight.
    pub in_flight: Vec<(u32, Instant)>,
    /// The earliest launch of a poll that saw the event.
    pub first_hit: Option<Instant>,
    /// The service's applied time, from the first hit that carried one.
    applied: Option<Result<SystemTime, StampError>>,
    /// The timeout passed: no more scheduled polls, only the last look.
    pub last_phase: bool,
    /// When the (next) last look is due, and which poll it is once sent.
    pub last_look_due: Option<Instant>,
    pub last_look: Option<u32>,
    /// The last look answered and missed.
    pub missed: bool,
    /// The last look failed `FINAL_ATTEMPTS` times.
    pub unreadable: bool,
    final_failures: u32,
}

impl Polls {
    /// Every poll that could still move the bracket has answered: with a
    /// hit, every poll launched before it; without, every poll.
    pub fn settled(&self) -> bool {
        match self.first_hit {
            Some(hit) => self.in_flight.iter().all(|(_, s)| *s > hit),
            None => self.in_flight.is_empty(),
        }
    }

    /// A poll answered, hit or not (`hit` is `None` when it could not be
    /// judged); whether it was the last look. Moves the state machine on.
    pub fn answered(&mut self, done: &PollDone, hit: Option<bool>, t: &Timing) -> bool {
        self.in_flight.retain(|(k, _)| *k != done.k);
        let last_look = self.last_look == Some(done.k);
        match hit {
            Some(hit) => {
                self.done.push(Poll {
                    span: done.span,
                    hit,
                });
                if hit {
                    let at = done.span.sent;
                    self.first_hit = Some(self.first_hit.map_or(at, |h| h.min(at)));
                } else if last_look {
                    self.missed = true;
                }
            }
            None if last_look => {
                // One failed read is no verdict: look again shortly, a few
                // times.
                self.final_failures += 1;
                if self.final_failures >= FINAL_ATTEMPTS {
                    self.unreadable = true;
                } else {
                    self.last_look_due = Some(done.span.recv + t.poll_initial);
                }
            }
            None => {}
        }
        last_look
    }

    pub fn launch<F: std::future::Future<Output = PollDone>>(
        &mut self,
        running: &mut FuturesUnordered<F>,
        f: impl FnOnce(u32, Option<OwnedSemaphorePermit>) -> F,
        slot: Option<OwnedSemaphorePermit>,
    ) -> u32 {
        let k = self.launched;
        self.launched += 1;
        self.in_flight.push((k, Instant::now()));
        running.push(f(k, slot));
        k
    }
}

/// How a probe run ended without a sample.
enum Unseen {
    Lost,
    Unreadable,
}

/// One probe event: (pre-read,) post, and poll from the moment of sending
/// on the geometric schedule, polls overlapping each other and the POST
/// (bounded per probe by `lag.poll_max_in_flight`), until a poll sees the event or
/// the timeout passes; then the sample and its error bar (`estimate.rs`).
pub(super) async fn run(shared: Arc<ProbeContext>, p: Arc<ProbeState>) {
    let _busy = p.serial().then(|| Busy(&p));
    let proj = p.probe.projection;
    let m = &shared.metrics;
    let t = &shared.timing;
    let seq = p.tracker.next_seq();
    let ev = match p.probe.event(seq) {
        Ok(ev) => ev,
        Err(e) => {
            shared.log_once(Once::Read(ReadFailure::Shape), proj, &e);
            m.failure(proj, Failure::Error);
            return;
        }
    };
    // The increment rule compares with the number just before the POST. A
    // 404 there is a probe patient the service has not seen yet: zero.
    let baseline = if p.serial() {
        m.read_sent(proj);
        let number = read(&shared.client, &ev.read_url)
            .await
            .and_then(|doc| p.probe.rule.number(&doc));
        match number {
            Ok(v) => v,
            Err(ReadFailure::Status(404)) => 0.0,
            Err(f) => {
                shared.log_once(Once::Read(f), proj, &f);
                m.probe_sent(proj);
                m.failure(proj, Failure::Error);
                return;
            }
        }
    } else {
        0.0
    };

    m.probe_sent(proj);
    let sent = Instant::now();
    let post = shared.client.post_json(p.probe.events_url.clone(), ev.body);
    tokio::pin!(post);
    let mut posted: Option<Posted> = None;
    let mut event_id: Box<str> = ev.marker.as_str().into();
    let mut deadline = far_future();

    let expected = match p.probe.rule.kind {
        RuleKind::Value => p.probe.rule.expected(&ev.marker),
        RuleKind::Marker | RuleKind::Increment => String::new(),
    };
    let check = Check {
        prefix: &p.probe.prefix,
        seq,
        expected: &expected,
        baseline,
    };
    let (mut gap, mut next) = first_poll(t, sent);
    let mut polls = Polls::default();
    let mut running = FuturesUnordered::new();
    let mut seqs = Vec::new();
    // What the integrity audit keeps of the first read that showed the
    // event: its version there, and whether it already showed twice.
    let mut confirmed: Option<(Option<u64>, bool)> = None;
    let new_poll = |k, slot| poll(&shared, proj, &ev.read_url, k, slot);

    let outcome = loop {
        if let Some(post) = &posted {
            if polls.settled() {
                if polls.first_hit.is_some() {
                    break Ok(post);
                }
                if polls.missed {
                    break Err(Unseen::Lost);
                }
                if polls.unreadable {
                    break Err(Unseen::Unreadable);
                }
            }
        }
        let seeing = polls.first_hit.is_none();
        let may_poll = seeing && !polls.last_phase;
        // Due, and a slot of the probe's in-flight bound is free.
        let slot = async {
            tokio::time::sleep_until(next).await;
            p.poll_slots.clone().acquire_owned().await
        };
        let last_look_due = match polls.last_look_due {
            Some(due) if seeing => due,
            _ => far_future(),
        };
        let timeout_due = if seeing && !polls.last_phase {
            deadline
        } else {
            far_future()
        };
        tokio::select! {
            resp = &mut post, if posted.is_none() => {
                let acked = Instant::now();
                match resp.outcome {
                    Outcome::Status(200..=299) => {}
                    Outcome::Status(code) => {
                        shared.log_once(
                            Once::PostRejected,
                            proj,
                            &format_args!("{code} (trace_id {})", resp.trace),
                        );
                        m.failure(proj, Failure::Rejected);
                        drain(running);
                        return;
                    }
                    other => {
                        shared.log_once(
                            Once::PostTransport,
                            proj,
                            &format_args!("{other:?} (trace_id {})", resp.trace),
                        );
                        m.failure(proj, Failure::Error);
                        drain(running);
                        return;
                    }
                }
                if let Some(id) = event_id_of(&resp.body) {
                    event_id = id;
                }
                p.tracker.posted(seq, sent, acked, event_id.clone(), resp.trace);
                let span = Span { sent, recv: acked };
                p.floors.lock().post.push(span.rtt());
                let committed = p
                    .probe
                    .server_clock
                    .as_ref()
                    .map(|sc| server_clock::committed(&resp.body, &sc.committed));
                posted = Some(Posted {
                    span,
                    trace: resp.trace,
                    committed,
                });
                deadline = acked + t.timeout;
            }
            Some(done) = running.next(), if !running.is_empty() => {
                let mut done: PollDone = done;
                let result = std::mem::replace(&mut done.result, Err(ReadFailure::Shape));
                let judged = result.and_then(|doc| {
                    let hit = p.probe.rule.check(&doc, &check, &mut seqs)?;
                    Ok((hit, doc))
                });
                match judged {
                    Ok((hit, doc)) => {
                        p.floors.lock().read.push(done.span.rtt());
                        if hit && confirmed.is_none() && p.audit.is_some() {
                            let (rule, prefix) = (&p.probe.rule, &p.probe.prefix);
                            let version = p.probe.audit_version().and_then(|ptr| {
                                super::audit::version_of(&doc, rule, prefix, seq, ptr)
                            });
                            let twice = seqs.iter().filter(|s| **s == seq).count() > 1;
                            confirmed = Some((version, twice));
                        }
                        if p.probe.rule.kind == RuleKind::Marker {
                            let observed = p.tracker.observe(&mut seqs, done.span.mid());
                            account(&shared, &p, observed, done.span);
                        }
                        polls.answered(&done, Some(hit), t);
                        if hit && !matches!(polls.applied, Some(Ok(_))) {
                            if let Some(sc) = &p.probe.server_clock {
                                polls.applied = Some(p.probe.applied(&doc, seq, &sc.applied));
                            }
                        }
                    }
                    Err(f) => {
                        shared.log_once(Once::Read(f), proj, &f);
                        polls.answered(&done, None, t);
                    }
                }
            }
            slot = slot, if may_poll => {
                let now = Instant::now();
                // The semaphore is never closed, so a slot always comes.
                polls.launch(&mut running, new_poll, slot.ok());
                gap = gap.mul_f64(t.poll_backoff).min(t.poll_max);
                // A poll held back by the in-flight bound does not make the
                // ones after it catch up in a burst.
                next = (next + gap).max(now);
            }
            () = tokio::time::sleep_until(timeout_due), if timeout_due != far_future() => {
                polls.last_phase = true;
                polls.last_look_due = Some(Instant::now());
            }
            () = tokio::time::sleep_until(last_look_due), if last_look_due != far_future() => {
                polls.last_look_due = None;
                // The last look goes out whatever the in-flight bound.
                let slot = p.poll_slots.clone().try_acquire_owned().ok();
                polls.last_look = Some(polls.launch(&mut running, new_poll, slot));
            }
        }
    };
    drain(running);
    let posted = match outcome {
        Ok(posted) => posted,
        Err(Unseen::Lost) => {
            p.tracker.lost(seq, Instant::now());
            m.failure(proj, Failure::Lost);
            return;
        }
        Err(Unseen::Unreadable) => {
            p.tracker.gave_up(seq, Instant::now());
            m.failure(proj, Failure::Error);
            return;
        }
    };

    let Some((miss, hit)) = estimate::bracket(&polls.done) else {
        return; // cannot happen: the loop ends with a hit recorded
    };
    let floors = {
        let f = p.floors.lock();
        estimate::Floors {
            post: f.post.min().unwrap_or(posted.span.rtt()),
            read: f.read.min().unwrap_or(hit.rtt()),
        }
    };
    let est = estimate::estimate(posted.span, miss, hit, floors);
    if p.tracker.seen(seq, hit.mid()) {
        m.out_of_order(proj, 1);
    }
    if let (Some(memory), Some((version, twice))) = (&p.audit, confirmed) {
        if version.is_none() && p.probe.audit_needs_version() {
            shared.log_once(
                Once::AuditVersion,
                proj,
                &"the read that showed the event has no version at lag.probes.NAME.audit_version; \
                  its events cannot be audited",
            );
        } else {
            memory.remember(seq, Instant::now(), version, twice);
        }
    }
    let server = match (posted.committed, polls.applied) {
        (Some(c), Some(a)) => match c.and_then(|c| a.and_then(|a| server_clock::lag(c, a))) {
            Ok(d) => Some(d),
            Err(e) => {
                shared.log_once(Once::ServerClock, proj, &e);
                m.server_clock_error(proj);
                None
            }
        },
        _ => None,
    };
    m.record_lag(
        proj,
        LagRecord {
            estimate: est,
            server_clock: server,
            event_id: &event_id,
            trace: posted.trace,
            weak: estimate::weak(&est, t.weak_share),
            late: false,
        },
    );
    cleanup(shared.clone(), p.clone(), ev.marker).await;
}

/// The first gap and poll of one event's schedule, dithered: the whole
/// geometric schedule is scaled by `backoff^u` (`u` uniform in 0..1), which
/// moves the polls by a uniformly random share of one gap at every elapsed
/// time. A steady lag then meets a random point of the bracket each time,
/// so the bracket error averages out instead of repeating the same offset.
pub(super) fn first_poll(t: &Timing, sent: Instant) -> (Duration, Instant) {
    let u: f64 = rand::random();
    if t.poll_backoff > 1.0 {
        let gap = t
            .poll_initial
            .mul_f64(t.poll_backoff.powf(u))
            .min(t.poll_max);
        (gap, sent + gap)
    } else {
        // Even spacing: shift the schedule by a random share of the gap.
        (t.poll_initial, sent + t.poll_initial.mul_f64(1.0 + u))
    }
}

/// Lets polls still in flight answer in the background, so their
/// keep-alive connections go back to the pool instead of being cut.
pub(super) fn drain(
    running: FuturesUnordered<impl std::future::Future<Output = PollDone> + Send + 'static>,
) {
    if !running.is_empty() {
        tokio::spawn(async move { running.for_each(|_| async {}).await });
    }
}

/// A sleep that never ends within a run.
pub(super) fn far_future() -> Instant {
    static FAR: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *FAR.get_or_init(|| Instant::now() + Duration::from_secs(86_400 * 365 * 30))
}

/// Records what a read (answered over `span`) revealed beyond the probe's
/// own event; late events get their lag recorded and, for the work queue,
/// their cleanup (in the background: a poll loop never waits for it).
fn account(shared: &Arc<ProbeContext>, p: &Arc<ProbeState>, o: Observed, span: Span) {
    let proj = p.probe.projection;
    let m = &shared.metrics;
    m.duplicated(proj, o.duplicated);
    m.out_of_order(proj, o.out_of_order);
    for late in o.late {
        m.failure(proj, Failure::Late);
        // Seen by a read of the slow late watch (or a poll of a later
        // event): recorded at that read, so the event became visible up to
        // one late-watch gap earlier, within the read's own round trip.
        let est = Estimate {
            lag: late.lag,
            end_to_end: late.end_to_end,
            uncertainty: shared.timing.late_poll_interval + span.rtt() / 2,
        };
        m.record_lag(
            proj,
            LagRecord {
                estimate: est,
                server_clock: None,
                event_id: &late.event_id,
                trace: late.trace,
                weak: estimate::weak(&est, shared.timing.weak_share),
                late: true,
            },
        );
        if p.probe.has_cleanup() {
            let marker = p.probe.prefix.marker(late.seq);
            tokio::spawn(cleanup(shared.clone(), p.clone(), marker));
        }
    }
}

/// One low-rate read looking for lost events.
pub(super) async fn late_watch(shared: Arc<ProbeContext>, p: Arc<ProbeState>) {
    let Some(url) = p.probe.fixed_read() else {
        return;
    };
    let slot = p.poll_slots.clone().try_acquire_owned().ok();
    let done = poll(&shared, p.probe.projection, url, 0, slot).await;
    let mut seqs = Vec::new();
    match done
        .result
        .and_then(|doc| p.probe.rule.markers(&doc, &p.probe.prefix, &mut seqs))
    {
        Ok(()) => {
            let observed = p.tracker.observe(&mut seqs, done.span.mid());
            account(&shared, &p, observed, done.span);
        }
        Err(f) => shared.log_once(Once::Read(f), p.probe.projection, &f),
    }
}

/// Posts the probe's cleanup events for `marker` (none for most probes).
pub(super) async fn cleanup(shared: Arc<ProbeContext>, p: Arc<ProbeState>, marker: String) {
    for body in p.probe.cleanup(&marker) {
        let resp = shared
            .client
            .post_json(p.probe.events_url.clone(), body)
            .await;
        if resp.outcome.is_error() {
            shared.log_once(
                Once::Cleanup,
                p.probe.projection,
                &format_args!("{:?}", resp.outcome),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_come_from_the_201_body() {
        assert_eq!(
            event_id_of(&Bytes::from_static(br#"{"event_id":"evt_1","x":[1]}"#)).as_deref(),
            Some("evt_1")
        );
        assert_eq!(event_id_of(&Bytes::from_static(b"<html>")), None);
        assert_eq!(event_id_of(&Bytes::from_static(b"{}")), None);
    }
}
