//! The roles (API.md, "Running"): `questline serve` (the HTTP API and the job worker in one
//! process), `questline api` (the HTTP API only: many behind a load balancer) and
//! `questline worker` (the job worker only, no HTTP listener). Each builds the state, makes
//! sure the server is not open (the roles with an API), runs, and shuts down gracefully on
//! SIGTERM or SIGINT: requests in flight are answered, the ingest lanes drain, running jobs
//! finish (or are released, past the worker's grace) before the process exits.
//!
//! Standard output carries only machine-readable lines (logs go to standard error):
//! `admin key (shown once): ql_…` when a key was generated, then
//! `questline listening on http://ADDR` once the socket is bound; a worker prints
//! `questline worker running` once it runs.

use crate::auth::UserTokens;
use crate::config::Config;
use crate::state::AppState;
use metrics_exporter_prometheus::PrometheusHandle;
use questline_queue::WorkerConfig;
use questline_service::ingest::BatchConfig;
use questline_service::messages::MessageSettings;
use questline_service::webhooks::{SecretKey, WebhookSettings};
use questline_service::{Service, ServiceError, SystemClock};
use questline_store::StoreError;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long in-flight requests may run on after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How often the Prometheus recorder drains its histograms.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// What a worker process prints (and logs) once it runs.
pub const WORKER_RUNNING: &str = "questline worker running";

/// Which parts of questline a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `questline serve`: the HTTP API and the job worker.
    Serve,
    /// `questline api`: the HTTP API only; jobs it enqueues wait for a worker.
    Api,
    /// `questline worker`: the job worker only.
    Worker,
}

impl Role {
    pub fn serves_http(self) -> bool {
        matches!(self, Role::Serve | Role::Api)
    }

    pub fn runs_jobs(self) -> bool {
        matches!(self, Role::Serve | Role::Worker)
    }
}

/// The worker's settings from the configuration.
pub fn worker_config(config: &Config) -> WorkerConfig {
    let lease = Duration::from_secs(config.worker_lease_seconds);
    // Renewed three times a lease; lapsed leases looked for at least every 5 s.
    // By default as many jobs again claimed ahead as run at once: a claim serves twice the jobs.
    WorkerConfig {
        concurrency: config.worker_concurrency,
        prefetch: config.worker_prefetch.unwrap_or(config.worker_concurrency),
        lease,
        heartbeat: lease / 3,
        rescue: (lease / 2).min(Duration::from_secs(5)),
        ..WorkerConfig::default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("could not open the database: {0}")]
    Store(#[from] StoreError),
    #[error("could not migrate the job queue's tables: {0}")]
    Queue(#[from] questline_queue::QueueError),
    #[error("could not create the admin key: {0}")]
    Bootstrap(#[from] ServiceError),
    #[error("could not listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot listen for shutdown signals: {0}")]
    Signal(std::io::Error),
    #[error("server failed: {0}")]
    Serve(std::io::Error),
    #[error("the job worker failed: {0}")]
    Worker(questline_queue::QueueError),
    #[error("webhook secret key: {0}")]
    SecretKey(String),
    #[error("message providers: {0}")]
    Providers(String),
}

/// Opens the store (applying migrations) and builds everything a handler can reach. No
/// metrics recorder: the caller sets `metrics` if it installed one.
pub async fn build_state(config: &Config) -> Result<AppState, StartError> {
    let store = questline_store::connect(&config.database_url).await?;
    // The job queue's tables live in the same database, under migrations of its own (which
    // opening the lane applies).
    let jobs = Arc::new(
        questline_queue::SqlQueue::open(store.clone(), crate::jobs::queue_config())
            .await?
            .listening(&config.database_url),
    );
    // Lanes keyed by user keep each user's events in order. A lane prepares its batch (reads
    // and the engine's decision) on a snapshot, outside the write transaction, so lanes use
    // every core even on SQLite, whose one writer then only writes; PostgreSQL also writes
    // in parallel, and its row locks keep processes apart.
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    let lanes = if config.database_url.starts_with("postgres") { 4 } else { cores.clamp(2, 4) };
    let batches = BatchConfig { lanes, ..BatchConfig::default() };
    let fast = match &config.redis_url {
        Some(url) => {
            let outbox = crate::jobs::fast_lane(url, &config.redis_namespace, store.clone()).await;
            Some(Arc::new(outbox.map_err(StartError::Worker)?))
        }
        None => None,
    };
    let settlement = Arc::new(crate::jobs::UnitQueue { sql: jobs.clone(), fast: fast.clone() });
    let webhooks = WebhookSettings {
        secret_key: secret_key(config)?.map(Arc::new),
        allow_private_targets: config.allow_private_targets,
    };
    let templates: Vec<_> = config.templates.iter().map(crate::dispatch::config::TemplateConfig::spec).collect();
    let channels = config.providers.iter().flat_map(|p| p.channels.iter().copied());
    let messages = MessageSettings::new(&templates, channels).map_err(StartError::Providers)?;
    let service = Arc::new(
        Service::with_jobs(store, batches, Arc::new(SystemClock), Some(settlement))
            .with_webhooks(webhooks)
            .with_messages(messages),
    );
    let user_tokens = config.jwt_secret.as_deref().map(|secret| Arc::new(UserTokens::hs256(secret)));
    let dispatcher = crate::dispatch::Dispatcher::open(service.clone(), config).await.map_err(StartError::Providers)?;
    Ok(AppState { service, user_tokens, metrics: None, jobs, fast, dispatcher: Arc::new(dispatcher) })
}

/// The key webhook secrets are sealed with: the configured one; on SQLite without one, the
/// key kept beside the database file (`<file>.key`, mode 0600, made on first start and
/// reused), so that the embedded default has webhooks; on PostgreSQL without one, none
/// (creating a webhook is then refused, and this is logged once). Never logged itself.
fn secret_key(config: &Config) -> Result<Option<SecretKey>, StartError> {
    if let Some(text) = &config.secret_key {
        return SecretKey::from_base64(text).map(Some).map_err(|why| StartError::SecretKey(why.to_owned()));
    }
    let Some(path) = sqlite_file(&config.database_url) else {
        tracing::warn!("QUESTLINE_SECRET_KEY is not set: webhooks (and cash and voucher fulfilment) are unavailable");
        return Ok(None);
    };
    let Some(path) = path else {
        // An in-memory database lives as long as this process; so may its key.
        return Ok(Some(SecretKey::generate()));
    };
    let key_path = std::path::PathBuf::from(format!("{}.key", path.display()));
    let fail = |e: std::io::Error| StartError::SecretKey(format!("{}: {e}", key_path.display()));
    let new = SecretKey::generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&key_path) {
        Ok(mut file) => {
            file.write_all(format!("{}\n", new.to_base64()).as_bytes()).and_then(|()| file.sync_all()).map_err(fail)?;
            tracing::info!(file = %key_path.display(), "generated the key that seals webhook secrets");
            Ok(Some(new))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(&key_path).map_err(fail)?;
            SecretKey::from_base64(&text)
                .map(Some)
                .map_err(|why| StartError::SecretKey(format!("{}: {why}", key_path.display())))
        }
        Err(e) => Err(fail(e)),
    }
}

/// The file of a `sqlite:` URL: `None` for another database, `Some(None)` for an in-memory one.
fn sqlite_file(url: &str) -> Option<Option<std::path::PathBuf>> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" || rest.contains("mode=memory") {
        return Some(None);
    }
    Some(Some(std::path::PathBuf::from(path)))
}

