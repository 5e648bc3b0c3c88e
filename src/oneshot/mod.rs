//! One-shot runs (`run --profile NAME --for DURATION`): the daemon's own
//! engine, lag probes and admin server run for a bounded time, then the run
//! is judged against thresholds and reported (terminal table, JSON summary,
//! HTML report), optionally pushed to a Pushgateway. A release gate in CI,
//! and with the `capacity` profile, a capacity finder.
//!
//! Exit codes (see `main.rs`): 0 no threshold failed, 1 a threshold failed
//! at the `--fail-on` level (past critical by default; past the target with
//! `--fail-on warn`) or the run was interrupted, 64 usage or config error,
//! 70 the run could not be carried out (port busy, results not writable).

pub mod broadway;
pub mod capacity;
pub mod profile;
pub mod pushgateway;
pub mod recorder;
pub mod report;
pub mod results;
pub mod thresholds;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::app::{AppError, Daemon, RunOptions, VERSION};
use crate::config::Config;
use crate::exit::{Exit, ExitStatus};
use crate::metrics::tap::RunTap;
use capacity::{Ramp, Step};
use profile::{CapacityPlan, Mode, Profile, ProfileError};
use recorder::Recorder;
use report::{
    Capacity, CapacityStep, LimitedBy, ModeKind, Planned, PlannedBurst, RunReport, SpanTotals,
    StoppedBy, Tool,
};
use results::ResultsError;
use thresholds::{Comparison, FailOn, Probes, Status, Unit, Verdict};

/// Longest wait, after traffic stops, for probe events still being watched
/// beyond `lag.timeout` (they resolve as seen or lost within the timeout).
const DRAIN_MARGIN: Duration = Duration::from_secs(2);

/// What `run --profile` was asked for beyond the config.
#[derive(Debug, Clone)]
pub struct Options {
    pub profile: String,
    /// `--for`: replaces the profile's duration.
    pub run_for: Option<Duration>,
    pub results_dir: PathBuf,
    /// `--keep`: remove run folders older than this after the run.
    pub keep: Option<Duration>,
    pub push_gateway: Option<url::Url>,
    /// `--fail-on`: whether a WARN row fails the run.
    pub fail_on: FailOn,
}

