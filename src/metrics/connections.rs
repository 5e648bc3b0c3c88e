//! The traffic path's connections to the target: how many are open, how
//! connecting goes, and how long a due request waited for a free one (which
//! is also inside its latency: latency counts from the intended instant).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::register::{registered, series};
use super::SCHEDULE_DELAY_BUCKETS;

/// How one connection attempt ended (the `result` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectResult {
    Success,
    /// Refused, unreachable, DNS.
    Error,
    Timeout,
    /// The TLS handshake failed (certificate, name, client certificate).
    TlsError,
}

impl ConnectResult {
    pub const ALL: [ConnectResult; 4] = [
        ConnectResult::Success,
        ConnectResult::Error,
        ConnectResult::Timeout,
        ConnectResult::TlsError,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ConnectResult::Success => "success",
            ConnectResult::Error => "error",
            ConnectResult::Timeout => "timeout",
            ConnectResult::TlsError => "tls_error",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Debug)]
pub struct ConnectionMetrics {
    open: Gauge,
    attempts: [Counter; ConnectResult::ALL.len()],
    queue_wait: Histogram,
}

impl ConnectionMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        ConnectionMetrics {
            open: registered(
                registry,
                "rehab_canary_connections_open",
                "Traffic connections to the target open now (at most target.connections)",
                Gauge::default(),
            ),
            attempts: series(
                registry,
                "rehab_canary_connection_attempts",
                "Traffic connection attempts to the target, by result (success, error, timeout, \
                 tls_error); a broken connection is reopened with backoff",
                ConnectResult::ALL.map(|r| ResultLabel { result: r.as_str() }),
            ),
            queue_wait: registered(
                registry,
                "rehab_canary_queue_wait_seconds",
                "Time a due request waited for a free traffic connection (part of its latency)",
                Histogram::new(SCHEDULE_DELAY_BUCKETS),
            ),
        }
    }

    /// One more open connection until the guard drops.
    pub fn opened(&self, result: ConnectResult) -> Option<OpenGuard> {
        self.attempts[result as usize].inc();
        (result == ConnectResult::Success).then(|| {
            self.open.inc();
            OpenGuard(self.open.clone())
        })
    }

    pub fn attempt_failed(&self, result: ConnectResult) {
        self.attempts[result as usize].inc();
    }

    pub fn queue_wait(&self, seconds: f64) {
        self.queue_wait.observe(seconds);
    }

    pub fn open_now(&self) -> i64 {
        self.open.get()
    }
}

/// Counts a connection as open for as long as its driver lives.
#[derive(Debug)]
pub struct OpenGuard(Gauge);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
