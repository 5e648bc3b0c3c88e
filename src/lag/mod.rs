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
//! Each probe event is one run (`run.rs`): it posts the event and polls on
//! a schedule that does not wait for the round trip; `estimate.rs` turns
//! the polls into a lag sample and its error bar, and `server_clock.rs`
//! reads the service's own timestamps where it has them. Every
//! `lag.audit.interval`, `audit.rs` re-reads a sample of each audited
//! probe's old, confirmed events to catch read models that lose them later.
//! The README's
//! "Projection lag and event loss" explains the measurement for operators.

mod audit;
mod audit_metrics;
pub mod batch;
mod batch_metrics;
pub mod estimate;
pub mod marker;
mod metrics;
pub mod probe;
mod run;
pub mod server_clock;
mod status;
mod tracker;
pub mod visibility;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::TargetClient;
pub use crate::config::lag::{
    AuditConfig, LagConfig, ProbeConfig, ProbesConfig, Projection, RuleKind, ServerClockConfig,
};
use crate::status::StatusSection;
use crate::traffic::gate::Gate;
pub use audit_metrics::{AuditMetrics, AuditSnapshot};
pub use batch_metrics::{BatchMetrics, BatchSample};
pub use metrics::{Failure, LagMetrics, LagRecord, LagSample, ProjectionSnapshot, LAG_BUCKETS};
use probe::{Probe, Setup};
use status::LagStatus;
use tracker::Tracker;
use visibility::ReadFailure;

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
    ServerClock,
    AuditRead(ReadFailure),
    /// A confirmed event's read lacked the version its audit route needs.
    AuditVersion,
}

impl Once {
    const COUNT: usize = 2 * ReadFailure::ALL.len() + 5;