/// A server that is bound and ready to serve: what `questline serve` runs, and what the demo
/// or a test can run in-process (bind on port 0, read [`Server::local_addr`], spawn
/// [`Server::serve`], cancel [`Server::shutdown_token`] to stop).
pub struct Server {
    service: Arc<Service>,
    listener: tokio::net::TcpListener,
    app: axum::Router,
    addr: SocketAddr,
    generated_admin_key: Option<String>,
    shutdown: CancellationToken,
    metrics: Option<PrometheusHandle>,
    /// questline's own jobs (settlement), run beside the API in this process; `None` for
    /// `questline api`.
    worker: Option<crate::jobs::Workers>,
}

impl Server {
    /// Opens the store, makes sure the tenant has an admin key ([`Authenticator::bootstrap`])
    /// and binds `config.listen`: the server of `questline serve`, with its job worker.
    pub async fn bind(config: &Config, metrics: Option<PrometheusHandle>) -> Result<Server, StartError> {
        Self::bind_as(config, Role::Serve, metrics).await
    }

    /// [`Server::bind`], with the job worker only if `role` runs jobs.
    pub async fn bind_as(config: &Config, role: Role, metrics: Option<PrometheusHandle>) -> Result<Server, StartError> {
        let mut state = build_state(config).await?;
        state.metrics = metrics.clone();
        let generated_admin_key = state.service.bootstrap(config.admin_key.as_deref()).await?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Bind { addr: config.listen, source })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind { addr: config.listen, source })?;
        let service = state.service.clone();
        let worker = role.runs_jobs().then(|| crate::jobs::workers(&state, worker_config(config)));
        let app = crate::http::router(state);
        let shutdown = CancellationToken::new();
        Ok(Server { service, listener, app, addr, generated_admin_key, shutdown, metrics, worker })
    }

    /// The bound address (with the real port when bound on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin key generated at start-up because none existed: to be shown once.
    pub fn generated_admin_key(&self) -> Option<&str> {
        self.generated_admin_key.as_deref()
    }

    /// Cancel it to stop the server gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then lets in-flight requests finish
    /// (for up to [`SHUTDOWN_GRACE`]) and returns.
    pub async fn serve(self) -> Result<(), StartError> {
        let Server { service, listener, app, addr, shutdown, metrics, worker, .. } = self;
        let upkeep = tokio_util::task::TaskTracker::new();
        if let Some(handle) = metrics {
            upkeep.spawn(metrics_upkeep(handle, shutdown.clone()));
        }
        // Stopped after the lanes have drained (below), so a batch's rewards are never left
        // behind by a sweep that stopped first; whatever is still due waits for the next start.
        let stop_jobs = CancellationToken::new();
        if let Some(worker) = worker {
            let jobs_stop = stop_jobs.clone();
            upkeep.spawn(async move {
                if let Err(e) = worker.run(jobs_stop).await {
                    tracing::error!(error = %e, "the job worker stopped");
                }
            });
        }
        upkeep.close();
        tracing::info!(%addr, "listening");
        let server = axum::serve(crate::http::wire::ProblemListener(listener), app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let server = std::future::IntoFuture::into_future(server);
        tokio::pin!(server);
        tokio::select! {
            result = &mut server => result.map_err(StartError::Serve)?,
            () = async { shutdown.cancelled().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
                tracing::warn!(grace = ?SHUTDOWN_GRACE, "in-flight requests did not finish in time; stopping anyway");
            }
        }
        // Requests are answered; what the lanes still hold is committed before we return.
        service.shutdown().await;
        stop_jobs.cancel();
        shutdown.cancel();
        upkeep.wait().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// `questline serve`, `api` or `worker`: runs `role` until SIGTERM or SIGINT.
pub async fn run(config: Config, role: Role, metrics: Option<PrometheusHandle>) -> Result<(), StartError> {
    if !role.serves_http() {
        return run_worker(&config).await;
    }
    let server = Server::bind_as(&config, role, metrics).await?;
    if let Some(secret) = server.generated_admin_key() {
        tracing::warn!("no admin key was configured; generated one (printed once on standard output)");
        stdout_line(&format!("admin key (shown once): {secret}"));
    }
    // Installed before the listening line, so that a signal sent as soon as it is read is
    // handled rather than fatal.
    on_signal(server.shutdown_token()).map_err(StartError::Signal)?;
    stdout_line(&format!("questline listening on http://{}", server.local_addr()));
    server.serve().await
}

/// `questline worker`: the job worker on the configured database, with no HTTP listener,
/// until SIGTERM or SIGINT; then running jobs finish, or are released for another worker
/// once the worker's grace is out. No admin key is made: nothing here takes requests.
async fn run_worker(config: &Config) -> Result<(), StartError> {
    let state = build_state(config).await?;
    let service = state.service.clone();
    let worker = crate::jobs::workers(&state, worker_config(config));
    let shutdown = CancellationToken::new();
    on_signal(shutdown.clone()).map_err(StartError::Signal)?;
    tracing::info!(concurrency = config.worker_concurrency, "{WORKER_RUNNING}");
    stdout_line(WORKER_RUNNING);
    let result = worker.run(shutdown).await;
    // Nothing feeds the lanes in this role; drained for form's sake (and for what a job may
    // one day ingest).
    service.shutdown().await;
    result.map_err(StartError::Worker)?;
    tracing::info!("stopped");
    Ok(())
}

/// Applies the migrations (the store's, which opening it does, and the job queue's) and
/// returns.
pub async fn migrate(config: &Config) -> Result<(), StartError> {
    let store = questline_store::connect(&config.database_url).await?;
    questline_queue::sql::migrate(&*store).await?;
    tracing::info!("migrations applied");
    Ok(())
}

/// Writes one line to standard output and flushes it, so that a supervisor or a test reading
/// the pipe sees it at once.
fn stdout_line(line: &str) {
    let mut out = std::io::stdout().lock();
    // Nothing to do if stdout is gone; the server runs on.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Cancels `shutdown` on SIGTERM or SIGINT. The handlers are installed before this returns,
/// so a signal that arrives right after start-up is never missed (or fatal).
#[cfg(unix)]
pub fn on_signal(shutdown: CancellationToken) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    #[expect(clippy::disallowed_methods, reason = "ends when the shutdown token is cancelled, by it or by anyone")]
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received; shutting down"),
            _ = interrupt.recv() => tracing::info!("SIGINT received; shutting down"),
            () = shutdown.cancelled() => return,
        }
        shutdown.cancel();
    });
    Ok(())
}

#[cfg(not(unix))]
pub fn on_signal(shutdown: CancellationToken) -> std::io::Result<()> {
    #[expect(clippy::disallowed_methods, reason = "lives as long as the process listens for Ctrl-C")]
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("Ctrl-C received; shutting down");
            shutdown.cancel();
        }
    });
    Ok(())
}

async fn metrics_upkeep(handle: PrometheusHandle, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(METRICS_UPKEEP);
    loop {
        tokio::select! {
            _ = tick.tick() => handle.run_upkeep(),
            () = shutdown.cancelled() => return,
        }
    }
}
