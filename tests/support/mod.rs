//! The one test-support module of the integration tests. Each test file
//! says `mod support;` and takes what it needs:
//!
//! - [`metrics`]: scrape a `/metrics` endpoint and parse the text format;
//! - [`wait`]: poll for a condition with a deadline;
//! - [`stack`]: a reference API and a daemon in-process on 127.0.0.1:0, and
//!   the development token file;
//! - [`certs`]: rcgen server, CA and client certificates;
//! - [`process`]: the daemon run as a real process, logs captured;
//! - [`sim`]: the reference API's HTTP contract: a client, events, reads;
//! - [`lag`]: the lag probe tests' daemon config and series readers.
//!
//! Not every binary uses every helper.
#![allow(dead_code, unused_imports)]

pub mod certs;
pub mod lag;
pub mod metrics;
pub mod process;
pub mod sim;
pub mod stack;
pub mod wait;

use std::net::TcpListener;
use std::path::{Path, PathBuf};

pub use metrics::{
    histogram_quantile, scrape, scrape_over, scrape_sim, scrape_until, scrape_url, Scrape,
};
pub use stack::{
    daemon_config, daemon_config_for, dev_token_file, faults, start_daemon, start_sim, start_stack,
    with_faults, DEV_TOKEN,
};
pub use wait::{eventually, DEADLINE};

/// The six threshold rows of a one-shot run's summary and report, in order.
pub const THRESHOLD_IDS: [&str; 6] = [
    "latency",
    "error_rate",
    "events_per_second",
    "projection_lag",
    "batch_latency",
    "lost_events",
];

/// The repository's root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A port that was free a moment ago (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes `text` to `dir/name`.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A new temporary dir holding `text` as `name`: the dir (removed on drop)
/// and the file's path.
pub fn temp_file(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), name, text);
    (dir, path)
}

/// GET `url`, the body as text (asking for OpenMetrics, as Prometheus
/// does, where the server negotiates).
pub async fn fetch_text(url: &str) -> String {
    reqwest::Client::new()
        .get(url)
        .header("accept", metrics::OPENMETRICS)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// GET `url`, the body as JSON.
pub async fn fetch_json(url: &str) -> serde_json::Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}
