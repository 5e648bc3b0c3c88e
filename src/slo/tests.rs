//! Unit tests of the SLO config and the rules generator: seed defaults,
//! key-named validation errors, and the shape of the generated rules.

use crate::config::load::Errors;
use std::time::Duration;

use super::render::{render, render_prometheus_rule};
use super::rules::{generate, prom_duration, Rule, BURN_PAIRS, SLI_WINDOWS};
use crate::config::slo::SloConfig;

type Tweak = fn(&mut SloConfig);
type Labels = [(String, String)];

#[test]
fn defaults_are_the_seed_targets() {
    let c = SloConfig::default();
    assert_eq!(c.availability.objective, 99.9); // errors < 0.1 %
    assert_eq!(c.latency.objective, 95.0); // p95 ...
    assert_eq!(c.latency.threshold, Duration::from_millis(200)); // ... < 200 ms
    assert_eq!(c.projection_lag.objective, 95.0);
    assert_eq!(c.projection_lag.threshold, Duration::from_millis(100));
    assert_eq!(c.batch_latency.objective, 95.0);
    assert_eq!(c.batch_latency.threshold, Duration::from_secs(1));
    assert_eq!(c.loss.objective, 100.0); // no lost events
    assert_eq!(c.throughput.min_events_per_second, 1000.0);
    // The seed's critical levels.
    assert_eq!(c.availability.critical, 99.0); // errors < 1 %
    assert_eq!(c.latency.critical, Duration::from_millis(500));
    assert_eq!(c.projection_lag.critical, Duration::from_secs(1));
    assert_eq!(c.batch_latency.critical, Duration::from_secs(2));
    assert_eq!(c.throughput.critical, 500.0);
    assert_eq!(c.throughput.critical_share(), 0.5);
    assert_eq!(c.window, Duration::from_secs(30 * 86_400));
    assert!(Errors::collect(|e| c.validate(e)).is_empty());
}

#[test]
fn bad_values_name_their_key() {
    let cases: Vec<(Tweak, &str)> = vec![
        (|c| c.window = Duration::from_secs(86_400), "slo.window"),
        (
            |c| c.window = Duration::from_secs(3 * 86_400 + 1),
            "slo.window",
        ),
        (|c| c.job = String::new(), "slo.job"),
        (|c| c.job = "a\"b".into(), "slo.job"),
        (|c| c.runbook_url = "x#y".into(), "slo.runbook_url"),
        (
            |c| c.availability.objective = 100.0,
            "slo.availability.objective",
        ),
        (
            |c| c.availability.objective = 0.0,
            "slo.availability.objective",
        ),
        (|c| c.latency.objective = f64::NAN, "slo.latency.objective"),
        (
            |c| c.projection_lag.objective = 101.0,
            "slo.projection_lag.objective",
        ),
        (|c| c.loss.objective = 100.5, "slo.loss.objective"),
        (
            |c| c.throughput.objective = -1.0,
            "slo.throughput.objective",
        ),
        (
            |c| c.latency.threshold = Duration::from_millis(300),
            "slo.latency.threshold",
        ),
        (
            |c| c.projection_lag.threshold = Duration::from_millis(200),
            "slo.projection_lag.threshold",
        ),
        (
            |c| c.throughput.min_events_per_second = -5.0,
            "slo.throughput.min_events_per_second",
        ),
        (
            |c| c.batch_latency.objective = 0.0,
            "slo.batch_latency.objective",
        ),
        (
            |c| c.batch_latency.threshold = Duration::from_millis(1500),
            "slo.batch_latency.threshold",
        ),
        // Critical levels: bucket bounds, never stricter than the target.
        (
            |c| c.latency.critical = Duration::from_millis(100),
            "slo.latency.critical",
        ),
        (
            |c| c.latency.critical = Duration::from_millis(300),
            "slo.latency.critical",
        ),
        (
            |c| c.projection_lag.critical = Duration::from_millis(50),
            "slo.projection_lag.critical",
        ),
        (
            |c| c.batch_latency.critical = Duration::from_millis(500),
            "slo.batch_latency.critical",
        ),
        (
            |c| c.availability.critical = 99.95,
            "slo.availability.critical",
        ),
        (
            |c| c.availability.critical = 100.0,
            "slo.availability.critical",
        ),
        // At least: a critical floor above the target floor is stricter.
        (
            |c| c.throughput.critical = 1500.0,
            "slo.throughput.critical",
        ),
        (|c| c.throughput.critical = -1.0, "slo.throughput.critical"),
    ];
    for (tweak, key) in cases {
        let mut c = SloConfig::default();
        tweak(&mut c);
        let errs = Errors::collect(|e| c.validate(e));
        assert_eq!(errs.len(), 1, "{key}: {errs:?}");
        assert_eq!(errs[0].key(), Some(key));
        assert!(errs[0].to_string().starts_with(key), "{}", errs[0]);
    }
}

