//! Projection lag probes: every `lag.interval` each enabled probe posts one
//! marked event and polls its read model until the event is visible or
//! `lag.timeout` passes; loss, lateness, duplication and reordering are
//! counted from the markers.
//!
//! One scheduler task owns the schedule (intended instants `start + k ×
//! interval`, so nothing drifts) and launches each probe run as a task,
//! bounded by `lag.max_in_flight` (a tick that finds the bound full is
//! skipped and counted, never queued). Probes run on the tokio runtime, apart
//! from the traffic engine's own scheduling thread, so polling can never delay
//! the traffic schedule, and they run whatever `traffic.events_per_second`.
//!
//! # The measurement and its error
//!
//! Lag is the time from the 201 to the instant the event became visible;
//! `_end_to_end` is the same from the moment the POST was sent. Visibility is
//! only ever observed by polls, so it is bracketed: after the last poll that
//! missed the event and no later than the first poll that saw it. Each poll's
//! observation instant is the midpoint of its send and its response (where
//! the server evaluated it is unknown within that span; on a LAN that is well
//! under a millisecond).
//!
//! Polls are spaced geometrically from the 201: the first after
//! `poll_initial`, each gap `poll_backoff` times the previous one, capped at
//! `poll_max`. With gap `g` the true instant lies in a bracket of width `g`.
//! Two estimators are possible:
//! - *first hit* (the first poll that saw it) is biased late by `g/2` on
//!   average and by up to `g`;
//! - the *midpoint* of the bracket is unbiased with error at most `g/2`.
//!
//! We record the **midpoint** (before the first poll, the bracket starts at
//! the 201 itself). With geometric spacing the gap at elapsed time `t` is
//! `poll_initial + (poll_backoff − 1)·t`, so the error of one sample is at
//! most `poll_initial/2 + (poll_backoff − 1)/2 · lag` (plus half a poll's round
//! trip): with the defaults (5 ms, 1.1) that is 2.5 ms + 5 %, inside
//! max(5 ms, 10 %) for every lag, and the `poll_max` cap (1 s) only matters
//! past ten seconds. The cost is polls per event: about
//! `ln(1 + (backoff − 1)·lag/initial) / ln(backoff)`, i.e. 12 for 100 ms and
//! 32 for 1 s. Late events (seen after the timeout by the slower late watch)
//! are recorded at the observing read, so their error is up to
//! `late_poll_interval`.

mod config;
pub mod marker;
mod metrics;
pub mod probe;
mod status;
mod tracker;
pub mod visibility;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Url;
use serde_json::Value;
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::admin::StatusExtra;
use crate::client::TargetClient;
use crate::metrics::{Outcome, WINDOW_ROTATE_EVERY};
use crate::traffic::gate::Gate;
pub use config::{LagConfig, ProbeConfig, ProbesConfig, RuleKind};
pub use metrics::{Failure, LagMetrics, ProjectionSnapshot, LAG_BUCKETS};
use probe::{Probe, Projection, Setup};
use status::LagStatus;
use tracker::{Observed, Tracker};
use visibility::{Check, ReadFailure};

/// Reads tried at the deadline before a run whose reads keep failing is
/// counted `error` rather than `lost` (a lost verdict needs a good read).
const FINAL_ATTEMPTS: u32 = 3;
/// How often resolved bookkeeping is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(1);
/// Resolved events are remembered at least this long, so a late second copy
/// still counts as a duplicate.
const MIN_MEMORY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum LagError {
    #[error("lag.probes.{probe}.route: {source}")]
    Route {
        probe: &'static str,
        #[source]
        source: url::ParseError,
    },
}

/// Things worth one log line the first time they happen (not per probe,
/// not per poll).
#[derive(Clone, Copy, Debug)]
enum Once {
    Read(ReadFailure),
    PostTransport,
    PostRejected,
    Cleanup,
}

impl Once {
    const COUNT: usize = ReadFailure::ALL.len() + 3;

    fn index(self) -> usize {
        match self {
            Once::Read(f) => f.index(),
            Once::PostTransport => ReadFailure::ALL.len(),
            Once::PostRejected => ReadFailure::ALL.len() + 1,
            Once::Cleanup => ReadFailure::ALL.len() + 2,
        }
    }
}

#[derive(Debug)]
struct Timing {
    interval: Duration,
    timeout: Duration,
    poll_initial: Duration,
    poll_backoff: f64,
    poll_max: Duration,
    late_window: Duration,
    late_poll_interval: Duration,
}