#[derive(Debug, thiserror::Error)]
pub enum OneShotError {
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    App(#[from] AppError),
    #[error(transparent)]
    Results(#[from] ResultsError),
}

/// A usage or config error exits 64; a run that could not happen, 70 (a
/// verdict is 0 or 1, never an error).
impl ExitStatus for OneShotError {
    fn exit(&self) -> Exit {
        match self {
            OneShotError::Profile(_) => Exit::Usage,
            OneShotError::App(e) if e.exit() == Exit::Usage => Exit::Usage,
            _ => Exit::Software,
        }
    }
}

/// A finished run: its report, and the folder it was written to.
#[derive(Debug)]
pub struct Finished {
    pub report: RunReport,
    pub dir: PathBuf,
    /// Whether the push to the Pushgateway (if asked for) succeeded.
    pub pushed: Option<bool>,
}

/// An early end of the run (SIGINT/SIGTERM); never resolving means none.
pub type Interrupt = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs the profile and judges it. The caller prints the table and maps the
/// outcome to the exit code.
pub async fn run(
    cfg: Config,
    opts: Options,
    interrupt: Interrupt,
) -> Result<Finished, OneShotError> {
    let profile = profile::resolve(&cfg, &opts.profile, opts.run_for)?;
    let mut cfg = cfg;
    cfg.traffic = profile.traffic.clone();
    // The probes this shard runs: the lag row needs a projection probe (the
    // batch probe feeds its own row).
    let shard_lag = cfg.shard_lag();
    let probes = Probes {
        lag: shard_lag.probes.iter().any(|(_, p)| p.enabled),
        batch: shard_lag.probes.batch.enabled,
        batch_interval: shard_lag.probes.batch.interval,
    };
    let started = SystemTime::now();
    let started_at = humantime::format_rfc3339_seconds(started).to_string();
    // Made before the run, so an unwritable results dir fails in a second,
    // not after a ten-minute run.
    let dir = results::create_run_dir(&opts.results_dir, &started_at, &profile.name)?;
    let tap = Arc::new(RunTap::default());
    let daemon = match Daemon::start_with(
        cfg.clone(),
        RunOptions {
            // No config file: a SIGHUP reload must not undo the profile.
            config_path: None,
            tap: Some(tap.clone()),
        },
    )
    .await
    {
        Ok(d) => d,
        Err(e) => {
            // Nothing ran: leave no empty run folder behind.
            let _ = std::fs::remove_dir(&dir);
            return Err(e.into());
        }
    };
    tracing::info!(
        profile = %profile.name,
        duration = ?profile.duration,
        events_per_second = profile.traffic.events_per_second,
        "one-shot run started"
    );
    let recorder = Recorder::spawn(daemon.metrics().clone(), tap);
    let mut interrupt = interrupt;
    let mut broadway = None;
    let (ended, capacity) = match &profile.mode {
        Mode::Steady => (
            steady(&recorder, &profile, opts.fail_on, &mut interrupt).await,
            None,
        ),
        Mode::Broadway(plan) => {
            let o = broadway::run(
                &daemon,
                &cfg,
                &recorder,
                &profile,
                plan,
                probes,
                &mut interrupt,
            )
            .await;
            broadway = Some((o.report, o.judged));
            (o.ended, None)
        }
        Mode::Capacity(plan) => {
            let (ended, c) = ramp(
                &daemon,
                &cfg,
                &recorder,
                &profile,
                plan,
                probes,
                &mut interrupt,
            )
            .await;
            (ended, Some(c))
        }
    };

    // Stop sending, let the probe events already out resolve, then stop.
    let mut quiet = cfg.clone();
    quiet.traffic.events_per_second = 0.0;
    quiet.traffic.burst.duration = Duration::ZERO;
    daemon.set_traffic(&quiet);
    daemon.stop_for_drain();
    recorder.traffic_ended();
    let _ = tokio::time::timeout(cfg.lag.timeout + DRAIN_MARGIN, daemon.quiesced()).await;
    let recording = recorder.finish().await;
    let exposition = daemon.metrics().encode();
    let text = String::from_utf8(daemon.metrics().encode_as(crate::metrics::Format::Text))
        .unwrap_or_default();
    let target = daemon.target().to_string();
    daemon.shutdown().await;
    let finished = SystemTime::now();

    let (thresholds, interrupted, aborted) = match (&capacity, ended) {
        (Some(c), ended) => {
            let required = profile
                .thresholds
                .min_events_per_second
                .unwrap_or(cfg.slo.throughput.min_events_per_second);
            let row = Verdict {
                id: thresholds::id::CAPACITY,
                name: "capacity within all SLOs".to_owned(),
                status: if c.events_per_second.is_some_and(|v| v >= required) {
                    Status::Pass
                } else {
                    Status::Fail
                },
                value: c.events_per_second,
                comparison: Comparison::AtLeast,
                target: required,
                critical: None,
                unit: Unit::EventsPerSecond,
                detail: Some(format!("ramp stopped by {}", c.stopped_by)),
            };
            (vec![row], ended == Ended::Interrupted, None)
        }
        (None, ended) => (
            {
                // Broadway: the load phases, with every loss of the run.
                let judged = match &broadway {
                    Some((_, phases)) => {
                        let mut t = phases.clone();
                        t.lost = recording.run.lost;
                        t.late = recording.run.late;
                        t
                    }
                    None => recording.run.clone(),
                };
                thresholds::judge(&profile.thresholds, &judged, probes)
            },
            ended == Ended::Interrupted,
            match ended {
                Ended::Aborted(ids) => Some(ids),
                _ => None,
            },
        ),
    };
    let t = &profile.traffic;
    let report = RunReport {
        schema_version: report::SCHEMA_VERSION,
        tool: Tool {
            name: "rehab-canary",
            version: VERSION,
        },
        profile: profile.name.clone(),
        mode: match profile.mode {
            Mode::Steady => ModeKind::Steady,
            Mode::Capacity(_) => ModeKind::Capacity,
            Mode::Broadway(_) => ModeKind::Broadway,
        },
        target,
        started_at,
        finished_at: humantime::format_rfc3339_seconds(finished).to_string(),
        outcome: RunReport::outcome_of(&thresholds, interrupted, opts.fail_on),
        fail_on: opts.fail_on,
        aborted,
        interrupted,
        planned: Planned {
            duration_seconds: profile.duration.as_secs_f64(),
            events_per_second: t.events_per_second,
            max_events_per_second: t.max_events_per_second,
            burst: t.burst.enabled().then_some(PlannedBurst {
                every_seconds: t.burst.every.as_secs_f64(),
                duration_seconds: t.burst.duration.as_secs_f64(),
                multiplier: t.burst.multiplier,
            }),
            abort_on_fail: profile.abort_on_fail,
        },
        thresholds,
        totals: SpanTotals::of(&recording.run),
        bursts: RunReport::bursts_of(&recording.samples),
        capacity,
        broadway: broadway.map(|(b, _)| b),
        timeseries: recording.samples,
    };

    results::write(&dir, results::SUMMARY, &report.to_json())?;
    results::write(&dir, results::REPORT, &report::html::render(&report))?;
    results::write(&dir, results::METRICS, &exposition)?;
    if let Some(keep) = opts.keep {
        for old in results::prune(&opts.results_dir, keep, SystemTime::now()) {
            tracing::info!(path = %old.display(), "removed results older than --keep");
        }
    }
    let pushed = match &opts.push_gateway {
        None => None,
        Some(url) => Some(match pushgateway::push(url, &report, &text).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("{e}");
                false
            }
        }),
    };
    Ok(Finished {
        report,
        dir,
        pushed,
    })
}

