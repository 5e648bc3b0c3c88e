//! The process's own sections: `[server]` (the admin listener), `[log]`,
//! `[tracing]` (trace context on requests) and `[shard]` (this instance's
//! share of a sharded deployment).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::load::Errors;

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
    /// Lets `/-/reload`, `/-/pause` and `/-/resume` answer on a listener that
    /// is not loopback and has no basic auth (as Prometheus's
    /// `--web.enable-lifecycle`). Off: there they answer 403.
    pub enable_lifecycle: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8742".to_owned(),
            shutdown_grace: Duration::from_secs(10),
            web_config_file: None,
            enable_lifecycle: false,
        }
    }
}

/// W3C Trace Context on every request to the target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TracingConfig {
    /// The `traceparent` sampled flag: on, the service's tracer records the
    /// canary's requests (head sampling); off for services that must not
    /// keep synthetic traces. The trace id is sent and exported either way.
    pub sampled: bool,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig { sampled: true }
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

impl ServerConfig {
    pub fn validate(&self, errs: &mut Errors) {
        errs.check(
            self.listen.parse::<SocketAddr>().is_ok(),
            "server.listen",
            "must be an address like 127.0.0.1:8742",
        );
    }
}

impl LogConfig {
    pub fn validate(&self, errs: &mut Errors) {
        errs.check(
            self.level.parse::<tracing_subscriber::EnvFilter>().is_ok(),
            "log.level",
            "must be a tracing filter such as `info` or `rehab_canary=debug,warn`",
        );
    }
}

impl ShardConfig {
    pub fn validate(&self, errs: &mut Errors) {
        errs.range("shard.total", self.total, 1, 10_000);
        errs.check(
            self.index < self.total.max(1),
            "shard.index",
            "must be less than shard.total",
        );
    }
}
