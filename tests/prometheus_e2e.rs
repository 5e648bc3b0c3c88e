//! The whole monitoring kit against a real Prometheus (Debian's, 2.42): the
//! simulator and the daemon run in-process with faults and a burst, Prometheus
//! scrapes them every second with our rules loaded, and then every panel query
//! of both dashboards and every recording rule must return data, no rule may
//! fail to evaluate, and the loss alert must be pending or firing. This is
//! what keeps dashboards and rules from rotting into "No data" after a metric
//! is renamed. Also: `promtool check metrics` on the daemon's exposition, and
//! the dashboards' portability (datasource variable, fixed uid, `id: null`).
//!
//! Needs `prometheus` and `promtool` on PATH (scripts/test.sh installs the
//! Debian package); a missing binary fails the test, it never skips.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rehab_canary::app::{Daemon, RunOptions};
use rehab_canary::config::Config;
use rehab_canary::lag::Projection;
use rehab_canary::sim::{Faults, SimHandle};
use rehab_canary::slo::{self, rules::Rule};
use serde_json::Value;
use support::{dev_token_file, faults, free_port, root, start_sim, with_faults};

const JOB: &str = "rehab-canary";

/// Kills Prometheus when the test ends, also when it panics.
struct Prometheus {
    child: Child,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn start_prometheus(daemon: SocketAddr, sim: SocketAddr) -> Prometheus {
    start_prometheus_with(&[daemon], sim, &[])
}

/// Prometheus scraping `daemons` (one job) and the sim every second, with
/// our rules loaded and the given `--enable-feature` flags.
fn start_prometheus_with(daemons: &[SocketAddr], sim: SocketAddr, features: &[&str]) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let rules = root().join(slo::RULES_PATH);
    let targets = daemons
        .iter()
        .map(|d| format!("'{d}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {rules}\n\
         scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: [{targets}]\n  \
         - job_name: rehab-sim\n    static_configs:\n      - targets: ['{sim}']\n",
        rules = rules.display()
    );
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let port = free_port();
    let log = dir.path().join("prometheus.log");
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(features.iter().map(|f| format!("--enable-feature={f}")))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("`prometheus` is required (Debian package `prometheus`; scripts/test.sh installs it): {e}")
        });
    Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        log,
        _dir: dir,
    }
}

async fn api(prom: &Prometheus, path: &str, params: &[(&str, String)]) -> Value {
    let resp = reqwest::Client::new()
        .get(format!("{}{path}", prom.url))
        .query(params)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}\n{}", prom.log()));
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert!(
        status.is_success() || status.as_u16() == 422 || status.as_u16() == 400,
        "{path}: {status} {body}"
    );
    body
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The daemon's test config. Lag probe settings go through the serialized
/// form so this compiles whether or not the `[lag]` section (issue 4) exists
/// yet; without it, the lag and loss queries below fail, by name.
fn daemon_config(base_url: String, token: PathBuf) -> Config {
    let mut cfg = support::daemon_config();
    cfg.target.base_url = base_url;
    cfg.auth.token_file = Some(token);
    cfg.traffic.events_per_second = 100.0;
    // A 5 s burst at 3x every 20 s: several bursts in the run.
    cfg.traffic.burst.every = Duration::from_secs(20);
    cfg.traffic.burst.duration = Duration::from_secs(5);
    cfg.traffic.burst.multiplier = 3.0;
    cfg.traffic.journeys.rep_interval = Duration::from_millis(50);
    // Faults must not open the circuit (it would stop the traffic).
    cfg.circuit_breaker.failure_threshold = 1000;
    let mut v = serde_json::to_value(&cfg).unwrap();
    if let Some(lag) = v.get_mut("lag").and_then(Value::as_object_mut) {
        // Short timeout so dropped probe events are counted lost within the run.
        lag.insert("interval".into(), "250ms".into());
        lag.insert("timeout".into(), "2s".into());
    }
    let mut cfg: Config = serde_json::from_value(v).unwrap();
    // The reference API's own timestamps: the dashboard draws server-clock lag.
    for p in [Projection::Stream, Projection::Adherence] {
        let clock = &mut cfg.lag.probes[p].server_clock;
        clock.committed = Some("/committed_at".into());
        clock.applied = Some("/projected_at".into());
    }
    cfg
}

