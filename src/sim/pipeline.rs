//! The asynchronous apply pipeline: a bounded queue of accepted events, a
//! pool of processors applying them in batches (size or timeout, like the
//! real service's Broadway pipeline), and the visibility timer that records
//! the true projection lag the moment each event becomes visible.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::PipelineConfig;
use super::envelope::{now_ms, Event};
use super::faults::{FaultState, Faults};
use super::store::Store;
use super::truth::{BatchWatch, Truth};

/// Pending lag observations kept for delayed events; beyond this (only with
/// huge delays at high rates) lags are observed at apply time instead, with
/// the same value, so memory stays bounded.
const MAX_PENDING_VISIBILITY: usize = 1_000_000;

/// One accepted event waiting to be applied.
pub struct Queued {
    pub event: Event,
    /// When the 201 was produced (just before the handler returns it).
    pub accepted_at: Instant,
    pub duplicate: bool,
    /// The `/events/batch` request it came with, whose whole visibility
    /// is part of the truth.
    pub batch: Option<Arc<BatchWatch>>,
}

/// One event becoming visible: what the truth records at that instant.
struct Visible {
    at: Instant,
    lag: f64,
    id: Arc<str>,
    batch: Option<Arc<BatchWatch>>,
}

impl Visible {
    fn record(self, truth: &Truth) {
        truth.observe_lag(&self.id, self.lag);
        if let Some(b) = &self.batch {
            truth.batch_event_visible(b, self.lag);
        }
    }
}

/// Ordered by instant only (the heap's order).
impl Ord for Visible {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.at.cmp(&other.at)
    }
}

impl PartialOrd for Visible {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Visible {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl Eq for Visible {}

/// The ingestion side of the queue: one bounded partition per processor,
/// chosen by patient, so one patient's events are applied in the order they
/// were accepted (Broadway's `partition_by`).
#[derive(Clone)]
pub struct Pipeline {
    partitions: Arc<[mpsc::Sender<Queued>]>,
    hasher: std::collections::hash_map::RandomState,
}

/// The queue is full: answer 503 with `Retry-After`.
#[derive(Debug)]
pub struct QueueFull;

impl Pipeline {
    fn partition(&self, patient: &str) -> &mpsc::Sender<Queued> {
        use std::hash::BuildHasher;
        let i = (self.hasher.hash_one(patient) as usize) % self.partitions.len();
        &self.partitions[i]
    }

    pub fn try_enqueue(&self, q: Queued) -> Result<(), QueueFull> {
        self.partition(&q.event.patient_id)
            .try_send(q)
            .map_err(|_| QueueFull)
    }

    /// All or nothing: either every event of a batch (one patient) is queued
    /// or none is.
    pub fn try_enqueue_all(&self, items: Vec<Queued>) -> Result<(), QueueFull> {
        let Some(first) = items.first() else {
            return Ok(());
        };
        let tx = self.partition(&first.event.patient_id);
        let permits = tx.try_reserve_many(items.len()).map_err(|_| QueueFull)?;
        for (permit, q) in permits.zip(items) {
            permit.send(q);
        }
        Ok(())
    }

    pub fn depth(&self) -> usize {
        self.partitions
            .iter()
            .map(|tx| tx.max_capacity() - tx.capacity())
            .sum()
    }