#[test]
fn durations_render_in_prometheus_units() {
    assert_eq!(prom_duration(Duration::from_secs(30 * 86_400)), "30d");
    assert_eq!(prom_duration(Duration::from_secs(36 * 3600)), "36h");
    assert_eq!(prom_duration(Duration::from_secs(300)), "5m");
}

fn record_names(cfg: &SloConfig) -> Vec<String> {
    generate(cfg)
        .records()
        .map(|r| match r {
            Rule::Record { record, labels, .. } => format!("{record}{labels:?}"),
            Rule::Alert { .. } => unreachable!(),
        })
        .collect()
}

#[test]
fn every_slo_has_every_window_and_a_budget() {
    let names = record_names(&SloConfig::default());
    for metric in [
        "rehab_canary_request_errors",
        "rehab_canary_request_slow",
        "rehab_canary_projection_lag_slow",
        "rehab_canary_batch_visible_slow",
        "rehab_canary_events_lost",
        "rehab_canary_events_shortfall",
    ] {
        for w in SLI_WINDOWS.iter().chain(&["30d"]) {
            let name = format!("job:{metric}:ratio_rate{w}");
            assert!(names.iter().any(|n| n.starts_with(&name)), "{name} missing");
        }
    }
    let budgets = names
        .iter()
        .filter(|n| n.starts_with("job:rehab_canary_slo_error_budget_remaining:ratio"))
        .count();
    assert_eq!(budgets, 6);
    // Names follow level:metric:operations.
    for n in &names {
        let name = n.split('[').next().unwrap();
        assert_eq!(name.split(':').count(), 3, "{name}");
        assert!(name.starts_with("job:"), "{name}");
    }
}

#[test]
fn burn_alerts_use_the_workbook_pairs_and_thresholds() {
    let file = generate(&SloConfig::default());
    let alerts: Vec<(&str, &str, &Labels)> = file
        .alerts()
        .filter_map(|r| match r {
            Rule::Alert {
                alert,
                expr,
                labels,
                ..
            } if alert.ends_with("Burn") => {
                Some((alert.as_str(), expr.as_str(), labels.as_slice()))
            }
            _ => None,
        })
        .collect();
    // Five SLOs with a budget, two severities each; loss (100 %) has none.
    assert_eq!(alerts.len(), 10, "{alerts:?}");
    let (_, page, labels) = alerts
        .iter()
        .find(|a| a.0 == "RehabCanaryAvailabilityFastBurn")
        .unwrap();
    assert!(labels.contains(&("severity".into(), "page".into())));
    assert!(
        page.contains("ratio_rate1h{slo=\"availability\"} > (14.4 * 0.001)"),
        "{page}"
    );
    assert!(
        page.contains("ratio_rate5m{slo=\"availability\"} > (14.4 * 0.001)"),
        "{page}"
    );
    assert!(
        page.contains("ratio_rate6h{slo=\"availability\"} > (6 * 0.001)"),
        "{page}"
    );
    assert!(
        page.contains("ratio_rate30m{slo=\"availability\"} > (6 * 0.001)"),
        "{page}"
    );
    let (_, ticket, _) = alerts
        .iter()
        .find(|a| a.0 == "RehabCanaryLatencySlowBurn")
        .unwrap();
    for (factor, long, short, sev) in BURN_PAIRS {
        if sev == "ticket" {
            assert!(
                ticket.contains(&format!(
                    "ratio_rate{long}{{slo=\"latency\"}} > ({factor} * 0.05)"
                )),
                "{ticket}"
            );
            assert!(
                ticket.contains(&format!(
                    "ratio_rate{short}{{slo=\"latency\"}} > ({factor} * 0.05)"
                )),
                "{ticket}"
            );
        }
    }
    let (_, tp, _) = alerts
        .iter()
        .find(|a| a.0 == "RehabCanaryThroughputFastBurn")
        .unwrap();
    assert!(
        tp.contains("job:rehab_canary_target_events_per_second:sum >= 1000"),
        "{tp}"
    );
}

