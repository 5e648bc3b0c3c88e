//! Command-line entry point: parses arguments and hands over to the library.
//! Exit codes: 0 ok, 1 runtime failure, 64 (EX_USAGE) bad usage or config.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use rehab_canary::admin::healthcheck::{HealthcheckError, Probe};
use rehab_canary::app::{self, AppError, RunOptions};
use rehab_canary::config::Config;
use rehab_canary::sim::SimError;

const EX_USAGE: u8 = 64;

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
    /// Run the canary daemon until SIGTERM/SIGINT.
    Run {
        /// TOML config file; env overrides use REHAB_CANARY__SECTION__KEY.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Exporter-toolkit web config (TLS, basic auth) for the admin server;
        /// wins over server.web_config_file.
        #[arg(long = "web.config.file", value_name = "FILE")]
        web_config_file: Option<PathBuf>,
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
    /// Run the reference Rehab API (the simulator) standalone.
    Sim {
        #[arg(long, default_value = "127.0.0.1:4000")]
        listen: SocketAddr,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EX_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::CheckConfig {
            config,
            web_config_file,
        } => match Config::load(Some(&config)) {
            Ok(cfg) => {
                let web = web_config_file.or(cfg.server.web_config_file);
                if let Some(web) = web {
                    if let Err(e) = rehab_canary::admin::WebConfig::load(&web) {
                        eprintln!("{}: invalid web config", web.display());
                        for e in &e.errors {
                            eprintln!("  {e}");
                        }
                        return ExitCode::from(EX_USAGE);
                    }
                    println!("{}: ok", web.display());
                }
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{}: invalid configuration", config.display());
                for e in &errors.0 {
                    eprintln!("  {e}");
                }
                ExitCode::from(EX_USAGE)
            }
        },
        Command::SloRules { config, output } => match Config::load(config.as_deref()) {
            Ok(cfg) => {
                let yaml = rehab_canary::slo::rules_yaml(&cfg.slo);
                match output {
                    None => {
                        print!("{yaml}");
                        ExitCode::SUCCESS
                    }
                    Some(path) => match std::fs::write(&path, yaml) {
                        Ok(()) => ExitCode::SUCCESS,
                        Err(e) => {
                            eprintln!("rehab-canary: cannot write {}: {e}", path.display());
                            ExitCode::FAILURE
                        }
                    },
                }
            }
            Err(errors) => {
                eprintln!("invalid configuration:");
                for e in &errors.0 {
                    eprintln!("  {e}");
                }
                ExitCode::from(EX_USAGE)
            }
        },
        Command::Run {
            config,
            web_config_file,
        } => {
            let mut cfg = match Config::load(config.as_deref()) {
                Ok(cfg) => cfg,
                Err(errors) => {
                    eprintln!("invalid configuration:");
                    for e in &errors.0 {
                        eprintln!("  {e}");
                    }
                    return ExitCode::from(EX_USAGE);
                }
            };
            if web_config_file.is_some() {
                cfg.server.web_config_file = web_config_file;
            }
            rehab_canary::telemetry::init(&cfg.log);
            let opts = RunOptions {
                config_path: config,
            };
            match runtime().map(|rt| rt.block_on(app::run(cfg, opts))) {
                Ok(Ok(())) => ExitCode::SUCCESS,
                Ok(Err(e @ (AppError::Config(_) | AppError::WebConfig(_)))) => {
                    eprintln!("{e}");
                    ExitCode::from(EX_USAGE)
                }
                Ok(Err(e)) => {
                    tracing::error!("{e}");
                    eprintln!("rehab-canary: {e}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("rehab-canary: cannot start the runtime: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Healthcheck {
            url,
            config,
            web_config_file,
            timeout,
            cacert,
            insecure,
        } => healthcheck(
            url.as_deref(),
            config.as_deref(),
            web_config_file.as_deref(),
            timeout,
            cacert,
            insecure,
        ),
        Command::Sim { listen, config } => {
            rehab_canary::telemetry::init(&Default::default());
            match runtime()
                .map(|rt| rt.block_on(rehab_canary::sim::run_standalone(listen, config.as_deref())))
            {
                Ok(Ok(())) => ExitCode::SUCCESS,
                Ok(Err(e)) => {
                    eprintln!("rehab-canary sim: {e}");
                    match e {
                        SimError::Config { .. } | SimError::ConfigLoad { .. } => {
                            ExitCode::from(EX_USAGE)
                        }
                        _ => ExitCode::FAILURE,
                    }
                }
                Err(e) => {
                    eprintln!("rehab-canary sim: cannot start the runtime: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `rehab-canary healthcheck`: one line on stderr when not healthy.
fn healthcheck(
    url: Option<&str>,
    config: Option<&std::path::Path>,
    web_config_file: Option<&std::path::Path>,
    timeout: Duration,
    cacert: Option<PathBuf>,
    insecure: bool,
) -> ExitCode {
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
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rehab-canary healthcheck: {e}");
            if e.is_usage() {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rehab-canary")
        .build()
}
