//! Service level objectives: the `[slo]` config section and the Prometheus
//! rules generated from it (`rehab-canary slo-rules`). One source for the
//! objectives, so the committed rules, the alerts and the config never drift.

pub mod render;
pub mod rules;

pub use crate::config::slo::SloConfig;
pub use render::{render, render_prometheus_rule};
pub use rules::{generate, RuleFile};

/// Where the generated rules file is committed, relative to the repository.
pub const RULES_PATH: &str = "deploy/prometheus/rules/rehab-canary.yml";

/// Where the same groups are committed as a Prometheus Operator
/// `PrometheusRule`, for the Kubernetes manifests.
pub const PROMETHEUS_RULE_PATH: &str = "deploy/kubernetes/base/prometheusrule.yaml";

/// The rules file text for a config section.
pub fn rules_yaml(cfg: &SloConfig) -> String {
    render(&generate(cfg))
}

/// The same rule groups as a `PrometheusRule` object named `rehab-canary`.
pub fn prometheus_rule_yaml(cfg: &SloConfig) -> String {
    render_prometheus_rule(&generate(cfg), "rehab-canary")
}

#[cfg(test)]
mod tests;
