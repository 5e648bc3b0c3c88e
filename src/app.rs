//! Wiring in a fixed order (parse, bind, spawn, wait, drain): the embedded
//! target if asked for, the admin server, the client and the traffic engine.
//! `Daemon` is what tests start in-process; `run` adds the signal handling of
//! the real process.

mod background;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use tokio::net::TcpListener;

use crate::admin::control::{self, Control};
use crate::admin::{self, AdminState, RuntimeInfo};
use crate::client::{ClientError, TargetClient};
use crate::config::{Config, ConfigErrors};
use crate::credentials::{self, AuthError, TokenSource};
use crate::exit::{Exit, ExitStatus};
use crate::lag::{self, LagConfig, LagError, LagMetrics, LagProbes};
use crate::lifecycle::{Event, Lifecycle, SignalEvents};
use crate::metrics::{BuildInfo, Metrics};
use crate::reload::ReloadReport;
use crate::reload::Reloader;
use crate::sim::{self, SimConfig, SimError, SimHandle};
use crate::status::StatusSection;
use crate::traffic::engine::Engine;
use crate::traffic::gate::Gate;
use crate::traffic::journeys::{Journeys, Naming};
use crate::verdict::api::VerdictState;
use crate::verdict::collect::Collector;
use crate::verdict::deploy::Deploys;
use crate::verdict::store::Store;
use tokio_util::sync::CancellationToken;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git revision, when the build environment provides one.
pub const REVISION: &str = match option_env!("REHAB_CANARY_REVISION") {
    Some(r) => r,
    None => "unknown",
};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("invalid configuration:\n{0}")]
    Config(#[from] ConfigErrors),
    #[error("cannot listen on {addr} (server.listen): {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0}")]
    WebConfig(#[from] admin::WebConfigErrors),
    #[error("cannot start the embedded reference API: {0}")]
    Sim(#[from] SimError),
    #[error("target.base_url: {0}")]
    Url(#[from] url::ParseError),
    #[error("cannot start the scheduler thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error(transparent)]
    Connection(#[from] crate::traffic::connection::ConnectionError),
    #[error(transparent)]
    Route(#[from] crate::traffic::journeys::RouteError),
    #[error("cannot register signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error(transparent)]
    Lag(#[from] LagError),
    #[error(transparent)]
    Verdict(#[from] crate::verdict::store::StoreError),
}

impl ExitStatus for AppError {
    fn exit(&self) -> Exit {
        match self {
            AppError::Config(_)
            | AppError::WebConfig(_)
            | AppError::Verdict(_)
            | AppError::Client(ClientError::Tls(_)) => Exit::Usage,
            _ => Exit::Failure,
        }
    }
}

/// A running daemon.
pub struct Daemon {
    admin_addr: SocketAddr,
    target: Url,
    metrics: Arc<Metrics>,
    info: Arc<RuntimeInfo>,
    engine: Engine,
    lag: Arc<LagSupervisor>,
    lag_metrics: LagMetrics,
    controls: Arc<Controls>,
    life: Lifecycle,
    sim: Option<SimHandle>,
    grace: Duration,
}

impl Daemon {
    /// Starts everything. The admin port is bound from `server.listen`
    /// (port 0 picks a free one; see [`Daemon::admin_addr`]).
    pub async fn start(cfg: Config) -> Result<Daemon, AppError> {
        Self::start_with(cfg, RunOptions::default()).await
    }

    /// Like [`Daemon::start`], knowing the config file for reloads. The
    /// phases in order: parse, bind, spawn; [`Daemon::shutdown`] drains.
    pub async fn start_with(cfg: Config, opts: RunOptions) -> Result<Daemon, AppError> {
        cfg.check()?;
        let bound = Bound::bind(&cfg).await?;
        let (metrics, lag_metrics, deploys) = metrics(&opts);
        let info = Arc::new(RuntimeInfo::new(VERSION, bound.target.as_str()));
        let life = Lifecycle::default();
        let http = TargetClient::new(&cfg.target)?.with_sampled(cfg.tracing.sampled);
        let mut auth = credentials::start(
            &cfg.auth,
            bound.sim.is_some(),
            &http,
            &bound.target,
            metrics.clone(),
        )?;
        match &auth.source {
            TokenSource::None => tracing::warn!(
                env = %cfg.auth.token_env,
                "no bearer token: set the env var named by auth.token_env, auth.token_file or \
                 auth.login; requests go out without Authorization"
            ),
            source => tracing::info!(?source, "bearer token source"),
        }
        if let Some(refresher) = auth.refresher.take() {
            life.background(refresher);
        }
        if let Some(identity) = http.identity() {
            life.background(Box::pin(identity.watch(cfg.target.tls.cert_check_interval)));
        }
        let gate = Arc::new(Gate::new(&cfg.circuit_breaker, metrics.clone()));
        // The verdict's baseline memory, filled as the windows rotate.
        let store = Arc::new(parking_lot::Mutex::new(Store::open(
            cfg.verdict.capacity(),
            crate::api::Endpoint::ALL.len(),
            lag::Projection::ALL.len(),
            cfg.verdict.state_dir.as_deref(),
        )?));
        let collector = Arc::new(Collector::new(
            cfg.verdict.snapshot_interval,
            store.clone(),
            &lag_metrics,
        ));
        life.background(Box::pin(background::rotate_windows(
            metrics.clone(),
            lag_metrics.clone(),
            collector,
        )));
        life.background(Box::pin(background::poll_target_health(
            http.clone(),
            bound.target.join(&cfg.target.health_path)?,
            cfg.target.health_interval,
            metrics.clone(),
        )));
        if !cfg.target.detail.is_empty() {
            life.background(Box::pin(background::poll_target_detail(
                http.clone(),
                bound.target.join(&cfg.target.detail)?,
                cfg.target.detail_interval,
                cfg.target.detail_fields.clone().into_iter().collect(),
                metrics.clone(),
            )));
        }

        // This shard's share of the rate, in its own subject namespace.
        let traffic = cfg.shard_traffic();
        metrics.ops.set_shard(cfg.shard.index, cfg.shard.total);
        let naming = Naming {
            namespace: traffic.journeys.subject_prefix.clone(),
            run_id: run_id(),
        };
        let journeys = Journeys::new(&traffic.journeys, &traffic.payload, &bound.target, naming)?
            .with_batch(&traffic.batch);
        let target = crate::traffic::connection::Target::new(
            &cfg.target,
            &bound.target,
            &http,
            metrics.clone(),
        )?;
        let engine = Engine::spawn(
            Arc::new(traffic.clone()),
            journeys,
            Arc::new(target),
            cfg.target.connections,
            metrics.clone(),
            gate.clone(),
            auth.signal.clone(),
            life.drain.clone(),
        )
        .map_err(AppError::Thread)?;
        // Lag probes: their own schedule on the runtime, never the engine's.
        let factory = ProbeFactory {
            base: bound.target.clone(),
            namespace: traffic.journeys.subject_prefix.clone(),
            payload: traffic.payload.clone(),
            client: http,
            metrics: lag_metrics.clone(),
            gate: gate.clone(),
            drain: life.drain.clone(),
        };
        let lag = Arc::new(LagSupervisor::start(factory, cfg.shard_lag())?);
        if let Some(probes) = lag.running.lock().as_ref() {
            info.add_status_section(probes.status());
        }

        let reloader = Arc::new(Reloader::new(
            opts.config_path.clone(),
            cfg.clone(),
            vec![Arc::new(engine.updater()), gate.clone(), lag.clone()],
            metrics.clone(),
        ));
        let controls = Arc::new(Controls { reloader, gate });
        info.add_status_section(controls.clone());
        let Bound {
            listener,
            admin_addr,
            web,
            target,
            sim,
        } = bound;
        let access = control::Access::new(admin_addr, cfg.server.enable_lifecycle, web.clone());
        let verdict = VerdictState {
            cfg: Arc::new(cfg.verdict.clone()),
            store,
            deploys,
        };
        let state = AdminState::new(metrics.clone(), info.clone());
        serve_admin(listener, web, access, &life, state, &controls, verdict);
        info.set_ready(true);
        tracing::info!(
            target = %info.target,
            events_per_second = traffic.events_per_second,
            shard = cfg.shard.index,
            shards = cfg.shard.total,
            "canary running"
        );
        Ok(Daemon {
            admin_addr,
            target,
            metrics,
            info,
            engine,
            lag,
            lag_metrics,
            controls,
            life,
            sim,
            grace: cfg.server.shutdown_grace,
        })
    }

    /// Re-reads the config file (SIGHUP and `POST /-/reload` do the same).
    pub fn reload(&self) -> ReloadReport {
        self.controls.reload()
    }

    /// The kill switch: stop sending until [`Daemon::resume`].
    pub fn pause(&self) {
        self.controls.pause();
    }

    pub fn resume(&self) {
        self.controls.resume();
    }

    /// The end of a one-shot run: no more traffic or probe launches, while
    /// probe runs in progress finish (see [`Gate::stop_for_drain`]).
    pub fn stop_for_drain(&self) {
        self.controls.gate.stop_for_drain();
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The target's base URL (the embedded one's real address included).
    pub fn target(&self) -> &Url {
        &self.target
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The in-process reference API, when the target is `embedded`.
    pub fn embedded_sim(&self) -> Option<&SimHandle> {
        self.sim.as_ref()
    }

    /// Requests currently running.
    pub fn running(&self) -> usize {
        self.engine.running()
    }

    /// Lag probe runs currently watching for their event.
    /// The newest lag samples of one projection (`stream`, ...), oldest
    /// first: for comparing with a ground truth sample by sample.
    pub fn lag_samples(&self, projection: &str) -> Vec<lag::LagSample> {
        lag::probe::Projection::from_name(projection)
            .map(|p| self.lag_metrics.recent_samples(p))
            .unwrap_or_default()
    }

    /// The newest batch probe samples, oldest first.
    pub fn batch_samples(&self) -> Vec<lag::BatchSample> {
        self.lag_metrics.batch().recent()
    }

    pub fn probes_running(&self) -> i64 {
        self.lag_metrics.in_flight_now()
    }

    /// Resolves once no request and no probe run is in flight (after
    /// [`Daemon::stop_for_drain`], nothing new starts).
    pub async fn quiesced(&self) {
        // Waited in turn, then checked together before returning.
        loop {
            self.engine.drained().await;
            self.lag_metrics.idle().await;
            if self.engine.running() == 0 && self.lag_metrics.in_flight_now() <= 0 {
                return;
            }
        }
    }

    /// Applies `cfg`'s traffic section (this shard's share) from now on, as a
    /// reload would; a one-shot capacity ramp steps the rate with it.
    pub fn set_traffic(&self, cfg: &Config) {
        self.engine.update(Arc::new(cfg.shard_traffic()));
    }

    /// Stops scheduling, drains in-flight requests within `shutdown_grace`,
    /// then stops the admin server. Returns whether the drain finished in time.
    pub async fn shutdown(self) -> bool {
        self.info.set_ready(false);
        self.life.drain.cancel();
        let probes = self.lag.running.lock().take();
        if let Some(probes) = probes {
            probes.stop().await;
        }
        let drained = self.engine.stop(self.grace).await;
        if drained {
            tracing::info!("in-flight requests drained");
        } else {
            tracing::warn!(grace = ?self.grace, "shutdown grace ran out with requests in flight");
        }
        self.life.stop().await;
        if let Some(sim) = self.sim {
            sim.shutdown().await;
        }
        let (sent, accepted) = self.metrics.events_totals();
        tracing::info!(
            events_sent = sent,
            events_accepted = accepted,
            drained,
            "stopped"
        );
        drained
    }
}

/// What is read and bound before anything runs: the web config, the
/// embedded target if asked for, the admin listener.
struct Bound {
    listener: TcpListener,
    admin_addr: SocketAddr,
    web: Arc<admin::WebState>,
    target: Url,
    sim: Option<SimHandle>,
}

impl Bound {
    async fn bind(cfg: &Config) -> Result<Bound, AppError> {
        let listen = cfg
            .listen_addr()
            .map_err(|e| AppError::Config(ConfigErrors(vec![e])))?;
        // The web config (TLS, basic auth) is read before any port is bound.
        let web = admin::WebState::load(cfg.server.web_config_file.as_deref())?;
        let sim = if cfg.target.is_embedded() {
            let handle = sim::start(([127, 0, 0, 1], 0).into(), SimConfig::default()).await?;
            tracing::info!(addr = %handle.addr(), "embedded reference API started");
            Some(handle)
        } else {
            None
        };
        let target = match &sim {
            Some(s) => Url::parse(&format!("{}/", s.base_url()))?,
            None => base_url(&cfg.target.base_url)?,
        };
        let bind_error = |source| AppError::Bind {
            addr: listen,
            source,
        };
        let listener = TcpListener::bind(listen).await.map_err(bind_error)?;
        let admin_addr = listener.local_addr().map_err(bind_error)?;
        Ok(Bound {
            listener,
            admin_addr,
            web,
            target,
            sim,
        })
    }
}

/// Starts the admin server on the bound listener, until the stop.
fn serve_admin(
    listener: TcpListener,
    web: Arc<admin::WebState>,
    access: control::Access,
    life: &Lifecycle,
    state: AdminState,
    controls: &Arc<Controls>,
    verdict: VerdictState,
) {
    if !access.allowed() {
        tracing::warn!(
            "admin server: /-/reload, /-/pause and /-/resume answer 403 (the listener is not \
             loopback and has no basic auth; server.enable_lifecycle = true opens them)"
        );
    }
    let router = admin::router(state)
        .merge(control::router(controls.clone(), access.clone()))
        .merge(crate::verdict::api::router(verdict, access));
    let web_now = web.current();
    if web_now.auth.is_some() && web_now.tls.is_none() {
        tracing::warn!("admin server: basic auth without TLS sends passwords in clear text");
    }
    tracing::info!(
        addr = %listener.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string()),
        tls = web_now.tls.is_some(),
        basic_auth = web_now.auth.is_some(),
        "admin server listening (/metrics, /status, /-/healthy)"
    );
    let served = admin::serve_with(
        listener,
        router,
        web.clone(),
        life.stop.clone().cancelled_owned(),
    );
    life.tasks.spawn(async move {
        if let Err(e) = served.await {
            tracing::error!("admin server: {e}");
        }
    });
    life.background(Box::pin(web.watch()));
}

/// The registry with every family, the lag families included (they join
/// before it is shared), and the one-shot tap if there is one.
fn metrics(opts: &RunOptions) -> (Arc<Metrics>, LagMetrics, Arc<Deploys>) {
    let mut metrics = Metrics::new(BuildInfo {
        version: VERSION,
        revision: REVISION,
    });
    let lag_metrics = LagMetrics::register(metrics.exposition_mut());
    let deploys = Arc::new(Deploys::register(&mut metrics.exposition_mut().registry));
    if let Some(tap) = &opts.tap {
        metrics.attach_tap(tap.clone());
        lag_metrics.attach_tap(tap.clone());
    }
    (Arc::new(metrics), lag_metrics, deploys)
}

/// A trailing slash makes `join` keep any path prefix of the base URL.
fn base_url(raw: &str) -> Result<Url, url::ParseError> {
    if raw.ends_with('/') {
        Url::parse(raw)
    } else {
        Url::parse(&format!("{raw}/"))
    }
}

/// Random per process start; distinguishes this run's synthetic ids.
fn run_id() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// Restarts the lag probes when a reload changes `[lag]`. The new probes get
/// a new run id, so the swap makes no false duplicates or losses; runs of
/// the old ones in progress are cancelled, not counted.
struct LagSupervisor {
    running: parking_lot::Mutex<Option<LagProbes>>,
    current: parking_lot::Mutex<LagConfig>,
    factory: ProbeFactory,
}

/// What every start of the lag probes shares; each start draws a new run
/// id, so a restart makes no false duplicates or losses.
struct ProbeFactory {
    base: Url,
    namespace: String,
    payload: crate::config::PayloadConfig,
    client: TargetClient,
    metrics: LagMetrics,
    gate: Arc<Gate>,
    /// Each start stops on its own child of the daemon's drain token, so a
    /// reload can stop one start while the drain stops them all.
    drain: CancellationToken,
}

impl ProbeFactory {
    fn spawn(&self, cfg: &LagConfig) -> Result<LagProbes, LagError> {
        LagProbes::spawn(
            cfg,
            lag::probe::Setup {
                base: self.base.clone(),
                namespace: self.namespace.clone(),
                payload: self.payload.clone(),
                run: lag::marker::RunId::random(),
            },
            self.client.clone(),
            self.metrics.clone(),
            self.gate.clone(),
            self.drain.child_token(),
        )
    }
}

impl LagSupervisor {
    fn start(factory: ProbeFactory, cfg: LagConfig) -> Result<LagSupervisor, LagError> {
        let probes = factory.spawn(&cfg)?;
        Ok(LagSupervisor {
            running: parking_lot::Mutex::new(Some(probes)),
            current: parking_lot::Mutex::new(cfg),
            factory,
        })
    }
}

impl crate::reload::Apply for LagSupervisor {
    fn apply(&self, cfg: &Config) {
        let lag = cfg.shard_lag();
        if *self.current.lock() == lag {
            return;
        }
        match self.factory.spawn(&lag) {
            Ok(new) => {
                *self.current.lock() = lag;
                let old = self.running.lock().replace(new);
                if let Some(old) = old {
                    tokio::spawn(old.stop());
                }
                tracing::info!("lag probes restarted with the reloaded [lag] config");
            }
            Err(e) => tracing::error!("lag probes kept after reload: {e}"),
        }
    }
}

/// The kill switch and reloads, as the admin routes and signals see them.
struct Controls {
    reloader: Arc<Reloader>,
    gate: Arc<Gate>,
}

impl Control for Controls {
    fn reload(&self) -> ReloadReport {
        self.reloader.reload()
    }
    fn pause(&self) {
        self.gate.pause();
    }
    fn resume(&self) {
        self.gate.resume();
    }
    fn is_paused(&self) -> bool {
        self.gate.is_paused()
    }
}

impl StatusSection for Controls {
    fn key(&self) -> &'static str {
        "control"
    }
    fn value(&self) -> serde_json::Value {
        let m = &self.gate;
        serde_json::json!({
            "paused": m.is_paused(),
            "circuit_open": m.circuit_open(),
        })
    }
}

/// Options of `rehab-canary run` beyond the config file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub config_path: Option<PathBuf>,
    /// A one-shot run's tap on the hot path (see `metrics::tap`).
    pub tap: Option<Arc<crate::metrics::tap::RunTap>>,
}

/// The daemon as a process: start, wait for SIGTERM/SIGINT, drain, exit.
pub async fn run(cfg: Config, opts: RunOptions) -> Result<(), AppError> {
    let mut signals = SignalEvents::register().map_err(AppError::Signals)?;
    let daemon = Daemon::start_with(cfg, opts).await?;
    while let Some(event) = signals.next().await {
        match event {
            Event::Shutdown => break,
            Event::Reload => {
                let report = daemon.reload();
                tracing::info!(outcome = ?report.outcome, "SIGHUP reload");
            }
        }
    }
    tracing::info!("shutting down");
    daemon.shutdown().await;
    Ok(())
}
