//! The shipped Prometheus rules: generated from the defaults (not stale),
//! accepted by `promtool check rules`, every alert proven by `promtool test
//! rules`, every runbook link landing on a real section, the dashboards'
//! target and critical lines at the defaults' levels, and the CLI's exit
//! codes. promtool missing is a failure, never a skip: `scripts/test.sh`
//! installs Debian's `prometheus` package, which ships it.

mod support;

use std::collections::HashSet;
use std::path::PathBuf;

use rehab_canary::config::Config;
use rehab_canary::slo::{self, rules::Rule};
use support::process::{canary, run, tool};
use support::{root, temp_file};

fn promtool(args: &[&str]) -> (bool, String) {
    tool("promtool", args, "Debian package `prometheus`")
}

fn rules_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("deploy/prometheus/rules"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    files
}

#[test]
fn committed_rules_are_generated_from_the_defaults() {
    // The defaults of config/default.toml (a test checks they are equal).
    let cfg = Config::load_with_env(Some(&root().join("config/default.toml")), []).unwrap();
    let want = slo::rules_yaml(&cfg.slo);
    let have = std::fs::read_to_string(root().join(slo::RULES_PATH)).unwrap();
    assert!(
        have == want,
        "{} is stale; regenerate with:\n  cargo run -- slo-rules --config config/default.toml --output {}",
        slo::RULES_PATH,
        slo::RULES_PATH
    );
}

#[test]
fn promtool_check_rules_accepts_every_rules_file() {
    for file in rules_files() {
        let (ok, text) = promtool(&["check", "rules", file.to_str().unwrap()]);
        assert!(ok, "{}:\n{text}", file.display());
        assert!(text.contains("SUCCESS"), "{text}");
    }
}

#[test]
fn promtool_check_rules_accepts_rules_from_a_non_default_config() {
    // Not only the committed defaults: other thresholds and windows render
    // valid PromQL too.
    let mut cfg = Config::default().slo;
    cfg.window = std::time::Duration::from_secs(28 * 86_400);
    cfg.latency.threshold = std::time::Duration::from_secs(1);
    cfg.latency.critical = std::time::Duration::from_secs(2);
    cfg.batch_latency.objective = 99.0;
    cfg.availability.critical = 97.5;
    // No critical floor: the throughput critical alert is left out.
    cfg.throughput.critical = 0.0;
    cfg.loss.objective = 99.99;
    cfg.job = "canary-eu".into();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.yml");
    std::fs::write(&path, slo::rules_yaml(&cfg)).unwrap();
    let (ok, text) = promtool(&["check", "rules", path.to_str().unwrap()]);
    assert!(ok, "{text}");
}

#[test]
fn promtool_test_rules_proves_every_alert_fires_and_stays_quiet() {
    let tests = "deploy/prometheus/tests/rehab-canary.test.yml";
    let (ok, text) = promtool(&["test", "rules", tests]);
    assert!(ok, "promtool test rules failed:\n{text}");
    // Every alert has a case where it fires and one where it must not.
    let body = std::fs::read_to_string(root().join(tests)).unwrap();
    let mut fires = HashSet::new();
    let mut quiet = HashSet::new();
    let mut current = None;
    for line in body.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("alertname: ") {
            current = Some(name.to_owned());
        } else if t == "exp_alerts: []" {
            quiet.extend(current.clone());
        } else if t == "exp_alerts:" {
            fires.extend(current.clone());
        }
    }
    for rule in slo::generate(&Config::default().slo).alerts() {
        let Rule::Alert { alert, .. } = rule else {
            unreachable!()
        };
        assert!(
            fires.contains(alert),
            "{alert} has no firing case in {tests}"
        );
        assert!(
            quiet.contains(alert),
            "{alert} has no quiet case in {tests}"
        );
    }
}

/// GitHub's heading anchors: lower case, spaces to `-`, punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_runbook_url_points_at_a_runbook_section() {
    let runbook = std::fs::read_to_string(root().join("docs/runbook.md")).unwrap();
    let anchors: HashSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(anchor)
        .collect();
    for rule in slo::generate(&Config::default().slo).alerts() {
        let Rule::Alert {
            alert, annotations, ..
        } = rule
        else {
            unreachable!()
        };
        let url = &annotations
            .iter()
            .find(|(k, _)| k == "runbook_url")
            .unwrap()
            .1;
        let (base, fragment) = url.split_once('#').expect("an anchor");
        assert_eq!(base, "docs/runbook.md");
        assert!(
            anchors.contains(fragment),
            "{alert}: no section #{fragment} in docs/runbook.md"
        );
    }
}

