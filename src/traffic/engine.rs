//! The one loop that sends: it walks the pacer's intended instants, picks the
//! journey for each tick, and hands the request to a task bounded by
//! `max_in_flight`. A tick that finds the bound full is dropped and counted;
//! nothing queues. Latency is measured from the intended instant, so a slow
//! target shows as latency, never as a lower offered rate.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::api::Endpoint;
use crate::client::TargetClient;
use crate::config::TrafficConfig;
use crate::metrics::{DropReason, Metrics, Outcome};
use crate::traffic::journeys::{Job, JourneyKind, Journeys};
use crate::traffic::schedule::{secs, Burst, Pacer, RateProfile, WeightedRoundRobin};

/// How early a request may leave. Tokio's timer has millisecond granularity;
/// waking up to half a millisecond early keeps the schedule delay well under a
/// millisecond instead of up to one whole tick late.
const EARLY_SLACK: Duration = Duration::from_micros(500);

/// Builds the rate profile of a traffic config. `ceiling` is the hard cap no
/// burst or ramp passes.
pub fn profile(cfg: &TrafficConfig, ceiling: f64, epoch_unix_s: f64) -> RateProfile {
    RateProfile {
        base: cfg.events_per_second,
        ramp_up_s: cfg.ramp_up.as_secs_f64(),
        burst: cfg.burst.enabled().then_some(Burst {
            every_s: cfg.burst.every.as_secs_f64(),
            duration_s: cfg.burst.duration.as_secs_f64(),
            multiplier: cfg.burst.multiplier,
        }),
        ceiling,
        epoch_unix_s,
    }
}

/// Ticks per event: reads come on top of the event POSTs, following the mix.
fn tick_scale(cfg: &TrafficConfig) -> f64 {
    let m = &cfg.mix;
    f64::from(m.patient + m.therapist + m.admin) / f64::from(m.patient.max(1))
}

struct Shared {
    client: TargetClient,
    metrics: Arc<Metrics>,
    events_url: reqwest::Url,
    /// Jobs running; `drained` is notified when it falls to zero.
    running: AtomicUsize,
    drained: Notify,
}

/// Counts a job as running for as long as it lives.
struct Running(Arc<Shared>);

