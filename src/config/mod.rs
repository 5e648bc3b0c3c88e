//! Typed daemon configuration: load (TOML file, then `REHAB_CANARY__SECTION__KEY`
//! environment overrides), reject unknown keys, apply defaults, validate across
//! fields. Every error names the key path so an operator can fix it at once.
//!
//! Secrets never live here: the config names *where* a token is (an env var or
//! a file), never the token itself.

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub mod lag;
pub mod load;
pub mod profile;
mod server;
pub mod slo;
mod target;
mod traffic;
pub mod verdict;

pub use server::{LogConfig, LogFormat, ServerConfig, ShardConfig, TracingConfig};
pub use target::{
    is_loopback, AuthConfig, CircuitBreakerConfig, LoginConfig, TargetConfig, TargetTlsConfig,
};
pub use traffic::{
    BatchConfig, BurstConfig, JourneyConfig, MixConfig, PayloadConfig, PayloadShape, SizeRange,
    TrafficConfig,
};

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
    /// Trace context on requests (`traceparent`).
    pub tracing: TracingConfig,
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
    /// The deploy verdict's baseline memory and tolerances (`src/verdict/`).
    pub verdict: verdict::VerdictConfig,
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
        self.server.validate(errs);
        self.log.validate(errs);
        self.target.validate(errs);
        self.auth.validate(errs);
        self.traffic.validate(errs);
        self.circuit_breaker.validate(errs);
        self.shard.validate(errs);
        self.lag.validate(errs);
        self.slo.validate(errs);
        self.verdict.validate(errs);
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
        for p in lag::Projection::ALL {
            l.probes[p].enabled &= self.shard.owns_probe(p.index());
        }
        // The batch probe comes after the projections in the shards' turn.
        l.probes.batch.enabled &= self.shard.owns_probe(lag::Projection::ALL.len());
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
        keep!(server, log, tracing, target, auth, shard, verdict);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

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
    fn the_probe_set_is_keyed_by_projection() {
        use lag::Projection;
        let cfg = load_str(
            "[lag.probes.work_queue]\nroute = \"api/v1/x?t={therapist}\"\n",
            &[("REHAB_CANARY__LAG__PROBES__QUALITY__ENABLED", "false")],
        )
        .unwrap();
        let on: Vec<_> = cfg.lag.probes.iter().map(|(p, c)| (p, c.enabled)).collect();
        assert_eq!(
            on,
            [
                (Projection::Stream, true),
                (Projection::Adherence, true),
                (Projection::Quality, false),
                (Projection::WorkQueue, true),
            ]
        );
        let wq = &cfg.lag.probes[Projection::WorkQueue];
        assert_eq!(wq.route.as_deref(), Some("api/v1/x?t={therapist}"));
        // Unset stays unset: the probe's built-in applies (30s for this one).
        assert_eq!(wq.interval, None);
        let err = load_str(
            "[lag.probes.streem]\nenabled = false\n[lag.probes.stream]\nroutee = \"x\"\n",
            &[],
        )
        .unwrap_err();
        assert_eq!(
            keys(&err),
            ["lag.probes.stream.routee", "lag.probes.streem"],
            "{err}"
        );
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
        let on: Vec<bool> = l.probes.iter().map(|(_, p)| p.enabled).collect();
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

    #[test]
    fn detail_fields_are_label_safe_names_with_json_pointers() {
        let err = load_str(
            "[target]\ndetail = \"/abs\"\n[target.detail_fields]\n\"9bad\" = \"/x\"\nok = \"nope\"\nfine = \"/a/b\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        for key in [
            "target.detail_fields.9bad",
            "target.detail_fields.ok",
            "target.detail =",
        ] {
            let key = key.trim_end_matches(" =");
            assert!(err.contains(key), "{key} not named in:\n{err}");
        }
        assert!(!err.contains("target.detail_fields.fine"), "{err}");
    }
}
