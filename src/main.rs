//! Command-line entry point: parses arguments and hands each subcommand to
//! the library. Exit statuses are not decided here: every error says its own
//! (`rehab_canary::exit`), and `main` prints it and exits with it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use rehab_canary::admin::healthcheck::{HealthcheckError, Probe};
use rehab_canary::app::{self, AppError, RunOptions};
use rehab_canary::config::{Config, ConfigErrors};
use rehab_canary::exit::{Exit, ExitStatus};
use rehab_canary::lifecycle::{Event, SignalEvents};
use rehab_canary::oneshot;

#[derive(Parser)]
#[command(
    name = "rehab-canary",
    version,
    about = "Always-on synthetic traffic canary for the Rehab Exercise Tracking API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the canary daemon until SIGTERM/SIGINT; with --profile, run once
    /// for a bounded time, judge the thresholds at their target and critical
    /// levels and exit 0 (pass) or 1 (fail; see --fail-on).
    Run {
        /// TOML config file; env overrides use REHAB_CANARY__SECTION__KEY.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Exporter-toolkit web config (TLS, basic auth) for the admin server;
        /// wins over server.web_config_file.
        #[arg(long = "web.config.file", value_name = "FILE")]
        web_config_file: Option<PathBuf>,
        #[command(flatten)]
        once: OneShotArgs,
    },
    /// Validate a config file (and the web config it or --web.config.file
    /// names): exit 0, or print every error and exit 64.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long = "web.config.file", value_name = "FILE")]
        web_config_file: Option<PathBuf>,
    },
    /// Print (or write) the Prometheus rules generated from the [slo] section.
    SloRules {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Write the rules here instead of to stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// `rules`: a Prometheus rules file; `prometheusrule`: the same groups
        /// in a Prometheus Operator PrometheusRule (Kubernetes).
        #[arg(long, value_enum, default_value = "rules")]
        format: RulesFormat,
    },
    /// Ask a running daemon's admin server for /-/healthy: exit 0 if it
    /// answers 200 within the timeout, else 1 (64 for bad usage or config).
    /// The address is --url, or else server.listen from --config and the
    /// environment, a wildcard address meaning loopback; https when the web
    /// config has TLS (that certificate is not verified, as kubelet probes do).
    Healthcheck {
        /// The admin server's base URL (/-/healthy is appended), or a full URL
        /// to ask when it has a path. Wins over --config.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// The daemon's config file, for server.listen and
        /// server.web_config_file; env overrides apply as for `run`.
        #[arg(long, short, conflicts_with = "url")]
        config: Option<PathBuf>,
        /// The daemon's web config, when given to `run` on its command line.
        #[arg(long = "web.config.file", value_name = "FILE", conflicts_with = "url")]
        web_config_file: Option<PathBuf>,
        /// How long the whole check may take.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// Extra CA certificates (PEM) to verify an https --url against.
        #[arg(long, value_name = "FILE", requires = "url")]
        cacert: Option<PathBuf>,
        /// Do not verify the certificate of an https --url.
        #[arg(long, requires = "url")]
        insecure: bool,
    },
    /// Ask a running daemon whether the target got worse after `--since`
    /// (GET /api/v1/verdict): one row per signal, then the verdict. Exit 0
    /// pass, 1 fail, 2 marginal or inconclusive, 64 bad usage, 70 no answer.
    /// With --user, the password comes from REHAB_CANARY_ADMIN_PASSWORD.
    Verdict {
        /// The admin server's base URL.
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8742")]
        url: String,
        /// Start of the window judged: RFC 3339, unix seconds or last-deploy.
        #[arg(long, value_name = "TIME")]
        since: String,
        /// The baseline window before --since (default verdict.baseline).
        #[arg(long, value_name = "DURATION")]
        baseline: Option<String>,
        /// Fewer samples than this on either side: inconclusive.
        #[arg(long, value_name = "N")]
        min_samples: Option<u64>,
        /// Basic-auth user of the admin server.
        #[arg(long)]
        user: Option<String>,
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Run the reference Rehab API (the simulator) standalone.
    Sim {
        #[arg(long, default_value = "127.0.0.1:4000")]
        listen: SocketAddr,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// One-shot runs (`run --profile`); every flag but --profile needs it.
#[derive(clap::Args)]
struct OneShotArgs {
    /// Run this profile once and judge it: smoke, load, stress, broadway,
    /// capacity, or one of the config's [profiles.NAME].
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// Run length, replacing the profile's (e.g. 30s, 10m); for capacity,
    /// the budget of the whole ramp.
    #[arg(long = "for", value_name = "DURATION", requires = "profile", value_parser = humantime::parse_duration)]
    run_for: Option<Duration>,
    /// Where each run's folder (summary.json, report.html, metrics.txt) goes.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "results",
        requires = "profile"
    )]
    results_dir: PathBuf,
    /// After the run, remove run folders in --results-dir older than this (e.g. 7d).
    #[arg(long, value_name = "AGE", requires = "profile", value_parser = humantime::parse_duration)]
    keep: Option<Duration>,
    /// Push the final metrics and the verdict to this Prometheus Pushgateway.
    #[arg(long, value_name = "URL", requires = "profile")]
    push_gateway: Option<url::Url>,
    /// Which level fails the run (exit 1). Each threshold reads PASS, WARN
    /// (past its target, within its critical level) or FAIL (past critical).
    /// `critical`: only a FAIL fails the run, a WARN exits 0; `warn`: a WARN
    /// fails it too. abort_on_fail ends a run early at the same level.
    #[arg(
        long,
        value_enum,
        value_name = "LEVEL",
        default_value = "critical",
        requires = "profile"
    )]
    fail_on: FailOnArg,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FailOnArg {
    Warn,
    Critical,
}

