//! Service level objectives: the `[slo]` config section and the Prometheus
//! rules generated from it (`rehab-canary slo-rules`). One source for the
//! objectives, so the committed rules, the alerts and the config never drift.

pub mod config;
pub mod rules;

pub use config::SloConfig;
pub use rules::{generate, render, RuleFile};

/// Where the generated rules file is committed, relative to the repository.
pub const RULES_PATH: &str = "deploy/prometheus/rules/rehab-canary.yml";

/// The rules file text for a config section.
pub fn rules_yaml(cfg: &SloConfig) -> String {
    render(&generate(cfg))
}

#[cfg(test)]
mod tests;
