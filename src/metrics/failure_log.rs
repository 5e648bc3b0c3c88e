//! Failed requests in the log, with the trace id that finds them in the
//! service's traces, at most one line a second: a target failing every
//! request must not flood the journal. The next line says how many were
//! left out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::client::trace::TraceId;

const EVERY_MS: u64 = 1000;

#[derive(Debug, Default)]
pub struct FailureLog {
    /// Milliseconds since [`epoch`] before which nothing is logged.
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl FailureLog {
    /// One failed request; returns whether it was logged.
    pub fn failed(&self, endpoint: &str, status: &str, latency: Duration, trace: TraceId) -> bool {
        let now = u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX);
        let next = self.next_ms.load(Ordering::Relaxed);
        if now < next
            || self
                .next_ms
                .compare_exchange(next, now + EVERY_MS, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        tracing::warn!(
            endpoint,
            status,
            latency_ms = latency.as_secs_f64() * 1e3,
            trace_id = %trace,
            suppressed_since_last = suppressed,
            "request to the target failed"
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_one_line_a_second() {
        let log = FailureLog::default();
        let t = TraceId(7);
        let logged = (0..1000)
            .filter(|_| log.failed("events_create", "500", Duration::ZERO, t))
            .count();
        // A slow machine may cross one second boundary during the loop.
        assert!((1..=2).contains(&logged), "{logged}");
    }
}