#[test]
fn a_loss_budget_turns_on_loss_burn_alerts() {
    let mut cfg = SloConfig::default();
    cfg.loss.objective = 99.99;
    let n = generate(&cfg)
        .alerts()
        .filter(|r| matches!(r, Rule::Alert { alert, .. } if alert.starts_with("RehabCanaryLoss")))
        .count();
    assert_eq!(n, 2);
}

#[test]
fn thresholds_follow_the_config() {
    let mut cfg = SloConfig::default();
    cfg.latency.threshold = Duration::from_secs(1);
    cfg.latency.critical = Duration::from_secs(2);
    cfg.projection_lag.threshold = Duration::from_millis(250);
    cfg.batch_latency.threshold = Duration::from_millis(500);
    cfg.window = Duration::from_secs(28 * 86_400);
    let yaml = render(&generate(&cfg));
    // prometheus-client writes bounds as `1.0`; Prometheus matches `le` textually.
    assert!(
        yaml.contains(
            "rehab_canary_request_duration_seconds_bucket{endpoint!=\"health\",le=\"1.0\"}"
        ),
        "{yaml}"
    );
    assert!(
        yaml.contains("rehab_canary_projection_lag_seconds_bucket{le=\"0.25\"}"),
        "{yaml}"
    );
    assert!(
        yaml.contains("rehab_canary_batch_visible_seconds_bucket{le=\"0.5\"}"),
        "{yaml}"
    );
    assert!(yaml.contains("ratio_rate28d"), "{yaml}");
    assert!(!yaml.contains("ratio_rate30d"), "{yaml}");
}

#[test]
fn every_alert_has_summary_description_and_runbook() {
    for r in generate(&SloConfig::default()).alerts() {
        let Rule::Alert {
            alert,
            annotations,
            labels,
            ..
        } = r
        else {
            unreachable!()
        };
        for key in ["summary", "description", "runbook_url"] {
            assert!(
                annotations.iter().any(|(k, v)| k == key && !v.is_empty()),
                "{alert}: {key}"
            );
        }
        let sev = labels
            .iter()
            .find(|(k, _)| k == "severity")
            .map(|(_, v)| v.as_str());
        assert!(matches!(sev, Some("page" | "ticket")), "{alert}: {sev:?}");
    }
}

#[test]
fn the_prometheus_rule_holds_the_rules_file_groups_verbatim() {
    let file = generate(&SloConfig::default());
    let rules = render(&file);
    let groups = rules.split_once("groups:\n").unwrap().1;
    let object = render_prometheus_rule(&file, "canary");
    let (head, spec) = object.split_once("spec:\n  groups:\n").unwrap();
    assert!(head.contains("kind: PrometheusRule\n"), "{head}");
    assert!(head.contains("  name: canary\n"), "{head}");
    let unindented: String = spec
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("  ").unwrap()))
        .collect();
    assert_eq!(unindented, groups);
}

