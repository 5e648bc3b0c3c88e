//! Generates the Prometheus rules (recording rules, SLO burn-rate alerts, a
//! critical-level alert per SLO signal, and canary-health alerts) from the
//! `[slo]` config. The output is plain data
//! ([`RuleFile`]), rendered to YAML in `render.rs`; tests walk the data
//! (every recording rule, every alert) instead of parsing YAML back.

use std::time::Duration;

use crate::config::slo::{SloConfig, ThresholdLevels};

/// Short windows of the SLIs; the compliance window (`slo.window`) is added.
pub const SLI_WINDOWS: [&str; 7] = ["5m", "30m", "1h", "2h", "6h", "1d", "3d"];

/// The multi-window, multi-burn-rate pairs of the SRE workbook for a 30-day
/// SLO: (burn factor, long window, short window, severity).
pub const BURN_PAIRS: [(f64, &str, &str, &str); 4] = [
    (14.4, "1h", "5m", "page"),
    (6.0, "6h", "30m", "page"),
    (3.0, "1d", "2h", "ticket"),
    (1.0, "3d", "6h", "ticket"),
];

/// Request statuses that count against availability: server errors, the
/// target refusing service (429), and no answer at all.
pub const ERROR_STATUSES: &str = "5..|429|timeout|connect_error|io_error|tls_error|body_too_large";

#[derive(Debug, Clone, PartialEq)]
pub struct RuleFile {
    pub groups: Vec<Group>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub name: String,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    Record {
        record: String,
        expr: String,
        labels: Vec<(String, String)>,
    },
    Alert {
        alert: String,
        expr: String,
        for_: Option<String>,
        labels: Vec<(String, String)>,
        annotations: Vec<(String, String)>,
    },
}

impl RuleFile {
    pub fn records(&self) -> impl Iterator<Item = &Rule> {
        self.groups
            .iter()
            .flat_map(|g| &g.rules)
            .filter(|r| matches!(r, Rule::Record { .. }))
    }

    pub fn alerts(&self) -> impl Iterator<Item = &Rule> {
        self.groups
            .iter()
            .flat_map(|g| &g.rules)
            .filter(|r| matches!(r, Rule::Alert { .. }))
    }
}

/// One SLO as the generator sees it.
struct Slo {
    /// Value of the `slo` label and the runbook section (`<name>-slo-burn`).
    name: &'static str,
    /// Alert name stem: `RehabCanary<stem>FastBurn`.
    stem: &'static str,
    /// The `metric` part of `job:<metric>:ratio_rate<w>`.
    metric: &'static str,
    objective: f64,
    what: String,
    /// The error ratio over a window.
    ratio: Box<dyn Fn(&str) -> String>,
    /// Extra condition ANDed into the burn alerts (throughput's floor).
    gate: Option<String>,
    /// The alert at the seed's critical level, beside the burn-rate alerts:
    /// a budget burns over hours, a critical level is crossed now.
    critical: Option<Critical>,
}

/// `RehabCanary<stem>Critical`.
struct Critical {
    expr: String,
    for_: &'static str,
    summary: String,
    description: String,
}

/// How long a signal stays past its critical level before the alert fires
/// (the texts say "5 minutes"): as long as the window it is computed over,
/// so one slow spell does not page.
const CRITICAL_FOR: &str = "5m";

/// A Prometheus duration string (`30d`, `36h`) for a whole number of hours.
pub fn prom_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// A float literal without binary noise: `0.001`, not `0.0010000000000000009`.
fn num(x: f64) -> String {
    let s = format!("{:.10}", x);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

/// A `le` label value as prometheus-client writes it (`0.2`, `1.0`); the
/// match must be textual because Prometheus 2.x does not normalise `le`.
fn le(seconds: f64) -> String {
    format!("{seconds:?}")
}

/// `200 ms`, `1 s`, `2.5 s`: a level as the alert texts say it.
fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{} s", num(d.as_secs_f64()))
    }
}

