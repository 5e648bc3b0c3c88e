//! The fault matrix: each fault of the reference API, injected while the
//! daemon runs. Every case asserts that the daemon keeps running, that the
//! fault shows in the right metric, and that it recovers by itself within a
//! stated time after the fault clears. Names start with `serial_`: they
//! measure rates, so they run one at a time.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rehab_canary::app::{Daemon, RunOptions};
use rehab_canary::config::Config;
use rehab_canary::reload::ReloadOutcome;
use rehab_canary::sim::{self, Faults, SimConfig, SimHandle};
use support::stack::config_toml;
use support::{
    daemon_config_for, dev_token_file, faults, scrape, scrape_over, scrape_sim, scrape_until,
    start_daemon, start_sim, temp_file, write, Scrape, DEV_TOKEN,
};
use tokio::time::Instant;

/// How long recovery may take once a fault clears (trial interval 500 ms,
/// health poll 250 ms, plus slack for two noisy cores).
const RECOVERY: Duration = Duration::from_secs(5);

struct Rig {
    sim: SimHandle,
    daemon: Daemon,
    dir: tempfile::TempDir,
}

fn base_config(sim: &SimHandle, dir: &tempfile::TempDir) -> Config {
    let mut cfg = daemon_config_for(sim, dev_token_file(dir.path()));
    cfg.server.shutdown_grace = Duration::from_secs(3);
    cfg.target.timeout = Duration::from_millis(500);
    cfg.target.health_interval = Duration::from_millis(250);
    cfg.auth.token_file_check_interval = Duration::from_millis(100);
    cfg.traffic.events_per_second = 70.0;
    cfg.traffic.journeys.rep_interval = Duration::from_millis(50);
    cfg.circuit_breaker.failure_threshold = 10;
    cfg.circuit_breaker.trial_interval = Duration::from_millis(500);
    cfg
}

async fn rig_with(sim_cfg: SimConfig, tweak: impl FnOnce(&mut Config)) -> Rig {
    let sim = start_sim(sim_cfg).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = base_config(&sim, &dir);
    tweak(&mut cfg);
    let daemon = start_daemon(cfg).await;
    Rig { sim, daemon, dir }
}

async fn rig(tweak: impl FnOnce(&mut Config)) -> Rig {
    rig_with(SimConfig::default(), tweak).await
}

fn status(s: &Scrape, endpoint: &str, status: &str) -> f64 {
    s.get(
        "rehab_canary_requests_total",
        &[("endpoint", endpoint), ("status", status)],
    )
    .unwrap_or(0.0)
}

fn accepted(s: &Scrape) -> f64 {
    s.sum("rehab_canary_events_accepted_total", &[])
}

fn gauge(s: &Scrape, name: &str) -> f64 {
    s.value(name, &[])
}

/// The daemon is alive and events are accepted again (the recovery check).
async fn recovers(addr: SocketAddr) {
    let before = accepted(&scrape(addr).await);
    scrape_until(addr, "events accepted again", RECOVERY, |s| {
        accepted(s) >= before + 20.0 && gauge(s, "rehab_canary_circuit_open") == 0.0
    })
    .await;
    let healthy = reqwest::get(format!("http://{addr}/-/healthy"))
        .await
        .unwrap();
    assert_eq!(healthy.status(), 200);
}

/// Injects `faults` and waits (at most `limit`) until the fault `shows` in
/// the daemon's metrics.
async fn inject(
    r: &Rig,
    faults: Faults,
    what: &str,
    limit: Duration,
    shows: impl Fn(&Scrape) -> bool,
) {
    r.sim.set_faults(faults);
    scrape_until(r.addr(), what, limit, shows).await;
}

/// Clears the faults and checks the daemon recovers by itself.
async fn clear_and_recover(r: &Rig) {
    r.sim.set_faults(Faults::default());
    recovers(r.addr()).await;
}

