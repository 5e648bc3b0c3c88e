//! The daemon as a real process: the token given by env stays out of logs,
//! `/metrics`, `/status` and `/`; SIGTERM drains in-flight requests and exits 0;
//! the admin routes answer. The reference API runs in the test process.

mod support;

use std::time::Duration;

use rehab_canary::sim::{Faults, SimHandle};
use support::process::Proc;
use support::{
    eventually, faults, scrape, scrape_sim, scrape_until, start_sim, with_faults, DEV_TOKEN,
};

const TOKEN: &str = "s3cr3t-canary-token-5f1e9a";

async fn sim_with(faults: Faults, tokens: Vec<String>) -> SimHandle {
    let mut cfg = with_faults(faults);
    cfg.auth.tokens = tokens;
    start_sim(cfg).await
}

fn config(sim: &SimHandle, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"5s\"\n\
         [target]\nbase_url = \"{}\"\n\
         [traffic]\nevents_per_second = 40\n\
         [traffic.burst]\nduration = \"0s\"\n\
         [traffic.journeys]\nrep_interval = \"50ms\"\n{extra}",
        sim.base_url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_from_env_is_used_but_never_shown() {
    let sim = sim_with(Faults::default(), vec![TOKEN.to_owned()]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut proc = Proc::start(&dir, &config(&sim, ""), &[("REHAB_CANARY_TOKEN", TOKEN)]);
    let addr = proc.admin_addr();

    // The target accepts events, so the token really went out.
    scrape_until(
        addr,
        "events accepted with the token",
        Duration::from_secs(15),
        |s| s.sum("rehab_canary_events_accepted_total", &[]) > 20.0,
    )
    .await;
    let metrics = scrape(addr).await.text;
    let status = support::fetch_text(&format!("http://{addr}/status")).await;
    let page = support::fetch_text(&format!("http://{addr}/")).await;
    for (what, text) in [("/metrics", &metrics), ("/status", &status), ("/", &page)] {
        assert!(!text.contains(TOKEN), "token leaked in {what}");
        assert!(
            !text.contains(&TOKEN[..12]),
            "token prefix leaked in {what}"
        );
    }
    proc.sigterm();
    let (code, log) = proc.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0));
    assert!(log.len() > 3, "expected debug logs, got {log:?}");
    for line in &log {
        assert!(!line.contains(&TOKEN[..12]), "token leaked in logs: {line}");
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_sigterm_drains_in_flight_requests_and_exits_0() {
    // Every request takes 1.5 s, so SIGTERM always finds some in flight.
    let sim = sim_with(faults(|f| f.latency_ms = 1500), Vec::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut proc = Proc::start(
        &dir,
        &config(&sim, ""),
        &[("REHAB_CANARY_TOKEN", DEV_TOKEN)],
    );
    let addr = proc.admin_addr();
    scrape_until(addr, "requests in flight", Duration::from_secs(15), |s| {
        s.value("rehab_canary_in_flight_requests", &[]) >= 10.0
    })
    .await;
    let started = std::time::Instant::now();
    proc.sigterm();
    let (code, log) = proc.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{log:#?}");
    // It waited for the slow requests instead of cutting them off...
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(
        log.iter().any(|l| l.contains("in-flight requests drained")),
        "{log:#?}"
    );
    // ...and the final tally it logs matches what the target answered.
    let summary = log
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "stopped")
        .expect("a final summary line");
    let accepted = summary["events_accepted"].as_f64().unwrap();
    assert!(accepted > 0.0, "{summary}");
    let truth = scrape_sim(&sim).await;
    assert_eq!(
        truth.value("rehab_sim_events_accepted_total", &[]),
        accepted,
        "every event the target accepted was seen through to its answer"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_answer() {
    let sim = sim_with(Faults::default(), Vec::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut proc = Proc::start(&dir, &config(&sim, ""), &[]);
    let addr = proc.admin_addr();
    let get = |path: &str| {
        let url = format!("http://{addr}{path}");
        async move { reqwest::get(url).await.unwrap() }
    };
    assert_eq!(get("/-/healthy").await.status(), 200);
    eventually("ready", Duration::from_secs(10), || async {
        (get("/-/ready").await.status() == 200).then_some(())
    })
    .await;
    // Plain clients get the classic text format.
    let m = get("/metrics").await;
    assert!(m.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = m.text().await.unwrap();
    for name in [
        "rehab_canary_requests_total",
        "rehab_canary_request_duration_seconds_bucket",
        "rehab_canary_events_sent_total",
        "rehab_canary_events_accepted_total",
        "rehab_canary_iterations_dropped_total",
        "rehab_canary_schedule_delay_seconds_bucket",
        "rehab_canary_target_events_per_second",
        "rehab_canary_burst_active",
        "rehab_canary_in_flight_requests",
        "rehab_canary_build_info",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    let status: serde_json::Value = get("/status").await.json().await.unwrap();
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    let page = get("/").await.text().await.unwrap();
    assert!(page.contains("href=\"metrics\""));
    assert!(
        page.contains(&sim.addr().port().to_string()),
        "landing page names the target"
    );
    proc.sigterm();
    let (code, _) = proc.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_sigterm_during_a_burst_exits_0_within_grace() {
    let sim = sim_with(Faults::default(), Vec::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = "[traffic.burst]\nevery = \"4s\"\nduration = \"2s\"\nmultiplier = 5.0\n";
    let toml = config(&sim, "").replace("[traffic.burst]\nduration = \"0s\"\n", extra);
    let mut proc = Proc::start(&dir, &toml, &[("REHAB_CANARY_TOKEN", DEV_TOKEN)]);
    let addr = proc.admin_addr();
    scrape_until(addr, "a burst in progress", Duration::from_secs(15), |s| {
        s.value("rehab_canary_burst_active", &[]) == 1.0
    })
    .await;
    let started = std::time::Instant::now();
    proc.sigterm();
    // shutdown_grace is 5 s in `config`; exit must come well within it.
    let (code, log) = proc.wait(Duration::from_secs(5));
    assert_eq!(code, Some(0), "{log:#?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        log.iter().any(|l| l.contains("\"drained\":true")),
        "{log:#?}"
    );
    sim.shutdown().await;
}