#[test]
fn slo_rules_cli_writes_the_rules_and_exits_64_on_a_bad_config() {
    let (dir, cfg) = temp_file(
        "c.toml",
        "[slo.latency]\nthreshold = \"150ms\"\n[slo]\nwindow = \"1d\"\n",
    );
    let out_path = dir.path().join("rules.yml");
    let out = run(canary(&["slo-rules", "--config"]).arg(&cfg));
    assert_eq!(out.code, Some(64));
    let err = &out.stderr;
    assert!(err.contains("slo.latency.threshold"), "{err}");
    assert!(err.contains("slo.window"), "{err}");

    // A critical level stricter than its target, each direction.
    std::fs::write(
        &cfg,
        "[slo.latency]\ncritical = \"100ms\"\n[slo.throughput]\ncritical = 2000.0\n",
    )
    .unwrap();
    let out = run(canary(&["slo-rules", "--config"]).arg(&cfg));
    assert_eq!(out.code, Some(64));
    let err = &out.stderr;
    assert!(
        err.contains("slo.latency.critical: must be at least slo.latency.threshold"),
        "{err}"
    );
    assert!(err.contains("slo.throughput.critical"), "{err}");

    std::fs::write(&cfg, "[slo.availability]\nobjective = 99.5\n").unwrap();
    let out = run(canary(&["slo-rules", "--config"])
        .arg(&cfg)
        .arg("--output")
        .arg(&out_path));
    out.assert_success("slo-rules");
    let yaml = std::fs::read_to_string(&out_path).unwrap();
    assert!(yaml.contains("(14.4 * 0.005)"), "{yaml}");
}

/// Threshold steps of a dashboard panel, by title: the values of its dashed
/// lines.
fn dashed_lines(dashboard: &str, title: &str) -> Vec<f64> {
    let path = root().join("grafana/dashboards").join(dashboard);
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let panel = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["title"] == title)
        .unwrap_or_else(|| panic!("{dashboard}: no panel {title:?}"));
    let defaults = &panel["fieldConfig"]["defaults"];
    assert_eq!(
        defaults["custom"]["thresholdsStyle"]["mode"], "dashed",
        "{dashboard} {title:?} draws its thresholds"
    );
    let mut v: Vec<f64> = defaults["thresholds"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["value"].as_f64())
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Grafana cannot read the config, so the lines are fixed numbers: they must
/// be the defaults' target and critical levels.
#[test]
fn dashboards_draw_the_default_target_and_critical_levels() {
    let slo = Config::default().slo;
    let secs = |d: std::time::Duration| d.as_secs_f64();
    let pair = |a: f64, b: f64| {
        let mut v = vec![a, b];
        v.sort_by(f64::total_cmp);
        v
    };
    let latency = pair(secs(slo.latency.threshold), secs(slo.latency.critical));
    let lag = pair(
        secs(slo.projection_lag.threshold),
        secs(slo.projection_lag.critical),
    );
    let batch = pair(
        secs(slo.batch_latency.threshold),
        secs(slo.batch_latency.critical),
    );
    let round = |x: f64| (x * 1e9).round() / 1e9;
    let errors = pair(
        round(1.0 - slo.availability.objective / 100.0),
        round(1.0 - slo.availability.critical / 100.0),
    );
    let throughput = pair(
        slo.throughput.objective / 100.0,
        slo.throughput.critical_share(),
    );
    let overview = "rehab-canary-overview.json";
    let slos = "rehab-canary-slos.json";
    for (dashboard, title, want) in [
        (overview, "Latency p95 per endpoint", &latency),
        (overview, "Projection lag p95 per projection", &lag),
        (overview, "Error ratio (availability SLI, 5m)", &errors),
        (
            overview,
            "Batch latency (every event of a probe batch visible)",
            &batch,
        ),
        (slos, "Error ratio (5m): target and critical", &errors),
        (slos, "p95 latency (5m): target and critical", &latency),
        (slos, "p95 projection lag (5m): target and critical", &lag),
        (slos, "p95 batch latency (5m): target and critical", &batch),
        (slos, "Accepted per target", &throughput),
    ] {
        let have: Vec<f64> = dashed_lines(dashboard, title)
            .into_iter()
            .map(round)
            .collect();
        assert_eq!(&have, want, "{dashboard} {title:?}");
    }
}
