//! How the canary reaches the target: `[target]` (address, safety rails,
//! timeouts, pool), `[auth]` (where the bearer token comes from) and
//! `[circuit_breaker]`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::load::Errors;
use super::EMBEDDED;

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
    /// HTTP/1.1 keep-alive connections the traffic keeps to the target, each
    /// owned by one worker: at most this many requests of traffic are on
    /// the wire at once, and a due request waits for a free one (its wait
    /// counts in its latency).
    pub connections: usize,
    /// Keep-alive connections kept per host by the other paths (lag probes,
    /// login, health).
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
    /// The longest response body the canary reads, on every client path; a
    /// longer one is cut here, counted, and its connection closed, so a
    /// broken target cannot grow the canary's memory.
    pub max_body_bytes: u64,
    /// Trust and identity towards an https target.
    pub tls: TargetTlsConfig,
    /// The service's detail route (its own queue depth, processors, ...),
    /// polled for `rehab_canary_target_detail{field}`; empty turns it off.
    pub detail: String,
    #[serde(with = "humantime_serde")]
    pub detail_interval: Duration,
    /// Field name → JSON pointer into the detail route's answer. Only these
    /// become series. The defaults read the reference API's shape.
    pub detail_fields: BTreeMap<String, String>,
}

/// Most fields `target.detail_fields` may name (each is a series).
pub const MAX_DETAIL_FIELDS: usize = 32;

/// TLS towards the target: a private CA, a client certificate (mTLS), and
/// the name its certificate must carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TargetTlsConfig {
    /// A PEM bundle of CAs to trust (a private staging CA).
    pub ca_file: Option<PathBuf>,
    /// Also trust the Mozilla roots built into the binary (webpki-roots), so
    /// the trust does not depend on the host's store. Set false, with
    /// `ca_file`, to trust the private CA alone.
    pub web_roots: bool,
    /// The client certificate chain (PEM) and its private key, for mTLS;
    /// both or neither. Re-read when either changes, like the token file.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub cert_check_interval: Duration,
    /// The name the server certificate is checked against (and the SNI),
    /// when it is not the base URL's host: an IP address, a mesh alias.
    pub server_name: Option<String>,
}

impl Default for TargetTlsConfig {
    fn default() -> Self {
        TargetTlsConfig {
            ca_file: None,
            web_roots: true,
            cert_file: None,
            key_file: None,
            cert_check_interval: Duration::from_secs(10),
            server_name: None,
        }
    }
}

impl TargetTlsConfig {
    /// True when anything differs from trusting the web roots by host name.
    pub fn is_custom(&self) -> bool {
        *self
            != TargetTlsConfig {
                cert_check_interval: self.cert_check_interval,
                ..TargetTlsConfig::default()
            }
    }

    pub fn validate(&self, errs: &mut Errors) {
        errs.check(
            self.web_roots || self.ca_file.is_some(),
            "target.tls.web_roots",
            "false needs target.tls.ca_file: nothing would be trusted",
        );
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => errs.invalid(
                "target.tls.key_file",
                "is required with target.tls.cert_file",
            ),
            (None, Some(_)) => errs.invalid(
                "target.tls.cert_file",
                "is required with target.tls.key_file",
            ),
            _ => {}
        }
        errs.check(
            !self.cert_check_interval.is_zero(),
            "target.tls.cert_check_interval",
            "must be greater than 0",
        );
        if let Some(name) = &self.server_name {
            errs.check(
                rustls_pki_types::ServerName::try_from(name.as_str()).is_ok(),
                "target.tls.server_name",
                "must be a DNS name or an IP address",
            );
        }
    }
}