async fn start_stack(faults: Faults, dir: &Path) -> (SimHandle, Daemon) {
    let sim = start_sim(with_faults(faults)).await;
    let cfg = daemon_config(sim.base_url(), dev_token_file(dir));
    // Started from a file, as in production, so the run can reload it.
    let path = dir.join("canary.toml");
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    let opts = RunOptions {
        config_path: Some(path),
        ..Default::default()
    };
    let daemon = Daemon::start_with(cfg, opts).await.expect("daemon starts");
    (sim, daemon)
}

/// `POST /-/deploy`, as a pipeline's deploy step does.
async fn record_deploy(addr: SocketAddr) {
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/-/deploy"))
        .body(r#"{"version":"e2e-1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// Every dashboard query and recording rule that returns no data over
/// `start..now`, and every rule that failed to evaluate.
async fn queries_without_data(
    prom: &Prometheus,
    instance: &str,
    start: f64,
    now: f64,
) -> Vec<String> {
    // Every dashboard query returns at least one series over the run.
    let mut failures = Vec::new();
    let range_s = (now - start).ceil() as u64;
    let mut queries = 0;
    for name in DASHBOARDS {
        for (what, expr) in dashboard_queries(&load_dashboard(name)) {
            let q = substitute(&expr, instance, range_s);
            let body = api(
                prom,
                "/api/v1/query_range",
                &[
                    ("query", q.clone()),
                    ("start", format!("{start:.3}")),
                    ("end", format!("{now:.3}")),
                    ("step", "1".into()),
                ],
            )
            .await;
            queries += 1;
            if body["status"] != "success" {
                failures.push(format!("{name} {what}: error {}\n    {q}", body["error"]));
            } else if body["data"]["result"].as_array().is_none_or(Vec::is_empty) {
                failures.push(format!("{name} {what}: no data\n    {q}"));
            }
        }
    }
    assert!(queries > 50, "only {queries} dashboard queries found");

    // Every recording rule has produced a series.
    let file = slo::generate(&Config::default().slo);
    for rule in file.records() {
        let Rule::Record { record, labels, .. } = rule else {
            unreachable!()
        };
        let selector = labels
            .iter()
            .map(|(k, v)| format!(",{k}=\"{v}\""))
            .collect::<String>();
        let q = format!("{{__name__=\"{record}\"{selector}}}");
        let body = api(prom, "/api/v1/query", &[("query", q.clone())]).await;
        if body["data"]["result"].as_array().is_none_or(Vec::is_empty) {
            failures.push(format!("recording rule {q}: no data"));
        }
    }
    // And no rule failed to evaluate.
    let rules = api(prom, "/api/v1/rules", &[]).await;
    let groups = rules["data"]["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        groups.len(),
        file.groups.len(),
        "rules not loaded:\n{}",
        prom.log()
    );
    for g in &groups {
        for r in g["rules"].as_array().into_iter().flatten() {
            if r["health"] != "ok" {
                failures.push(format!(
                    "rule {}: {} {}",
                    r["name"], r["health"], r["lastError"]
                ));
            }
        }
    }

    failures
}

fn load_dashboard(name: &str) -> Value {
    let path = root().join("grafana/dashboards").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const DASHBOARDS: [&str; 2] = ["rehab-canary-overview.json", "rehab-canary-slos.json"];

/// Every query of a dashboard: panel targets (rows included) and annotations,
/// as (where, expr).
fn dashboard_queries(d: &Value) -> Vec<(String, String)> {
    fn panels(list: &Value, row: &mut String, out: &mut Vec<(String, String)>) {
        for p in list.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?");
            if p["type"] == "row" {
                *row = title.to_owned();
            }
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push((format!("{row} / `{title}` {}", t["refId"]), e.to_owned()));
                }
            }
            panels(&p["panels"], row, out);
        }
    }
    let mut out = Vec::new();
    panels(&d["panels"], &mut String::new(), &mut out);
    for a in d["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(e) = a["expr"].as_str() {
            out.push((format!("annotation `{}`", a["name"]), e.to_owned()));
        }
    }
    out
}

