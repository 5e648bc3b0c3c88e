//! Leak checks that hold by construction, so they pass on a busy machine:
//! across bursts that fill `traffic.max_in_flight`, the daemon's open file
//! descriptors stay under its idle count plus every connection its bounds
//! allow (the traffic's `target.connections`, lag probe posts and polls, the
//! health check, the other paths' idle keep-alive connections). The timed soak (`scripts/soak.sh 30`) is a
//! benchmark, not a test.

mod support;

use std::time::{Duration, Instant};

use rehab_canary::sim::Faults;
use support::process::Proc;
use support::{faults, scrape, start_sim, with_faults, DEV_TOKEN};

/// The bounds the test sets.
struct Limits {
    connections: usize,
    max_in_flight: usize,
    /// The other paths' idle keep-alive connections.
    pool_idle: usize,
    lag_runs: usize,
    lag_polls_per_probe: usize,
}

const L: Limits = Limits {
    connections: 16,
    max_in_flight: 32,
    pool_idle: 8,
    lag_runs: 4,
    lag_polls_per_probe: 2,
};
/// The four probes, the health check's request, and slack for what the
/// process opens on its own schedule (a log write, a /proc read).
const PROBES: usize = 4;
const HEALTH: usize = 1;
const SLACK: usize = 4;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn config(base_url: &str, events_per_second: u32, probes: bool) -> String {
    let on = if probes { "true" } else { "false" };
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\
         [target]\nbase_url = \"{base_url}\"\nconnections = {}\n\
         pool_max_idle_per_host = {}\n\
         [traffic]\nevents_per_second = {events_per_second}\nmax_in_flight = {}\n\
         [traffic.burst]\nevery = \"4s\"\nduration = \"2s\"\nmultiplier = 4\n\
         [lag]\ninterval = \"100ms\"\ntimeout = \"2s\"\nmax_in_flight = {}\n\
         poll_max_in_flight = {}\n\
         [lag.probes.stream]\nenabled = {on}\n[lag.probes.adherence]\nenabled = {on}\n\
         [lag.probes.quality]\nenabled = {on}\n[lag.probes.work_queue]\nenabled = {on}\n\
         [lag.probes.batch]\nenabled = {on}\n",
        L.connections, L.pool_idle, L.max_in_flight, L.lag_runs, L.lag_polls_per_probe,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_open_fds_stay_within_the_connection_bounds_across_bursts() {
    // 30-60 ms answers: a 4x burst wants more requests in flight than the
    // bound allows, so the bound, not the load, decides the connections.
    let sim = start_sim(with_faults(faults(|f: &mut Faults| {
        f.latency_ms = 30;
        f.jitter_ms = 30;
    })))
    .await;
    let dir = tempfile::tempdir().unwrap();

    // The same daemon with nothing to send: its own descriptors.
    let mut idle = Proc::start(
        &dir,
        &config(&sim.base_url(), 0, false),
        &[("REHAB_CANARY_TOKEN", DEV_TOKEN)],
    );
    idle.admin_addr();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = open_fds(idle.id());
    idle.sigterm();
    idle.wait(Duration::from_secs(15));

    let mut proc = Proc::start(
        &dir,
        &config(&sim.base_url(), 300, true),
        &[("REHAB_CANARY_TOKEN", DEV_TOKEN)],
    );
    let addr = proc.admin_addr();
    let bound = base
        + L.connections
        + L.lag_runs
        + PROBES * L.lag_polls_per_probe
        + HEALTH
        + L.pool_idle
        + SLACK;
    let mut peak = 0;
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        peak = peak.max(open_fds(proc.id()));
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let s = scrape(addr).await;
    eprintln!("open fds: idle {base}, peak {peak}, bound {bound}");
    // The bursts really pressed on the bound: ticks were dropped at it.
    assert!(
        s.sum("rehab_canary_iterations_dropped_total", &[]) > 0.0,
        "no drops: the test did not fill max_in_flight"
    );
    assert!(peak <= bound, "open fds peaked at {peak}, over {bound}");
    // The traffic's connections: never more than configured, and a due
    // request that found them all busy waited in the queue (and says so).
    let open = s.value("rehab_canary_connections_open", &[]);
    assert!(
        open >= 1.0 && open <= L.connections as f64,
        "connections open: {open}"
    );
    let opened = s.value(
        "rehab_canary_connection_attempts_total",
        &[("result", "success")],
    );
    assert!(opened >= 1.0, "{opened}");
    assert!(s.value("rehab_canary_queue_wait_seconds_count", &[]) > 0.0);
    // The loss bookkeeping holds what its window allows, no more.
    for p in ["stream", "adherence", "quality", "work_queue"] {
        let tracked = s.value("rehab_canary_lag_tracked_events", &[("projection", p)]);
        assert!(
            tracked <= 60.0 / 0.1 + L.lag_runs as f64 + 1.0,
            "{p}: {tracked}"
        );
    }
    proc.sigterm();
    let (code, _) = proc.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0));
    sim.shutdown().await;
}