#[derive(Debug, Clone, PartialEq)]
enum Ended {
    Planned,
    Aborted(Vec<&'static str>),
    Interrupted,
}

/// Sleeps `d`, unless the run is interrupted first (then `false`).
async fn hold(d: Duration, interrupt: &mut Interrupt) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => true,
        () = interrupt.as_mut() => false,
    }
}

/// One rate for the whole run, checked every second for `abort_on_fail`:
/// doomed at the level that fails the run (`fail_on`), so a run that can
/// only end in warnings is not cut short under the default.
async fn steady(
    recorder: &Recorder,
    profile: &Profile,
    fail_on: FailOn,
    interrupt: &mut Interrupt,
) -> Ended {
    loop {
        let left = profile.duration.saturating_sub(recorder.elapsed());
        if left.is_zero() {
            return Ended::Planned;
        }
        if !hold(left.min(Duration::from_secs(1)), interrupt).await {
            return Ended::Interrupted;
        }
        if profile.abort_on_fail {
            let elapsed = recorder.elapsed();
            let doomed = recorder.with(|r| {
                thresholds::doomed(
                    &profile.thresholds,
                    &r.run,
                    elapsed,
                    profile.duration,
                    fail_on,
                )
            });
            if !doomed.is_empty() {
                tracing::warn!(thresholds = ?doomed, "abort_on_fail: these thresholds cannot pass");
                return Ended::Aborted(doomed);
            }
        }
    }
}

/// The capacity ramp: each step holds a rate, settles, then is judged. A
/// step passes only within every target (a WARN fails it whatever
/// `--fail-on` says): the figure is the rate the service sustains within
/// its SLOs.
async fn ramp(
    daemon: &Daemon,
    cfg: &Config,
    recorder: &Recorder,
    profile: &Profile,
    plan: &CapacityPlan,
    probes: Probes,
    interrupt: &mut Interrupt,
) -> (Ended, Capacity) {
    // Each step is judged against its own schedule, not a fixed floor.
    let mut step_thresholds = profile.thresholds.clone();
    step_thresholds.min_events_per_second = None;
    let mut ramp = Ramp::new(plan.clone());
    let mut step: Step = ramp.first();
    let mut steps = Vec::new();
    let mut ended = Ended::Planned;
    let stopped_by = loop {
        if recorder.elapsed() + plan.step_duration > profile.duration {
            break StoppedBy::Budget;
        }
        let mut c = cfg.clone();
        c.traffic.events_per_second = step.rate;
        daemon.set_traffic(&c);
        let started_at = recorder.elapsed().as_secs_f64();
        tracing::info!(
            events_per_second = step.rate,
            phase = step.phase.as_str(),
            "capacity step"
        );
        if !hold(plan.settle, interrupt).await {
            ended = Ended::Interrupted;
            break StoppedBy::Interrupted;
        }
        recorder.begin_phase();
        let judged_from = recorder.elapsed().as_secs_f64();
        if !hold(plan.step_duration - plan.settle, interrupt).await {
            ended = Ended::Interrupted;
            break StoppedBy::Interrupted;
        }
        let totals = recorder.with(|r| r.phase.clone());
        let verdicts = thresholds::judge(&step_thresholds, &totals, probes);
        let passed = !verdicts.iter().any(Verdict::missed_target);
        let sent_rate = if totals.seconds > 0.0 {
            totals.sent as f64 / totals.seconds
        } else {
            0.0
        };
        let canary_limited = sent_rate < step_thresholds.throughput_ratio * totals.scheduled_rate();
        if canary_limited {
            tracing::warn!(
                events_per_second = step.rate,
                sent_per_second = sent_rate,
                "the canary could not send this step's rate: the result is bounded by the canary"
            );
        }
        tracing::info!(
            events_per_second = step.rate,
            passed,
            "capacity step judged"
        );
        steps.push(CapacityStep {
            events_per_second: step.rate,
            phase: step.phase,
            started_at,
            judged_from,
            ended_at: recorder.elapsed().as_secs_f64(),
            passed,
            canary_limited,
            totals: SpanTotals::of(&totals),
            thresholds: verdicts,
        });
        match ramp.next(step, passed) {
            Some(next) => step = next,
            None => break ramp.stopped_by.unwrap_or(StoppedBy::Refined),
        }
    };
    let lowest_failure = steps
        .iter()
        .filter(|s| !s.passed)
        .min_by(|a, b| a.events_per_second.total_cmp(&b.events_per_second));
    let limited_by = match (stopped_by, lowest_failure) {
        (StoppedBy::Ceiling, _) => Some(LimitedBy::Ceiling),
        (_, Some(s)) if s.canary_limited => Some(LimitedBy::Canary),
        (_, Some(_)) => Some(LimitedBy::Target),
        (_, None) => None,
    };
    (
        ended,
        Capacity {
            events_per_second: ramp.best(),
            stopped_by,
            limited_by,
            steps,
        },
    )
}
