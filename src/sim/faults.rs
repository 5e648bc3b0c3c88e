//! Fault injection: the fault set, partial updates from `PUT /sim/faults`, and
//! the cheap per-request dice rolls the HTTP layer and the pipeline consult.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::error::SimError;

/// Upper bound for every `*_ms` delay (latency, jitter, response delay and
/// jitter, projection delay): ten
/// minutes is already far past any useful staging scenario, and a bound keeps
/// the delayed-visibility queue finite.
pub const MAX_DELAY_MS: u64 = 600_000;

/// Largest sized huge body (the endless one has no size): 1 GiB.
pub const MAX_HUGE_BODY_BYTES: u64 = 1 << 30;

/// The active fault set. All fields default to "healthy".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every API response (before the handler runs, so it never
    /// distorts the projection-lag ground truth).
    pub latency_ms: u64,
    /// Uniform extra latency in `0..=jitter_ms` on top of `latency_ms`.
    pub jitter_ms: u64,
    /// Added to every API answer *after* the handler has committed the event
    /// or taken the read's snapshot: the response path of a slow service or
    /// network. Unlike `latency_ms` it moves the 201 and every read's answer
    /// away from the instant they describe, which is what strains a
    /// client-side lag estimate. The ground truth is unaffected.
    pub response_delay_ms: u64,
    /// Uniform extra response-path delay in `0..=response_jitter_ms` on top
    /// of `response_delay_ms`, drawn per answer (so answers reorder).
    pub response_jitter_ms: u64,
    /// Fraction of API requests answered 500.
    pub error_rate: f64,
    /// Fraction of API requests answered 429 with `Retry-After: retry_after_s`.
    pub rate_limit_rate: f64,
    /// `Retry-After` seconds sent with injected 429s.
    pub retry_after_s: u64,
    /// Fraction of API requests whose connection is closed without a response.
    pub reset_rate: f64,
    /// Fraction of successful read (GET) responses replaced by a non-JSON body.
    pub garbage_rate: f64,
    /// Fraction of successful read (GET) responses replaced by a huge JSON
    /// body: a broken read model dumping a whole table, or a proxy streaming
    /// without end.
    pub huge_body_rate: f64,
    /// The huge body's size, sent with a `Content-Length`; 0 streams a
    /// chunked JSON array that never ends.
    pub huge_body_bytes: u64,
    /// Fraction of accepted events answered 201 but never applied.
    pub drop_rate: f64,
    /// Fraction of accepted events applied twice.
    pub duplicate_rate: f64,
    /// Extra delay between applying an event and it becoming visible in reads.
    pub projection_delay_ms: u64,
    /// While true, events are accepted but no processor applies any.
    pub stall_projector: bool,
    /// Ingestion capacity in events per second (0 = unlimited); beyond it, 503.
    pub max_events_per_second: u64,
    /// What the processors apply together, in events per second (0 =
    /// unlimited): offered more, the queue grows (the service's queue depth
    /// rises with the lag it causes) until it is full and ingestion answers
    /// 503 with `Retry-After`, Broadway's backpressure.
    pub apply_events_per_second: u64,
}

/// A partial fault update: a field left out keeps its value.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsPatch {
    pub latency_ms: Option<u64>,
    pub jitter_ms: Option<u64>,
    pub response_delay_ms: Option<u64>,
    pub response_jitter_ms: Option<u64>,
    pub error_rate: Option<f64>,
    pub rate_limit_rate: Option<f64>,
    pub retry_after_s: Option<u64>,
    pub reset_rate: Option<f64>,
    pub garbage_rate: Option<f64>,
    pub huge_body_rate: Option<f64>,
    pub huge_body_bytes: Option<u64>,
    pub drop_rate: Option<f64>,
    pub duplicate_rate: Option<f64>,
    pub projection_delay_ms: Option<u64>,
    pub stall_projector: Option<bool>,
    pub max_events_per_second: Option<u64>,
    pub apply_events_per_second: Option<u64>,
}