#[derive(Debug)]
struct Shared {
    client: TargetClient,
    metrics: LagMetrics,
    /// The operator's kill switch stops probes too: a paused canary sends
    /// nothing at all.
    gate: Arc<Gate>,
    timing: Timing,
    logged: [AtomicBool; Once::COUNT],
}

impl Shared {
    fn log_once(&self, what: Once, projection: Projection, detail: &dyn std::fmt::Display) {
        if !self.logged[what.index()].swap(true, Ordering::Relaxed) {
            tracing::warn!(
                projection = projection.as_str(),
                %detail,
                "lag probe: {what:?}; further occurrences of this kind are not logged (see \
                 rehab_canary_lag_probe_failures_total)"
            );
        }
    }
}

#[derive(Debug)]
struct ProbeState {
    probe: Probe,
    tracker: Tracker,
    /// An `increment` probe runs one event at a time: a second event in
    /// flight would move the same number.
    busy: AtomicBool,
}

impl ProbeState {
    fn serial(&self) -> bool {
        self.probe.rule.kind == RuleKind::Increment
    }
}

/// The running probes. Stop them with [`LagProbes::stop`].
#[derive(Debug)]
pub struct LagProbes {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    status: Arc<LagStatus>,
}

impl LagProbes {
    /// Builds the enabled probes and starts the scheduler. `metrics` must be
    /// registered in the daemon's registry already.
    pub fn spawn(
        cfg: &LagConfig,
        setup: Setup,
        client: TargetClient,
        metrics: LagMetrics,
        gate: Arc<Gate>,
    ) -> Result<LagProbes, LagError> {
        let mut probes = Vec::new();
        for (p, (name, pcfg)) in Projection::ALL.into_iter().zip(cfg.probes()) {
            metrics.set_enabled(p, pcfg.enabled);
            if !pcfg.enabled {
                continue;
            }
            let probe = Probe::new(p, pcfg, cfg, &setup).map_err(|source| LagError::Route {
                probe: name,
                source,
            })?;
            probes.push(Arc::new(ProbeState {
                tracker: Tracker::new(probe.ordered()),
                probe,
                busy: AtomicBool::new(false),
            }));
        }
        let shared = Arc::new(Shared {
            client,
            metrics: metrics.clone(),
            gate,
            timing: Timing {
                interval: cfg.interval,
                timeout: cfg.timeout,
                poll_initial: cfg.poll_initial,
                poll_backoff: cfg.poll_backoff,
                poll_max: cfg.poll_max,
                late_window: cfg.late_window,
                late_poll_interval: cfg.late_poll_interval,
            },
            logged: std::array::from_fn(|_| AtomicBool::new(false)),
        });
        let (stop, stop_rx) = watch::channel(false);
        tracing::info!(
            probes = ?probes.iter().map(|p| p.probe.projection.as_str()).collect::<Vec<_>>(),
            interval = ?cfg.interval,
            timeout = ?cfg.timeout,
            epoch = format_args!("{:016x}", setup.epoch.0),
            "lag probes running"
        );
        let task = tokio::spawn(schedule(shared, probes, cfg.max_in_flight, stop_rx));
        Ok(LagProbes {
            stop,
            task,
            status: Arc::new(LagStatus {
                metrics,
                interval: cfg.interval,
                timeout: cfg.timeout,
            }),
        })
    }

    /// The `/status` and landing-page section.
    pub fn status(&self) -> Arc<dyn StatusExtra> {
        self.status.clone()
    }

    /// Stops scheduling and cancels the runs in progress: their events are
    /// neither lost nor seen, just no longer watched.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }
}

/// The next intended instant after `due`, skipping ticks already missed so a
/// stalled runtime does not fire a burst of probes to catch up.
fn advance(due: Instant, every: Duration, now: Instant) -> Instant {
    let next = due + every;
    if next > now {
        return next;
    }
    let behind = now.duration_since(next).as_nanos() / every.as_nanos().max(1);
    let skip = u32::try_from(behind + 1).unwrap_or(u32::MAX);
    next + every.saturating_mul(skip)
}

