//! The `questline` binary: parses the command line, loads the configuration, sets up logging
//! and metrics, and runs the chosen command.

use clap::{Args, Parser, Subcommand};
use questline_server::config::{Config, LogFormat, Overrides};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "questline", version, about = "An engagement engine: missions, events, progress, rewards")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API, the engine and the workers in one process.
    Serve {
        /// HTTP listen address [default: 127.0.0.1:8080]
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Apply the database migrations and exit.
    Migrate {
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Start on a temporary database, create sample missions, stream generated events
    /// (with duplicates and refunds) and print what happened; then keep serving.
    Demo {
        /// HTTP listen address [default: 127.0.0.1:8080]
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Exit after printing the summary instead of serving on.
        #[arg(long)]
        exit: bool,
        #[command(flatten)]
        common: CommonArgs,
    },
}

#[derive(Debug, Args)]
struct CommonArgs {
    /// A TOML configuration file; QUESTLINE_* variables and flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// `sqlite://PATH` or `postgres://…` [default: sqlite://questline.db]
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Log format on standard error [default: text]
    #[arg(long, value_enum)]
    log_format: Option<LogFormatArg>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

impl CommonArgs {
    fn load(&self, listen: Option<String>) -> Result<Config, String> {
        let overrides = Overrides {
            listen,
            database_url: self.database_url.clone(),
            log_format: self.log_format.map(|f| match f {
                LogFormatArg::Text => LogFormat::Text,
                LogFormatArg::Json => LogFormat::Json,
            }),
        };
        Config::from_env(self.config.as_deref(), &overrides).map_err(|e| e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match &cli.command {
        Command::Serve { listen, common } | Command::Demo { listen, common, .. } => common.load(listen.clone()),
        Command::Migrate { common } => common.load(None),
    };
    let config = match config {
        Ok(config) => config,
        Err(e) => {
            eprintln!("questline: {e}");
            return ExitCode::from(2);
        }
    };
    // The demo prints its own summary; per-request logs would bury it.
    let default_filter = if matches!(cli.command, Command::Demo { .. }) { "warn" } else { "info" };
    init_logging(config.log_format, default_filter);

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("questline: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve { .. } => {
                questline_server::serve::run(config, install_metrics()).await.map_err(|e| e.to_string())
            }
            Command::Migrate { .. } => questline_server::serve::migrate(&config).await.map_err(|e| e.to_string()),
            Command::Demo { exit, .. } => questline_server::demo::run(config, exit, install_metrics()).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "questline stopped with an error");
            eprintln!("questline: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to standard error (standard output is for machine-readable lines), filtered by
/// `RUST_LOG` (default `default_filter`).
fn init_logging(format: LogFormat, default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// The process-wide Prometheus recorder. Only the binary installs one: tests build many
/// routers in one process.
fn install_metrics() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    // Real histograms (not summaries), so that latencies aggregate across processes.
    const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
    let builder = PrometheusBuilder::new().set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS);
    match builder.and_then(PrometheusBuilder::install_recorder) {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::warn!(error = %e, "metrics are disabled: cannot install the recorder");
            None
        }
    }
}
