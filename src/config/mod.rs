//! Typed daemon configuration: load (TOML file, then `REHAB_CANARY__SECTION__KEY`
//! environment overrides), reject unknown keys, apply defaults, validate across
//! fields. Every error names the key path so an operator can fix it at once.
//!
//! Secrets never live here: the config names *where* a token is (an env var or
//! a file), never the token itself.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod lag;
pub mod load;
pub mod profile;
pub mod slo;

use load::{Errors, Sources};

/// Environment prefix of overrides: `REHAB_CANARY__TRAFFIC__EVENTS_PER_SECOND=200`.
pub const ENV_PREFIX: &str = "REHAB_CANARY";

/// The value of `target.base_url` that starts the reference API in-process.
pub const EMBEDDED: &str = "embedded";

/// One problem with a configuration, always tied to the key it concerns.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("{key}: unknown key")]
    UnknownKey { key: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
    #[error("{path}: {message}")]
    Load { path: String, message: String },
}

impl ConfigError {
    pub(crate) fn invalid(key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// The key path the error is about, when it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key } | ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Load { .. } => None,
        }
    }
}

/// Every problem found in one configuration, so `check-config` can list them all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", render(.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl crate::exit::ExitStatus for ConfigErrors {
    fn exit(&self) -> crate::exit::Exit {
        crate::exit::Exit::Usage
    }
}