async fn schedule(
    shared: Arc<Shared>,
    probes: Vec<Arc<ProbeState>>,
    max_in_flight: usize,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let mut runs = JoinSet::new();
    let t = &shared.timing;
    let start = Instant::now();
    // Spread the probes' first ticks over one interval, so their reads do
    // not all land at the same instant.
    let n = probes.len().max(1) as u32;
    let mut due: Vec<Instant> = (0..probes.len())
        .map(|k| start + t.interval * k as u32 / n)
        .collect();
    let mut next_late = start + t.late_poll_interval;
    let mut next_prune = start + PRUNE_EVERY;
    let mut next_rotate = start + WINDOW_ROTATE_EVERY;
    let memory = t.late_window.max(t.timeout).max(MIN_MEMORY);
    loop {
        let now = Instant::now();
        for (k, p) in probes.iter().enumerate() {
            if now < due[k] {
                continue;
            }
            due[k] = advance(due[k], p.probe.interval, now);
            if shared.gate.is_paused() {
                continue;
            }
            if p.serial() && p.busy.swap(true, Ordering::AcqRel) {
                shared.metrics.skipped(p.probe.projection);
                continue;
            }
            if !launch(&mut runs, &permits, &shared, run(shared.clone(), p.clone())) {
                p.busy.store(false, Ordering::Release);
                shared.metrics.skipped(p.probe.projection);
            }
        }
        if now >= next_late {
            next_late = advance(next_late, t.late_poll_interval, now);
            if !t.late_window.is_zero() {
                for p in &probes {
                    if p.probe.rule.kind == RuleKind::Marker
                        && p.probe.fixed_read().is_some()
                        && p.tracker.lost_open() > 0
                    {
                        launch(
                            &mut runs,
                            &permits,
                            &shared,
                            late_watch(shared.clone(), p.clone()),
                        );
                    }
                }
            }
        }
        if now >= next_prune {
            next_prune = advance(next_prune, PRUNE_EVERY, now);
            for p in &probes {
                let expired = p.tracker.prune(now, memory);
                if !p.probe.has_cleanup() {
                    continue;
                }
                for seq in expired {
                    // A lost event never seen: clean up after it anyway, in
                    // case it shows up after we stopped looking.
                    let marker = p.probe.prefix.marker(seq);
                    launch(
                        &mut runs,
                        &permits,
                        &shared,
                        cleanup(shared.clone(), p.clone(), marker),
                    );
                }
            }
        }
        if now >= next_rotate {
            next_rotate = advance(next_rotate, WINDOW_ROTATE_EVERY, now);
            shared.metrics.rotate();
        }
        while runs.try_join_next().is_some() {}
        let wake = due
            .iter()
            .copied()
            .chain([next_late, next_prune, next_rotate])
            .min()
            .unwrap_or(next_rotate);
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            _ = stop.changed() => break,
        }
    }
    runs.abort_all();
    while runs.join_next().await.is_some() {}
}

/// Spawns `task` if a permit is free; `false` when the bound is full.
fn launch(
    runs: &mut JoinSet<()>,
    permits: &Arc<Semaphore>,
    shared: &Shared,
    task: impl std::future::Future<Output = ()> + Send + 'static,
) -> bool {
    let Ok(permit) = permits.clone().try_acquire_owned() else {
        return false;
    };
    let guard = shared.metrics.in_flight();
    runs.spawn(async move {
        task.await;
        drop(guard);
        drop(permit);
    });
    true
}

/// Clears an increment probe's busy flag however its run ends.
struct Busy<'a>(&'a ProbeState);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Release);
    }
}

/// GET and parse one read.
async fn read(client: &TargetClient, url: &Url) -> Result<Value, ReadFailure> {
    let resp = client.get(url.clone()).await;
    match resp.outcome {
        Outcome::Status(200..=299) => visibility::parse(&resp.body),
        Outcome::Status(code) => Err(ReadFailure::Status(code)),
        Outcome::Timeout | Outcome::ConnectError | Outcome::IoError => Err(ReadFailure::Transport),
    }
}

/// The service's id of the created event, when its 201 body says it.
fn event_id(body: &Bytes) -> Option<Box<str>> {
    #[derive(serde::Deserialize)]
    struct Created<'a> {
        #[serde(borrow)]
        event_id: Option<std::borrow::Cow<'a, str>>,
    }
    let c: Created<'_> = serde_json::from_slice(body).ok()?;
    c.event_id.map(|id| id.into())
}