    pub fn capacity(&self) -> usize {
        self.partitions.iter().map(mpsc::Sender::max_capacity).sum()
    }
}

/// Everything a processor needs.
struct Ctx {
    cfg: PipelineConfig,
    store: Arc<Store>,
    faults: Arc<FaultState>,
    truth: Arc<Truth>,
    visibility: mpsc::UnboundedSender<Visible>,
}

/// Starts the processors and the visibility timer; they stop when
/// `shutdown` is cancelled.
pub fn spawn(
    cfg: &PipelineConfig,
    store: Arc<Store>,
    faults: Arc<FaultState>,
    truth: Arc<Truth>,
    shutdown: CancellationToken,
) -> (Pipeline, Vec<JoinHandle<()>>) {
    let (vis_tx, vis_rx) = mpsc::unbounded_channel();
    let ctx = Arc::new(Ctx {
        cfg: cfg.clone(),
        store,
        faults,
        truth: truth.clone(),
        visibility: vis_tx,
    });
    // The total capacity is split evenly; the remainder goes to the first
    // partitions so the sum is exactly `queue_capacity`.
    let n = cfg.processors.min(cfg.queue_capacity).max(1);
    let mut partitions = Vec::with_capacity(n);
    let mut tasks = Vec::with_capacity(n + 1);
    for i in 0..n {
        let cap = cfg.queue_capacity / n + usize::from(i < cfg.queue_capacity % n);
        let (tx, rx) = mpsc::channel(cap);
        partitions.push(tx);
        tasks.push(tokio::spawn(processor(ctx.clone(), rx, shutdown.clone())));
    }
    tasks.push(tokio::spawn(visibility_timer(vis_rx, truth, shutdown)));
    let pipeline = Pipeline {
        partitions: partitions.into(),
        hasher: std::collections::hash_map::RandomState::new(),
    };
    (pipeline, tasks)
}

/// Resolves when the projector is not stalled; `false` on shutdown.
async fn wait_unstalled(
    faults: &mut watch::Receiver<Arc<Faults>>,
    shutdown: &CancellationToken,
) -> bool {
    loop {
        if shutdown.is_cancelled() {
            return false;
        }
        if !faults.borrow_and_update().stall_projector {
            return true;
        }
        tokio::select! {
            r = faults.changed() => if r.is_err() { return false },
            () = shutdown.cancelled() => return false,
        }
    }
}

async fn processor(ctx: Arc<Ctx>, mut rx: mpsc::Receiver<Queued>, shutdown: CancellationToken) {
    let mut faults = ctx.faults.subscribe();
    let mut batch: Vec<Queued> = Vec::with_capacity(ctx.cfg.batch_size);
    loop {
        if !wait_unstalled(&mut faults, &shutdown).await {
            return;
        }
        let started;
        {
            let n = tokio::select! {
                n = rx.recv_many(&mut batch, ctx.cfg.batch_size) => n,
                () = shutdown.cancelled() => return,
            };
            if n == 0 {
                return; // every sender is gone
            }
            started = Instant::now();
            let deadline = tokio::time::Instant::from_std(started + ctx.cfg.batch_timeout);
            while batch.len() < ctx.cfg.batch_size {
                let room = ctx.cfg.batch_size - batch.len();
                match tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, room)).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
        // A stall that began while gathering still holds the batch back.
        if !wait_unstalled(&mut faults, &shutdown).await {
            return;
        }
        // A capped pipeline takes its share of time for the batch.
        let cap = ctx.faults.load().apply_events_per_second;
        if let Some(at) = ctx.faults.apply_slot(cap, batch.len()) {
            tokio::select! {
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
                () = shutdown.cancelled() => return,
            }
        }
        apply_batch(&ctx, &mut batch);
        ctx.truth
            .batch_duration
            .observe(started.elapsed().as_secs_f64());
    }
}

fn apply_batch(ctx: &Ctx, batch: &mut Vec<Queued>) {
    let delay = Duration::from_millis(ctx.faults.load().projection_delay_ms);
    let wall_ms = now_ms();
    for q in batch.drain(..) {
        let now = Instant::now();
        let visible_at = ctx.store.apply(&q.event, delay, q.duplicate, now, wall_ms);
        ctx.truth.applied.inc();
        if q.duplicate {
            ctx.truth.duplicated.inc();
        }
        let v = Visible {
            at: visible_at,
            lag: visible_at
                .saturating_duration_since(q.accepted_at)
                .as_secs_f64(),
            id: q.event.id.clone(),
            batch: q.batch,
        };
        if visible_at <= now {
            // Visible the moment it was applied.
            v.record(&ctx.truth);
        } else if let Err(e) = ctx.visibility.send(v) {
            e.0.record(&ctx.truth);
        }
    }
}

/// Observes each delayed event's lag when it becomes visible, so a scrape
/// never counts an event a reader could not yet see.
async fn visibility_timer(
    mut rx: mpsc::UnboundedReceiver<Visible>,
    truth: Arc<Truth>,
    shutdown: CancellationToken,
) {
    let mut pending: BinaryHeap<Reverse<Visible>> = BinaryHeap::new();
    loop {
        let next = pending.peek().map(|Reverse(v)| v.at);
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            msg = rx.recv() => {
                let Some(v) = msg else { return };
                if pending.len() >= MAX_PENDING_VISIBILITY {
                    v.record(&truth);
                    continue;
                }
                pending.push(Reverse(v));
            }
            () = sleep => {
                let now = Instant::now();
                while pending.peek().is_some_and(|Reverse(v)| v.at <= now) {
                    if let Some(Reverse(v)) = pending.pop() {
                        v.record(&truth);
                    }
                }
            }
        }
    }
}
