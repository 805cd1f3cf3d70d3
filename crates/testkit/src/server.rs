//! Starts the real `questline` binary on port 0 with its own database, and talks HTTP to it.
//!
//! Each [`TestServer`] owns a temporary directory holding its log (the server's standard
//! error, see [`TestServer::logs`]) and, on SQLite, its database file; on PostgreSQL it owns
//! a fresh database instead ([`crate::postgres::fresh_database`]), dropped with the server.
//! The child is killed when the server is dropped. [`TestServer::restart`] starts a new
//! process on the same database. [`ServerOptions::database_url`] starts it on a database
//! the test manages itself, e.g. one that several servers share.
//!
//! [`ServerOptions::role`] picks the subcommand: `serve` (the default), `api` (no job
//! worker) or `worker` (no HTTP listener: such a server has no `base_url` to speak to, and is
//! ready once it prints that it runs).
//!
//! The caller names the binary (`TestServer::start(env!("CARGO_BIN_EXE_questline"), …)`):
//! Cargo tells only the server crate's own tests where it is.

use crate::Backend;
use crate::postgres::{self, PostgresDatabase};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// The admin key tests configure with `QUESTLINE_ADMIN_KEY` unless they say otherwise.
pub const ADMIN_KEY: &str = "ql_test-admin-key-0123456789abcdef";

/// Longest wait for a server to start or stop. Generous: a loaded CI machine is slow, and a
/// healthy run never waits this long.
pub const DEADLINE: Duration = Duration::from_secs(30);

const LISTENING: &str = "questline listening on http://";
const WORKER_RUNNING: &str = "questline worker running";
const ADMIN_KEY_LINE: &str = "admin key (shown once): ";

/// Which role the process runs: the `questline` subcommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// `questline serve`: the HTTP API and the job worker.
    #[default]
    Serve,
    /// `questline api`: the HTTP API only.
    Api,
    /// `questline worker`: the job worker only, no HTTP listener.
    Worker,
}

impl Role {
    fn subcommand(self) -> &'static str {
        match self {
            Role::Serve => "serve",
            Role::Api => "api",
            Role::Worker => "worker",
        }
    }
}

/// The database a server runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A new, empty one of the server's own on this backend, removed with the server.
    Fresh(Backend),
    /// This one (`sqlite://…` or `postgres://…`), managed by the test.
    Url(String),
}

#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// `QUESTLINE_ADMIN_KEY`; `None` leaves it unset (the server then generates one).
    pub admin_key: Option<String>,
    /// More environment variables for the child.
    pub env: Vec<(String, String)>,
    /// `--database-url`.
    pub database: Database,
    /// The subcommand (default `serve`).
    pub role: Role,
    /// `--config FILE`.
    pub config_file: Option<std::path::PathBuf>,
}

impl Default for ServerOptions {
    /// [`ADMIN_KEY`] configured, on a fresh SQLite file.
    fn default() -> Self {
        Self::on(Backend::Sqlite)
    }
}

impl ServerOptions {
    /// [`ADMIN_KEY`] configured, on a fresh database of `backend`.
    pub fn on(backend: Backend) -> Self {
        Self {
            admin_key: Some(ADMIN_KEY.to_owned()),
            env: Vec::new(),
            database: Database::Fresh(backend),
            role: Role::Serve,
            config_file: None,
        }
    }

    /// No admin key configured: the server generates one and prints it.
    pub fn without_admin_key(mut self) -> Self {
        self.admin_key = None;
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Runs `role` (`questline api`, `questline worker`) instead of `questline serve`.
    pub fn role(mut self, role: Role) -> Self {
        self.role = role;
        self
    }

    /// Reads this configuration file (`--config`): what only a file can say, such as
    /// message providers.
    pub fn config_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// Runs on this database (`sqlite://…` or `postgres://…`) instead of a fresh one.
    pub fn database_url(mut self, url: &str) -> Self {
        self.database = Database::Url(url.to_owned());
        self
    }
}

pub struct TestServer {
    /// `http://127.0.0.1:PORT`; empty for a worker, which listens nowhere.
    pub base_url: String,
    /// The key [`TestServer::get`] and friends authenticate with: the configured admin key,
    /// or the one the server printed (or the one printed before the last restart).
    pub admin_key: Option<String>,
    /// What the current process printed on standard output before it was listening.
    pub startup_lines: Vec<String>,
    /// Everything the current process printed on standard output so far.
    stdout: Arc<Mutex<Vec<String>>>,
    // Fields drop in order: the process goes before its database.
    child: Option<Child>,
    /// A fresh PostgreSQL database of the server's own, held to be dropped with it.
    _postgres: Option<PostgresDatabase>,
    dir: TempDir,
    binary: PathBuf,
    database_url: String,
    options: ServerOptions,
    http: reqwest::Client,
}

impl TestServer {
    /// Starts `binary` (the `questline` executable) with `options` and waits for it to listen.
    pub async fn start(binary: impl AsRef<Path>, options: ServerOptions) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let http = reqwest::Client::builder().timeout(DEADLINE).build().expect("HTTP client");
        let (database_url, postgres) = match &options.database {
            Database::Fresh(Backend::Sqlite) => (format!("sqlite://{}", dir.path().join("q.db").display()), None),
            Database::Fresh(Backend::Postgres) => {
                let db = postgres::fresh_database().await;
                (db.url().to_owned(), Some(db))
            }
            Database::Url(url) => (url.clone(), None),
        };
        let mut server = TestServer {
            base_url: String::new(),
            admin_key: options.admin_key.clone(),
            startup_lines: Vec::new(),
            stdout: Arc::default(),
            child: None,
            _postgres: postgres,
            dir,
            binary: binary.as_ref().to_owned(),
            database_url,
            options,
            http,
        };
        server.spawn().await;
        server
    }

