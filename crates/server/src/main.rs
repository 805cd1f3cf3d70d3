//! The `questline` binary: parses the command line, loads the configuration, sets up logging
//! and metrics, and runs the chosen command.

use clap::{Args, Parser, Subcommand};
use questline_server::config::{Config, LogFormat, Overrides};
use questline_server::serve::Role;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "questline", version, about = "An engagement engine: missions, events, progress, rewards")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Every `QUESTLINE_*` variable, listed under each command's `--help` (a flag's own help names its
/// variable too).
const ENVIRONMENT_HELP: &str = "\
Environment (each overrides the --config file; a flag overrides its variable):
  QUESTLINE_LISTEN              HTTP listen address (--listen; not for `worker`)
  QUESTLINE_DATABASE_URL        sqlite://PATH or postgres://… (--database-url)
  QUESTLINE_LOG_FORMAT          text or json (--log-format)
  QUESTLINE_ADMIN_KEY           a secret made an admin API key at start-up
  QUESTLINE_JWT_SECRET          HS256 secret of the users' tokens on /v1/me/…
  QUESTLINE_REDIS_URL           redis://…: the fast job lane (notification deliveries)
  QUESTLINE_REDIS_NAMESPACE     the prefix of its keys (default questline)
  QUESTLINE_WORKER_CONCURRENCY  jobs the job worker runs at once, 1 to 1024 (default 16)
  QUESTLINE_WORKER_LEASE_SECONDS  how long a job's claim holds unrenewed, 2 to 3600 (default 30)
  QUESTLINE_WORKER_PREFETCH     jobs claimed ahead of free slots, 0 to 10000 (default: the concurrency)
  QUESTLINE_SECRET_KEY          32 bytes, base64: encrypts webhook secrets (SQLite: <db>.key if unset)
  QUESTLINE_ALLOW_PRIVATE_TARGETS  true lets webhooks call loopback and private addresses";

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API, the engine and the workers in one process.
    #[command(after_help = ENVIRONMENT_HELP)]
    Serve {
        /// HTTP listen address [default: 127.0.0.1:8080] [env: QUESTLINE_LISTEN]
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Run the HTTP API only, without the job worker (run `questline worker` beside it, on the
    /// same database, for settlement and other jobs).
    #[command(after_help = ENVIRONMENT_HELP)]
    Api {
        /// HTTP listen address [default: 127.0.0.1:8080] [env: QUESTLINE_LISTEN]
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Run the job worker only (settlement and other jobs), with no HTTP listener.
    #[command(after_help = ENVIRONMENT_HELP)]
    Worker {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Apply the database migrations and exit.
    #[command(after_help = ENVIRONMENT_HELP)]
    Migrate {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Start on a temporary database, create sample missions, stream generated events
    /// (with duplicates and refunds) and print what happened; then keep serving.
    ///
    /// The database is always a temporary one, deleted at the end: there is no
    /// --database-url, and QUESTLINE_DATABASE_URL or a database_url in the file do not apply.
    #[command(after_help = ENVIRONMENT_HELP)]
    Demo {
        /// HTTP listen address [default: 127.0.0.1:8080] [env: QUESTLINE_LISTEN]
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Exit after printing the summary instead of serving on.
        #[arg(long)]
        exit: bool,
        #[command(flatten)]
        common: CommonArgs,
    },
}

// The `[env: …]` of the help texts is written out rather than clap's `env` attribute: the
// environment is read once, by `Config::load`, whose rules (an empty variable is unset; an
// error names the key) clap's parsing of the same variables would not share.

#[derive(Debug, Args)]
struct DatabaseArgs {
    /// `sqlite://PATH` or `postgres://…` [default: sqlite://questline.db] [env: QUESTLINE_DATABASE_URL]
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
}

#[derive(Debug, Args)]
struct CommonArgs {
    /// A TOML configuration file; QUESTLINE_* variables and flags override it. Unknown keys
    /// are an error.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format on standard error [default: text] [env: QUESTLINE_LOG_FORMAT]
    #[arg(long, value_enum)]
    log_format: Option<LogFormatArg>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

impl CommonArgs {
    fn load(&self, listen: Option<String>, database_url: Option<String>) -> Result<Config, String> {
        let overrides = Overrides {
            listen,
            database_url,
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
        Command::Serve { listen, database, common } | Command::Api { listen, database, common } => {
            common.load(listen.clone(), database.database_url.clone())
        }
        Command::Worker { database, common } | Command::Migrate { database, common } => {
            common.load(None, database.database_url.clone())
        }
        Command::Demo { listen, common, .. } => common.load(listen.clone(), None),
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
    for variable in Config::unknown_env(std::env::vars()) {
        tracing::warn!(%variable, "not a questline setting: ignored (see `questline serve --help`)");
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("questline: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve { .. } => run(config, Role::Serve, install_metrics()).await,
            Command::Api { .. } => run(config, Role::Api, install_metrics()).await,
            // No HTTP listener, so no `/metrics` to read a recorder from.
            Command::Worker { .. } => run(config, Role::Worker, None).await,
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

async fn run(
    config: Config,
    role: Role,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> Result<(), String> {
    questline_server::serve::run(config, role, metrics).await.map_err(|e| e.to_string())
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
