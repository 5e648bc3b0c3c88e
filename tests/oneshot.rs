//! One-shot runs (`run --profile`) as a CI job runs them: the real binary
//! against an in-process reference API, judged by exit code, the terminal
//! table and `summary.json`. Rate- and lag-sensitive, so `serial_`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use rehab_canary::sim::{Faults, SimConfig, SimHandle};
use serde_json::Value;
use support::stack::config_toml;
use support::{faults, free_port, start_sim, write, DEV_TOKEN};

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    dir: Option<PathBuf>,
}

impl Run {
    fn summary(&self) -> Value {
        let dir = self.dir.as_ref().unwrap_or_else(|| {
            panic!(
                "no results folder; stdout:\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        });
        let text = std::fs::read_to_string(dir.join("summary.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// Asserts the run ended with `code` and its stderr says `says`.
    fn assert_refused(&self, code: i32, says: &str) {
        assert_eq!(self.code, Some(code), "{}", self.stderr);
        assert!(self.stderr.contains(says), "{}", self.stderr);
    }

    fn row<'a>(summary: &'a Value, id: &str) -> &'a Value {
        summary["thresholds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no threshold {id} in {summary}"))
    }
}

/// Runs the binary to completion in a blocking thread (the sim keeps
/// serving on the runtime meanwhile).
async fn run_once(dir: &Path, toml: &str, args: &[&str]) -> Run {
    let cfg = dir.join("canary.toml");
    std::fs::write(&cfg, toml).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rehab-canary"));
    cmd.arg("run")
        .arg("--config")
        .arg(&cfg)
        .args(args)
        .env("REHAB_CANARY_TOKEN", DEV_TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let dir = stdout
        .lines()
        .find_map(|l| l.strip_prefix("results: "))
        .map(PathBuf::from);
    Run {
        code: out.status.code(),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        dir,
    }
}

async fn sim_with(faults: Faults) -> SimHandle {
    let sim = start_sim(SimConfig::default()).await;
    sim.set_faults(faults);
    sim
}

/// `run --profile PROFILE --for RUN_FOR` with `toml`, results in
/// `dir/results`, then the `extra` arguments.
async fn run_profile(
    dir: &tempfile::TempDir,
    toml: &str,
    profile: &str,
    run_for: &str,
    extra: &[&str],
) -> Run {
    let results = results_arg(dir);
    let mut args = vec![
        "--profile",
        profile,
        "--for",
        run_for,
        "--results-dir",
        &results,
    ];
    args.extend_from_slice(extra);
    run_once(dir.path(), toml, &args).await
}

/// `run --profile smoke --for RUN_FOR` against `sim`, results in `dir/results`.
async fn smoke(sim: &SimHandle, dir: &tempfile::TempDir, run_for: &str, extra: &[&str]) -> Run {
    run_profile(dir, &config_toml(sim, ""), "smoke", run_for, extra).await
}

fn results_arg(dir: &tempfile::TempDir) -> String {
    dir.path().join("results").display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_smoke_against_a_healthy_target_passes() {
    let sim = sim_with(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let run = smoke(&sim, &dir, "6s", &[]).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let s = run.summary();
    assert_eq!(s["schema_version"], 1);
    assert_eq!(s["outcome"], "pass");
    assert_eq!(s["profile"], "smoke");
    for id in support::THRESHOLD_IDS {
        assert_eq!(Run::row(&s, id)["status"], "pass", "{id}: {s}");
    }
    // The smoke rate (20/s) for 6 s, accepted by the target: the same count
    // the simulator saw, and the sim saw nothing else.
    let accepted = s["totals"]["events_accepted"].as_u64().unwrap();
    assert!((100..=140).contains(&accepted), "{accepted}");
    let rows = s["timeseries"].as_array().unwrap();
    assert!((5..=8).contains(&rows.len()), "{} points", rows.len());
    assert!(run.stdout.contains("RESULT: PASS"), "{}", run.stdout);
    let dir = run.dir.unwrap();
    for f in ["summary.json", "report.html", "metrics.txt"] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let metrics = std::fs::read_to_string(dir.join("metrics.txt")).unwrap();
    assert!(
        metrics.contains("rehab_canary_events_sent_total"),
        "final exposition saved"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_five_percent_errors_fail_the_error_rate_row() {
    let sim = sim_with(faults(|f| f.error_rate = 0.05)).await;
    let dir = tempfile::tempdir().unwrap();
    let run = smoke(&sim, &dir, "6s", &[]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let s = run.summary();
    assert_eq!(s["outcome"], "fail");
    let row = Run::row(&s, "error_rate");
    assert_eq!(row["status"], "fail");
    let rate = row["value"].as_f64().unwrap();
    // About 220 requests, a small sample with a wide spread: 12-14 errors
    // in a row of runs, once 25 (11 %) in CI, more than independent 5 %
    // draws would give, so the errors are likely correlated (reads of a
    // patient whose events drew 500s). The bound says "about 5 %".
    assert!(
        (0.02..0.15).contains(&rate),
        "measured error rate {rate}; totals {}",
        s["totals"]
    );
    // The table names the failing row.
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("error rate"))
        .unwrap_or_else(|| panic!("no error rate row:\n{}", run.stdout));
    assert!(line.ends_with("FAIL"), "{line}");
    assert!(run.stdout.contains("RESULT: FAIL"));
    sim.shutdown().await;
}

/// The result line of the terminal table for a row, by its name.
fn table_line<'a>(run: &'a Run, name: &str) -> &'a str {
    run.stdout
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} row:\n{}", run.stdout))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_latency_between_target_and_critical_warns_and_fail_on_decides_the_exit() {
    // 300 ms before every handler: past the 200 ms target, within the
    // 500 ms critical level.
    let sim = sim_with(faults(|f| f.latency_ms = 300)).await;
    let dir = tempfile::tempdir().unwrap();
    let run = smoke(&sim, &dir, "6s", &[]).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let s = run.summary();
    assert_eq!(s["outcome"], "pass", "{s}");
    assert_eq!(s["fail_on"], "critical");
    let latency = Run::row(&s, "latency");
    assert_eq!(latency["status"], "warn", "{latency}");
    assert_eq!(latency["target"], 0.2);
    assert_eq!(latency["critical"], 0.5);
    let p95 = latency["value"].as_f64().unwrap();
    assert!((0.3..0.5).contains(&p95), "p95 {p95}");
    for row in s["thresholds"].as_array().unwrap() {
        assert_ne!(row["status"], "fail", "{row}");
    }
    assert_eq!(Run::row(&s, "lost_events")["critical"], Value::Null);
    assert!(table_line(&run, "p95 latency").ends_with("WARN"));
    assert!(
        run.stdout.contains("RESULT: PASS (--fail-on critical)"),
        "{}",
        run.stdout
    );
    let html = std::fs::read_to_string(run.dir.as_ref().unwrap().join("report.html")).unwrap();
    assert!(
        html.contains("<tr class=\"warn\" data-id=\"latency\">"),
        "the report marks the row"
    );

    // The same run with --fail-on warn: the warning fails it.
    let dir = tempfile::tempdir().unwrap();
    let run = smoke(&sim, &dir, "6s", &["--fail-on", "warn"]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let s = run.summary();
    assert_eq!(s["outcome"], "fail", "{s}");
    assert_eq!(s["fail_on"], "warn");
    assert_eq!(Run::row(&s, "latency")["status"], "warn");
    assert!(
        run.stdout.contains("RESULT: FAIL (--fail-on warn)"),
        "{}",
        run.stdout
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_abort_on_fail_ends_a_doomed_run_early() {
    let sim = sim_with(faults(|f| f.error_rate = 0.5)).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = config_toml(
        &sim,
        "[profiles.gate]\nevents_per_second = 20\nabort_on_fail = true\n",
    );
    let started = std::time::Instant::now();
    let run = run_profile(&dir, &toml, "gate", "5m", &[]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "{:?}",
        started.elapsed()
    );
    let s = run.summary();
    let aborted: Vec<&str> = s["aborted"]
        .as_array()
        .unwrap_or_else(|| panic!("not aborted: {s}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(aborted.contains(&"error_rate"), "{aborted:?}");
    assert!(s["totals"]["seconds"].as_f64().unwrap() < 60.0);
    assert!(run.stdout.contains("aborted early"), "{}", run.stdout);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_capacity_finds_the_targets_ingestion_limit() {
    let sim = sim_with(faults(|f| f.max_events_per_second = 800)).await;
    let dir = tempfile::tempdir().unwrap();
    // The sim's limit is a token bucket holding one second of capacity (800
    // events): a rate R above the limit is hidden for 800 / (R - 800) s. The
    // 4 s settle uses that burst up for any R >= 1000, so those steps fail in
    // their judged 4 s; rates between 800 and 960 may pass, which is still
    // within the bound. Latency, lag and batch latency ceilings are loosened
    // because the tests run a debug build on 2 shared cores: here the
    // ingestion limit (503s, hence errors and missing events/s) is what must
    // break the SLOs. A step passes only within every target (a WARN fails
    // it), so the loosened targets are what the steps are judged by.
    let toml = config_toml(
        &sim,
        "[profiles.capacity.capacity]\nstart_events_per_second = 400\n\
         step_events_per_second = 200\nstep_duration = \"8s\"\nsettle = \"4s\"\nrefine_steps = 2\n\
         [profiles.capacity.thresholds]\nlatency = \"1s\"\nlag = \"2s\"\n\
         [slo.batch_latency]\nthreshold = \"2.5s\"\ncritical = \"5s\"\n",
    );
    let run = run_profile(&dir, &toml, "capacity", "90s", &[]).await;
    // Shown with --no-capture: the figure the test judged.
    println!("{}", run.stdout);
    let s = run.summary();
    let capacity = s["capacity"]["events_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("no capacity figure: {}", run.stdout));
    assert!(
        (640.0..=960.0).contains(&capacity),
        "capacity {capacity} not within 20 % of 800:\n{}",
        run.stdout
    );
    assert_eq!(s["capacity"]["stopped_by"], "refined", "{}", run.stdout);
    // The canary sent its schedule; the target's 503s bounded the figure.
    assert_eq!(s["capacity"]["limited_by"], "target", "{}", run.stdout);
    let steps = s["capacity"]["steps"].as_array().unwrap();
    assert!(steps.iter().any(|st| st["passed"] == false));
    assert!(steps.iter().any(|st| st["phase"] == "refine"));
    // 750-ish is below the 1000/s SLO floor: the gate fails, naming capacity.
    assert_eq!(run.code, Some(1));
    assert_eq!(Run::row(&s, "capacity")["status"], "fail");
    assert!(run.stdout.contains("capacity:"), "{}", run.stdout);
    sim.shutdown().await;
}

/// Debian's `prometheus-pushgateway` on an ephemeral port; killed on drop.
struct Gateway(std::process::Child, u16);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn gateway(dir: &Path) -> Gateway {
    let port = free_port();
    let child = Command::new("prometheus-pushgateway")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus-pushgateway must be installed (scripts/test.sh installs it)");
    let gw = Gateway(child, port);
    let url = format!("http://127.0.0.1:{port}/-/ready");
    support::eventually(
        "the pushgateway is ready",
        Duration::from_secs(20),
        || async {
            reqwest::get(&url)
                .await
                .is_ok_and(|r| r.status().is_success())
                .then_some(())
        },
    )
    .await;
    gw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_the_pushgateway_receives_the_final_metrics_and_verdict() {
    let sim = sim_with(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path()).await;
    let url = format!("http://127.0.0.1:{}", gw.1);
    let run = smoke(&sim, &dir, "3s", &["--push-gateway", &url]).await;
    assert!(run.code.is_some(), "{}", run.stderr);
    let body = support::fetch_text(&format!("{url}/metrics")).await;
    let scrape = support::Scrape::parse(&body);
    let group = "job=\"rehab-canary-run\",profile=\"smoke\"";
    let find = |name: &str| {
        scrape
            .series
            .iter()
            .filter(|(k, _)| k.starts_with(name) && k.contains("job=\"rehab-canary-run\""))
            .map(|(_, v)| *v)
            .collect::<Vec<_>>()
    };
    let sent: f64 = find("rehab_canary_events_sent_total{").iter().sum();
    let s = run.summary();
    assert_eq!(
        sent,
        s["totals"]["events_sent"].as_f64().unwrap(),
        "pushed counters are the run's final counts ({group})"
    );
    let success = find("rehab_canary_run_success{");
    let expected = if s["outcome"] == "pass" { 1.0 } else { 0.0 };
    assert_eq!(success, [expected], "{body}");
    // One series per judged row (skipped ones are absent), at each level.
    let judged = s["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] != "skipped")
        .count();
    assert!(judged >= 5, "{s}");
    assert_eq!(find("rehab_canary_run_threshold_passed{").len(), judged);
    assert_eq!(
        find("rehab_canary_run_threshold_within_critical{").len(),
        judged
    );
    assert!(body.contains("profile=\"smoke\""));
    sim.shutdown().await;
}

/// A run folder name for a start `age` ago.
fn folder(age: Duration, profile: &str) -> String {
    let t = humantime::format_rfc3339_seconds(SystemTime::now() - age).to_string();
    let compact: String = t.chars().filter(|c| *c != '-' && *c != ':').collect();
    format!("{compact}-{profile}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_keep_removes_old_run_folders_only() {
    let sim = sim_with(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("results");
    let day = Duration::from_secs(86_400);
    let make = |name: &str, summary: bool| {
        let d = root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        if summary {
            std::fs::write(d.join("summary.json"), "{}").unwrap();
        }
        d
    };
    let old = make(&folder(8 * day, "load"), true);
    let older = make(&folder(30 * day, "smoke"), true);
    let recent = make(&folder(6 * day, "load"), true);
    let not_a_run = make(&folder(30 * day, "notes"), false);
    let foreign = make("keep-me", true);
    std::fs::write(root.join("README.txt"), "mine").unwrap();
    // `smoke` writes to dir/results, which is `root`.
    let run = smoke(&sim, &dir, "2s", &["--keep", "7d"]).await;
    assert!(run.code.is_some(), "{}", run.stderr);
    assert!(
        !old.exists() && !older.exists(),
        "runs older than 7d are removed"
    );
    for kept in [&recent, &not_a_run, &foreign] {
        assert!(kept.exists(), "{} must stay", kept.display());
    }
    assert!(root.join("README.txt").exists());
    assert!(
        run.dir.unwrap().join("summary.json").exists(),
        "this run stays"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_64() {
    let sim = sim_with(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let results = results_arg(&dir);
    let plain = config_toml(&sim, "");
    let bad_profile = config_toml(&sim, "[profiles.smoke.thresholds]\nlag_percentile = 100\n");
    // The arguments, and what stderr must say besides exiting 64.
    let cases: [(&str, &[&str], &str); 6] = [
        (
            &plain,
            &["--profile", "soak", "--results-dir", &results],
            "known profiles: smoke, load",
        ),
        (&plain, &["--for", "5s"], ""),
        (&plain, &["--fail-on", "warn"], "--profile"),
        (
            &plain,
            &["--profile", "smoke", "--fail-on", "never"],
            "possible values: warn, critical",
        ),
        (&plain, &["--profile", "smoke", "--for", "soon"], ""),
        (
            &bad_profile,
            &["--profile", "smoke"],
            "profiles.smoke.thresholds.lag_percentile",
        ),
    ];
    for (toml, args, says) in cases {
        run_once(dir.path(), toml, args)
            .await
            .assert_refused(64, says);
    }
    assert!(!dir.path().join("results").exists(), "no run happened");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_metrics_are_served_during_a_run_and_sigterm_ends_it_as_failed() {
    let sim = sim_with(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let results = results_arg(&dir);
    let toml = config_toml(&sim, "");
    let mut proc = support::process::Proc::start_args(
        &dir,
        &toml,
        &[],
        &[
            "--profile",
            "smoke",
            "--for",
            "10m",
            "--results-dir",
            &results,
        ],
    );
    let addr = proc.admin_addr();
    // /metrics is live mid-run, and counts the run's traffic.
    support::scrape_until(
        addr,
        "traffic on /metrics mid-run",
        Duration::from_secs(20),
        |s| s.sum("rehab_canary_events_sent_total", &[]) > 0.0,
    )
    .await;
    proc.sigterm();
    let (code, _) = tokio::task::spawn_blocking(move || proc.wait(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(code, Some(1), "an interrupted run is not a pass");
    let run_dir = std::fs::read_dir(dir.path().join("results"))
        .unwrap()
        .flatten()
        .next()
        .expect("results written on interrupt")
        .path();
    let s: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(s["interrupted"], true);
    assert_eq!(s["outcome"], "fail");
    assert!(s["totals"]["events_sent"].as_u64().unwrap() > 0);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_results_dir_exits_70_before_running() {
    let sim = sim_with(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "a-file", "");
    let results = file.join("results").display().to_string();
    let started = std::time::Instant::now();
    let run = run_once(
        dir.path(),
        &config_toml(&sim, ""),
        &["--profile", "load", "--results-dir", &results],
    )
    .await;
    run.assert_refused(70, "cannot write results");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "failed fast, no 10-minute run"
    );
    sim.shutdown().await;
}
