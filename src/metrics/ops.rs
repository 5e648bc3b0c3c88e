//! Operational metrics of the canary itself: config reloads, auth failures,
//! the circuit breaker, target health, the kill switch and `Retry-After`
//! waits. They tell "the canary is broken" apart from "the API is broken".

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::register::{registered, series};
use crate::api::Endpoint;

/// Why getting or using a token failed (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// `POST /auth/login` failed.
    Login,
    /// `POST /auth/refresh` failed.
    Refresh,
    /// The token file could not be read or was empty.
    TokenFile,
    /// The target answered 401 to a request carrying our token.
    Unauthorized,
}

impl AuthFailure {
    pub const ALL: [AuthFailure; 4] = [
        AuthFailure::Login,
        AuthFailure::Refresh,
        AuthFailure::TokenFile,
        AuthFailure::Unauthorized,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Login => "login",
            AuthFailure::Refresh => "refresh",
            AuthFailure::TokenFile => "token_file",
            AuthFailure::Unauthorized => "unauthorized",
        }
    }
}

/// Traffic classes that a 429 throttles separately (the journey kinds).
pub const TRAFFIC_CLASSES: [&str; 3] = ["patient", "therapist", "admin"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabels {
    index: String,
    total: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabel {
    class: &'static str,
}

pub struct OpsMetrics {
    pub reload_successful: Gauge,
    pub reload_success_timestamp: Gauge<f64, AtomicU64>,
    pub reloads: Counter,
    pub reload_failures: Counter,
    auth_failures: [Counter; 4],
    pub circuit_open: Gauge,
    pub target_up: Gauge,
    pub paused: Gauge,
    rate_limited: [Counter; 3],
    rate_limit_wait: [Counter<f64, AtomicU64>; 3],
    invalid: [Counter; Endpoint::ALL.len()],
    shard_info: Family<ShardLabels, Gauge>,
    shards_configured: Gauge,
    /// Logged once per endpoint, so a broken target does not flood the log.
    invalid_logged: [AtomicBool; Endpoint::ALL.len()],
}

impl std::fmt::Debug for OpsMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpsMetrics").finish_non_exhaustive()
    }
}

impl OpsMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let classes = TRAFFIC_CLASSES.map(|class| ClassLabel { class });
        // Fields in registration order: it is the exposition order.
        let ops = OpsMetrics {
            reload_successful: registered(
                registry,
                "rehab_canary_config_last_reload_successful",
                "1 if the last config reload succeeded (or none was tried), 0 if it failed",
                Gauge::default(),
            ),
            reload_success_timestamp: registered(
                registry,
                "rehab_canary_config_last_reload_success_timestamp_seconds",
                "Unix time of the last successful config load or reload",
                Gauge::default(),
            ),
            reloads: registered(
                registry,
                "rehab_canary_config_reloads",
                "Config reloads attempted (SIGHUP or POST /-/reload), unchanged files excluded",
                Counter::default(),
            ),
            reload_failures: registered(
                registry,
                "rehab_canary_config_reload_failures",
                "Config reloads that failed; the running config was kept",
                Counter::default(),
            ),
            auth_failures: series(
                registry,
                "rehab_canary_auth_failures",
                "Failures to obtain or use a bearer token, by reason (login, refresh, token_file, \
                 unauthorized)",
                AuthFailure::ALL.map(|f| ReasonLabel { reason: f.as_str() }),
            ),
            circuit_open: registered(
                registry,
                "rehab_canary_circuit_open",
                "1 while the circuit breaker is open (the target looks down; only trial requests go out)",
                Gauge::default(),
            ),
            target_up: registered(
                registry,
                "rehab_canary_target_up",
                "1 if the target's health route answered 2xx at the last poll, else 0",
                Gauge::default(),
            ),
            paused: registered(
                registry,
                "rehab_canary_paused",
                "1 while traffic is paused by POST /-/pause (the kill switch)",
                Gauge::default(),
            ),
            rate_limited: series(
                registry,
                "rehab_canary_rate_limited",
                "429 answers that imposed a wait on a traffic class",
                classes.clone(),
            ),
            rate_limit_wait: series(
                registry,
                "rehab_canary_rate_limit_wait_seconds",
                "Seconds a traffic class was held back honouring Retry-After",
                classes,
            ),
            invalid: series(
                registry,
                "rehab_canary_invalid_responses",
                "2xx answers whose body was not valid JSON, by endpoint",
                Endpoint::ALL.map(|e| EndpointLabel {
                    endpoint: e.as_str(),
                }),
            ),
            invalid_logged: Default::default(),
            shard_info: registered(
                registry,
                "rehab_canary_shard_info",
                "This instance's shard; the value is always 1",
                Family::default(),
            ),
            shards_configured: registered(
                registry,
                "rehab_canary_shards_configured",
                "shard.total: how many shards the deployment should have; an alert compares it with \
                 the number of shards that report",
                Gauge::default(),
            ),
        };
        ops.reload_successful.set(1);
        ops
    }

    pub fn auth_failure(&self, reason: AuthFailure) {
        self.auth_failures[reason as usize].inc();
    }

    pub fn auth_failures(&self, reason: AuthFailure) -> u64 {
        self.auth_failures[reason as usize].get()
    }

    /// A 429 held `class` back for `wait_s` more seconds.
    pub fn rate_limited(&self, class: usize, wait_s: f64) {
        if let (Some(c), Some(w)) = (
            self.rate_limited.get(class),
            self.rate_limit_wait.get(class),
        ) {
            c.inc();
            w.inc_by(wait_s);
        }
    }

    /// Exports `rehab_canary_shard_info{index,total} 1` (set once at start).
    pub fn set_shard(&self, index: u32, total: u32) {
        self.shard_info
            .get_or_create(&ShardLabels {
                index: index.to_string(),
                total: total.to_string(),
            })
            .set(1);
        self.shards_configured.set(i64::from(total));
    }

    /// A 2xx answer of `endpoint` had a body that is not JSON.
    pub fn invalid_response(&self, endpoint: Endpoint) {
        self.invalid[endpoint.index()].inc();
        if !self.invalid_logged[endpoint.index()].swap(true, Ordering::Relaxed) {
            tracing::warn!(
                endpoint = endpoint.as_str(),
                "the target answered 2xx with a body that is not JSON (logged once per endpoint; \
                 see rehab_canary_invalid_responses_total)"
            );
        }
    }

    /// Records a successful (re)load now.
    pub fn reload_succeeded(&self) {
        self.reload_successful.set(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.reload_success_timestamp.set(now);
    }
}