impl From<FailOnArg> for oneshot::thresholds::FailOn {
    fn from(a: FailOnArg) -> Self {
        match a {
            FailOnArg::Warn => Self::Warn,
            FailOnArg::Critical => Self::Critical,
        }
    }
}

/// How a subcommand ended: a status, or an error that says its own.
type Ended = Result<Exit, Box<dyn ExitStatus>>;

/// The failures of the command line itself, outside the library's types.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("{}: invalid configuration:\n{errors}", .path.display())]
    InvalidConfig { path: PathBuf, errors: ConfigErrors },
    #[error("cannot start the runtime: {source}")]
    Runtime {
        source: std::io::Error,
        /// A one-shot run that cannot start has no verdict (70); the daemon
        /// failed at run time (1).
        exit: Exit,
    },
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ExitStatus for CliError {
    fn exit(&self) -> Exit {
        match self {
            CliError::InvalidConfig { .. } => Exit::Usage,
            CliError::Runtime { exit, .. } => *exit,
            CliError::Write { .. } => Exit::Failure,
        }
    }
}

fn fail(e: impl ExitStatus + 'static) -> Ended {
    Err(Box::new(e))
}

fn load(path: Option<&std::path::Path>) -> Result<Config, Box<dyn ExitStatus>> {
    Config::load(path).map_err(|e| Box::new(AppError::Config(e)) as Box<dyn ExitStatus>)
}

fn runtime(exit: Exit) -> Result<tokio::runtime::Runtime, Box<dyn ExitStatus>> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rehab-canary")
        .build()
        .map_err(|source| Box::new(CliError::Runtime { source, exit }) as Box<dyn ExitStatus>)
}

/// `run`: the daemon, or with `--profile` a one-shot run.
fn run(config: Option<PathBuf>, web_config_file: Option<PathBuf>, once: OneShotArgs) -> Ended {
    let mut cfg = load(config.as_deref())?;
    if web_config_file.is_some() {
        cfg.server.web_config_file = web_config_file;
    }
    rehab_canary::telemetry::init(&cfg.log);
    if let Some(profile) = once.profile.clone() {
        return run_once(cfg, once, profile);
    }
    let opts = RunOptions {
        config_path: config,
        ..Default::default()
    };
    match runtime(Exit::Failure)?.block_on(app::run(cfg, opts)) {
        Ok(()) => Ok(Exit::Success),
        Err(e) => {
            if e.exit() == Exit::Failure {
                tracing::error!("{e}");
            }
            fail(e)
        }
    }
}

/// `run --profile`: exit 0 pass, 1 a threshold failed at the --fail-on level
/// (or interrupted), 64 usage, 70 could not run.
fn run_once(cfg: Config, args: OneShotArgs, profile: String) -> Ended {
    let opts = oneshot::Options {
        profile,
        run_for: args.run_for,
        results_dir: args.results_dir,
        keep: args.keep,
        push_gateway: args.push_gateway,
        fail_on: args.fail_on.into(),
    };
    let result = runtime(Exit::Software)?.block_on(async {
        let mut signals = match SignalEvents::register() {
            Ok(s) => s,
            Err(e) => return Err(oneshot::OneShotError::App(AppError::Signals(e))),
        };
        let interrupt: oneshot::Interrupt = Box::pin(async move {
            while let Some(event) = signals.next().await {
                match event {
                    Event::Shutdown => return,
                    Event::Reload => {
                        tracing::info!("SIGHUP ignored: a one-shot run keeps its profile")
                    }
                }
            }
            std::future::pending::<()>().await;
        });
        oneshot::run(cfg, opts, interrupt).await
    });
    let done = match result {
        Ok(done) => done,
        Err(e) => return fail(e),
    };
    print!("{}", oneshot::report::table::render(&done.report));
    println!("results: {}", done.dir.display());
    Ok(match done.report.outcome {
        oneshot::report::RunVerdict::Pass => Exit::Success,
        oneshot::report::RunVerdict::Fail => Exit::Failure,
    })
}

