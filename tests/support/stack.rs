//! A reference API and a daemon, both in-process on 127.0.0.1:0, and the
//! development token the way production gives one (a file).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rehab_canary::app::Daemon;
use rehab_canary::config::Config;
use rehab_canary::sim::{self, Faults, SimConfig, SimHandle};

/// The reference API's development token.
pub const DEV_TOKEN: &str = "dev-token";

/// Writes the development token to `dir/token`.
pub fn dev_token_file(dir: &Path) -> PathBuf {
    let path = dir.join("token");
    std::fs::write(&path, format!("{DEV_TOKEN}\n")).unwrap();
    path
}

/// The development token in a per-process temp dir, for daemons that do not
/// keep a dir of their own.
pub fn shared_dev_token_file() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rehab-canary-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dev_token_file(&dir)
}

/// No faults but those `set` turns on.
pub fn faults(set: impl FnOnce(&mut Faults)) -> Faults {
    let mut f = Faults::default();
    set(&mut f);
    f
}

/// The reference API's default config with these faults.
pub fn with_faults(faults: Faults) -> SimConfig {
    SimConfig {
        faults,
        ..SimConfig::default()
    }
}

/// A reference API on an ephemeral port.
pub async fn start_sim(cfg: SimConfig) -> SimHandle {
    sim::start(([127, 0, 0, 1], 0).into(), cfg)
        .await
        .expect("sim starts")
}

/// A daemon config with the admin server on an ephemeral port and no bursts;
/// no target.
pub fn daemon_config() -> Config {
    let mut cfg = Config::default();
    cfg.server.listen = "127.0.0.1:0".into();
    cfg.traffic.burst.duration = Duration::ZERO;
    cfg
}

/// [`daemon_config`] against `sim`, authorised by the token in `token_file`.
pub fn daemon_config_for(sim: &SimHandle, token_file: PathBuf) -> Config {
    let mut cfg = daemon_config();
    cfg.target.base_url = sim.base_url();
    cfg.auth.token_file = Some(token_file);
    cfg
}

pub async fn start_daemon(cfg: Config) -> Daemon {
    Daemon::start(cfg).await.expect("daemon starts")
}

/// A reference API started from `sim_cfg` and a daemon against it, with
/// [`daemon_config_for`] changed by `tweak`.
pub async fn start_stack(
    sim_cfg: SimConfig,
    tweak: impl FnOnce(&mut Config),
) -> (SimHandle, Daemon) {
    let sim = start_sim(sim_cfg).await;
    let mut cfg = daemon_config_for(&sim, shared_dev_token_file());
    tweak(&mut cfg);
    let daemon = start_daemon(cfg).await;
    (sim, daemon)
}

/// A daemon's config file (TOML) against `sim`, admin server on an
/// ephemeral port, followed by `extra`.
pub fn config_toml(sim: &SimHandle, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[target]\nbase_url = \"{}\"\n{extra}",
        sim.base_url()
    )
}