impl FaultsPatch {
    /// The fault set after applying this patch to `base`.
    pub fn apply_to(&self, base: &Faults) -> Faults {
        Faults {
            latency_ms: self.latency_ms.unwrap_or(base.latency_ms),
            jitter_ms: self.jitter_ms.unwrap_or(base.jitter_ms),
            response_delay_ms: self.response_delay_ms.unwrap_or(base.response_delay_ms),
            response_jitter_ms: self.response_jitter_ms.unwrap_or(base.response_jitter_ms),
            error_rate: self.error_rate.unwrap_or(base.error_rate),
            rate_limit_rate: self.rate_limit_rate.unwrap_or(base.rate_limit_rate),
            retry_after_s: self.retry_after_s.unwrap_or(base.retry_after_s),
            reset_rate: self.reset_rate.unwrap_or(base.reset_rate),
            garbage_rate: self.garbage_rate.unwrap_or(base.garbage_rate),
            huge_body_rate: self.huge_body_rate.unwrap_or(base.huge_body_rate),
            huge_body_bytes: self.huge_body_bytes.unwrap_or(base.huge_body_bytes),
            drop_rate: self.drop_rate.unwrap_or(base.drop_rate),
            duplicate_rate: self.duplicate_rate.unwrap_or(base.duplicate_rate),
            projection_delay_ms: self.projection_delay_ms.unwrap_or(base.projection_delay_ms),
            stall_projector: self.stall_projector.unwrap_or(base.stall_projector),
            max_events_per_second: self
                .max_events_per_second
                .unwrap_or(base.max_events_per_second),
            apply_events_per_second: self
                .apply_events_per_second
                .unwrap_or(base.apply_events_per_second),
        }
    }
}

impl Faults {
    /// Checks ranges; `prefix` is the config path (`faults.`) or empty for the
    /// HTTP control plane, so the error names the key as the user wrote it.
    pub fn validate(&self, prefix: &str) -> Result<(), SimError> {
        let rates = [
            ("error_rate", self.error_rate),
            ("rate_limit_rate", self.rate_limit_rate),
            ("reset_rate", self.reset_rate),
            ("garbage_rate", self.garbage_rate),
            ("huge_body_rate", self.huge_body_rate),
            ("drop_rate", self.drop_rate),
            ("duplicate_rate", self.duplicate_rate),
        ];
        for (name, v) in rates {
            if !(0.0..=1.0).contains(&v) {
                return Err(SimError::config(
                    format!("{prefix}{name}"),
                    format!("must be a fraction between 0 and 1, got {v}"),
                ));
            }
        }
        let delays = [
            ("latency_ms", self.latency_ms),
            ("jitter_ms", self.jitter_ms),
            ("response_delay_ms", self.response_delay_ms),
            ("response_jitter_ms", self.response_jitter_ms),
            ("projection_delay_ms", self.projection_delay_ms),
        ];
        for (name, v) in delays {
            if v > MAX_DELAY_MS {
                return Err(SimError::config(
                    format!("{prefix}{name}"),
                    format!("must be at most {MAX_DELAY_MS}, got {v}"),
                ));
            }
        }
        if self.huge_body_bytes > MAX_HUGE_BODY_BYTES {
            return Err(SimError::config(
                format!("{prefix}huge_body_bytes"),
                format!("must be at most {MAX_HUGE_BODY_BYTES} (0 = endless)"),
            ));
        }
        if self.retry_after_s > 86_400 {
            return Err(SimError::config(
                format!("{prefix}retry_after_s"),
                "must be at most 86400",
            ));
        }
        Ok(())
    }
}

/// `true` with probability `rate`; never consults the RNG for 0 or 1 so the
/// healthy path costs nothing and 1.0 is exact.
pub fn roll(rate: f64) -> bool {
    if rate <= 0.0 {
        false
    } else if rate >= 1.0 {
        true
    } else {
        rand::random::<f64>() < rate
    }
}

/// The live fault set, shared by the HTTP layer and the processors.
///
/// Reads on the hot path go through `ArcSwap` (no lock); processors wait on
/// the `watch` channel so that un-stalling wakes them at once.
pub struct FaultState {
    current: ArcSwap<Faults>,
    changed: watch::Sender<Arc<Faults>>,
    bucket: Mutex<TokenBucket>,
    /// When the processors' shared capacity is next free
    /// (`apply_events_per_second`).
    apply_free: Mutex<Instant>,
}

impl FaultState {
    pub fn new(initial: Faults) -> Self {
        let initial = Arc::new(initial);
        let (changed, _) = watch::channel(initial.clone());
        FaultState {
            current: ArcSwap::new(initial),
            changed,
            bucket: Mutex::new(TokenBucket::new(Instant::now())),
            apply_free: Mutex::new(Instant::now()),
        }
    }