/// Grafana's substitutions, as a dashboard user with this job and instance
/// selected would get them.
fn substitute(expr: &str, instance: &str, range_s: u64) -> String {
    expr.replace("$__rate_interval", "10s")
        .replace("$__interval", "5s")
        .replace("$__range", &format!("{range_s}s"))
        .replace("$job", JOB)
        .replace("$instance", &instance.replace('.', "\\\\."))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_dashboards_and_rules_return_data_from_a_real_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    // Errors (500s) and lost events (accepted, never projected) from the start.
    let (sim, daemon) = start_stack(
        faults(|f| {
            f.error_rate = 0.02;
            f.drop_rate = 0.3;
        }),
        dir.path(),
    )
    .await;
    let instance = daemon.admin_addr().to_string();
    let prom = start_prometheus(daemon.admin_addr(), sim.addr());
    let start = unix_now();

    support::eventually("prometheus ready", Duration::from_secs(20), || async {
        let r = reqwest::get(format!("{}/-/ready", prom.url)).await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    // About a minute of traffic, bursts and faults, scraped every second,
    // with one config reload (a rate change) in the middle.
    tokio::time::sleep(Duration::from_secs(25)).await;
    let mut cfg = daemon_config(sim.base_url(), dev_token_file(dir.path()));
    cfg.traffic.events_per_second = 120.0;
    std::fs::write(
        dir.path().join("canary.toml"),
        toml::to_string(&cfg).unwrap(),
    )
    .unwrap();
    let report = daemon.reload();
    assert!(report.errors.is_empty(), "{report:?}");
    // A deploy, for the dashboards' deploy annotation.
    record_deploy(daemon.admin_addr()).await;
    tokio::time::sleep(Duration::from_secs(25)).await;
    // The loss alert: pending or firing once lost probes are counted.
    let loss_alert = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let alerts = api(&prom, "/api/v1/alerts", &[]).await;
            let state = alerts["data"]["alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["labels"]["alertname"] == "RehabCanaryEventsLost")
                .and_then(|a| a["state"].as_str().map(str::to_owned));
            if let Some(s) = state {
                return s;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
    .await;

    let now = unix_now();
    let mut failures = Vec::new();
    match &loss_alert {
        Ok(state) if state == "pending" || state == "firing" => {}
        other => failures.push(format!(
            "alert RehabCanaryEventsLost is not pending or firing: {other:?} (needs the lag probes of issue 4)"
        )),
    }

    failures.extend(queries_without_data(&prom, &instance, start, now).await);

    drop(prom);
    assert!(daemon.shutdown().await);
    sim.shutdown().await;
    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// `curl -H 'Accept: text/plain;version=0.0.4' /metrics | promtool check
/// metrics`, as a plain client sees it: the classic text format with no
/// exemplars, the window quantiles typed as summaries, and nothing filtered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_check_metrics_finds_no_problem() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, daemon) = start_stack(faults(|f| f.error_rate = 0.05), dir.path()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let resp = reqwest::Client::new()
        .get(format!("http://{}/metrics", daemon.admin_addr()))
        .header("accept", "text/plain;version=0.0.4")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = resp.text().await.unwrap();
    assert!(daemon.shutdown().await);
    sim.shutdown().await;
    // What the lint would miss if these were not there.
    for needle in [
        "# TYPE rehab_canary_request_latency_window_seconds summary",
        "# TYPE rehab_canary_projection_lag_window_seconds summary",
        "rehab_canary_request_duration_seconds_bucket{",
        "rehab_canary_request_latency_window_seconds{endpoint=\"events_create\",quantile=\"0.95\"}",
    ] {
        assert!(text.contains(needle), "no {needle:?} in the exposition");
    }

    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("`promtool` is required (Debian package `prometheus`): {e}"));
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let problems: Vec<&str> = report.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{report}"
    );
    assert!(
        problems.is_empty(),
        "promtool check metrics:\n{}",
        problems.join("\n")
    );
}

#[test]
fn dashboards_are_portable() {
    let titles = ["Rehab canary / Overview", "Rehab canary / SLOs"];
    let uids = ["rehab-canary-overview", "rehab-canary-slos"];
    for (i, name) in DASHBOARDS.iter().enumerate() {
        let d = load_dashboard(name);
        assert_eq!(d["title"], titles[i], "{name}");
        assert_eq!(d["uid"], uids[i], "{name}");
        assert!(d["id"].is_null(), "{name}: id must be null");
        let vars = d["templating"]["list"].as_array().unwrap();
        let var = |n: &str| vars.iter().find(|v| v["name"] == n).cloned();
        let ds = var("datasource").expect("datasource variable");
        assert_eq!(ds["type"], "datasource");
        assert_eq!(ds["query"], "prometheus");
        assert!(var("job").is_some() && var("instance").is_some(), "{name}");
        let text = serde_json::to_string(&d).unwrap();
        assert!(
            !text.contains("DS_PROMETHEUS"),
            "{name}: ${{DS_PROMETHEUS}} breaks provisioning"
        );
        // Every panel and query uses the datasource variable.
        fn check(list: &Value, name: &str) {
            for p in list.as_array().into_iter().flatten() {
                if p["type"] != "row" {
                    assert_eq!(
                        p["datasource"]["uid"], "${datasource}",
                        "{name}: {}",
                        p["title"]
                    );
                    for t in p["targets"].as_array().into_iter().flatten() {
                        assert_eq!(
                            t["datasource"]["uid"], "${datasource}",
                            "{name}: {}",
                            p["title"]
                        );
                        let e = t["expr"].as_str().unwrap_or_default();
                        // Raw metrics are filtered to the selected job.
                        if e.contains("rehab_canary_") && !e.contains("job:") {
                            assert!(e.contains("job=~\"$job\""), "{name}: {e}");
                        }
                    }
                }
                check(&p["panels"], name);
            }
        }
        check(&d["panels"], name);
    }
}

/// Upper bounds of schema-3 native buckets are 2^(i/8): an estimate read
/// from them lies in the same bucket as the true quantile.
const NATIVE_GROWTH: f64 = 1.090_507_732_665_257_7;

fn nearest_rank(mut v: Vec<f64>, q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

async fn scalar(prom: &Prometheus, query: &str) -> Option<f64> {
    let body = api(prom, "/api/v1/query", &[("query", query.to_owned())]).await;
    body["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
}

/// Three shards scraped by a Prometheus 2.42 with native histograms (which
/// asks for protobuf) and by one without (OpenMetrics, classic buckets):
/// - the native lag series is ingested, and `histogram_quantile` over the
///   shards' summed native series lies in the native bucket of the true p95
///   of all shards' samples together;
/// - it agrees with the classic series within one classic bucket;
/// - the exemplars API returns trace ids for the latency and lag series, and
///   a lag exemplar's trace id is the one the reference API received with
///   that probe event's POST;
/// - every dashboard query and recording rule returns data from it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_native_histograms_exemplars_and_shards_in_a_real_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(with_faults(Faults::default())).await;
    let mut daemons = Vec::new();
    for index in 0..3 {
        let mut cfg = daemon_config(sim.base_url(), dev_token_file(dir.path()));
        // Little traffic: the reference API's trace log (2048 per route) must
        // still hold the probes' POSTs at the end.
        cfg.traffic.events_per_second = 5.0;
        cfg.shard.index = index;
        cfg.shard.total = 3;
        let path = dir.path().join(format!("shard{index}.toml"));
        std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
        let opts = RunOptions {
            config_path: Some(path),
            ..Default::default()
        };
        daemons.push(Daemon::start_with(cfg, opts).await.expect("shard starts"));
    }
    let addrs: Vec<SocketAddr> = daemons.iter().map(Daemon::admin_addr).collect();
    let native = start_prometheus_with(
        &addrs,
        sim.addr(),
        &["native-histograms", "exemplar-storage"],
    );
    let classic = start_prometheus_with(&addrs, sim.addr(), &[]);
    let start = unix_now();
    for prom in [&native, &classic] {
        support::eventually("prometheus ready", Duration::from_secs(20), || async {
            let r = reqwest::get(format!("{}/-/ready", prom.url)).await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
    }
    for addr in &addrs {
        record_deploy(*addr).await;
    }
    tokio::time::sleep(Duration::from_secs(25)).await;

    // Stop the probes (a reload that disables them), let the last ones end
    // and two scrapes pass: Prometheus then holds every sample there is.
    for (index, d) in daemons.iter().enumerate() {
        let path = dir.path().join(format!("shard{index}.toml"));
        let mut v: toml::Value = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for p in ["stream", "adherence", "quality", "work_queue", "batch"] {
            v["lag"]["probes"][p]["enabled"] = toml::Value::Boolean(false);
        }
        std::fs::write(&path, toml::to_string(&v).unwrap()).unwrap();
        let report = d.reload();
        assert!(report.errors.is_empty(), "{report:?}");
    }
    support::eventually("probes idle", Duration::from_secs(10), || async {
        daemons
            .iter()
            .all(|d| d.probes_running() == 0)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let now = unix_now();

    let mut samples = Vec::new();
    for d in &daemons {
        for p in ["stream", "adherence", "quality", "work_queue"] {
            samples.extend(d.lag_samples(p).iter().map(|s| s.lag_seconds));
        }
    }
    assert!(samples.len() > 50, "only {} lag samples", samples.len());
    assert!(samples.len() < 3 * 256, "recent-sample rings overflowed");
    let truth = nearest_rank(samples.clone(), 0.95);

    // The native series exists (protobuf was scraped) and counts every sample.
    let count = scalar(
        &native,
        "histogram_count(sum(rehab_canary_projection_lag_seconds))",
    )
    .await;
    assert_eq!(
        count,
        Some(samples.len() as f64),
        "native lag series not ingested or incomplete\n{}",
        native.log()
    );
    let native_p95 = scalar(
        &native,
        "histogram_quantile(0.95, sum(rehab_canary_projection_lag_seconds))",
    )
    .await
    .expect("native p95");
    assert!(
        native_p95 <= truth * NATIVE_GROWTH && native_p95 >= truth / NATIVE_GROWTH,
        "native p95 {native_p95} vs the true p95 of {} samples {truth}",
        samples.len()
    );
    let classic_p95 = scalar(
        &classic,
        "histogram_quantile(0.95, sum by (le) (rehab_canary_projection_lag_seconds_bucket))",
    )
    .await
    .expect("classic p95");
    eprintln!(
        "{} lag samples over 3 shards: true p95 {truth:.4} s, native {native_p95:.4} s \
         ({:+.1} %), classic {classic_p95:.4} s",
        samples.len(),
        (native_p95 / truth - 1.0) * 100.0
    );
    let bounds = rehab_canary::lag::LAG_BUCKETS;
    let upper = bounds
        .iter()
        .copied()
        .find(|b| *b >= classic_p95)
        .unwrap_or(f64::INFINITY);
    let lower = bounds
        .iter()
        .copied()
        .rev()
        .find(|b| *b < classic_p95)
        .unwrap_or(0.0);
    assert!(
        (native_p95 - classic_p95).abs() <= upper - lower,
        "native {native_p95} and classic {classic_p95} differ by more than their bucket ({lower}, {upper}]"
    );

    // Exemplars with trace ids, for latency and lag.
    for (series, labels) in [
        ("rehab_canary_request_duration_seconds", &["trace_id"][..]),
        (
            "rehab_canary_projection_lag_seconds",
            &["trace_id", "event_id"][..],
        ),
    ] {
        let body = api(
            &native,
            "/api/v1/query_exemplars",
            &[
                ("query", series.to_owned()),
                ("start", format!("{start:.3}")),
                ("end", format!("{now:.3}")),
            ],
        )
        .await;
        let exemplars: Vec<&Value> = body["data"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["exemplars"].as_array().into_iter().flatten())
            .collect();
        assert!(!exemplars.is_empty(), "no exemplars for {series}: {body}");
        for l in labels {
            assert!(
                exemplars
                    .iter()
                    .all(|e| e["labels"][*l].as_str().is_some_and(|v| !v.is_empty())),
                "{series}: an exemplar without {l}: {body}"
            );
        }
        assert!(exemplars.iter().all(|e| e["labels"]["trace_id"]
            .as_str()
            .is_some_and(|t| t.len() == 32)));
    }

    // A lag exemplar's trace id is the one the service got with that POST.
    let received = sim.traces();
    let posts = &received["events_create"];
    let mut matched = 0;
    for addr in &addrs {
        let text = support::fetch_text(&format!("http://{addr}/metrics")).await;
        for line in text
            .lines()
            .filter(|l| l.starts_with("rehab_canary_projection_lag_seconds_bucket"))
        {
            let Some((_, ex)) = line.split_once(" # {") else {
                continue;
            };
            let label = |k: &str| {
                ex.split_once(&format!("{k}=\""))
                    .and_then(|(_, rest)| rest.split_once('"'))
                    .map(|(v, _)| v.to_owned())
            };
            let (Some(event), Some(trace)) = (label("event_id"), label("trace_id")) else {
                panic!("lag exemplar without ids: {line}");
            };
            let post = posts
                .iter()
                .find(|r| r.event_id.as_deref() == Some(event.as_str()))
                .unwrap_or_else(|| panic!("the reference API never saw event {event}"));
            assert_eq!(
                post.trace_id.as_deref(),
                Some(trace.as_str()),
                "event {event}"
            );
            assert_eq!(post.sampled, Some(true));
            matched += 1;
        }
    }
    assert!(matched > 0, "no lag exemplar to check");
    eprintln!("{matched} lag exemplars carry the trace id the reference API received");

    // The dashboards and rules work on the native series too.
    let failures = queries_without_data(&native, &addrs[0].to_string(), start, now).await;
    drop(native);
    drop(classic);
    for d in daemons {
        assert!(d.shutdown().await);
    }
    sim.shutdown().await;
    assert!(
        failures.is_empty(),
        "with native histograms, {} problem(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