/// One case on a fresh rig: [`inject`] (within 8 s), [`clear_and_recover`]
/// and a drained shutdown.
async fn fault_case(faults: Faults, what: &str, shows: impl Fn(&Scrape) -> bool) {
    let r = rig(|_| {}).await;
    inject(&r, faults, what, Duration::from_secs(8), shows).await;
    clear_and_recover(&r).await;
    r.done().await;
}

impl Rig {
    fn addr(&self) -> SocketAddr {
        self.daemon.admin_addr()
    }

    async fn done(self) {
        assert!(self.daemon.shutdown().await, "drained within grace");
        self.sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_target_down_for_10s_then_back() {
    let Rig {
        sim,
        daemon,
        dir: _dir,
    } = rig(|_| {}).await;
    let addr = daemon.admin_addr();
    let sim_addr = sim.addr();
    scrape_until(addr, "traffic flowing", RECOVERY, |s| accepted(s) > 20.0).await;
    sim.shutdown().await;
    let down_at = Instant::now();
    scrape_until(
        addr,
        "circuit open and target down",
        Duration::from_secs(8),
        |s| {
            gauge(s, "rehab_canary_circuit_open") == 1.0
                && gauge(s, "rehab_canary_target_up") == 0.0
                && status(s, "events_create", "connect_error") > 0.0
        },
    )
    .await;
    // While open only trials go out: the rest is counted, not sent.
    let s0 = scrape(addr).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s1 = scrape(addr).await;
    let key = [("reason", "circuit_open")];
    let dropped = s1.value_since(&s0, "rehab_canary_iterations_dropped_total", &key);
    let attempts = s1.sum_since(
        &s0,
        "rehab_canary_requests_total",
        &[("status", "connect_error")],
    );
    assert!(dropped > 100.0, "{dropped} dropped while open");
    assert!(
        attempts <= 12.0,
        "{attempts} requests sent to a down target in 2 s"
    );
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(down_at.elapsed())).await;
    let sim = sim::start(sim_addr, SimConfig::default()).await.unwrap();
    scrape_until(addr, "target up again", RECOVERY, |s| {
        gauge(s, "rehab_canary_target_up") == 1.0
    })
    .await;
    recovers(addr).await;
    assert!(daemon.shutdown().await);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_2s_latency_with_a_500ms_timeout() {
    fault_case(faults(|f| f.latency_ms = 2000), "timeouts counted", |s| {
        status(s, "events_create", "timeout") >= 10.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_50_percent_errors() {
    let r = rig(|_| {}).await;
    let addr = r.addr();
    r.sim.set_faults(faults(|f| f.error_rate = 0.5));
    let s0 = scrape(addr).await;
    scrape_until(addr, "500s counted", Duration::from_secs(8), |s| {
        status(s, "events_create", "500") - status(&s0, "events_create", "500") >= 40.0
    })
    .await;
    let s1 = scrape(addr).await;
    let errors = status(&s1, "events_create", "500") - status(&s0, "events_create", "500");
    let ok = status(&s1, "events_create", "201") - status(&s0, "events_create", "201");
    let share = errors / (errors + ok);
    assert!((0.3..0.7).contains(&share), "error share {share}");
    // Application errors are not an outage: the breaker stays closed.
    assert_eq!(gauge(&s1, "rehab_canary_circuit_open"), 0.0);
    clear_and_recover(&r).await;
    r.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_all_429_with_retry_after_2() {
    let r = rig(|_| {}).await;
    let addr = r.addr();
    scrape_until(addr, "traffic flowing", RECOVERY, |s| accepted(s) > 10.0).await;
    r.sim.set_faults(faults(|f| {
        f.rate_limit_rate = 1.0;
        f.retry_after_s = 2;
    }));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s0 = scrape(addr).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let s1 = scrape(addr).await;
    let sent = s1.sum_since(&s0, "rehab_canary_requests_total", &[("status", "429")]);
    // About 100 ticks/s are offered; honouring Retry-After: 2 leaves about one
    // request per traffic class per 2 s (plus those already in flight).
    assert!(sent <= 30.0, "{sent} requests in 6 s despite Retry-After");
    let held = s1.value_since(
        &s0,
        "rehab_canary_iterations_dropped_total",
        &[("reason", "rate_limited")],
    );
    assert!(held > 300.0, "{held} ticks held back");
    let waited = s1.sum("rehab_canary_rate_limit_wait_seconds_total", &[]);
    assert!(waited >= 4.0, "wait counted: {waited}");
    clear_and_recover(&r).await;
    r.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_connection_resets() {
    fault_case(
        faults(|f| f.reset_rate = 0.3),
        "resets counted as io_error",
        |s| s.sum("rehab_canary_requests_total", &[("status", "io_error")]) >= 10.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_garbage_bodies() {
    let r = rig(|_| {}).await;
    let addr = r.addr();
    inject(
        &r,
        faults(|f| f.garbage_rate = 1.0),
        "invalid bodies counted",
        Duration::from_secs(8),
        |s| s.sum("rehab_canary_invalid_responses_total", &[]) >= 10.0,
    )
    .await;
    r.sim.set_faults(Faults::default());
    let s0 = scrape(addr).await;
    recovers(addr).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s1 = scrape(addr).await;
    let stream = |s: &Scrape| {
        s.sum(
            "rehab_canary_requests_total",
            &[("endpoint", "patient_stream")],
        )
    };
    let invalid = |s: &Scrape| s.sum("rehab_canary_invalid_responses_total", &[]);
    assert!(stream(&s1) > stream(&s0), "reads continue");
    assert!(
        invalid(&s1) - invalid(&s0) <= 4.0,
        "only in-flight garbage after the clear"
    );
    r.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_stalled_projector() {
    let mut sim_cfg = SimConfig::default();
    sim_cfg.pipeline.queue_capacity = 200;
    let r = rig_with(sim_cfg, |_| {}).await;
    // Once the queue is full the target answers 503: backpressure shows.
    inject(
        &r,
        faults(|f| f.stall_projector = true),
        "503 from a full queue",
        Duration::from_secs(10),
        |s| status(s, "events_create", "503") >= 5.0,
    )
    .await;
    clear_and_recover(&r).await;
    let truth = scrape_sim(&r.sim).await;
    assert!(truth.value("rehab_sim_events_applied_total", &[]) > 0.0);
    r.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_token_expiring_mid_run_is_refreshed_by_login() {
    let mut sim_cfg = SimConfig::default();
    sim_cfg.auth.token_ttl = Duration::from_secs(2);
    let (_dir, password) = temp_file("password", "dev-password\n");
    let r = rig_with(sim_cfg, |c| {
        c.auth.token_file = None;
        c.auth.login.enabled = true;
        c.auth.login.username = "dev".into();
        c.auth.login.password_file = Some(password.clone());
        c.auth.login.refresh_before = Duration::from_millis(800);
    })
    .await;
    let addr = r.addr();
    scrape_until(
        addr,
        "logged in and accepted",
        Duration::from_secs(5),
        |s| accepted(s) > 10.0,
    )
    .await;
    let s0 = scrape(addr).await;
    // Three token lifetimes pass; refreshes keep every request authorised.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let s1 = scrape(addr).await;
    let unauthorized = s1.sum_since(&s0, "rehab_canary_requests_total", &[("status", "401")]);
    assert!(accepted(&s1) - accepted(&s0) > 200.0);
    assert!(
        unauthorized <= 3.0,
        "{unauthorized} requests hit an expired token"
    );
    let truth = scrape_sim(&r.sim).await;
    assert!(
        truth.value(
            "rehab_sim_requests_total",
            &[("route", "auth_refresh"), ("status", "200")]
        ) >= 2.0,
        "tokens were refreshed"
    );
    r.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_rotated_token_file_is_picked_up() {
    let r = rig(|_| {}).await;
    let addr = r.addr();
    let token = r.dir.path().join("token");
    scrape_until(addr, "accepted", RECOVERY, |s| accepted(s) > 10.0).await;
    std::fs::write(&token, "a-revoked-token\n").unwrap();
    scrape_until(addr, "401s after rotation to a bad token", RECOVERY, |s| {
        s.value(
            "rehab_canary_auth_failures_total",
            &[("reason", "unauthorized")],
        ) >= 5.0
    })
    .await;
    std::fs::write(&token, format!("{DEV_TOKEN}\n")).unwrap();
    recovers(addr).await;
    r.done().await;
}

fn write_config(dir: &tempfile::TempDir, sim: &SimHandle, eps: f64, extra: &str) -> PathBuf {
    let token = dev_token_file(dir.path());
    write(
        dir.path(),
        "canary.toml",
        &config_toml(
            sim,
            &format!(
                "[auth]\ntoken_file = \"{}\"\n[traffic]\nevents_per_second = {eps}\n{extra}\
                 [traffic.burst]\nduration = \"0s\"\n[traffic.journeys]\nrep_interval = \"50ms\"\n",
                token.display()
            ),
        ),
    )
}

/// A reference API and a daemon started from a config file (see
/// [`write_config`]) it can reload.
async fn reloadable(eps: f64, extra: &str) -> (SimHandle, tempfile::TempDir, PathBuf, Daemon) {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, &sim, eps, extra);
    let daemon = Daemon::start_with(
        Config::load(Some(&path)).unwrap(),
        RunOptions {
            config_path: Some(path.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    (sim, dir, path, daemon)
}

async fn rate(addr: SocketAddr, over: Duration) -> f64 {
    let (s0, s1, secs) = scrape_over(addr, over).await;
    s1.sum_since(&s0, "rehab_canary_events_sent_total", &[]) / secs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_reloads_invalid_kept_valid_applied_unchanged_skipped() {
    let (sim, dir, path, daemon) = reloadable(50.0, "").await;
    let addr = daemon.admin_addr();

    // Unchanged: a no-op that is not even counted.
    assert_eq!(daemon.reload().outcome, ReloadOutcome::Unchanged);
    let s = scrape(addr).await;
    assert_eq!(s.value("rehab_canary_config_reloads_total", &[]), 0.0);

    // Invalid: every error reported, running config kept.
    std::fs::write(
        &path,
        "[traffic]\nevents_per_second = -5\nmax_in_flihgt = 3\n",
    )
    .unwrap();
    let report = daemon.reload();
    assert_eq!(report.outcome, ReloadOutcome::Failed);
    assert_eq!(report.errors.len(), 2, "{:?}", report.errors);
    let s = scrape(addr).await;
    assert_eq!(
        s.value("rehab_canary_config_last_reload_successful", &[]),
        0.0
    );
    assert_eq!(
        s.value("rehab_canary_config_reload_failures_total", &[]),
        1.0
    );
    let kept = rate(addr, Duration::from_secs(3)).await;
    assert!((kept - 50.0).abs() < 8.0, "running rate kept: {kept}");

    // Valid, through the HTTP route: the new rate is achieved, counters kept.
    let sent_before = scrape(addr)
        .await
        .sum("rehab_canary_events_sent_total", &[]);
    write_config(&dir, &sim, 150.0, "");
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let s = scrape(addr).await;
    assert_eq!(
        s.value("rehab_canary_config_last_reload_successful", &[]),
        1.0
    );
    assert!(
        s.value(
            "rehab_canary_config_last_reload_success_timestamp_seconds",
            &[]
        ) > 1.7e9
    );
    assert!(
        s.sum("rehab_canary_events_sent_total", &[]) >= sent_before,
        "counters not reset"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let new = rate(addr, Duration::from_secs(4)).await;
    assert!((new - 150.0).abs() < 15.0, "reloaded rate {new}");
    assert_eq!(
        scrape(addr)
            .await
            .value("rehab_canary_target_events_per_second", &[]),
        150.0
    );

    // Restart-only keys are named and left alone.
    write_config(&dir, &sim, 150.0, "");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("[server]\n", "[server]\nshutdown_grace = \"7s\"\n");
    std::fs::write(&path, text).unwrap();
    let report = daemon.reload();
    assert_eq!(report.outcome, ReloadOutcome::Applied);
    assert_eq!(report.restart_required, vec!["server"]);
    assert!(daemon.shutdown().await);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_pause_and_resume_survive_a_reload() {
    let (sim, dir, _path, daemon) = reloadable(100.0, "").await;
    let addr = daemon.admin_addr();
    let http = reqwest::Client::new();
    scrape_until(addr, "traffic", RECOVERY, |s| accepted(s) > 10.0).await;
    let resp = http
        .post(format!("http://{addr}/-/pause"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), r#"{"paused":true}"#);
    tokio::time::sleep(Duration::from_millis(300)).await; // in-flight answers land
    write_config(&dir, &sim, 120.0, "");
    assert_eq!(daemon.reload().outcome, ReloadOutcome::Applied);
    let s0 = scrape(addr).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s1 = scrape(addr).await;
    assert_eq!(
        gauge(&s1, "rehab_canary_paused"),
        1.0,
        "pause survives the reload"
    );
    assert_eq!(
        s1.sum("rehab_canary_events_sent_total", &[]),
        s0.sum("rehab_canary_events_sent_total", &[]),
        "nothing sent while paused"
    );
    let probes = |s: &Scrape| s.sum("rehab_canary_lag_probes_total", &[]);
    assert!(probes(&s1) - probes(&s0) <= 4.0, "lag probes pause too");
    let held = s1.value_since(
        &s0,
        "rehab_canary_iterations_dropped_total",
        &[("reason", "paused")],
    );
    assert!(held > 100.0, "{held} ticks held while paused");
    let status = support::fetch_json(&format!("http://{addr}/status")).await;
    assert_eq!(status["extras"]["control"]["paused"], true, "{status}");
    http.post(format!("http://{addr}/-/resume"))
        .send()
        .await
        .unwrap();
    recovers(addr).await;
    assert_eq!(gauge(&scrape(addr).await, "rehab_canary_paused"), 0.0);
    assert!(daemon.shutdown().await);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_a_reload_changes_the_lag_probes_without_a_restart() {
    let lag = "[lag]\ninterval = \"100ms\"\n";
    let (sim, dir, _path, daemon) = reloadable(10.0, lag).await;
    let addr = daemon.admin_addr();
    let probes =
        |s: &Scrape, p: &str| s.value("rehab_canary_lag_probes_total", &[("projection", p)]);
    scrape_until(addr, "stream probes running", RECOVERY, |s| {
        probes(s, "stream") >= 5.0
    })
    .await;
    write_config(
        &dir,
        &sim,
        10.0,
        &format!("{lag}[lag.probes.stream]\nenabled = false\n"),
    );
    let report = daemon.reload();
    assert_eq!(report.outcome, ReloadOutcome::Applied);
    assert!(
        report.restart_required.is_empty(),
        "{:?}",
        report.restart_required
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s0 = scrape(addr).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s1 = scrape(addr).await;
    assert_eq!(
        probes(&s1, "stream"),
        probes(&s0, "stream"),
        "stream probe switched off"
    );
    assert!(
        probes(&s1, "adherence") >= probes(&s0, "adherence") + 8.0,
        "the other probes run on"
    );
    assert_eq!(
        s1.sum(
            "rehab_canary_lag_probe_failures_total",
            &[("reason", "lost")]
        ),
        0.0
    );
    assert!(daemon.shutdown().await);
    sim.shutdown().await;
}
