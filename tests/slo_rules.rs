//! The shipped Prometheus rules: generated from the defaults (not stale),
//! accepted by `promtool check rules`, every alert proven by `promtool test
//! rules`, every runbook link landing on a real section, and the CLI's exit
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

    std::fs::write(&cfg, "[slo.availability]\nobjective = 99.5\n").unwrap();
    let out = run(canary(&["slo-rules", "--config"])
        .arg(&cfg)
        .arg("--output")
        .arg(&out_path));
    out.assert_success("slo-rules");
    let yaml = std::fs::read_to_string(&out_path).unwrap();
    assert!(yaml.contains("(14.4 * 0.005)"), "{yaml}");
}