impl Running {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.running.fetch_add(1, Ordering::AcqRel);
        Running(shared.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

/// A running engine. Dropping it does not stop it; call [`Engine::stop`].
pub struct Engine {
    stop: watch::Sender<bool>,
    config: watch::Sender<Arc<TrafficConfig>>,
    task: JoinHandle<()>,
    shared: Arc<Shared>,
}

impl Engine {
    pub fn spawn(
        cfg: Arc<TrafficConfig>,
        ceiling: f64,
        journeys: Journeys,
        client: TargetClient,
        metrics: Arc<Metrics>,
    ) -> Engine {
        let (stop, stop_rx) = watch::channel(false);
        let (config, config_rx) = watch::channel(cfg.clone());
        let permits = Arc::new(Semaphore::new(cfg.max_in_flight));
        let shared = Arc::new(Shared {
            client,
            metrics,
            events_url: journeys.urls().events.clone(),
            running: AtomicUsize::new(0),
            drained: Notify::new(),
        });
        let task = tokio::spawn(run_loop(
            cfg.clone(),
            ceiling,
            journeys,
            shared.clone(),
            permits,
            stop_rx,
            config_rx,
        ));
        Engine {
            stop,
            config,
            task,
            shared,
        }
    }

    /// Applies a new traffic config from now on; counters keep counting.
    pub fn update(&self, cfg: Arc<TrafficConfig>) {
        self.config.send_replace(cfg);
    }

    /// Stops scheduling, then waits up to `grace` for in-flight requests.
    /// Returns whether everything in flight finished in time.
    pub async fn stop(self, grace: Duration) -> bool {
        self.stop.send_replace(true);
        let _ = self.task.await;
        let shared = self.shared;
        let drained = async {
            loop {
                let notified = shared.drained.notified();
                if shared.running.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(grace, drained).await.is_ok()
    }

    /// Jobs still running (sent, not yet answered).
    pub fn running(&self) -> usize {
        self.shared.running.load(Ordering::Acquire)
    }
}

fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

async fn run_loop(
    mut cfg: Arc<TrafficConfig>,
    ceiling: f64,
    mut journeys: Journeys,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    mut config_rx: watch::Receiver<Arc<TrafficConfig>>,
) {
    let start = Instant::now();
    let epoch = epoch_now();
    let mut pacer = Pacer::new(profile(&cfg, ceiling, epoch), tick_scale(&cfg), 0.0);
    let mut mix = mix_of(&cfg);
    let mut capacity = cfg.max_in_flight;
    let metrics = &shared.metrics;
    loop {
        if pacer.take_changed() {
            let t = start.elapsed().as_secs_f64();
            let p = pacer.profile();
            metrics.set_target_rate(p.rate_at(t));
            metrics.set_burst_active(p.burst_active(t));
        }
        let next = pacer.next_instant();
        let intended = next.map(|t| start + secs(t));
        let wake = intended.map(|i| i.checked_sub(EARLY_SLACK).unwrap_or(i));
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            changed = config_rx.changed() => {
                if changed.is_err() { break; }
                let new = config_rx.borrow_and_update().clone();
                let now_t = start.elapsed().as_secs_f64();
                pacer.set_profile(profile(&new, ceiling, epoch), tick_scale(&new), now_t);
                mix = mix_of(&new);
                resize(&permits, &mut capacity, new.max_in_flight);
                cfg = new;
                tracing::info!(events_per_second = cfg.events_per_second, "traffic config applied");
                continue;
            }
            _ = sleep_until_opt(wake) => {}
        }
        let Some(intended) = intended else { continue };
        let kind = JourneyKind::ALL[mix.pick()];
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics.iteration_dropped(DropReason::MaxInFlight);
            continue;
        };
        let now = Instant::now();
        metrics.record_schedule_delay(now.saturating_duration_since(intended));
        let job = journeys.next(kind, intended.duration_since(start).as_secs_f64());
        // Counted before the spawn, so a stop right after sees it running.
        let running = Running::new(&shared);
        tokio::spawn(run_job(
            shared.clone(),
            job,
            intended.min(now),
            (permit, running),
        ));
    }
}

fn mix_of(cfg: &TrafficConfig) -> WeightedRoundRobin<3> {
    WeightedRoundRobin::new([cfg.mix.patient, cfg.mix.therapist, cfg.mix.admin])
}

/// Grows or shrinks the in-flight bound without waiting for requests.
fn resize(permits: &Arc<Semaphore>, capacity: &mut usize, new: usize) {
    if new > *capacity {
        permits.add_permits(new - *capacity);
    } else if new < *capacity {
        let excess = *capacity - new;
        let gone = permits.forget_permits(excess);
        if gone < excess {
            // The rest are held by requests in flight: retire them as they
            // come back, so the bound shrinks without cutting anything short.
            let permits = permits.clone();
            let rest = u32::try_from(excess - gone).unwrap_or(u32::MAX);
            tokio::spawn(async move {
                if let Ok(p) = permits.acquire_many_owned(rest).await {
                    p.forget();
                }
            });
        }
    }
    *capacity = new;
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) if at > Instant::now() => tokio::time::sleep_until(at).await,
        Some(_) => {}
        None => std::future::pending().await,
    }
}

/// Sends one job. `since` is the intended instant (or the actual send, if it
/// left early): latency counts from there, so time spent waiting for the
/// scheduler is never hidden.
async fn run_job(
    shared: Arc<Shared>,
    job: Job,
    since: Instant,
    _held: (OwnedSemaphorePermit, Running),
) {
    let metrics = &shared.metrics;
    let _in_flight = metrics.in_flight();
    match job {
        Job::Post { kind, body, .. } => {
            metrics.event_sent(kind);
            let resp = shared
                .client
                .post_json(shared.events_url.clone(), body)
                .await;
            metrics.record_request(Endpoint::EventsCreate, resp.outcome, since.elapsed());
            if let Outcome::Status(200..=299) = resp.outcome {
                metrics.event_accepted(kind);
            }
        }
        Job::Reads(steps) => {
            let mut since = since;
            for (endpoint, url) in steps {
                let resp = shared.client.get(url).await;
                metrics.record_request(endpoint, resp.outcome, since.elapsed());
                since = Instant::now();
            }
        }
    }
}