    pub fn get(&self) -> Arc<Faults> {
        self.current.load_full()
    }

    /// Cheap borrow for the hot path.
    pub fn load(&self) -> arc_swap::Guard<Arc<Faults>> {
        self.current.load()
    }

    pub fn set(&self, f: Faults) {
        let f = Arc::new(f);
        self.current.store(f.clone());
        self.changed.send_replace(f);
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Faults>> {
        self.changed.subscribe()
    }

    /// Takes `n` events' worth of ingestion capacity; `false` means over the
    /// `max_events_per_second` limit. Unlimited when the limit is 0.
    pub fn take_capacity(&self, limit: u64, n: u64) -> bool {
        if limit == 0 {
            return true;
        }
        self.bucket.lock().take(limit, n, Instant::now())
    }

    /// When a batch of `n` events may be applied under
    /// `apply_events_per_second`: the processors share one schedule, so
    /// together they never apply faster. `None` when unlimited.
    pub fn apply_slot(&self, limit: u64, n: usize) -> Option<Instant> {
        if limit == 0 {
            return None;
        }
        let mut free = self.apply_free.lock();
        let start = (*free).max(Instant::now());
        let done = start + Duration::from_secs_f64(n as f64 / limit as f64);
        *free = done;
        Some(done)
    }

    /// Extra latency to inject before one request's handler (`None` when
    /// healthy).
    pub fn latency(f: &Faults) -> Option<Duration> {
        delay(f.latency_ms, f.jitter_ms)
    }

    /// Extra delay to inject after one request's handler (`None` when
    /// healthy).
    pub fn response_delay(f: &Faults) -> Option<Duration> {
        delay(f.response_delay_ms, f.response_jitter_ms)
    }
}

/// `base` plus a uniform draw in `0..=jitter` milliseconds.
fn delay(base: u64, jitter: u64) -> Option<Duration> {
    if base == 0 && jitter == 0 {
        return None;
    }
    let extra = if jitter > 0 {
        rand::random_range(0..=jitter)
    } else {
        0
    };
    // Each is at most MAX_DELAY_MS (validated), so the sum cannot overflow.
    Some(Duration::from_millis(base + extra))
}

/// A token bucket holding at most one second of capacity, so a burst can
/// never exceed the configured rate by more than one second's worth.
#[derive(Debug)]
struct TokenBucket {
    tokens: f64,
    last: Instant,
    limit: u64,
}

impl TokenBucket {
    fn new(now: Instant) -> Self {
        TokenBucket {
            tokens: 0.0,
            last: now,
            limit: 0,
        }
    }

    fn take(&mut self, limit: u64, n: u64, now: Instant) -> bool {
        let cap = limit as f64;
        if self.limit != limit {
            // A new limit starts with a full second of capacity.
            self.limit = limit;
            self.tokens = cap;
            self.last = now;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * cap).min(cap);
        let need = n as f64;
        if self.tokens >= need {
            self.tokens -= need;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_keeps_missing_fields() {
        let base = Faults {
            error_rate: 0.5,
            latency_ms: 10,
            ..Faults::default()
        };
        let patch: FaultsPatch = serde_json::from_str(r#"{"latency_ms": 20}"#).unwrap();
        let f = patch.apply_to(&base);
        assert_eq!(f.latency_ms, 20);
        assert_eq!(f.error_rate, 0.5);
    }

    #[test]
    fn patch_rejects_unknown_fields() {
        assert!(serde_json::from_str::<FaultsPatch>(r#"{"nope": 1}"#).is_err());
    }

    #[test]
    fn validate_names_the_key() {
        let f = Faults {
            drop_rate: 1.5,
            ..Faults::default()
        };
        let err = f.validate("faults.").unwrap_err().to_string();
        assert!(err.contains("faults.drop_rate"), "{err}");
    }

    #[test]
    fn roll_extremes_are_exact() {
        assert!(!roll(0.0));
        assert!(roll(1.0));
    }

    #[test]
    fn token_bucket_limits_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(t0);
        // A fresh limit grants one second of capacity, then refills linearly.
        assert!(b.take(10, 10, t0));
        assert!(!b.take(10, 1, t0));
        assert!(b.take(10, 5, t0 + Duration::from_millis(500)));
        assert!(!b.take(10, 1, t0 + Duration::from_millis(500)));
    }
}