/// `check-config`: the config and the web config it names, every error.
fn check_config(config: PathBuf, web_config_file: Option<PathBuf>) -> Ended {
    let cfg = match Config::load(Some(&config)) {
        Ok(cfg) => cfg,
        Err(errors) => {
            return fail(CliError::InvalidConfig {
                path: config,
                errors,
            })
        }
    };
    // The files `run` reads at start: a private CA or client pair that does
    // not load is found here, not by the first handshake.
    if let Err(e) = rehab_canary::client::TargetTls::new(&cfg.target.tls) {
        return fail(e);
    }
    if let Some(web) = web_config_file.or(cfg.server.web_config_file) {
        if let Err(e) = rehab_canary::admin::WebConfig::load(&web) {
            return fail(e);
        }
        println!("{}: ok", web.display());
    }
    println!("{}: ok", config.display());
    Ok(Exit::Success)
}

/// `slo-rules`: the generated Prometheus rules, to stdout or a file.
fn slo_rules(config: Option<PathBuf>, output: Option<PathBuf>, format: RulesFormat) -> Ended {
    let cfg = load(config.as_deref())?;
    let yaml = match format {
        RulesFormat::Rules => rehab_canary::slo::rules_yaml(&cfg.slo),
        RulesFormat::PrometheusRule => rehab_canary::slo::prometheus_rule_yaml(&cfg.slo),
    };
    match output {
        None => print!("{yaml}"),
        Some(path) => {
            if let Err(source) = std::fs::write(&path, yaml) {
                return fail(CliError::Write { path, source });
            }
        }
    }
    Ok(Exit::Success)
}

/// `healthcheck`: one line on stderr when not healthy.
fn healthcheck(
    url: Option<&str>,
    config: Option<&std::path::Path>,
    web_config_file: Option<&std::path::Path>,
    timeout: Duration,
    cacert: Option<PathBuf>,
    insecure: bool,
) -> Ended {
    let probe = match url {
        Some(url) => Probe::from_url(url),
        None => Config::load(config)
            .map_err(HealthcheckError::Config)
            .and_then(|cfg| Probe::from_config(&cfg, web_config_file)),
    };
    let result = probe.and_then(|mut probe| {
        probe.timeout = timeout;
        probe.ca_file = cacert;
        probe.verify_tls &= !insecure;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(HealthcheckError::Runtime)?;
        rt.block_on(probe.check())
    });
    match result {
        Ok(()) => Ok(Exit::Success),
        Err(e) => fail(e),
    }
}

/// `verdict`: the table on stdout, the verdict as the exit status.
fn verdict(ask: rehab_canary::verdict::cli::Ask) -> Ended {
    match runtime(Exit::Software)?.block_on(rehab_canary::verdict::cli::ask(&ask)) {
        Ok((table, exit)) => {
            print!("{table}");
            Ok(exit)
        }
        Err(e) => fail(e),
    }
}

/// `sim`: the reference API, standalone.
fn sim(listen: SocketAddr, config: Option<PathBuf>) -> Ended {
    rehab_canary::telemetry::init(&Default::default());
    match runtime(Exit::Failure)?
        .block_on(rehab_canary::sim::run_standalone(listen, config.as_deref()))
    {
        Ok(()) => Ok(Exit::Success),
        Err(e) => fail(e),
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum RulesFormat {
    Rules,
    #[value(name = "prometheusrule")]
    PrometheusRule,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            let exit = if e.use_stderr() {
                Exit::Usage
            } else {
                Exit::Success
            };
            return exit.into();
        }
    };
    let (command, outcome) = match cli.command {
        Command::Run {
            config,
            web_config_file,
            once,
        } => ("rehab-canary", run(config, web_config_file, once)),
        Command::CheckConfig {
            config,
            web_config_file,
        } => ("rehab-canary", check_config(config, web_config_file)),
        Command::SloRules {
            config,
            output,
            format,
        } => ("rehab-canary", slo_rules(config, output, format)),
        Command::Healthcheck {
            url,
            config,
            web_config_file,
            timeout,
            cacert,
            insecure,
        } => (
            "rehab-canary healthcheck",
            healthcheck(
                url.as_deref(),
                config.as_deref(),
                web_config_file.as_deref(),
                timeout,
                cacert,
                insecure,
            ),
        ),
        Command::Sim { listen, config } => ("rehab-canary sim", sim(listen, config)),
        Command::Verdict {
            url,
            since,
            baseline,
            min_samples,
            user,
            timeout,
        } => (
            "rehab-canary verdict",
            verdict(rehab_canary::verdict::cli::Ask {
                url,
                since,
                baseline,
                min_samples,
                user,
                timeout,
            }),
        ),
    };
    match outcome {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("{command}: {e}");
            e.exit().into()
        }
    }
}