/// `p95` for an objective of 95 (%), `p99.9` for 99.9.
fn percentile(objective: f64) -> String {
    format!("p{}", num(objective))
}

/// `bad / all`, each counter summed by job over the window.
fn counter_ratio(bad: String, all: &'static str) -> Box<dyn Fn(&str) -> String> {
    Box::new(move |w| {
        format!("sum by (job) (rate({bad}[{w}]))\n/\nsum by (job) (rate({all}[{w}]))")
    })
}

/// "objective % of `what` within the threshold": the error ratio is the share
/// of `histogram`'s observations (those matching `matcher`, if any) above the
/// threshold's bucket. Its critical alert: the same percentile over 5m past
/// the critical level.
fn threshold_slo(
    (name, stem, metric): (&'static str, &'static str, &'static str),
    cfg: ThresholdLevels,
    (what, signal): (&str, &str),
    histogram: &'static str,
    matcher: &'static str,
) -> Slo {
    let le = le(cfg.threshold.as_secs_f64());
    let threshold = num(cfg.threshold.as_secs_f64());
    let (bucket, count) = if matcher.is_empty() {
        (format!("{{le=\"{le}\"}}"), String::new())
    } else {
        (
            format!("{{{matcher},le=\"{le}\"}}"),
            format!("{{{matcher}}}"),
        )
    };
    let q = num(cfg.objective / 100.0);
    let p = percentile(cfg.objective);
    let all = count.clone();
    let critical = human(cfg.critical);
    Slo {
        name,
        stem,
        metric,
        objective: cfg.objective,
        what: format!(
            "{}% {what} within {}",
            num(cfg.objective),
            human(cfg.threshold)
        ),
        // Classic buckets, or the native histogram where Prometheus ingests
        // that instead (2.4x with native histograms on drops the classic
        // series of a native histogram). `histogram_fraction` interpolates
        // within the native bucket holding the threshold (≤ 9 % wide).
        ratio: Box::new(move |w| {
            format!(
                "(\n  1 - (\n    sum by (job) (rate({histogram}_bucket{bucket}[{w}]))\n    /\n    \
                 sum by (job) (rate({histogram}_count{count}[{w}]))\n  )\n)\nor\n\
                 (\n  1 - histogram_fraction(0, {threshold}, sum by (job) (rate({histogram}{count}[{w}])))\n)"
            )
        }),
        gate: None,
        // The critical level is a bucket bound (validated), so the classic
        // quantile is past it exactly when more than 1 - q of the
        // observations are.
        critical: Some(Critical {
            expr: format!(
                "(\n  histogram_quantile({q}, sum by (job, le) (rate({histogram}_bucket{all}[5m])))\n  or\n  \
                 histogram_quantile({q}, sum by (job) (rate({histogram}{all}[5m])))\n)\n> {}",
                num(cfg.critical.as_secs_f64())
            ),
            for_: CRITICAL_FOR,
            summary: format!("{p} {signal} of {{{{ $labels.job }}}} is past the critical {critical}"),
            description: format!(
                "The {p} of {signal} over 5 minutes has been above {critical} for 5 minutes: past the \
                 critical level, not only the {} target.",
                human(cfg.threshold)
            ),
        }),
    }
}

fn slos(cfg: &SloConfig) -> Vec<Slo> {
    let errors_critical = (100.0 - cfg.availability.critical) / 100.0;
    let share = cfg.throughput.critical_share();
    let floor = num(cfg.throughput.min_events_per_second);
    // The throughput SLO is judged only where it means something: a target
    // rate at the floor or above, and not paused.
    let throughput_gate = format!(
        "job:rehab_canary_target_events_per_second:sum >= {floor}\nand on (job)\njob:rehab_canary_paused:max == 0"
    );
    vec![
        Slo {
            name: "availability",
            stem: "Availability",
            metric: "rehab_canary_request_errors",
            objective: cfg.availability.objective,
            what: format!(
                "{}% of requests answered without a 5xx, 429 or transport error",
                num(cfg.availability.objective)
            ),
            ratio: counter_ratio(
                format!(
                    "rehab_canary_requests_total{{endpoint!=\"health\",status=~\"{ERROR_STATUSES}\"}}"
                ),
                "rehab_canary_requests_total{endpoint!=\"health\"}",
            ),
            gate: None,
            critical: Some(Critical {
                expr: format!(
                    "job:rehab_canary_request_errors:ratio_rate5m{{slo=\"availability\"}} > {}",
                    num(errors_critical)
                ),
                for_: CRITICAL_FOR,
                summary: format!(
                    "Error ratio of {{{{ $labels.job }}}} is past the critical {}%",
                    num(errors_critical * 100.0)
                ),
                description: format!(
                    "Over 5 minutes more than {}% of requests (health checks excluded) ended in a 5xx, a 429 or a transport error, for 5 minutes: past the critical level, not only the {}% target.",
                    num(errors_critical * 100.0),
                    num(100.0 - cfg.availability.objective)
                ),
            }),
        },
        threshold_slo(
            ("latency", "Latency", "rehab_canary_request_slow"),
            cfg.latency.levels(),
            ("of requests answered", "request latency"),
            "rehab_canary_request_duration_seconds",
            "endpoint!=\"health\"",
        ),
        threshold_slo(
            (
                "projection_lag",
                "ProjectionLag",
                "rehab_canary_projection_lag_slow",
            ),
            cfg.projection_lag.levels(),
            (
                "of probe events visible in their projection",
                "projection lag",
            ),
            "rehab_canary_projection_lag_seconds",
            "",
        ),
        threshold_slo(
            (
                "batch_latency",
                "BatchLatency",
                "rehab_canary_batch_visible_slow",
            ),
            cfg.batch_latency.levels(),
            (
                "of probe batches fully visible (every event) in the stream",
                "batch latency",
            ),
            "rehab_canary_batch_visible_seconds",
            "",
        ),
        Slo {
            name: "loss",
            stem: "Loss",
            metric: "rehab_canary_events_lost",
            objective: cfg.loss.objective,
            what: format!(
                "{}% of probe events become visible (no lost events)",
                num(cfg.loss.objective)
            ),
            ratio: counter_ratio(
                "rehab_canary_lag_probe_failures_total{reason=\"lost\"}".to_owned(),
                "rehab_canary_lag_probes_total",
            ),
            gate: None,
            // Any loss already pages (RehabCanaryEventsLost): one level.
            critical: None,
        },
        Slo {
            name: "throughput",
            stem: "Throughput",
            metric: "rehab_canary_events_shortfall",
            objective: cfg.throughput.objective,
            what: format!(
                "{}% of the offered events accepted (alerting at targets of {} events/s and more)",
                num(cfg.throughput.objective),
                num(cfg.throughput.min_events_per_second)
            ),
            // The shortfall of accepted events against the offered ones:
            // sent, plus ticks the canary had to drop (in-flight bound,
            // circuit, Retry-After; a pause is deliberate and excluded). A
            // ratio of counters over one window, so it holds right after a
            // restart, unlike `rate()` against the target gauge (which is
            // divided by the whole range). Dropped ticks include read
            // journeys, which makes the ratio conservative under heavy drops.
            ratio: Box::new(|w| {
                format!(
                    "clamp_min(\n  1 - (\n    sum by (job) (rate(rehab_canary_events_accepted_total[{w}]))\n    /\n    (\n      \
                     sum by (job) (rate(rehab_canary_events_sent_total[{w}]))\n      +\n      \
                     sum by (job) (rate(rehab_canary_iterations_dropped_total{{reason!=\"paused\"}}[{w}]))\n    )\n  ),\n  0\n)"
                )
            }),
            gate: Some(throughput_gate.clone()),
            // Accepted against the target rate, as a share: at a target of
            // min_events_per_second it is the seed's absolute floor (500 of
            // 1000 events/s), and a canary offering more is held to more.
            // Longer `for`: a burst lifts the target gauge at once while
            // the 5m rate follows slowly.
            critical: (share > 0.0).then(|| Critical {
                expr: format!(
                    "job:rehab_canary_events_accepted_per_target:ratio_rate5m < {}\nand on (job)\n({throughput_gate})",
                    num(share)
                ),
                for_: "10m",
                summary: format!(
                    "Accepted events/s of {{{{ $labels.job }}}} are under the critical {}% of the target rate",
                    num(share * 100.0)
                ),
                description: format!(
                    "Over 5 minutes the target accepted under {}% of the canary's target event rate ({} of {floor} events/s), for 10 minutes, while the target rate is at least {floor} events/s: past the critical level, not only the {}% objective.",
                    num(share * 100.0),
                    num(cfg.throughput.critical),
                    num(cfg.throughput.objective)
                ),
            }),
        },
    ]
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn record(record: &str, expr: String, l: &[(&str, &str)]) -> Rule {
    Rule::Record {
        record: record.to_owned(),
        expr,
        labels: labels(l),
    }
}

/// Builds every rule from the config.
pub fn generate(cfg: &SloConfig) -> RuleFile {
    let window = prom_duration(cfg.window);
    let windows: Vec<String> = SLI_WINDOWS
        .iter()
        .map(|w| (*w).to_owned())
        .chain((!SLI_WINDOWS.contains(&window.as_str())).then(|| window.clone()))
        .collect();
    let runbook = |anchor: &str| format!("{}#{anchor}", cfg.runbook_url);
    let slos = slos(cfg);

    let mut sli = Vec::new();
    let mut budget = Vec::new();
    let mut burn = Vec::new();
    for slo in &slos {
        for w in &windows {
            sli.push(record(
                &format!("job:{}:ratio_rate{w}", slo.metric),
                (slo.ratio)(w),
                &[("slo", slo.name)],
            ));
        }
        let allowed = (100.0 - slo.objective) / 100.0;
        budget.push(record(
            "job:rehab_canary_slo_objective:ratio",
            format!("vector({})", num(slo.objective / 100.0)),
            &[("slo", slo.name)],
        ));
        let remaining = if allowed > 0.0 {
            format!(
                "1 - (job:{}:ratio_rate{window}{{slo=\"{}\"}} / {})",
                slo.metric,
                slo.name,
                num(allowed)
            )
        } else {
            // No budget at all: one bad event spends all of it.
            format!(
                "1 - (job:{}:ratio_rate{window}{{slo=\"{}\"}} > bool 0)",
                slo.metric, slo.name
            )
        };
        budget.push(record(
            "job:rehab_canary_slo_error_budget_remaining:ratio",
            remaining,
            &[("slo", slo.name)],
        ));
        // Burn rates need a budget; RehabCanaryEventsLost covers a 100 % SLO.
        let severities: &[&str] = if allowed > 0.0 {
            &["page", "ticket"]
        } else {
            &[]
        };
        for &severity in severities {
            let pairs: Vec<String> = BURN_PAIRS
                .iter()
                .filter(|p| p.3 == severity)
                .map(|(factor, long, short, _)| {
                    let t = format!("{} * {}", num(*factor), num(allowed));
                    format!(
                        "(\n  job:{m}:ratio_rate{long}{{slo=\"{s}\"}} > ({t})\n  and\n  job:{m}:ratio_rate{short}{{slo=\"{s}\"}} > ({t})\n)",
                        m = slo.metric,
                        s = slo.name
                    )
                })
                .collect();
            let mut expr = pairs.join("\nor\n");
            if let Some(gate) = &slo.gate {
                expr = format!("(\n{expr}\n)\nand on (job)\n({gate})");
            }
            let (kind, windows) = if severity == "page" {
                ("FastBurn", "1h/5m at 14.4x or 6h/30m at 6x")
            } else {
                ("SlowBurn", "1d/2h at 3x or 3d/6h at 1x")
            };
            burn.push(Rule::Alert {
                alert: format!("RehabCanary{}{kind}", slo.stem),
                expr,
                for_: None,
                labels: labels(&[("severity", severity), ("slo", slo.name)]),
                annotations: labels(&[
                    (
                        "summary",
                        &format!(
                            "{} SLO of {{{{ $labels.job }}}} is burning its {window} error budget too fast",
                            slo.name
                        ),
                    ),
                    (
                        "description",
                        &format!(
                            "SLO: {}. The error ratio is over the budget burn threshold in both windows ({windows}); at this pace the {window} budget runs out early.",
                            slo.what
                        ),
                    ),
                    ("runbook_url", &runbook(&format!("{}-slo-burn", slo.name.replace('_', "-")))),
                ]),
            });
        }
        if let Some(c) = &slo.critical {
            burn.push(Rule::Alert {
                alert: format!("RehabCanary{}Critical", slo.stem),
                expr: c.expr.clone(),
                for_: Some(c.for_.to_owned()),
                labels: labels(&[("severity", "page"), ("slo", slo.name)]),
                annotations: labels(&[
                    ("summary", &c.summary),
                    ("description", &c.description),
                    (
                        "runbook_url",
                        &runbook(&format!("{}-critical", slo.name.replace('_', "-"))),
                    ),
                ]),
            });
        }
    }

    let rates = vec![
        record(
            "job:rehab_canary_events_sent:rate5m",
            "sum by (job) (rate(rehab_canary_events_sent_total[5m]))".to_owned(),
            &[],
        ),
        record(
            "job:rehab_canary_events_accepted:rate5m",
            "sum by (job) (rate(rehab_canary_events_accepted_total[5m]))".to_owned(),
            &[],
        ),
        record(
            "job:rehab_canary_iterations_dropped:rate5m",
            "sum by (job) (rate(rehab_canary_iterations_dropped_total[5m]))".to_owned(),
            &[],
        ),
        record(
            "job:rehab_canary_target_events_per_second:sum",
            "sum by (job) (rehab_canary_target_events_per_second)".to_owned(),
            &[],
        ),
        record(
            "job:rehab_canary_paused:max",
            "max by (job) (rehab_canary_paused)".to_owned(),
            &[],
        ),
        record(
            "job:rehab_canary_events_accepted_per_target:ratio_rate5m",
            "job:rehab_canary_events_accepted:rate5m\n/\njob:rehab_canary_target_events_per_second:sum".to_owned(),
            &[],
        ),
    ];

    RuleFile {
        groups: vec![
            Group {
                name: "rehab-canary-slo-sli".to_owned(),
                rules: sli,
            },
            Group {
                name: "rehab-canary-slo-budget".to_owned(),
                rules: budget,
            },
            Group {
                name: "rehab-canary-throughput".to_owned(),
                rules: rates,
            },
            Group {
                name: "rehab-canary-slo-alerts".to_owned(),
                rules: burn,
            },
            Group {
                name: "rehab-canary-health-alerts".to_owned(),
                rules: health_alerts(cfg),
            },
        ],
    }
}

fn health_alerts(cfg: &SloConfig) -> Vec<Rule> {
    let job = &cfg.job;
    let alert = |name: &str,
                 expr: String,
                 for_: Option<&str>,
                 severity: &str,
                 summary: &str,
                 description: &str| {
        Rule::Alert {
            alert: name.to_owned(),
            expr,
            for_: for_.map(str::to_owned),
            labels: labels(&[("severity", severity)]),
            annotations: labels(&[
                ("summary", summary),
                ("description", description),
                (
                    "runbook_url",
                    &format!("{}#{}", cfg.runbook_url, name.to_lowercase()),
                ),
            ]),
        }
    };
    vec![
        alert(
            "RehabCanaryDown",
            format!("up{{job=\"{job}\"}} == 0"),
            Some("2m"),
            "page",
            "Canary {{ $labels.instance }} cannot be scraped",
            "Prometheus has failed to scrape {{ $labels.instance }} (job {{ $labels.job }}) for 2 minutes. While the canary is down there is no synthetic traffic, no lag probe and no SLO data for the Rehab API.",
        ),
        alert(
            "RehabCanaryAbsent",
            format!("absent(up{{job=\"{job}\"}})"),
            Some("5m"),
            "page",
            "No canary target in job {{ $labels.job }}",
            "Prometheus has had no target of the canary's job for 5 minutes: service discovery or the scrape config lost it, so every other canary alert is silent.",
        ),
        alert(
            "RehabCanaryShardMissing",
            format!(
                "count by (job) (rehab_canary_shard_info{{job=\"{job}\"}})\n<\nmax by (job) (rehab_canary_shards_configured{{job=\"{job}\"}})"
            ),
            Some("10m"),
            "ticket",
            "Fewer canary shards report in {{ $labels.job }} than configured",
            "Fewer shards of {{ $labels.job }} have reported for 10 minutes than shard.total says (rehab_canary_shards_configured), e.g. a pod stuck Pending or failing its scrapes. The missing shards' share of the rate is not offered and their lag probes do not run, so throughput and lag data under-represent the plan.",
        ),
        alert(
            "RehabCanaryUnderTargetRate",
            "(\n  sum by (job, instance) (rate(rehab_canary_events_sent_total[5m]))\n  <\n  0.5 * sum by (job, instance) (rehab_canary_target_events_per_second)\n)\nand on (job, instance)\nmax by (job, instance) (rehab_canary_paused) == 0".to_owned(),
            Some("10m"),
            "ticket",
            "Canary {{ $labels.instance }} sends under half its target rate",
            "{{ $labels.instance }} has sent events at under half of its target rate for 10 minutes while not paused. Its measurements under-represent the load it is meant to offer.",
        ),
        alert(
            "RehabCanaryConfigReloadFailed",
            "rehab_canary_config_last_reload_successful == 0".to_owned(),
            None,
            "ticket",
            "Canary {{ $labels.instance }} rejected its last config reload",
            "The last configuration reload of {{ $labels.instance }} failed; it keeps running the previous configuration, which is no longer what is on disk.",
        ),
        alert(
            "RehabCanaryCircuitOpen",
            "rehab_canary_circuit_open == 1".to_owned(),
            Some("5m"),
            "ticket",
            "Canary {{ $labels.instance }} has had its circuit open for 5 minutes",
            "{{ $labels.instance }} stopped sending traffic after consecutive failures and only sends trial requests; the target has been failing for over 5 minutes.",
        ),
        alert(
            "RehabCanaryTargetDown",
            "rehab_canary_target_up == 0".to_owned(),
            Some("2m"),
            "page",
            "The Rehab API health check fails from {{ $labels.instance }}",
            "The target's health route has not answered healthy to {{ $labels.instance }} for 2 minutes: the Rehab API is down or unreachable from the canary.",
        ),
        alert(
            "RehabCanaryEventsLost",
            "sum by (job, projection) (increase(rehab_canary_lag_probe_failures_total{reason=\"lost\"}[10m])) > 0".to_owned(),
            None,
            "page",
            "Probe events lost in the {{ $labels.projection }} projection",
            "Probe events were accepted (201) but never became visible in the {{ $labels.projection }} projection within the lag timeout over the last 10 minutes. The SLO allows no lost events.",
        ),
        alert(
            "RehabCanaryReadModelLostEvents",
            "sum by (job, projection) (increase(rehab_canary_projection_integrity_failures_total{reason=\"vanished\"}[15m])) > 0".to_owned(),
            None,
            "page",
            "The {{ $labels.projection }} read model lost events it had shown",
            "The integrity audit (lag.audit) re-read probe events that the {{ $labels.projection }} read model had shown earlier and found at least one gone over the last 15 minutes, although the read still reaches back past it: a rebuild, replay or migration of the read model lost old events.",
        ),
        alert(
            "RehabCanaryPausedTooLong",
            "rehab_canary_paused == 1".to_owned(),
            Some("1h"),
            "ticket",
            "Canary {{ $labels.instance }} has been paused for over an hour",
            "{{ $labels.instance }} was paused over an hour ago and is still paused: no traffic, so the SLO data of that time says nothing. Someone probably forgot to resume it.",
        ),
    ]
}
