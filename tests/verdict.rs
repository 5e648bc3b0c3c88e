//! The deploy verdict against the reference API, its faults as the known
//! cause: calm windows give no fail (and at most one marginal in 20
//! verdicts); a deploy followed by +50 ms of latency, +100 ms of projection
//! delay or 2 % errors fails on that signal alone, within 45 s of traffic at
//! 200 events/s. Snapshots are 10 s here (1 min in production) so the test
//! takes minutes, not hours. Timing-sensitive, so `serial_`.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use rehab_canary::sim::Faults;
use serde_json::Value;
use support::faults;
use support::stack::{
    daemon_config_for, shared_dev_token_file, start_daemon, start_sim, with_faults,
};

async fn deploy(addr: SocketAddr, version: &str) {
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/-/deploy"))
        .json(&serde_json::json!({ "version": version }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

async fn verdict(addr: SocketAddr, query: &str) -> Value {
    let resp = reqwest::get(format!("http://{addr}/api/v1/verdict?{query}"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// The signals of `v` that did not pass, as `signal/of: outcome`.
fn not_passing(v: &Value) -> Vec<String> {
    v["signals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["outcome"] != "pass")
        .map(|s| {
            format!(
                "{}/{}: {} ({})",
                s["signal"].as_str().unwrap(),
                s["of"].as_str().unwrap_or("-"),
                s["outcome"].as_str().unwrap(),
                s["reason"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// A reference API and a daemon at 200 events/s with 10 s snapshots,
/// after `warm` of calm traffic.
async fn stack(warm: Duration) -> (rehab_canary::sim::SimHandle, rehab_canary::app::Daemon) {
    let mut sim_cfg = with_faults(Faults::default());
    sim_cfg.pipeline.batch_timeout = Duration::from_millis(5);
    let sim = start_sim(sim_cfg).await;
    let mut cfg = daemon_config_for(&sim, shared_dev_token_file());
    cfg.traffic.events_per_second = 200.0;
    cfg.traffic.burst.duration = Duration::ZERO;
    cfg.lag.interval = Duration::from_millis(100);
    cfg.lag.probes.batch.enabled = false;
    cfg.verdict.snapshot_interval = Duration::from_secs(10);
    cfg.verdict.retention = Duration::from_secs(3600);
    cfg.verdict.baseline = Duration::from_secs(60);
    cfg.verdict.min_samples = 50;
    let daemon = start_daemon(cfg).await;
    tokio::time::sleep(warm).await;
    (sim, daemon)
}

/// After a calm minute, a deploy followed by `fault`: within 45 s the
/// verdict fails on `signal`, and every other signal passes (or has too few
/// samples to say).
async fn deploy_then_fault(version: &str, fault: Faults, signal: &str) {
    let (sim, daemon) = stack(Duration::from_secs(70)).await;
    let addr = daemon.admin_addr();
    deploy(addr, version).await;
    sim.set_faults(fault);
    tokio::time::sleep(Duration::from_secs(45)).await;
    let v = verdict(addr, "since=last-deploy&baseline=60s").await;
    let off = not_passing(&v);
    eprintln!("{version}: {} {off:?}", v["verdict"]);
    assert_eq!(v["verdict"], "fail", "{version}: {off:?}");
    assert_eq!(v["deploy"]["version"], version);
    for s in v["signals"].as_array().unwrap() {
        if s["signal"] == signal {
            continue;
        }
        assert!(
            s["outcome"] == "pass" || s["outcome"] == "inconclusive",
            "{version}: another signal moved: {s}"
        );
    }
    assert!(
        off.iter()
            .any(|o| o.starts_with(signal) && o.contains("fail")),
        "{version}: {off:?}"
    );
    daemon.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_calm_windows_do_not_fail() {
    // 20 verdicts over calm windows: the last 20, 30 or 40 s against the
    // 30 to 60 s before them.
    let (sim, daemon) = stack(Duration::from_secs(90)).await;
    let addr = daemon.admin_addr();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut marginal = 0;
    for k in 0..20u64 {
        let since = now - 20 - 10 * (k % 3);
        let baseline = 30 + 10 * (k % 4);
        let v = verdict(addr, &format!("since={since}&baseline={baseline}s")).await;
        assert_ne!(
            v["verdict"],
            "fail",
            "calm window {k}: {:?}",
            not_passing(&v)
        );
        if v["verdict"] != "pass" {
            eprintln!("calm window {k}: {} {:?}", v["verdict"], not_passing(&v));
        }
        marginal += usize::from(v["verdict"] == "marginal");
    }
    eprintln!("calm: {marginal} marginal of 20");
    assert!(
        marginal <= 1,
        "{marginal} marginal verdicts of 20 calm ones"
    );
    daemon.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_50ms_more_latency_after_a_deploy_fails_on_latency() {
    deploy_then_fault("latency", faults(|f| f.latency_ms = 50), "latency").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_100ms_more_projection_delay_after_a_deploy_fails_on_lag() {
    deploy_then_fault("lag", faults(|f| f.projection_delay_ms = 100), "lag").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_2_percent_errors_after_a_deploy_fails_on_errors() {
    deploy_then_fault("errors", faults(|f| f.error_rate = 0.02), "errors").await;
}
