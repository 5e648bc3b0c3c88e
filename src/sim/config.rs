//! The simulator's typed configuration: defaults, loading (TOML file plus
//! `REHAB_SIM__SECTION__KEY` environment overrides) and cross-field validation.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::error::SimError;
use super::faults::Faults;
use super::tls::TlsConfig;
use crate::config::load::{self, Errors, Sources};

/// Environment variable holding extra static bearer tokens, comma separated.
pub const TOKENS_ENV: &str = "REHAB_SIM_TOKENS";

/// The whole simulator configuration. Every key has a default; unknown keys
/// are reported by the loader (`config::load`), all at once.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct SimConfig {
    pub pipeline: PipelineConfig,
    pub auth: AuthConfig,
    pub retention: RetentionConfig,
    pub rules: RulesConfig,
    /// Faults active from start; `PUT /sim/faults` changes them at run time.
    pub faults: Faults,
    /// https (and mTLS) instead of plain http.
    pub tls: TlsConfig,
}

/// The asynchronous apply pipeline (a bounded queue drained in batches).
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct PipelineConfig {
    /// Most events a processor applies in one batch.
    pub batch_size: usize,
    /// Longest a processor waits, from the first event of a batch, for the
    /// batch to fill before applying what it has.
    #[serde(with = "humantime_serde")]
    pub batch_timeout: Duration,
    /// Number of processor tasks. Events are partitioned among them by
    /// patient, so one patient's events are applied in acceptance order.
    pub processors: usize,
    /// Total capacity of the accepted-but-not-applied queue, split evenly
    /// across the processors' partitions; a full partition answers 503.
    pub queue_capacity: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        // Measured: p95 projection lag ~50 ms at 1000 events/s (see README).
        PipelineConfig {
            batch_size: 100,
            batch_timeout: Duration::from_millis(50),
            processors: 4,
            queue_capacity: 10_000,
        }
    }
}

/// Bearer-token authentication.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// Static tokens that never expire. Empty (and `REHAB_SIM_TOKENS` unset)
    /// means the development token `dev-token` is accepted.
    pub tokens: Vec<String>,
    /// Lifetime of access tokens issued by `/auth/login` and `/auth/refresh`.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// Lifetime of refresh tokens.
    #[serde(with = "humantime_serde")]
    pub refresh_token_ttl: Duration,
    /// Accounts accepted by `/auth/login`.
    pub users: Vec<UserConfig>,
    /// Most issued (login/refresh) tokens kept; the oldest go first.
    pub max_issued_tokens: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            tokens: Vec::new(),
            token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(24 * 3600),
            users: vec![UserConfig {
                username: "dev".into(),
                password: "dev-password".into(),
            }],
            max_issued_tokens: 100_000,
        }
    }
}

/// One login account.
#[derive(Clone, Deserialize)]
pub struct UserConfig {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for UserConfig {
    // Never print a password, even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserConfig")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Caps that bound memory for runs of days.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct RetentionConfig {
    /// Events kept per patient stream; older ones are dropped (versions keep
    /// counting).
    pub max_events_per_patient: usize,
    /// Bytes of event JSON kept per patient stream.
    pub max_bytes_per_patient: usize,
    /// Patients kept; past it the least recently active are evicted.
    pub max_patients: usize,
    /// Largest single event (normalized JSON) accepted; larger gets 413.
    pub max_event_bytes: usize,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            max_events_per_patient: 1000,
            max_bytes_per_patient: 128 * 1024,
            max_patients: 2000,
            max_event_bytes: 32 * 1024,
        }
    }
}

/// Domain rules of the projections.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct RulesConfig {
    /// A quality average below this over the window raises
    /// `quality_degradation` (priority high).
    pub quality_threshold: f64,
    /// The window, in days, of the quality alert rule.
    pub quality_window_days: u32,
    /// This many consecutive days without a session raise `missed_sessions`.
    pub missed_session_days: u32,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            quality_threshold: 0.70,
            quality_window_days: 7,
            missed_session_days: 2,
        }
    }
}

/// Largest accepted request body; the contract's 413 threshold.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

impl SimConfig {
    /// Every check, for a config built in code rather than loaded.
    pub fn check(&self) -> Result<(), SimError> {
        let mut errs = Errors::default();
        self.validate(&mut errs);
        Ok(errs.into_result(())?)
    }