/// One probe event: (pre-read,) post, poll until visible or timed out.
async fn run(shared: Arc<Shared>, p: Arc<ProbeState>) {
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
    let resp = shared
        .client
        .post_json(p.probe.events_url.clone(), ev.body)
        .await;
    let acked = Instant::now();
    match resp.outcome {
        Outcome::Status(200..=299) => {}
        Outcome::Status(code) => {
            shared.log_once(Once::PostRejected, proj, &code);
            m.failure(proj, Failure::Rejected);
            return;
        }
        other => {
            shared.log_once(Once::PostTransport, proj, &format_args!("{other:?}"));
            m.failure(proj, Failure::Error);
            return;
        }
    }
    let id = event_id(&resp.body).unwrap_or_else(|| ev.marker.as_str().into());
    p.tracker.posted(seq, sent, acked, id.clone());

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
    let deadline = acked + t.timeout;
    let mut gap = t.poll_initial;
    let mut next = acked + gap;
    // The bracket's lower end: the last instant the event was known not to
    // be visible (the 201 itself until a poll misses).
    let mut last_miss = acked;
    let mut final_attempts = 0;
    let mut seqs = Vec::new();
    loop {
        let at = if final_attempts == 0 {
            next.min(deadline)
        } else {
            next
        };
        tokio::time::sleep_until(at).await;
        let s = Instant::now();
        let result = read(&shared.client, &ev.read_url).await;
        let r = Instant::now();
        let obs = s + (r - s) / 2;
        let last_look = at >= deadline;
        match result.and_then(|doc| p.probe.rule.check(&doc, &check, &mut seqs)) {
            Ok(hit) => {
                if p.probe.rule.kind == RuleKind::Marker {
                    let observed = p.tracker.observe(&mut seqs, obs);
                    account(&shared, &p, observed).await;
                }
                if hit {
                    let visible = last_miss + (obs - last_miss) / 2;
                    if p.tracker.seen(seq, obs) {
                        m.out_of_order(proj, 1);
                    }
                    m.record_lag(
                        proj,
                        visible.saturating_duration_since(acked),
                        visible.saturating_duration_since(sent),
                        &id,
                    );
                    cleanup(shared.clone(), p.clone(), ev.marker).await;
                    return;
                }
                last_miss = obs;
                if last_look {
                    p.tracker.lost(seq, obs);
                    m.failure(proj, Failure::Lost);
                    return;
                }
            }
            Err(f) => {
                shared.log_once(Once::Read(f), proj, &f);
                if last_look {
                    final_attempts += 1;
                    if final_attempts >= FINAL_ATTEMPTS {
                        p.tracker.gave_up(seq, r);
                        m.failure(proj, Failure::Error);
                        return;
                    }
                    next = r + t.poll_initial;
                    continue;
                }
            }
        }
        gap = gap.mul_f64(t.poll_backoff).min(t.poll_max);
        next += gap;
    }
}

/// Records what a read revealed beyond the probe's own event; late events
/// get their lag recorded and, for the work queue, their cleanup.
async fn account(shared: &Arc<Shared>, p: &Arc<ProbeState>, o: Observed) {
    let proj = p.probe.projection;
    let m = &shared.metrics;
    m.duplicated(proj, o.duplicated);
    m.out_of_order(proj, o.out_of_order);
    for late in o.late {
        m.failure(proj, Failure::Late);
        m.record_lag(proj, late.lag, late.end_to_end, &late.event_id);
        cleanup(shared.clone(), p.clone(), p.probe.prefix.marker(late.seq)).await;
    }
}

/// One low-rate read looking for lost events.
async fn late_watch(shared: Arc<Shared>, p: Arc<ProbeState>) {
    let Some(url) = p.probe.fixed_read() else {
        return;
    };
    let s = Instant::now();
    let result = read(&shared.client, url).await;
    let obs = s + s.elapsed() / 2;
    let mut seqs = Vec::new();
    match result.and_then(|doc| p.probe.rule.markers(&doc, &p.probe.prefix, &mut seqs)) {
        Ok(()) => {
            let observed = p.tracker.observe(&mut seqs, obs);
            account(&shared, &p, observed).await;
        }
        Err(f) => shared.log_once(Once::Read(f), p.probe.projection, &f),
    }
}

/// Posts the probe's cleanup events for `marker` (none for most probes).
async fn cleanup(shared: Arc<Shared>, p: Arc<ProbeState>, marker: String) {
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
    fn advance_keeps_phase_and_skips_missed_ticks() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        assert_eq!(advance(t0, s, t0), t0 + s);
        assert_eq!(advance(t0, s, t0 + Duration::from_millis(3500)), t0 + 4 * s);
        assert_eq!(advance(t0, s, t0 + 2 * s), t0 + 3 * s);
    }

    #[test]
    fn event_ids_come_from_the_201_body() {
        assert_eq!(
            event_id(&Bytes::from_static(br#"{"event_id":"evt_1","x":[1]}"#)).as_deref(),
            Some("evt_1")
        );
        assert_eq!(event_id(&Bytes::from_static(b"<html>")), None);
        assert_eq!(event_id(&Bytes::from_static(b"{}")), None);
    }
}