/// (alert, expr, for) of every `...Critical` alert.
fn critical_alerts(cfg: &SloConfig) -> Vec<(String, String, Option<String>)> {
    generate(cfg)
        .alerts()
        .filter_map(|r| match r {
            Rule::Alert {
                alert, expr, for_, ..
            } if alert.ends_with("Critical") => Some((alert.clone(), expr.clone(), for_.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn every_signal_but_loss_has_a_critical_alert_at_its_level() {
    let alerts = critical_alerts(&SloConfig::default());
    let names: Vec<&str> = alerts.iter().map(|a| a.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "RehabCanaryAvailabilityCritical",
            "RehabCanaryLatencyCritical",
            "RehabCanaryProjectionLagCritical",
            "RehabCanaryBatchLatencyCritical",
            "RehabCanaryThroughputCritical",
        ]
    );
    let expr = |name: &str| &alerts.iter().find(|a| a.0 == name).unwrap().1;
    assert!(
        expr("RehabCanaryAvailabilityCritical").ends_with("{slo=\"availability\"} > 0.01"),
        "{}",
        expr("RehabCanaryAvailabilityCritical")
    );
    for (name, histogram, level) in [
        (
            "RehabCanaryLatencyCritical",
            "rehab_canary_request_duration_seconds",
            "0.5",
        ),
        (
            "RehabCanaryProjectionLagCritical",
            "rehab_canary_projection_lag_seconds",
            "1",
        ),
        (
            "RehabCanaryBatchLatencyCritical",
            "rehab_canary_batch_visible_seconds",
            "2",
        ),
    ] {
        let e = expr(name);
        // Classic buckets, or the native histogram: p95 over 5m.
        assert!(
            e.contains(&format!(
                "histogram_quantile(0.95, sum by (job, le) (rate({histogram}_bucket"
            )) && e.contains(&format!(
                "histogram_quantile(0.95, sum by (job) (rate({histogram}"
            )),
            "{e}"
        );
        assert!(e.ends_with(&format!("> {level}")), "{e}");
    }
    // At least: under half the target rate, only where throughput is judged.
    let tp = expr("RehabCanaryThroughputCritical");
    assert!(
        tp.starts_with("job:rehab_canary_events_accepted_per_target:ratio_rate5m < 0.5"),
        "{tp}"
    );
    assert!(
        tp.contains("job:rehab_canary_target_events_per_second:sum >= 1000"),
        "{tp}"
    );
    assert!(tp.contains("job:rehab_canary_paused:max == 0"), "{tp}");
    for (name, _, for_) in &alerts {
        assert!(for_.is_some(), "{name} fires on one evaluation");
    }
}

#[test]
fn critical_alerts_follow_the_config() {
    let mut cfg = SloConfig::default();
    cfg.availability.critical = 98.0;
    cfg.latency.critical = Duration::from_secs(1);
    cfg.batch_latency.critical = Duration::from_millis(2500);
    cfg.latency.objective = 99.0;
    cfg.throughput.critical = 250.0;
    let alerts = critical_alerts(&cfg);
    let expr = |name: &str| alerts.iter().find(|a| a.0 == name).unwrap().1.clone();
    assert!(expr("RehabCanaryAvailabilityCritical").ends_with("> 0.02"));
    let lat = expr("RehabCanaryLatencyCritical");
    assert!(
        lat.contains("histogram_quantile(0.99,") && lat.ends_with("> 1"),
        "{lat}"
    );
    assert!(expr("RehabCanaryBatchLatencyCritical").ends_with("> 2.5"));
    assert!(expr("RehabCanaryThroughputCritical").contains("< 0.25"));
    // No critical floor, no alert.
    cfg.throughput.critical = 0.0;
    assert!(!critical_alerts(&cfg)
        .iter()
        .any(|a| a.0 == "RehabCanaryThroughputCritical"));
}

#[test]
fn a_partly_written_table_keeps_that_slos_own_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[slo.batch_latency]\nobjective = 99.0\n[slo.projection_lag]\nthreshold = \"250ms\"\n",
    )
    .unwrap();
    let cfg = crate::config::Config::load_with_env(Some(&path), Vec::new()).unwrap();
    let b = &cfg.slo.batch_latency;
    assert_eq!(
        (b.threshold, b.critical),
        (Duration::from_secs(1), Duration::from_secs(2))
    );
    assert_eq!(cfg.slo.projection_lag.critical, Duration::from_secs(1));
}
