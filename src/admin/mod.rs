//! Admin server (axum): `/metrics`, `/-/healthy`, `/-/ready`, `/status` and
//! the `/` landing page.
//!
//! The router is built from [`routes`], a `Router<AdminState>`, so the wiring
//! can add its own routes (`POST /-/reload`, `/-/pause`, ...) with the same
//! state before calling `with_state`; [`router`] is the ready-made version.
//! Liveness (`/-/healthy`) reflects only this process, never the target: a
//! canary must not be restarted by the very outage it is measuring.
//!
//! TLS, basic auth and response headers come from an exporter-toolkit web
//! config file ([`web_config`]), applied by the accept loop in [`server`].
//! [`healthcheck`] is the client side of `/-/healthy` (`rehab-canary
//! healthcheck`, the container's probe).

pub mod basic_auth;
pub mod control;
pub mod healthcheck;
mod page;
pub mod server;
mod status;
pub mod web_config;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use parking_lot::RwLock;

use crate::metrics::{Format, Metrics};
use crate::status::StatusSection;

pub use server::{serve_with, WebState};
pub use status::Status;
pub use web_config::{WebConfig, WebConfigError, WebConfigErrors};

/// Process facts the admin routes report besides the metrics.
pub struct RuntimeInfo {
    pub version: &'static str,
    /// The target base URL with userinfo, query and fragment stripped.
    pub target: String,
    /// Config loaded and scheduler running; `/-/ready` answers 503 until set.
    pub ready: AtomicBool,
    started: Instant,
    extras: RwLock<Vec<Arc<dyn StatusSection>>>,
}

impl std::fmt::Debug for RuntimeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeInfo")
            .field("version", &self.version)
            .field("target", &self.target)
            .field("ready", &self.is_ready())
            .field("extras", &self.extras.read().len())
            .finish()
    }
}

impl RuntimeInfo {
    /// Not ready yet. `raw_target` is redacted with [`redact_target`] here, so
    /// no caller can forget to.
    pub fn new(version: &'static str, raw_target: &str) -> Self {
        RuntimeInfo {
            version,
            target: redact_target(raw_target),
            ready: AtomicBool::new(false),
            started: Instant::now(),
            extras: RwLock::new(Vec::new()),
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Seconds since this `RuntimeInfo` was created (≈ daemon start).
    pub fn uptime_seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Adds a section to `/status` and the landing page.
    pub fn add_status_section(&self, extra: Arc<dyn StatusSection>) {
        self.extras.write().push(extra);
    }

    /// The HTML fragments of the sections that render their own.
    fn extras_html(&self) -> Vec<(&'static str, String)> {
        self.extras
            .read()
            .iter()
            .filter_map(|e| e.html().map(|h| (e.key(), h)))
            .collect()
    }

    fn extras(&self) -> serde_json::Map<String, serde_json::Value> {
        self.extras
            .read()
            .iter()
            .map(|e| (e.key().to_owned(), e.value()))
            .collect()
    }
}

/// Shared state of every admin route.
#[derive(Clone, Debug)]
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub info: Arc<RuntimeInfo>,
}

impl AdminState {
    pub fn new(metrics: Arc<Metrics>, info: Arc<RuntimeInfo>) -> Self {
        AdminState { metrics, info }
    }
}

/// Strips what may hold a secret from a target URL for display: userinfo
/// (`user:pass@`), the query string and the fragment. Values that are not URLs
/// (`embedded`) pass through, minus any `?`/`#` part.
pub fn redact_target(raw: &str) -> String {
    let raw = raw.trim();
    let without_query = |s: &str| s.split(['?', '#']).next().unwrap_or("").to_owned();
    let Some(scheme_end) = raw.find("://") else {
        return without_query(raw);
    };
    let (scheme, after) = (&raw[..scheme_end], &raw[scheme_end + 3..]);
    let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(authority_end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    format!("{scheme}://{host}{}", without_query(rest))
}

/// The admin routes, still waiting for their state; add routes, then
/// `.with_state(state)`.
pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/", get(page::landing))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route("/status", get(status::status))
}

/// The admin router with its state.
pub fn router(state: AdminState) -> Router {
    routes().with_state(state)
}

/// Serves `router` on `listener` over plain HTTP without auth until
/// `shutdown` completes, then lets open connections finish. [`serve_with`]
/// applies a web config.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, WebState::plain(), shutdown).await
}

/// In the format the scraper asks for (see `metrics::exposition`).
async fn metrics(State(state): State<AdminState>, headers: HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    (
        [
            (header::CONTENT_TYPE, format.content_type()),
            (header::VARY, "Accept"),
        ],
        state.metrics.encode_as(format),
    )
}

/// Liveness of this process: if it can answer, it is alive.
async fn healthy() -> &'static str {
    "OK"
}

async fn ready(State(state): State<AdminState>) -> (StatusCode, &'static str) {
    if state.info.is_ready() {
        (StatusCode::OK, "OK")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Not ready")
    }
}

#[cfg(test)]
mod tests;