impl Default for TargetConfig {
    fn default() -> Self {
        TargetConfig {
            base_url: EMBEDDED.to_owned(),
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            connections: 64,
            pool_max_idle_per_host: 64,
            pool_idle_timeout: Duration::from_secs(90),
            allowed_hosts: Vec::new(),
            allow_insecure_http: false,
            health_path: "health".to_owned(),
            health_interval: Duration::from_secs(5),
            max_body_bytes: 1 << 20,
            tls: TargetTlsConfig::default(),
            detail: "health/detailed".to_owned(),
            detail_interval: Duration::from_secs(5),
            detail_fields: [
                ("queue_depth", "/queue/depth"),
                ("queue_capacity", "/queue/capacity"),
                ("processors", "/pipeline/processors"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        }
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

impl TargetConfig {
    /// The address and its safety rails (nothing off this machine without
    /// being listed; no plain http off loopback unless allowed), timeouts and
    /// the health check.
    pub fn validate(&self, errs: &mut Errors) {
        if !self.is_embedded() {
            match reqwest::Url::parse(&self.base_url) {
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
                    if url.scheme() == "http" && !loopback && !self.allow_insecure_http {
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
            !self.timeout.is_zero(),
            "target.timeout",
            "must be greater than 0",
        );
        errs.check(
            !self.connect_timeout.is_zero(),
            "target.connect_timeout",
            "must be greater than 0",
        );
        errs.check(
            !self.health_interval.is_zero(),
            "target.health_interval",
            "must be greater than 0",
        );
        errs.check(
            !self.detail.starts_with('/') && !self.detail.contains("://"),
            "target.detail",
            "must be a path relative to target.base_url, like \"health/detailed\"",
        );
        errs.check(
            self.detail.is_empty() || !self.detail_interval.is_zero(),
            "target.detail_interval",
            "must be greater than 0",
        );
        errs.check(
            self.detail_fields.len() <= MAX_DETAIL_FIELDS,
            "target.detail_fields",
            &format!("at most {MAX_DETAIL_FIELDS} fields (each is a series)"),
        );
        for (name, pointer) in &self.detail_fields {
            let label_safe = name
                .chars()
                .enumerate()
                .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
            errs.check(
                !name.is_empty() && name.len() <= 64 && label_safe,
                &format!("target.detail_fields.{name}"),
                "the name must be letters, digits and underscores, not starting with a digit",
            );
            errs.check(
                pointer.is_empty() || pointer.starts_with('/'),
                &format!("target.detail_fields.{name}"),
                "must be a JSON pointer (\"/queue/depth\")",
            );
        }
        errs.check(
            !self.health_path.starts_with('/') && !self.health_path.contains("://"),
            "target.health_path",
            "must be a path relative to target.base_url, like `health`",
        );
        errs.check(
            (1..=10_000).contains(&self.connections),
            "target.connections",
            "must be between 1 and 10000",
        );
        errs.check(
            (1024..=1 << 30).contains(&self.max_body_bytes),
            "target.max_body_bytes",
            "must be between 1024 and 1073741824",
        );
        self.tls.validate(errs);
        errs.check(
            !self.tls.is_custom() || self.base_url.starts_with("https://"),
            "target.tls",
            "is set but target.base_url is not https",
        );
    }
}

impl AuthConfig {
    pub fn validate(&self, errs: &mut Errors) {
        errs.check(
            is_env_name(&self.token_env),
            "auth.token_env",
            "must be an environment variable name (letters, digits, _)",
        );
        errs.check(
            !self.token_file_check_interval.is_zero(),
            "auth.token_file_check_interval",
            "must be greater than 0",
        );
        let login = &self.login;
        errs.check(
            !login.enabled || !login.username.is_empty(),
            "auth.login.username",
            "must be set when auth.login.enabled = true",
        );
        errs.check(
            is_env_name(&login.password_env),
            "auth.login.password_env",
            "must be an environment variable name (letters, digits, _)",
        );
        errs.check(
            !(login.enabled && self.token_file.is_some()),
            "auth.login.enabled",
            "cannot be combined with auth.token_file: choose one token source",
        );
    }
}

impl CircuitBreakerConfig {
    pub fn validate(&self, errs: &mut Errors) {
        errs.check(
            self.failure_threshold > 0,
            "circuit_breaker.failure_threshold",
            "must be greater than 0",
        );
        errs.check(
            !self.trial_interval.is_zero(),
            "circuit_breaker.trial_interval",
            "must be greater than 0",
        );
    }
}
