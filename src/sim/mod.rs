//! The reference Rehab API (`rehab-canary sim`): a stand-in for the real
//! service that ingests events, applies them asynchronously in batches, serves
//! lagging read models, injects faults on demand and exports its ground truth.
//!
//! Modules, one job each:
//! - `config`: typed configuration, loading and validation;
//! - `envelope`: parsing both event shapes into one stored form;
//! - `pipeline`: bounded queue, batch processors, visibility timer;
//! - `store`: sharded patient streams with retention and eviction;
//! - `projections`: adherence, quality and alert rules per patient;
//! - `tokens`: static and issued bearer tokens;
//! - `clock`: the service clock behind the published timestamps;
//! - `tls`: https and mTLS, for testing the canary's TLS settings;
//! - `faults`: the fault set and its dice;
//! - `middleware`: route naming, HTTP faults, auth, request counting;
//! - `routes`: the handlers; `server`: the connection driver;
//! - `truth`: the ground-truth metrics.
//!
//! Memory ceiling with the defaults: about 1.1 × `max_patients` ×
//! `max_bytes_per_patient` for the store (≈ 280 MiB; measured 272 MiB RSS with
//! 2000 patients all at the cap), plus the queue (10 000 events: ~10 MiB with
//! real events, 320 MiB if every queued event were the 32 KiB maximum), plus
//! issued tokens (≤ 100 000 × ~150 B ≈ 15 MiB). See `store` for the details.

mod clock;
mod config;
mod envelope;
mod error;
mod faults;
mod middleware;
mod pipeline;
mod projections;
mod routes;
mod server;
mod store;
mod tls;
mod tokens;
pub mod traces;
mod truth;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{
    AuthConfig, PipelineConfig, RetentionConfig, RulesConfig, SimConfig, UserConfig, TOKENS_ENV,
};
pub use error::SimError;
pub use faults::{Faults, FaultsPatch};
pub use store::{DroppedEvent, RebuildReport};
pub use tls::TlsConfig;
pub use truth::{BatchTruth, LAG_BUCKETS};

/// A running simulator.
pub struct SimHandle {
    addr: SocketAddr,
    https: bool,
    faults: Arc<faults::FaultState>,
    truth: Arc<truth::Truth>,
    traces: Arc<traces::TraceLog>,
    store: Arc<store::Store>,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
}

impl SimHandle {
    /// The bound address (the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT` (`https` with `[tls]`), with the unspecified address
    /// replaced by loopback.
    pub fn base_url(&self) -> String {
        let ip = if self.addr.ip().is_unspecified() {
            match self.addr {
                SocketAddr::V4(_) => std::net::IpAddr::from([127, 0, 0, 1]),
                SocketAddr::V6(_) => std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            }
        } else {
            self.addr.ip()
        };
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// Replaces the whole fault set (what `PUT /sim/faults` does with a full
    /// object).
    pub fn set_faults(&self, f: Faults) {
        self.faults.set(f);
    }

    /// The exact true projection lags (seconds) of the most recent events,
    /// oldest first, at most `truth::RECENT_LAGS`: what
    /// `rehab_sim_projection_lag_seconds` counts, without bucket rounding.
    pub fn recent_lags(&self) -> Vec<f64> {
        self.truth.recent_lags()
    }

    /// The most recent true lags keyed by the events' `event_id` (what the
    /// 201 answered): a canary's per-sample error is its sample minus this.
    pub fn recent_lags_by_id(&self) -> std::collections::HashMap<String, f64> {
        self.truth
            .recent_lags_by_id()
            .into_iter()
            .map(|(id, lag)| (id.to_string(), lag))
            .collect()
    }

    /// The most recent `/events/batch` requests' truths (when their first
    /// and last event became visible), oldest first.
    pub fn recent_batches(&self) -> Vec<BatchTruth> {
        self.truth.recent_batches()
    }

    /// The `traceparent` of recent requests per route (as `/sim/traces`).
    pub fn traces(&self) -> std::collections::HashMap<&'static str, Vec<traces::Received>> {
        self.traces.snapshot()
    }

    /// What `POST /sim/rebuild` does: replays the stream read model,
    /// leaving out each event visible for at least `older_than` with
    /// probability `drop_fraction` (only `patient_id`'s stream when given).
    /// The report is the truth of which events were lost.
    pub fn rebuild(
        &self,
        drop_fraction: f64,
        older_than: std::time::Duration,
        patient_id: Option<&str>,
    ) -> RebuildReport {
        self.store.rebuild(&store::Rebuild {
            drop_fraction: drop_fraction.clamp(0.0, 1.0),
            older_than,
            patient_id,
        })
    }

    pub fn faults(&self) -> Faults {
        (*self.faults.get()).clone()
    }

    /// Stops accepting, drains connections (bounded by a grace period), stops
    /// the processors and returns when every task has ended. Events still
    /// queued are discarded.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.server.await;
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Validates `cfg`, binds `listen` (port 0 works) and starts serving.
pub async fn start(listen: SocketAddr, cfg: SimConfig) -> Result<SimHandle, SimError> {
    cfg.check()?;
    let tls = cfg.tls.server_config()?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| SimError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr()?;
    let truth = Arc::new(truth::Truth::new());
    let faults = Arc::new(faults::FaultState::new(cfg.faults.clone()));
    let store = Arc::new(store::Store::new(
        cfg.retention.clone(),
        cfg.rules.clone(),
        truth.clone(),
    ));
    let shutdown = CancellationToken::new();
    let (pipeline, tasks) = pipeline::spawn(
        &cfg.pipeline,
        store.clone(),
        faults.clone(),
        truth.clone(),
        shutdown.clone(),
    );
    let traces = Arc::new(traces::TraceLog::default());
    let state = Arc::new(routes::AppState {
        auth: tokens::Auth::new(&cfg.auth),
        cfg,
        store: store.clone(),
        pipeline,
        faults: faults.clone(),
        truth: truth.clone(),
        started: Instant::now(),
        traces: traces.clone(),
    });
    let router = routes::router(state);
    let https = tls.is_some();
    let server = tokio::spawn(server::serve(listener, router, tls, shutdown.clone()));
    Ok(SimHandle {
        addr,
        https,
        faults,
        truth,
        traces,
        store,
        shutdown,
        server,
        tasks,
    })
}

/// Runs the simulator standalone until SIGINT or SIGTERM: loads the config
/// (file, then `REHAB_SIM__SECTION__KEY` and `REHAB_SIM_TOKENS` from the
/// environment) before binding anything, then serves.
pub async fn run_standalone(
    listen: SocketAddr,
    config_path: Option<&Path>,
) -> Result<(), SimError> {
    let cfg = SimConfig::load(config_path)?;
    tracing::info!(
        batch_size = cfg.pipeline.batch_size,
        batch_timeout = ?cfg.pipeline.batch_timeout,
        processors = cfg.pipeline.processors,
        queue_capacity = cfg.pipeline.queue_capacity,
        "sim: configuration loaded"
    );
    let handle = start(listen, cfg).await?;
    tracing::info!(addr = %handle.addr(), "sim: listening on {}", handle.base_url());
    wait_for_signal().await?;
    tracing::info!("sim: shutting down");
    handle.shutdown().await;
    tracing::info!("sim: stopped");
    Ok(())
}

async fn wait_for_signal() -> Result<(), SimError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}