    /// The `--database-url` the server runs with.
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Starts the binary and waits (with a deadline) for its listening line (a worker's:
    /// that it runs).
    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("log file");
        let mut command = Command::new(&self.binary);
        let role = self.options.role;
        command.arg(role.subcommand());
        if role != Role::Worker {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        if let Some(file) = &self.options.config_file {
            command.arg("--config").arg(file);
        }
        command
            .args(["--database-url", &self.database_url])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        // The child sees only the configuration the test chose.
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("QUESTLINE_")) {
            command.env_remove(name);
        }
        if let Some(key) = &self.options.admin_key {
            command.env("QUESTLINE_ADMIN_KEY", key);
        }
        for (name, value) in &self.options.env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap_or_else(|e| panic!("start {}: {e}", self.binary.display()));

        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.stdout = Arc::default();
        let all = self.stdout.clone();
        #[expect(clippy::disallowed_methods, reason = "ends with the child's standard output")]
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                all.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        self.child = Some(child);

        let mut startup = Vec::new();
        let listening = tokio::time::timeout(DEADLINE, async {
            while let Some(line) = rx.recv().await {
                if let Some(addr) = line.strip_prefix(LISTENING) {
                    return Some(addr.to_owned());
                }
                if role == Role::Worker && line == WORKER_RUNNING {
                    return Some(String::new());
                }
                startup.push(line);
            }
            None // stdout closed: the process exited
        })
        .await;
        let addr = match listening {
            Ok(Some(addr)) => addr,
            Ok(None) => panic!("questline exited before listening; its log:\n{}", self.logs()),
            Err(_) => panic!("questline did not listen within {DEADLINE:?}; its log:\n{}", self.logs()),
        };
        self.base_url = if addr.is_empty() { String::new() } else { format!("http://{addr}") };
        if let Some(key) = startup.iter().find_map(|l| l.strip_prefix(ADMIN_KEY_LINE)) {
            self.admin_key = Some(key.to_owned());
        }
        self.startup_lines = startup;
    }

    /// The admin key this process printed at start-up, if it printed one.
    pub fn printed_admin_key(&self) -> Option<&str> {
        self.startup_lines.iter().find_map(|l| l.strip_prefix(ADMIN_KEY_LINE))
    }

    /// Everything the current process printed on standard output so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// The server's log (standard error) across every process of this server.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().and_then(Child::id).expect("a running server")
    }

    fn signal(&self, signal: &str) {
        let status =
            std::process::Command::new("kill").args([signal, &self.pid().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Sends SIGTERM; see [`TestServer::wait`].
    pub fn terminate(&self) {
        self.signal("-TERM");
    }

    /// Sends SIGKILL: a crash.
    pub fn kill(&self) {
        self.signal("-KILL");
    }

    /// Waits for the process to exit, up to `deadline`; `None` if it is still running.
    pub async fn wait(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut().expect("a started server");
        tokio::time::timeout(deadline, child.wait()).await.ok().map(|status| status.expect("wait for questline"))
    }

    /// Stops the process (SIGTERM, then SIGKILL if it lingers) and starts a new one on the
    /// same database, with the same options.
    pub async fn restart(&mut self) {
        let running = self.child.as_mut().is_some_and(|c| c.try_wait().expect("poll questline").is_none());
        if running {
            self.terminate();
            if self.wait(DEADLINE).await.is_none() {
                self.kill();
                self.wait(DEADLINE).await.expect("questline exits after SIGKILL");
            }
        }
        self.spawn().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// An unauthenticated request.
    pub fn anonymous(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path))
    }

    /// A request authenticated with `key`.
    pub fn with_key(&self, key: &str, method: Method, path: &str) -> RequestBuilder {
        self.anonymous(method, path).bearer_auth(key)
    }

    /// A request authenticated with the admin key.
    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        let key = self.admin_key.as_deref().expect("the server has a known admin key");
        self.with_key(key, method, path)
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.admin(Method::GET, path)
    }

    pub fn post(&self, path: &str, body: &Value) -> RequestBuilder {
        self.admin(Method::POST, path).json(body)
    }

    pub fn put(&self, path: &str, body: &Value) -> RequestBuilder {
        self.admin(Method::PUT, path).json(body)
    }

    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.admin(Method::DELETE, path)
    }

    /// Creates an API key with the admin key; returns `(id, secret)`.
    pub async fn create_key(&self, name: &str, role: &str) -> (String, String) {
        let response = send(self.post("/v1/keys", &serde_json::json!({"name": name, "role": role}))).await;
        assert_eq!(response.status(), 201, "create key");
        let body: Value = response.json().await.expect("JSON body");
        (body["id"].as_str().unwrap().to_owned(), body["key"].as_str().unwrap().to_owned())
    }
}

/// Sends a request, failing the test on a transport error.
pub async fn send(request: RequestBuilder) -> Response {
    request.send().await.expect("request reaches the server")
}

/// Asserts that `response` is an RFC 9457 problem with `status`, and returns its body.
pub async fn expect_problem(response: Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status, "status of {}", response.url());
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    let body: Value = response.json().await.expect("a JSON problem body");
    assert_eq!(body["status"], status, "{body}");
    assert!(body["type"].as_str().is_some_and(|t| !t.is_empty()), "type in {body}");
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()), "title in {body}");
    assert!(body["detail"].as_str().is_some_and(|t| !t.is_empty()), "detail in {body}");
    body
}