    fn index(self) -> usize {
        match self {
            Once::Read(f) => f.index(),
            Once::PostTransport => ReadFailure::ALL.len(),
            Once::PostRejected => ReadFailure::ALL.len() + 1,
            Once::Cleanup => ReadFailure::ALL.len() + 2,
            Once::ServerClock => ReadFailure::ALL.len() + 3,
            Once::AuditRead(f) => ReadFailure::ALL.len() + 4 + f.index(),
            Once::AuditVersion => 2 * ReadFailure::ALL.len() + 4,
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
    weak_share: f64,
    late_window: Duration,
    late_poll_interval: Duration,
}

/// One per start of the probes, behind an `Arc`: every run of every probe
/// reads it, none writes it (the once-per-kind log flags aside).
#[derive(Debug)]
struct ProbeContext {
    client: TargetClient,
    metrics: LagMetrics,
    /// The operator's kill switch stops probes too: a paused canary sends
    /// nothing at all.
    gate: Arc<Gate>,
    timing: Timing,
    audit: AuditConfig,
    logged: [AtomicBool; Once::COUNT],
}

impl ProbeContext {
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

/// Recent round-trip floors of a probe's POSTs and reads.
#[derive(Debug, Default)]
struct RttFloors {
    post: estimate::Floor,
    read: estimate::Floor,
}

#[derive(Debug)]
struct ProbeState {
    probe: Probe,
    tracker: Tracker,
    floors: parking_lot::Mutex<RttFloors>,
    /// The probe's bound on polls in flight, all its events together
    /// (`lag.poll_max_in_flight`): a hanging target holds at most this many
    /// reads open per probe, however many runs are waiting on it.
    poll_slots: Arc<Semaphore>,
    /// An `increment` probe runs one event at a time: a second event in
    /// flight would move the same number.
    busy: AtomicBool,
    /// The confirmed events the integrity audit may re-read; `None` when
    /// the probe is not audited.
    audit: Option<audit::AuditMemory>,
}

impl ProbeState {
    fn serial(&self) -> bool {
        self.probe.rule.kind == RuleKind::Increment
    }
}

/// The running probes. Stop them with [`LagProbes::stop`].
#[derive(Debug)]
pub struct LagProbes {
    stop: CancellationToken,
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
        stop: CancellationToken,
    ) -> Result<LagProbes, LagError> {
        let mut probes = Vec::new();
        for (p, pcfg) in cfg.probes.iter() {
            metrics.set_enabled(p, pcfg.enabled);
            if !pcfg.enabled {
                continue;
            }
            let probe = Probe::new(p, pcfg, cfg, &setup).map_err(|source| LagError::Route {
                probe: p.as_str(),
                source,
            })?;
            let audited = cfg.audit.enabled && probe.audited();
            probes.push(Arc::new(ProbeState {
                audit: audited.then(|| audit::AuditMemory::new(cfg.audit.max_remembered)),
                tracker: Tracker::new(probe.ordered()),
                floors: parking_lot::Mutex::new(RttFloors::default()),
                poll_slots: Arc::new(Semaphore::new(cfg.poll_max_in_flight)),
                probe,
                busy: AtomicBool::new(false),
            }));
        }
        let batch = if cfg.probes.batch.enabled {
            let probe = batch::BatchProbe::new(&cfg.probes.batch, &setup).map_err(|source| {
                LagError::Route {
                    probe: "batch",
                    source,
                }
            })?;
            Some(Arc::new(batch::BatchState::new(
                probe,
                cfg.poll_max_in_flight,
            )))
        } else {
            None
        };
        let shared = Arc::new(ProbeContext {
            client,
            metrics: metrics.clone(),
            gate,
            timing: Timing {
                interval: cfg.interval,
                timeout: cfg.timeout,
                poll_initial: cfg.poll_initial,
                poll_backoff: cfg.poll_backoff,
                poll_max: cfg.poll_max,
                weak_share: cfg.weak_share,
                late_window: cfg.late_window,
                late_poll_interval: cfg.late_poll_interval,
            },
            audit: cfg.audit.clone(),
            logged: std::array::from_fn(|_| AtomicBool::new(false)),
        });
        tracing::info!(
            probes = ?probes.iter().map(|p| p.probe.projection.as_str()).collect::<Vec<_>>(),
            batch = batch.as_ref().map(|b| b.probe.size),
            audited = ?probes
                .iter()
                .filter(|p| p.audit.is_some())
                .map(|p| p.probe.projection.as_str())
                .collect::<Vec<_>>(),
            interval = ?cfg.interval,
            timeout = ?cfg.timeout,
            run_id = format_args!("{:016x}", setup.run.0),
            "lag probes running"
        );
        let task = tokio::spawn(schedule(
            shared,
            probes,
            batch,
            cfg.max_in_flight,
            stop.clone(),
        ));
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
    pub fn status(&self) -> Arc<dyn StatusSection> {
        self.status.clone()
    }

    /// Stops scheduling and cancels the runs in progress: their events are
    /// neither lost nor seen, just no longer watched.
    pub async fn stop(self) {
        self.stop.cancel();
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
    shared: Arc<ProbeContext>,
    probes: Vec<Arc<ProbeState>>,
    batch: Option<Arc<batch::BatchState>>,
    max_in_flight: usize,
    stop: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let mut runs = JoinSet::new();
    let t = &shared.timing;
    let start = Instant::now();
    // Spread the probes' first ticks over one interval, so their reads do
    // not all land at the same instant.
    let n = (probes.len() + usize::from(batch.is_some())).max(1) as u32;
    let mut due: Vec<Instant> = (0..probes.len())
        .map(|k| start + t.interval * k as u32 / n)
        .collect();
    let mut batch_due = start + t.interval * probes.len() as u32 / n;
    let mut next_late = start + t.late_poll_interval;
    let mut next_prune = start + PRUNE_EVERY;
    let mut next_audit = start + shared.audit.interval;
    let audited = probes.iter().any(|p| p.audit.is_some());
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
            if !launch(
                &mut runs,
                &permits,
                &shared,
                run::run(shared.clone(), p.clone()),
            ) {
                p.busy.store(false, Ordering::Release);
                shared.metrics.skipped(p.probe.projection);
            }
        }
        if let Some(b) = batch.as_ref().filter(|_| now >= batch_due) {
            batch_due = advance(batch_due, b.probe.interval, now);
            if !shared.gate.is_paused()
                && !launch(
                    &mut runs,
                    &permits,
                    &shared,
                    batch::run(shared.clone(), b.clone()),
                )
            {
                shared.metrics.batch().skipped();
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
                            run::late_watch(shared.clone(), p.clone()),
                        );
                    }
                }
            }
        }
        if audited && now >= next_audit {
            next_audit = advance(next_audit, shared.audit.interval, now);
            if !shared.gate.is_paused() {
                for p in probes.iter().filter(|p| p.audit.is_some()) {
                    // A full bound skips this audit; the next one comes.
                    launch(
                        &mut runs,
                        &permits,
                        &shared,
                        audit::run(shared.clone(), p.clone()),
                    );
                }
            }
        }
        if now >= next_prune {
            next_prune = advance(next_prune, PRUNE_EVERY, now);
            if let Some(b) = &batch {
                b.tracker.prune(now, memory);
            }
            for p in &probes {
                let expired = p.tracker.prune(now, memory);
                shared
                    .metrics
                    .set_tracked(p.probe.projection, p.tracker.len());
                if let Some(memory) = &p.audit {
                    shared
                        .metrics
                        .audit()
                        .set_remembered(p.probe.projection, memory.len());
                }
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
                        run::cleanup(shared.clone(), p.clone(), marker),
                    );
                }
            }
        }
        while runs.try_join_next().is_some() {}
        let wake = due
            .iter()
            .copied()
            .chain([next_late, next_prune])
            .chain(audited.then_some(next_audit))
            .chain(batch.as_ref().map(|_| batch_due))
            .min()
            .unwrap_or(next_prune);
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            () = stop.cancelled() => break,
        }
    }
    runs.abort_all();
    while runs.join_next().await.is_some() {}
}

/// Spawns `task` if a permit is free; `false` when the bound is full.
fn launch(
    runs: &mut JoinSet<()>,
    permits: &Arc<Semaphore>,
    shared: &ProbeContext,
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
}
