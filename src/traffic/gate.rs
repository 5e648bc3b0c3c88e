//! Respect for the target, decided per tick with atomics only: the operator's
//! kill switch (pause), `Retry-After` holds per traffic class after a 429, and
//! a circuit breaker that stops hammering a target that is down, letting only
//! a trickle of trial requests through until one succeeds.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::Outcome;
use crate::config::CircuitBreakerConfig;
use crate::metrics::{DropReason, Metrics};

/// When a 429 carries no usable `Retry-After`, hold the class this long.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Never hold a class longer than this, whatever the target asks.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Whether a tick may go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Send,
    Drop(DropReason),
}

pub struct Gate {
    base: Instant,
    paused: AtomicBool,
    /// Per traffic class: nanoseconds since `base` until which 429 holds it.
    blocked_until: [AtomicU64; 3],
    breaker_enabled: AtomicBool,
    threshold: AtomicU32,
    trial_ns: AtomicU64,
    failures: AtomicU32,
    open: AtomicBool,
    next_trial: AtomicU64,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("paused", &self.is_paused())
            .field("circuit_open", &self.circuit_open())
            .finish_non_exhaustive()
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Gate {
    pub fn new(cfg: &CircuitBreakerConfig, metrics: Arc<Metrics>) -> Self {
        let gate = Gate {
            base: Instant::now(),
            paused: AtomicBool::new(false),
            blocked_until: Default::default(),
            breaker_enabled: AtomicBool::new(cfg.enabled),
            threshold: AtomicU32::new(cfg.failure_threshold),
            trial_ns: AtomicU64::new(nanos(cfg.trial_interval)),
            failures: AtomicU32::new(0),
            open: AtomicBool::new(false),
            next_trial: AtomicU64::new(0),
            metrics,
        };
        gate.metrics.ops.paused.set(0);
        gate.metrics.ops.circuit_open.set(0);
        gate
    }

    fn now_ns(&self, now: Instant) -> u64 {
        nanos(now.saturating_duration_since(self.base))
    }

    /// Applies new breaker settings (a reload); state is kept.
    pub fn configure(&self, cfg: &CircuitBreakerConfig) {
        self.breaker_enabled.store(cfg.enabled, Ordering::Release);
        self.threshold
            .store(cfg.failure_threshold, Ordering::Release);
        self.trial_ns
            .store(nanos(cfg.trial_interval), Ordering::Release);
        if !cfg.enabled {
            self.close();
        }
    }

    pub fn pause(&self) {
        if !self.paused.swap(true, Ordering::AcqRel) {
            self.metrics.ops.paused.set(1);
            tracing::warn!("traffic paused by the operator (POST /-/resume to resume)");
        }
    }

    /// Stops traffic and probe launches at the end of a one-shot run, so the
    /// probe events already out can resolve. Not an operator's pause: the
    /// `paused` gauge stays 0 (the final metrics are pushed as they are).
    pub fn stop_for_drain(&self) {
        if !self.paused.swap(true, Ordering::AcqRel) {
            tracing::info!("run over: traffic stopped, waiting for probe events still out");
        }
    }

    pub fn resume(&self) {
        if self.paused.swap(false, Ordering::AcqRel) {
            self.metrics.ops.paused.set(0);
            tracing::info!("traffic resumed");
        }
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    pub fn circuit_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Decides one tick of traffic class `class`.
    pub fn admit(&self, class: usize, now: Instant) -> Admit {
        if self.is_paused() {
            return Admit::Drop(DropReason::Paused);
        }
        let t = self.now_ns(now);
        if self
            .blocked_until
            .get(class)
            .is_some_and(|b| t < b.load(Ordering::Acquire))
        {
            return Admit::Drop(DropReason::RateLimited);
        }
        if self.circuit_open() {
            // One trial per interval: whoever moves `next_trial` sends it.
            let next = self.next_trial.load(Ordering::Acquire);
            let step = self.trial_ns.load(Ordering::Acquire);
            if t >= next
                && self
                    .next_trial
                    .compare_exchange(next, t + step, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                return Admit::Send;
            }
            return Admit::Drop(DropReason::CircuitOpen);
        }
        Admit::Send
    }

    /// Learns from the answer to a request of traffic class `class`.
    pub fn report(&self, class: usize, outcome: Outcome, retry_after: Option<Duration>) {
        match outcome {
            Outcome::Status(429) => {
                self.hold(class, retry_after.unwrap_or(DEFAULT_RETRY_AFTER));
                self.success();
            }
            Outcome::Timeout
            | Outcome::ConnectError
            | Outcome::TlsError
            | Outcome::IoError
            | Outcome::Status(502..=504) => self.failure(),
            // The target answered; only the canary refused to read it all.
            Outcome::Status(_) | Outcome::BodyTooLarge => self.success(),
        }
    }

    fn hold(&self, class: usize, wait: Duration) {
        let Some(slot) = self.blocked_until.get(class) else {
            return;
        };
        let now = self.now_ns(Instant::now());
        let until = now + nanos(wait.min(MAX_RETRY_AFTER));
        let prev = slot.fetch_max(until, Ordering::AcqRel);
        if until > prev {
            let added = until - prev.max(now);
            self.metrics
                .ops
                .rate_limited(class, Duration::from_nanos(added).as_secs_f64());
        }
    }

    fn failure(&self) {
        if !self.breaker_enabled.load(Ordering::Acquire) {
            return;
        }
        let n = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= self.threshold.load(Ordering::Acquire) && !self.open.swap(true, Ordering::AcqRel) {
            let t = self.now_ns(Instant::now());
            self.next_trial
                .store(t + self.trial_ns.load(Ordering::Acquire), Ordering::Release);
            self.metrics.ops.circuit_open.set(1);
            tracing::warn!(
                consecutive_failures = n,
                "circuit breaker open: the target looks down; sending only trial requests"
            );
        }
    }

    fn success(&self) {
        self.failures.store(0, Ordering::Release);
        if self.open.load(Ordering::Acquire) {
            self.close();
            tracing::info!("circuit breaker closed: the target answers again");
        }
    }

    fn close(&self) {
        self.open.store(false, Ordering::Release);
        self.failures.store(0, Ordering::Release);
        self.metrics.ops.circuit_open.set(0);
    }
}

impl crate::reload::Apply for Gate {
    fn apply(&self, cfg: &crate::config::Config) {
        self.configure(&cfg.circuit_breaker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::BuildInfo;

    fn gate(threshold: u32, trial: Duration) -> Gate {
        let metrics = Arc::new(Metrics::new(BuildInfo {
            version: "t",
            revision: "t",
        }));
        let cfg = CircuitBreakerConfig {
            enabled: true,
            failure_threshold: threshold,
            trial_interval: trial,
        };
        Gate::new(&cfg, metrics)
    }

    #[test]
    fn pause_drops_everything_until_resume() {
        let g = gate(3, Duration::from_secs(1));
        g.pause();
        assert_eq!(g.admit(0, Instant::now()), Admit::Drop(DropReason::Paused));
        assert_eq!(g.metrics.ops.paused.get(), 1);
        g.resume();
        assert_eq!(g.admit(0, Instant::now()), Admit::Send);
    }

    #[test]
    fn retry_after_holds_only_its_class_and_counts_the_wait() {
        let g = gate(3, Duration::from_secs(1));
        g.report(1, Outcome::Status(429), Some(Duration::from_secs(2)));
        let now = Instant::now();
        assert_eq!(g.admit(1, now), Admit::Drop(DropReason::RateLimited));
        assert_eq!(g.admit(0, now), Admit::Send);
        assert_eq!(g.admit(1, now + Duration::from_millis(2100)), Admit::Send);
        let text = g.metrics.encode();
        assert!(
            text.contains("rehab_canary_rate_limited_total{class=\"therapist\"} 1"),
            "{text}"
        );
        // A second 429 with a shorter wait does not shorten or double count.
        g.report(1, Outcome::Status(429), Some(Duration::from_millis(10)));
        assert_eq!(
            g.admit(1, Instant::now()),
            Admit::Drop(DropReason::RateLimited)
        );
    }

    #[test]
    fn breaker_opens_after_consecutive_failures_trickles_and_closes() {
        let g = gate(3, Duration::from_millis(100));
        for _ in 0..2 {
            g.report(0, Outcome::ConnectError, None);
        }
        g.report(0, Outcome::Status(201), None); // resets the streak
        for _ in 0..2 {
            g.report(0, Outcome::Timeout, None);
        }
        assert!(!g.circuit_open());
        g.report(0, Outcome::Status(503), None);
        assert!(g.circuit_open());
        assert_eq!(g.metrics.ops.circuit_open.get(), 1);
        let t0 = Instant::now();
        assert_eq!(g.admit(0, t0), Admit::Drop(DropReason::CircuitOpen));
        // After the trial interval exactly one trial goes out.
        let later = t0 + Duration::from_millis(150);
        assert_eq!(g.admit(0, later), Admit::Send);
        assert_eq!(g.admit(0, later), Admit::Drop(DropReason::CircuitOpen));
        g.report(0, Outcome::Status(201), None);
        assert!(!g.circuit_open());
        assert_eq!(g.metrics.ops.circuit_open.get(), 0);
    }

    #[test]
    fn application_errors_do_not_trip_the_breaker() {
        let g = gate(2, Duration::from_secs(1));
        for _ in 0..10 {
            g.report(0, Outcome::Status(500), None);
            g.report(0, Outcome::Status(401), None);
        }
        assert!(!g.circuit_open());
    }
}
