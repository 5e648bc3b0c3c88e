//! Hot reload: re-read the config file, skip it when its checksum (file plus
//! `REHAB_CANARY__*` overrides) is unchanged, validate it whole, and only then
//! swap it in. An invalid config keeps the running one and logs every error;
//! sections that need a restart are named and left as they were.

use serde::Serialize;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::config::{Config, ENV_PREFIX};
use crate::metrics::Metrics;

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadOutcome {
    /// The new config is in force.
    Applied,
    /// Same checksum as the running config: nothing to do.
    Unchanged,
    /// The new config is invalid; the running one was kept.
    Failed,
    /// The daemon was started without a config file.
    NoConfigFile,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    pub outcome: ReloadOutcome,
    /// Every problem of a failed reload, each naming its key.
    pub errors: Vec<String>,
    /// Changed sections that only take effect after a restart.
    pub restart_required: Vec<&'static str>,
}

/// Something that takes the reloadable parts of a new config.
pub trait Apply: Send + Sync {
    fn apply(&self, cfg: &Config);
}

pub struct Reloader {
    path: Option<PathBuf>,
    state: Mutex<State>,
    targets: Vec<Arc<dyn Apply>>,
    metrics: Arc<Metrics>,
}

struct State {
    checksum: Option<u64>,
    current: Config,
}

/// Checksum of what a load would read: the file's bytes and the overrides.
fn checksum(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
        .collect();
    env.sort();
    env.hash(&mut h);
    h.finish()
}

impl Reloader {
    pub fn new(
        path: Option<PathBuf>,
        current: Config,
        targets: Vec<Arc<dyn Apply>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let checksum = path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .map(|b| checksum(&b));
        metrics.ops.reload_succeeded();
        Reloader {
            path,
            state: Mutex::new(State { checksum, current }),
            targets,
            metrics,
        }
    }

    /// The config in force.
    pub fn current(&self) -> Config {
        self.state.lock().current.clone()
    }

    pub fn reload(&self) -> ReloadReport {
        let report = |outcome, errors, restart_required| ReloadReport {
            outcome,
            errors,
            restart_required,
        };
        let Some(path) = &self.path else {
            tracing::warn!("reload requested, but the daemon was started without --config");
            return report(ReloadOutcome::NoConfigFile, Vec::new(), Vec::new());
        };
        // One reload at a time; nothing here awaits.
        let mut state = self.state.lock();
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                let msg = format!("{}: {e}", path.display());
                return self.failed(vec![msg]);
            }
        };
        let sum = checksum(&bytes);
        if state.checksum == Some(sum) {
            tracing::debug!("config unchanged; reload skipped");
            return report(ReloadOutcome::Unchanged, Vec::new(), Vec::new());
        }
        let mut new = match Config::load(Some(path)) {
            Ok(c) => c,
            Err(errors) => {
                return self.failed(errors.0.iter().map(ToString::to_string).collect());
            }
        };
        // Restart-only sections keep their running values.
        let restart = new.keep_restart_only(&state.current);
        if !restart.is_empty() {
            tracing::warn!(
                sections = ?restart,
                "these changes need a restart; the running values are kept until then"
            );
        }
        for t in &self.targets {
            t.apply(&new);
        }
        state.current = new;
        state.checksum = Some(sum);
        self.metrics.ops.reloads.inc();
        self.metrics.ops.reload_succeeded();
        tracing::info!(path = %path.display(), "config reloaded");
        report(ReloadOutcome::Applied, Vec::new(), restart)
    }

    fn failed(&self, errors: Vec<String>) -> ReloadReport {
        self.metrics.ops.reloads.inc();
        self.metrics.ops.reload_failures.inc();
        self.metrics.ops.reload_successful.set(0);
        for e in &errors {
            tracing::error!("config reload failed, running config kept: {e}");
        }
        ReloadReport {
            outcome: ReloadOutcome::Failed,
            errors,
            restart_required: Vec::new(),
        }
    }
}
