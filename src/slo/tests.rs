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
    assert_eq!(c.loss.objective, 100.0); // no lost events
    assert_eq!(c.throughput.min_events_per_second, 1000.0);
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
    assert_eq!(budgets, 5);
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
    // Four SLOs with a budget, two severities each; loss (100 %) has none.
    assert_eq!(alerts.len(), 8, "{alerts:?}");
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
    cfg.projection_lag.threshold = Duration::from_millis(250);
    cfg.window = Duration::from_secs(28 * 86_400);
    let yaml = render(&generate(&cfg));
    // prometheus-client writes bounds as `1.0`; Prometheus matches `le` textually.
    assert!(yaml.contains("le=\"1.0\""), "{yaml}");
    assert!(yaml.contains("le=\"0.25\""), "{yaml}");
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