    /// Range checks of every key, into `errs`.
    pub fn validate(&self, errs: &mut Errors) {
        self.tls.validate(errs);
        let p = &self.pipeline;
        errs.range("pipeline.batch_size", p.batch_size, 1, 100_000);
        errs.range("pipeline.processors", p.processors, 1, 256);
        errs.range("pipeline.queue_capacity", p.queue_capacity, 1, 10_000_000);
        errs.check(
            (Duration::from_millis(1)..=Duration::from_secs(60)).contains(&p.batch_timeout),
            "pipeline.batch_timeout",
            "must be between 1ms and 60s",
        );
        let a = &self.auth;
        errs.check(!a.token_ttl.is_zero(), "auth.token_ttl", "must be positive");
        errs.check(
            !a.refresh_token_ttl.is_zero(),
            "auth.refresh_token_ttl",
            "must be positive",
        );
        errs.range("auth.max_issued_tokens", a.max_issued_tokens, 1, 10_000_000);
        for (i, t) in a.tokens.iter().enumerate() {
            if t.trim().is_empty() || t.chars().any(|c| c.is_whitespace()) {
                errs.invalid(
                    format!("auth.tokens[{i}]"),
                    "must be non-empty without whitespace",
                );
            }
        }
        for (i, u) in a.users.iter().enumerate() {
            if u.username.is_empty() {
                errs.invalid(format!("auth.users[{i}].username"), "must not be empty");
            }
        }
        let r = &self.retention;
        errs.range(
            "retention.max_events_per_patient",
            r.max_events_per_patient,
            1,
            10_000_000,
        );
        errs.range(
            "retention.max_bytes_per_patient",
            r.max_bytes_per_patient,
            1024,
            1 << 34,
        );
        errs.range("retention.max_patients", r.max_patients, 1, 10_000_000);
        errs.range(
            "retention.max_event_bytes",
            r.max_event_bytes,
            256,
            MAX_BODY_BYTES,
        );
        let rules = &self.rules;
        errs.check(
            (0.0..=1.0).contains(&rules.quality_threshold),
            "rules.quality_threshold",
            "must be between 0 and 1",
        );
        errs.range(
            "rules.quality_window_days",
            rules.quality_window_days,
            1,
            30,
        );
        errs.range(
            "rules.missed_session_days",
            rules.missed_session_days,
            1,
            365,
        );
        if let Err(SimError::Config { key, message }) = self.faults.validate("faults.") {
            errs.invalid(key, message);
        }
    }

    /// Loads the optional TOML file, then `REHAB_SIM__SECTION__KEY`
    /// environment overrides (e.g. `REHAB_SIM__PIPELINE__BATCH_SIZE=50`), then
    /// `REHAB_SIM_TOKENS`; validates the result.
    pub fn load(path: Option<&Path>) -> Result<SimConfig, SimError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(path, env)
    }

    /// [`SimConfig::load`] with an explicit environment, for tests.
    pub fn load_from(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<SimConfig, SimError> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let tokens = env
            .iter()
            .find(|(k, _)| k == TOKENS_ENV)
            .map(|(_, v)| v.clone());
        let mut errs = Errors::default();
        let tree = load::layered(
            Sources {
                file: path,
                env_prefix: "REHAB_SIM",
                env,
                list_keys: &["auth.tokens"],
            },
            &mut errs,
        )?;
        let mut cfg: SimConfig = load::decode(tree, &mut errs);
        if let Some(extra) = tokens {
            cfg.auth.tokens.extend(
                extra
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(String::from),
            );
        }
        cfg.validate(&mut errs);
        Ok(errs.into_result(cfg)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_toml(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn keys(err: &SimError) -> Vec<String> {
        match err {
            SimError::Invalid(e) => {
                e.0.iter()
                    .filter_map(|e| e.key())
                    .map(String::from)
                    .collect()
            }
            other => panic!("not a config error: {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        assert!(Errors::collect(|e| SimConfig::default().validate(e)).is_empty());
    }

    #[test]
    fn loads_file_and_env_overrides() {
        let f = write_toml(
            "[pipeline]\nbatch_size = 10\nbatch_timeout = \"250ms\"\n[faults]\nerror_rate = 0.1\n",
        );
        let env = vec![
            (
                "REHAB_SIM__PIPELINE__PROCESSORS".to_string(),
                "2".to_string(),
            ),
            ("REHAB_SIM_TOKENS".to_string(), "a, b".to_string()),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let cfg = SimConfig::load_from(Some(f.path()), env).unwrap();
        assert_eq!(cfg.pipeline.batch_size, 10);
        assert_eq!(cfg.pipeline.batch_timeout, Duration::from_millis(250));
        assert_eq!(cfg.pipeline.processors, 2);
        assert_eq!(cfg.faults.error_rate, 0.1);
        assert_eq!(cfg.auth.tokens, vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn unknown_keys_are_named() {
        let f = write_toml("[pipeline]\nbatch_sise = 10\n");
        let err = SimConfig::load_from(Some(f.path()), Vec::new()).unwrap_err();
        assert_eq!(keys(&err), ["pipeline.batch_sise"], "{err:?}");
        let f = write_toml("colour = 1\n");
        let err = SimConfig::load_from(Some(f.path()), Vec::new()).unwrap_err();
        assert_eq!(keys(&err), ["colour"], "{err:?}");
    }

    #[test]
    fn out_of_range_values_are_named() {
        let f = write_toml("[pipeline]\nprocessors = 0\n");
        let err = SimConfig::load_from(Some(f.path()), Vec::new()).unwrap_err();
        assert!(err.to_string().contains("pipeline.processors"), "{err}");
        let env = vec![(
            "REHAB_SIM__PIPELINE__BATCH_TIMEOUT".to_string(),
            "soon".to_string(),
        )];
        let err = SimConfig::load_from(None, env).unwrap_err();
        assert!(err.to_string().contains("pipeline.batch_timeout"), "{err}");
    }
}
