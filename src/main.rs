//! The `sluice` command line: `run`, `validate`, `read` (and `bench`).

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use clap::{Parser, Subcommand};
use sluice::{config, shard};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Thread-per-core io_uring OpenTelemetry ingest engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the ingest engine (embedded default config when --config is not given).
    Run {
        /// Collector-style YAML configuration.
        #[arg(long)]
        config: Option<PathBuf>,
        /// YAML file with the `tuning` section (shards, cores, pin); overrides the config's.
        #[arg(long)]
        tuning: Option<PathBuf>,
    },
    /// Check a configuration and exit.
    Validate {
        #[arg(long)]
        config: PathBuf,
    },
    /// Print what a `file` exporter stored, as OTLP/JSON lines.
    Read {
        /// The exporter's `path`.
        dir: PathBuf,
        /// Print totals per signal instead of the records.
        #[arg(long)]
        count: bool,
    },
    /// Drive an OTLP endpoint with load and report events/s and latency.
    Bench(sluice::bench::BenchArgs),
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A closed stderr (a stopped log collector) must not panic the thread
        // that logs: tracing's fallback report goes through eprintln!.
        .log_internal_errors(false)
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config, tuning } => run(config, tuning),
        Command::Validate { config } => match config::load_file(&config) {
            Ok(c) => {
                println!(
                    "{}: valid ({} pipelines, {} receivers, {} processors, {} exporters)",
                    config.display(),
                    c.service.pipelines.len(),
                    c.receivers.len(),
                    c.processors.len(),
                    c.exporters.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
        Command::Read { dir, count } => {
            let stdout = std::io::stdout();
            let stderr = std::io::stderr();
            match sluice::store::read::run_read(&dir, count, &mut stdout.lock(), &mut stderr.lock()) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sluice read {}: {e}", dir.display());
                    ExitCode::from(1)
                }
            }
        }
        Command::Bench(args) => {
            init_logging("warn");
            let stdout = std::io::stdout();
            match sluice::bench::run(&args, &mut stdout.lock()) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sluice bench: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn run(config_path: Option<PathBuf>, tuning: Option<PathBuf>) -> ExitCode {
    let loaded = match &config_path {
        Some(p) => config::load_file(p),
        None => Ok(config::default_config()),
    };
    let mut cfg = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    if let Some(t) = tuning {
        match config::load_tuning_file(&t) {
            Ok(t) => cfg.tuning = t,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        }
    }
    init_logging(&cfg.service.telemetry.log_level);
    match &config_path {
        Some(p) => tracing::info!(config = %p.display(), "loaded configuration"),
        None => tracing::info!("using the embedded default configuration"),
    }
    sluice::net::fd_limit::raise_and_log();

    let stop = Arc::new(AtomicBool::new(false));
    // SIGHUP (what `systemctl reload` sends) must never kill a node holding
    // acknowledged data: until configuration reload exists it is logged and
    // ignored.
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ]);
    let mut signals = match signals {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    let handle = signals.handle();
    {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("sluice-signals".into())
            .spawn(move || {
                let mut seen = 0;
                for sig in signals.forever() {
                    if sig == signal_hook::consts::SIGHUP {
                        tracing::warn!(
                            signal = sig,
                            "SIGHUP received: configuration reload is not supported yet; ignoring it (restart to \
                             change the configuration)"
                        );
                        continue;
                    }
                    seen += 1;
                    if seen == 1 {
                        stop.store(true, Ordering::SeqCst);
                        tracing::info!(signal = sig, "shutdown requested");
                    } else {
                        tracing::warn!("second signal: exiting immediately");
                        std::process::exit(130);
                    }
                }
            })
            .ok();
    }
    let result = shard::run(cfg, stop);
    handle.close();
    match result {
        Ok((report, _)) => {
            let lost: u64 = report.undelivered.iter().sum();
            if lost > 0 {
                tracing::error!(
                    traces = report.undelivered[0],
                    metrics = report.undelivered[1],
                    logs = report.undelivered[2],
                    "shutdown deadline passed with acknowledged items undelivered"
                );
            }
            tracing::info!("sluice stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("sluice: {e}");
            ExitCode::from(1)
        }
    }
}
