//! The capacity finder: hold a rate for a step, judge the step's judged part
//! against every threshold, step up until one breaks, then bisect between
//! the last passing and the first failing rate. The answer is the highest
//! rate that passed every threshold.

use super::profile::CapacityPlan;
use super::report::{Phase, StoppedBy};

/// Rates closer than this fraction of the failing rate are not split further.
const MIN_GAP: f64 = 0.02;

/// The ramp's decisions, apart from any clock, so they can be tested alone.
#[derive(Debug, Clone)]
pub struct Ramp {
    plan: CapacityPlan,
    best: Option<f64>,
    first_fail: Option<f64>,
    refines_left: u32,
    /// Why it stopped, once it has.
    pub stopped_by: Option<StoppedBy>,
}

/// The next step to run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub rate: f64,
    pub phase: Phase,
}

impl Ramp {
    pub fn new(plan: CapacityPlan) -> Self {
        Ramp {
            refines_left: plan.refine_steps,
            plan,
            best: None,
            first_fail: None,
            stopped_by: None,
        }
    }

    pub fn first(&self) -> Step {
        Step {
            rate: self.plan.start.min(self.plan.ceiling),
            phase: Phase::Ramp,
        }
    }

    /// The highest rate that passed so far.
    pub fn best(&self) -> Option<f64> {
        self.best
    }

    /// Records how `step` went; returns the next step, or `None` when done.
    pub fn next(&mut self, step: Step, passed: bool) -> Option<Step> {
        if passed {
            self.best = Some(self.best.map_or(step.rate, |b| b.max(step.rate)));
        } else {
            self.first_fail = Some(self.first_fail.map_or(step.rate, |f| f.min(step.rate)));
        }
        let Some(high) = self.first_fail else {
            // Still ramping: everything so far passed.
            if step.rate >= self.plan.ceiling {
                self.stopped_by = Some(StoppedBy::Ceiling);
                return None;
            }
            return Some(Step {
                rate: (step.rate + self.plan.step).min(self.plan.ceiling),
                phase: Phase::Ramp,
            });
        };
        let low = self.best.unwrap_or(0.0);
        if self.refines_left == 0 || high - low <= MIN_GAP * high {
            self.stopped_by = Some(StoppedBy::Refined);
            return None;
        }
        self.refines_left -= 1;
        Some(Step {
            rate: ((low + high) / 2.0).round(),
            phase: Phase::Refine,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn plan(refine: u32, ceiling: f64) -> CapacityPlan {
        CapacityPlan {
            start: 200.0,
            step: 200.0,
            step_duration: Duration::from_secs(10),
            settle: Duration::from_secs(2),
            refine_steps: refine,
            ceiling,
        }
    }

    /// Runs the ramp against a target that passes up to `limit`.
    fn find(limit: f64, refine: u32, ceiling: f64) -> (Option<f64>, Vec<f64>, &'static str) {
        let mut ramp = Ramp::new(plan(refine, ceiling));
        let mut step = ramp.first();
        let mut rates = vec![step.rate];
        while let Some(next) = ramp.next(step, step.rate <= limit) {
            step = next;
            rates.push(step.rate);
            assert!(rates.len() < 50, "ramp does not end: {rates:?}");
        }
        (ramp.best(), rates, ramp.stopped_by.unwrap().as_str())
    }

    #[test]
    fn steps_up_then_bisects() {
        let (best, rates, why) = find(870.0, 3, 5000.0);
        assert_eq!(
            rates,
            [200.0, 400.0, 600.0, 800.0, 1000.0, 900.0, 850.0, 875.0]
        );
        assert_eq!(best, Some(850.0));
        assert_eq!(why, "refined");
    }

    #[test]
    fn the_ceiling_bounds_the_ramp() {
        let (best, rates, why) = find(f64::INFINITY, 3, 700.0);
        assert_eq!(rates, [200.0, 400.0, 600.0, 700.0]);
        assert_eq!((best, why), (Some(700.0), "ceiling"));
    }

    #[test]
    fn a_failing_first_step_is_refined_downwards() {
        let (best, rates, _) = find(120.0, 2, 5000.0);
        assert_eq!(rates, [200.0, 100.0, 150.0]);
        assert_eq!(best, Some(100.0));
        let (none, _, _) = find(10.0, 1, 5000.0);
        assert_eq!(none, None);
    }
}
