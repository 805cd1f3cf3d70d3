//! Starts the real `questline` binary on port 0 with its own database, and talks HTTP to it.
//!
//! Each [`TestServer`] owns a temporary directory holding its SQLite file and its log (the
//! server's standard error, see [`TestServer::logs`]). The child is killed when the server
//! is dropped. [`TestServer::restart`] starts a new process on the same database.
//! [`ServerOptions::database_url`] starts it on another database instead, e.g. PostgreSQL,
//! where several servers may share one.

#![allow(dead_code)] // not every test binary module uses every helper

use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use std::io::Write;
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
const ADMIN_KEY_LINE: &str = "admin key (shown once): ";

#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// `QUESTLINE_ADMIN_KEY`; `None` leaves it unset (the server then generates one).
    pub admin_key: Option<String>,
    /// More environment variables for the child.
    pub env: Vec<(String, String)>,
    /// `--database-url`; `None`: a SQLite file in the server's temporary directory.
    pub database_url: Option<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self { admin_key: Some(ADMIN_KEY.to_owned()), env: Vec::new(), database_url: None }
    }
}

impl ServerOptions {
    pub fn without_admin_key() -> Self {
        Self { admin_key: None, ..Self::default() }
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Runs on this database (`sqlite://…` or `postgres://…`) instead of a private file.
    pub fn database_url(mut self, url: &str) -> Self {
        self.database_url = Some(url.to_owned());
        self
    }
}

pub struct TestServer {
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    /// The key [`TestServer::get`] and friends authenticate with: the configured admin key,
    /// or the one the server printed (or the one printed before the last restart).
    pub admin_key: Option<String>,
    /// What the current process printed on standard output before it was listening.
    pub startup_lines: Vec<String>,
    /// Everything the current process printed on standard output so far.
    stdout: Arc<Mutex<Vec<String>>>,
    child: Option<Child>,
    dir: TempDir,
    options: ServerOptions,
    http: reqwest::Client,
}

impl TestServer {
    /// A server with [`ADMIN_KEY`] configured.
    pub async fn start() -> Self {
        Self::start_with(ServerOptions::default()).await
    }

    pub async fn start_with(options: ServerOptions) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let http = reqwest::Client::builder().timeout(DEADLINE).build().expect("HTTP client");
        let mut server = TestServer {
            base_url: String::new(),
            admin_key: options.admin_key.clone(),
            startup_lines: Vec::new(),
            stdout: Arc::default(),
            child: None,
            dir,
            options,
            http,
        };
        server.spawn().await;
        server
    }

    pub fn database_url(&self) -> String {
        match &self.options.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.dir.path().join("q.db").display()),
        }
    }

    fn log_path(&self) -> std::path::PathBuf {
        self.dir.path().join("server.log")
    }

    /// Starts the binary and waits (with a deadline) for its listening line.
    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_questline"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--database-url", &self.database_url()])
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
        let mut child = command.spawn().expect("start the questline binary");

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
        self.base_url = format!("http://{addr}");
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

/// The PostgreSQL server the tests create their databases on (`QUESTLINE_TEST_POSTGRES_URL`,
/// any database of it the user may connect to).
pub const DEFAULT_POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A PostgreSQL database of one test's own, dropped by [`PostgresDatabase::finish`]; a
/// failed test leaves it behind to be looked at.
pub struct PostgresDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

impl PostgresDatabase {
    /// A fresh database; `None` if PostgreSQL cannot be reached and the test should pass as
    /// skipped, after saying so on standard error. Under `CI=true` it fails instead: a test
    /// that needs PostgreSQL never skips in silence.
    pub async fn create() -> Option<Self> {
        use questline_store::postgres::admin;
        let admin_url =
            std::env::var("QUESTLINE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_ADMIN_URL.to_owned());
        let name = format!("questline_test_{}", uuid::Uuid::now_v7().simple());
        let why = match tokio::time::timeout(Duration::from_secs(10), admin::create_database(&admin_url, &name)).await {
            Ok(Ok(url)) => return Some(Self { url, admin_url, name }),
            Ok(Err(e)) if admin::unreachable(&e) => e.to_string(),
            Ok(Err(e)) => panic!("cannot create a test database on {}: {e}", redact(&admin_url)),
            Err(_) => "no answer within 10s".to_owned(),
        };
        let admin_url = redact(&admin_url);
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "PostgreSQL not reachable at {admin_url} ({why}). With CI=true a test that needs PostgreSQL fails \
                 without it: run the suite through scripts/test, which starts one, or set QUESTLINE_TEST_POSTGRES_URL."
            );
        }
        // Through the stderr handle, not `eprintln!`: the test harness captures (and hides) what a
        // passing test prints with the macros, and a skip must be seen.
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(
            stderr,
            "SKIPPED: PostgreSQL not reachable at {admin_url} ({why}); this PostgreSQL test did not run. \
             scripts/test starts a server; or set QUESTLINE_TEST_POSTGRES_URL."
        );
        None
    }

    /// Drops the database, ending the sessions still on it.
    pub async fn finish(self) {
        if let Err(e) = questline_store::postgres::admin::drop_database(&self.admin_url, &self.name).await {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

/// A URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme_end), Some(at)) if scheme_end < at => match url[scheme_end + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}