/// One error a line, indented under the caller's heading.
fn render(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub server: ServerConfig,
    pub log: LogConfig,
    pub target: TargetConfig,
    pub auth: AuthConfig,
    pub traffic: TrafficConfig,
    pub circuit_breaker: CircuitBreakerConfig,
    pub shard: ShardConfig,
    /// Projection lag probes (`src/lag/config.rs`).
    pub lag: lag::LagConfig,
    /// SLO objectives and windows (`src/slo/config.rs`); the rules are generated from them.
    pub slo: slo::SloConfig,
    /// One-shot run profiles (`src/oneshot/profile.rs`): overrides of the
    /// built-in smoke/load/stress/broadway/capacity, or new ones.
    pub profiles: std::collections::BTreeMap<String, profile::ProfileConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    /// Admin and metrics address. Loopback by default: exposing it is a
    /// deliberate act of the deployment config.
    pub listen: String,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Exporter-toolkit web config (TLS, basic auth) of the admin server;
    /// `--web.config.file` overrides it.
    pub web_config_file: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8742".to_owned(),
            shutdown_grace: Duration::from_secs(10),
            web_config_file: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter (`info`, `rehab_canary=debug,warn`); `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TargetConfig {
    /// Base URL of the Rehab API, or `embedded` for the in-process reference API.
    pub base_url: String,
    /// Whole-request timeout; a request past it counts as `status="timeout"`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Keep-alive connections kept per host; size it near `traffic.max_in_flight`.
    pub pool_max_idle_per_host: usize,
    #[serde(with = "humantime_serde")]
    pub pool_idle_timeout: Duration,
    /// Hosts the canary may send to. Loopback and `embedded` are always
    /// allowed; anything else must be listed, so a typo cannot aim synthetic
    /// load at production.
    pub allowed_hosts: Vec<String>,
    /// Plain http to a non-loopback host is refused unless this is true.
    pub allow_insecure_http: bool,
    /// Public health route polled for `rehab_canary_target_up`.
    pub health_path: String,
    #[serde(with = "humantime_serde")]
    pub health_interval: Duration,
}

impl Default for TargetConfig {
    fn default() -> Self {
        TargetConfig {
            base_url: EMBEDDED.to_owned(),
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            pool_max_idle_per_host: 256,
            pool_idle_timeout: Duration::from_secs(90),
            allowed_hosts: Vec::new(),
            allow_insecure_http: false,
            health_path: "health".to_owned(),
            health_interval: Duration::from_secs(5),
        }
    }
}

/// One of `total` instances sharing the load, with no coordinator: each
/// offers `1/total` of the rate in its own subject namespace and runs its
/// share of the lag probes; Prometheus sums the shards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShardConfig {
    /// 0-based; on Kubernetes, the pod index from the downward API.
    pub index: u32,
    pub total: u32,
}

impl Default for ShardConfig {
    fn default() -> Self {
        ShardConfig { index: 0, total: 1 }
    }
}

impl ShardConfig {
    /// This shard's subject namespace: the prefix alone when unsharded, else
    /// `<prefix>s<index>-`, disjoint from every other shard's.
    pub fn namespace(&self, prefix: &str) -> String {
        if self.total <= 1 {
            prefix.to_owned()
        } else {
            format!("{prefix}s{}-", self.index)
        }
    }

    /// Whether the `k`-th lag probe runs here: probes are dealt round-robin,
    /// so every projection is measured by exactly one shard.
    pub fn owns_probe(&self, k: usize) -> bool {
        self.total <= 1 || k % self.total as usize == self.index as usize
    }
}

/// Stops hammering a target that is down: after `failure_threshold`
/// consecutive failures (connect errors, timeouts, 502/503/504) only one trial
/// request per `trial_interval` goes out, until one succeeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CircuitBreakerConfig {
    pub enabled: bool,
    pub failure_threshold: u32,
    #[serde(with = "humantime_serde")]
    pub trial_interval: Duration,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        CircuitBreakerConfig {
            enabled: true,
            failure_threshold: 20,
            trial_interval: Duration::from_secs(2),
        }
    }
}

impl TargetConfig {
    pub fn is_embedded(&self) -> bool {
        self.base_url == EMBEDDED
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// Name of the environment variable that holds the bearer token.
    pub token_env: String,
    /// A file holding the token (Kubernetes secret, systemd credential); wins
    /// over `token_env` when set.
    pub token_file: Option<PathBuf>,
    /// How often `token_file` is checked for a rotated token.
    #[serde(with = "humantime_serde")]
    pub token_file_check_interval: Duration,
    /// Obtain tokens through `POST /api/v1/auth/login` instead of a static token.
    pub login: LoginConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            token_env: "REHAB_CANARY_TOKEN".to_owned(),
            token_file: None,
            token_file_check_interval: Duration::from_secs(10),
            login: LoginConfig::default(),
        }
    }
}

/// The login flow: credentials from env or a file, a proactive refresh before
/// expiry, one re-login on a 401.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoginConfig {
    pub enabled: bool,
    /// Not a secret; the password is.
    pub username: String,
    /// Name of the environment variable holding the password.
    pub password_env: String,
    /// A file holding the password; wins over `password_env` when set.
    pub password_file: Option<PathBuf>,
    /// Refresh this long before the token expires.
    #[serde(with = "humantime_serde")]
    pub refresh_before: Duration,
}

impl Default for LoginConfig {
    fn default() -> Self {
        LoginConfig {
            enabled: false,
            username: String::new(),
            password_env: "REHAB_CANARY_PASSWORD".to_owned(),
            password_file: None,
            refresh_before: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrafficConfig {
    /// Sustained rate of event POSTs. Reads come on top, following the mix.
    pub events_per_second: f64,
    /// Hard ceiling of the event rate that no burst, ramp or reload passes.
    pub max_events_per_second: f64,
    /// Requests allowed in flight at once; a scheduled request that finds the
    /// bound full is dropped and counted, never queued.
    pub max_in_flight: usize,
    /// Linear ramp from 0 to the rate after start; 0s starts at full rate.
    #[serde(with = "humantime_serde")]
    pub ramp_up: Duration,
    pub mix: MixConfig,
    pub burst: BurstConfig,
    pub journeys: JourneyConfig,
    pub payload: PayloadConfig,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        TrafficConfig {
            events_per_second: 50.0,
            max_events_per_second: 2000.0,
            max_in_flight: 256,
            ramp_up: Duration::ZERO,
            mix: MixConfig::default(),
            burst: BurstConfig::default(),
            journeys: JourneyConfig::default(),
            payload: PayloadConfig::default(),
        }
    }
}

/// Relative weights of the three user kinds, as in the service's own load test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MixConfig {
    pub patient: u32,
    pub therapist: u32,
    pub admin: u32,
}

impl Default for MixConfig {
    fn default() -> Self {
        MixConfig {
            patient: 70,
            therapist: 20,
            admin: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BurstConfig {
    /// Bursts start at every multiple of this period of wall-clock time, so
    /// several instances (shards) burst together.
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    /// 0s disables bursts.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Rate during a burst, as a multiple of `events_per_second`.
    pub multiplier: f64,
}

impl Default for BurstConfig {
    fn default() -> Self {
        BurstConfig {
            every: Duration::from_secs(600),
            duration: Duration::from_secs(30),
            multiplier: 3.0,
        }
    }
}

impl BurstConfig {
    pub fn enabled(&self) -> bool {
        !self.duration.is_zero() && !self.every.is_zero() && self.multiplier != 1.0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JourneyConfig {
    /// Synthetic patients the sessions rotate over.
    pub patients: u32,
    /// Synthetic therapists; patient `n` belongs to therapist `n % therapists`.
    pub therapists: u32,
    /// Reserved namespace of every synthetic subject id.
    pub subject_prefix: String,
    /// Minimum spacing between two steps of one patient session.
    #[serde(with = "humantime_serde")]
    pub rep_interval: Duration,
    pub reps_min: u32,
    pub reps_max: u32,
    /// Range of simulated rep quality scores.
    pub quality_min: f64,
    pub quality_max: f64,
    /// Window of the therapist's quality read.
    pub quality_window: String,
}

impl Default for JourneyConfig {
    fn default() -> Self {
        JourneyConfig {
            patients: 1000,
            therapists: 50,
            subject_prefix: "canary-".to_owned(),
            rep_interval: Duration::from_secs(1),
            reps_min: 10,
            reps_max: 15,
            quality_min: 0.60,
            quality_max: 0.95,
            quality_window: "14d".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadShape {
    /// `kind` / `subject_id` / `body` / `meta`, as in the service's quickstart.
    Envelope,
    /// `patient_id` / `event_type` with the fields at top level.
    Flat,
}

/// Field names of the event payload, so the canary fits the service's variants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PayloadConfig {
    pub shape: PayloadShape,
    pub kind_field: String,
    pub subject_field: String,
    pub body_field: String,
    pub meta_field: String,
    pub patient_field: String,
    pub event_type_field: String,
}

impl Default for PayloadConfig {
    fn default() -> Self {
        PayloadConfig {
            shape: PayloadShape::Envelope,
            kind_field: "kind".to_owned(),
            subject_field: "subject_id".to_owned(),
            body_field: "body".to_owned(),
            meta_field: "meta".to_owned(),
            patient_field: "patient_id".to_owned(),
            event_type_field: "event_type".to_owned(),
        }
    }
}

impl Config {
    /// Loads a file (TOML) and the environment overrides, then validates.
    /// Returns every problem found, not just the first.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigErrors> {
        Self::load_with_env(path, std::env::vars())
    }

    /// Like [`Config::load`] with an explicit environment, for tests.
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigErrors> {
        let mut errs = Errors::default();
        let tree = load::layered(
            Sources {
                file: path,
                env_prefix: ENV_PREFIX,
                env: env.into_iter().collect(),
                list_keys: &[],
            },
            &mut errs,
        )?;
        let cfg: Config = load::decode(tree, &mut errs);
        cfg.validate(&mut errs);
        errs.into_result(cfg)
    }

    /// Every section's checks, for a config built in code rather than
    /// loaded (tests, one-shot profiles).
    pub fn check(&self) -> Result<(), ConfigErrors> {
        let mut errs = Errors::default();
        self.validate(&mut errs);
        errs.into_result(())
    }

    /// Cross-field checks of every section, into `errs`.
    pub fn validate(&self, errs: &mut Errors) {
        errs.check(
            self.server.listen.parse::<SocketAddr>().is_ok(),
            "server.listen",
            "must be an address like 127.0.0.1:8742",
        );
        errs.check(
            self.log
                .level
                .parse::<tracing_subscriber::EnvFilter>()
                .is_ok(),
            "log.level",
            "must be a tracing filter such as `info` or `rehab_canary=debug,warn`",
        );
        if !self.target.is_embedded() {
            match reqwest::Url::parse(&self.target.base_url) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                    errs.check(
                        url.username().is_empty() && url.password().is_none(),
                        "target.base_url",
                        "must not carry credentials; use auth.token_env or auth.token_file",
                    );
                    let host = url.host_str().unwrap_or_default();
                    let loopback = is_loopback(host);
                    if !loopback
                        && !self
                            .target
                            .allowed_hosts
                            .iter()
                            .any(|h| h.eq_ignore_ascii_case(host))
                    {
                        errs.invalid(
                            "target.base_url",
                            format!(
                                "host `{host}` is not in target.allowed_hosts; list it there to allow \
                                 synthetic traffic to it"
                            ),
                        );
                    }
                    if url.scheme() == "http" && !loopback && !self.target.allow_insecure_http {
                        errs.invalid(
                            "target.base_url",
                            "plain http to a non-loopback host; use https or set \
                             target.allow_insecure_http = true",
                        );
                    }
                }
                _ => errs.check(
                    false,
                    "target.base_url",
                    "must be an http(s) URL or `embedded`",
                ),
            }
        }
        errs.check(
            !self.target.timeout.is_zero(),
            "target.timeout",
            "must be greater than 0",
        );
        errs.check(
            !self.target.connect_timeout.is_zero(),
            "target.connect_timeout",
            "must be greater than 0",
        );
        errs.check(
            is_env_name(&self.auth.token_env),
            "auth.token_env",
            "must be an environment variable name (letters, digits, _)",
        );
        let t = &self.traffic;
        errs.check(
            t.events_per_second.is_finite() && t.events_per_second >= 0.0,
            "traffic.events_per_second",
            "must be a number >= 0",
        );
        errs.check(
            t.events_per_second <= 1_000_000.0,
            "traffic.events_per_second",
            "must be at most 1000000",
        );
        errs.check(
            t.max_in_flight > 0,
            "traffic.max_in_flight",
            "must be greater than 0",
        );
        errs.check(
            t.mix.patient > 0,
            "traffic.mix.patient",
            "must be greater than 0: the event rate is carried by patient sessions",
        );
        errs.check(
            t.mix.patient as u64 + t.mix.therapist as u64 + t.mix.admin as u64 <= 1_000_000,
            "traffic.mix",
            "weights are too large",
        );
        if !t.burst.duration.is_zero() {
            errs.check(
                !t.burst.every.is_zero(),
                "traffic.burst.every",
                "must be greater than 0 when bursts are enabled",
            );
            errs.check(
                t.burst.duration < t.burst.every,
                "traffic.burst.duration",
                "must be shorter than traffic.burst.every",
            );
            errs.check(
                t.burst.multiplier.is_finite() && t.burst.multiplier >= 0.0,
                "traffic.burst.multiplier",
                "must be a number >= 0",
            );
        }
        let j = &t.journeys;
        errs.check(
            j.patients > 0,
            "traffic.journeys.patients",
            "must be greater than 0",
        );
        errs.check(
            j.therapists > 0,
            "traffic.journeys.therapists",
            "must be greater than 0",
        );
        errs.check(
            !j.subject_prefix.is_empty()
                && j.subject_prefix.len() <= 32
                && j.subject_prefix
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')),
            "traffic.journeys.subject_prefix",
            "must be 1-32 characters of [A-Za-z0-9-_.]",
        );
        errs.check(
            j.reps_min >= 1 && j.reps_min <= j.reps_max && j.reps_max <= 1000,
            "traffic.journeys.reps_min",
            "must satisfy 1 <= reps_min <= reps_max <= 1000",
        );
        errs.check(
            (0.0..=1.0).contains(&j.quality_min)
                && (0.0..=1.0).contains(&j.quality_max)
                && j.quality_min <= j.quality_max,
            "traffic.journeys.quality_min",
            "must satisfy 0 <= quality_min <= quality_max <= 1",
        );
        errs.check(
            matches!(j.quality_window.as_str(), "7d" | "14d" | "30d"),
            "traffic.journeys.quality_window",
            "must be 7d, 14d or 30d",
        );
        let p = &t.payload;
        for (key, value) in [
            ("traffic.payload.kind_field", &p.kind_field),
            ("traffic.payload.subject_field", &p.subject_field),
            ("traffic.payload.body_field", &p.body_field),
            ("traffic.payload.meta_field", &p.meta_field),
            ("traffic.payload.patient_field", &p.patient_field),
            ("traffic.payload.event_type_field", &p.event_type_field),
        ] {
            errs.check(!value.is_empty(), key, "must not be empty");
        }
        let t = &self.traffic;
        let c = &self.circuit_breaker;
        let more = [
            (
                t.max_events_per_second.is_finite() && t.max_events_per_second > 0.0,
                "traffic.max_events_per_second",
                "must be a number > 0",
            ),
            (
                t.events_per_second <= t.max_events_per_second,
                "traffic.events_per_second",
                "must not exceed traffic.max_events_per_second (the hard ceiling)",
            ),
            (
                c.failure_threshold > 0,
                "circuit_breaker.failure_threshold",
                "must be greater than 0",
            ),
            (
                !c.trial_interval.is_zero(),
                "circuit_breaker.trial_interval",
                "must be greater than 0",
            ),
            (
                !self.target.health_interval.is_zero(),
                "target.health_interval",
                "must be greater than 0",
            ),
            (
                !self.target.health_path.starts_with('/')
                    && !self.target.health_path.contains("://"),
                "target.health_path",
                "must be a path relative to target.base_url, like `health`",
            ),
            (
                self.shard.total >= 1 && self.shard.total <= 10_000,
                "shard.total",
                "must be between 1 and 10000",
            ),
            (
                self.shard.index < self.shard.total.max(1),
                "shard.index",
                "must be less than shard.total",
            ),
            (
                !self.auth.token_file_check_interval.is_zero(),
                "auth.token_file_check_interval",
                "must be greater than 0",
            ),
            (
                !self.auth.login.enabled || !self.auth.login.username.is_empty(),
                "auth.login.username",
                "must be set when auth.login.enabled = true",
            ),
            (
                is_env_name(&self.auth.login.password_env),
                "auth.login.password_env",
                "must be an environment variable name (letters, digits, _)",
            ),
            (
                !(self.auth.login.enabled && self.auth.token_file.is_some()),
                "auth.login.enabled",
                "cannot be combined with auth.token_file: choose one token source",
            ),
        ];
        for (ok, key, msg) in more {
            errs.check(ok, key, msg);
        }
        self.lag.validate(errs);
        self.slo.validate(errs);
        profile::validate(self, errs);
    }

    /// This shard's traffic: its share of the rate and ceiling, in its own
    /// subject namespace.
    pub fn shard_traffic(&self) -> TrafficConfig {
        let mut t = self.traffic.clone();
        let share = 1.0 / f64::from(self.shard.total.max(1));
        t.events_per_second *= share;
        t.max_events_per_second *= share;
        t.journeys.subject_prefix = self.shard.namespace(&t.journeys.subject_prefix);
        t
    }

    /// This shard's lag probes: the ones dealt to it.
    pub fn shard_lag(&self) -> lag::LagConfig {
        let mut l = self.lag.clone();
        let p = &mut l.probes;
        for (k, probe) in [
            &mut p.stream,
            &mut p.adherence,
            &mut p.quality,
            &mut p.work_queue,
        ]
        .into_iter()
        .enumerate()
        {
            probe.enabled &= self.shard.owns_probe(k);
        }
        l
    }

    /// The sections read once at start, declared here only: a reload keeps
    /// their running values (from `running`) and names the ones it changed.
    pub fn keep_restart_only(&mut self, running: &Config) -> Vec<&'static str> {
        let mut changed = Vec::new();
        macro_rules! keep {
            ($($section:ident),+) => {$(
                if self.$section != running.$section {
                    changed.push(stringify!($section));
                    self.$section = running.$section.clone();
                }
            )+};
        }
        keep!(server, log, target, auth, shard);
        changed
    }

    /// The admin address; valid after [`Config::validate`].
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server
            .listen
            .parse()
            .map_err(|_| ConfigError::invalid("server.listen", "must be an address"))
    }
}

/// Loopback hosts are always allowed: nothing leaves the machine.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn load_str(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        f.write_all(toml.as_bytes()).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load_with_env(Some(f.path()), env)
    }

    fn keys(e: &ConfigErrors) -> Vec<String> {
        e.0.iter()
            .map(|e| e.key().unwrap_or("-").to_owned())
            .collect()
    }

    #[test]
    fn empty_file_gives_defaults() {
        let cfg = load_str("", &[]).unwrap();
        assert_eq!(cfg, Config::default());
        assert!(Errors::collect(|e| Config::default().validate(e)).is_empty());
    }

    #[test]
    fn default_listen_port_is_outside_the_exporter_range() {
        let port = Config::default().listen_addr().unwrap().port();
        assert!(!(9100..=9999).contains(&port));
        assert!(Config::default().listen_addr().unwrap().ip().is_loopback());
    }

    #[test]
    fn durations_parse_human_units() {
        let cfg = load_str(
            "[target]\ntimeout = \"250ms\"\n[traffic.burst]\nevery = \"5m\"\nduration = \"10s\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(cfg.target.timeout, Duration::from_millis(250));
        assert_eq!(cfg.traffic.burst.every, Duration::from_secs(300));
    }

    #[test]
    fn env_overrides_file() {
        let cfg = load_str(
            "[traffic]\nevents_per_second = 10\n",
            &[
                ("REHAB_CANARY__TRAFFIC__EVENTS_PER_SECOND", "200"),
                ("REHAB_CANARY__TRAFFIC__MIX__ADMIN", "5"),
                ("REHAB_CANARY__TARGET__TIMEOUT", "750ms"),
                ("UNRELATED", "x"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.traffic.events_per_second, 200.0);
        assert_eq!(cfg.traffic.mix.admin, 5);
        assert_eq!(cfg.target.timeout, Duration::from_millis(750));
    }

    #[test]
    fn unknown_keys_are_all_named() {
        let err = load_str(
            "[traffic]\nevents_per_secnd = 10\n[traffic.burst]\nmultiplyer = 2\n[nope]\nx = 1\n",
            &[],
        )
        .unwrap_err();
        let k = keys(&err);
        assert!(k.contains(&"traffic.events_per_secnd".to_owned()), "{k:?}");
        assert!(k.contains(&"traffic.burst.multiplyer".to_owned()), "{k:?}");
        assert!(k.contains(&"nope".to_owned()), "{k:?}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases: &[(&str, &str)] = &[
            (
                "[traffic]\nevents_per_second = \"fast\"\n",
                "traffic.events_per_second",
            ),
            ("[target]\ntimeout = \"soon\"\n", "target.timeout"),
            (
                "[traffic]\nevents_per_second = -1\n",
                "traffic.events_per_second",
            ),
            ("[traffic]\nmax_in_flight = 0\n", "traffic.max_in_flight"),
            ("[server]\nlisten = \"nowhere\"\n", "server.listen"),
            ("[target]\nbase_url = \"ftp://x\"\n", "target.base_url"),
            (
                "[target]\nbase_url = \"https://u:secret@x.example\"\n",
                "target.base_url",
            ),
            ("[traffic.mix]\npatient = 0\n", "traffic.mix.patient"),
            (
                "[traffic.burst]\nevery = \"10s\"\nduration = \"20s\"\n",
                "traffic.burst.duration",
            ),
            ("[log]\nformat = \"xml\"\n", "log.format"),
            ("[auth]\ntoken_env = \"1 bad\"\n", "auth.token_env"),
            (
                "[traffic.journeys]\nreps_min = 20\nreps_max = 10\n",
                "traffic.journeys.reps_min",
            ),
        ];
        for (toml, key) in cases {
            let err = load_str(toml, &[]).unwrap_err();
            assert!(
                keys(&err).iter().any(|k| k == key),
                "{toml:?}: expected key {key}, got {err}"
            );
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn safety_rails_refuse_unlisted_hosts_and_plain_http() {
        let err = load_str("[target]\nbase_url = \"https://prod.example.com\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("allowed_hosts"), "{err}");
        load_str(
            "[target]\nbase_url = \"https://stage.example.com\"\nallowed_hosts = [\"stage.example.com\"]\n",
            &[],
        )
        .unwrap();
        let err = load_str(
            "[target]\nbase_url = \"http://stage.example.com\"\nallowed_hosts = [\"stage.example.com\"]\n",
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("allow_insecure_http"), "{err}");
        load_str(
            "[target]\nbase_url = \"http://stage.example.com\"\nallowed_hosts = [\"STAGE.example.com\"]\nallow_insecure_http = true\n",
            &[],
        )
        .unwrap();
        for loopback in [
            "http://127.0.0.1:4000",
            "http://localhost:4000",
            "http://[::1]:4000",
        ] {
            load_str(&format!("[target]\nbase_url = \"{loopback}\"\n"), &[]).unwrap();
        }
    }

    #[test]
    fn shards_split_the_rate_namespace_and_probes() {
        let cfg = load_str(
            "[traffic]\nevents_per_second = 300\nmax_events_per_second = 900\n",
            &[
                ("REHAB_CANARY__SHARD__INDEX", "1"),
                ("REHAB_CANARY__SHARD__TOTAL", "3"),
            ],
        )
        .unwrap();
        let t = cfg.shard_traffic();
        assert_eq!(t.events_per_second, 100.0);
        assert_eq!(t.max_events_per_second, 300.0);
        assert_eq!(t.journeys.subject_prefix, "canary-s1-");
        let l = cfg.shard_lag();
        let on: Vec<bool> = l.probes().iter().map(|(_, p)| p.enabled).collect();
        assert_eq!(on, vec![false, true, false, false]);
        // Unsharded: everything as configured.
        let one = Config::default();
        assert_eq!(one.shard_traffic(), one.traffic);
        assert_eq!(one.shard_lag(), one.lag);
        let err = load_str("[shard]\nindex = 3\ntotal = 3\n", &[]).unwrap_err();
        assert_eq!(keys(&err), vec!["shard.index"]);
        let err = load_str("[shard]\ntotal = 0\n", &[]).unwrap_err();
        assert!(keys(&err).contains(&"shard.total".to_owned()), "{err}");
    }

    #[test]
    fn the_rate_ceiling_is_enforced() {
        let err = load_str(
            "[traffic]\nevents_per_second = 3000\nmax_events_per_second = 1000\n",
            &[],
        )
        .unwrap_err();
        assert_eq!(keys(&err), vec!["traffic.events_per_second"]);
    }

    #[test]
    fn every_validation_error_is_reported() {
        let err = load_str(
            "[traffic]\nmax_in_flight = 0\n[traffic.mix]\npatient = 0\n[server]\nlisten = \"x\"\n",
            &[],
        )
        .unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
    }

    #[test]
    fn every_bad_value_and_unknown_key_is_reported_at_once() {
        for _ in 0..5 {
            let err = load_str(
                "[target]\ntimeout = \"soon\"\n[traffic]\nevents_per_second = \"fast\"\nmax_in_flight = 0\nbogus = 1\n[log]\nformat = \"xml\"\n",
                &[("REHAB_CANARY__TRAFFIC__MIX__ADMIN", "many")],
            )
            .unwrap_err();
            let mut k = keys(&err);
            k.sort();
            assert_eq!(
                k,
                vec![
                    "log.format",
                    "target.timeout",
                    "traffic.bogus",
                    "traffic.events_per_second",
                    "traffic.max_in_flight",
                    "traffic.mix.admin",
                ],
                "{err}"
            );
        }
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = Config::load_with_env(Some(Path::new("/nonexistent/x.toml")), []).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.toml"));
    }
}
