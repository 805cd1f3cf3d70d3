//! An SMTP server for the tests of the `smtp` message provider: [`SmtpSink`], a private
//! [aiosmtpd](https://aiosmtpd.aio-libs.org) server (the script `assets/smtp_sink.py`) on a
//! port of 127.0.0.1 the system picks, one per test, that records every message it accepts
//! and refuses the recipients its [`Refuse`] rules name (a transient 451, a permanent 550).
//! It is killed when the sink drops (and exits by itself when the test process is gone: it
//! watches its standard input).
//!
//! The interpreter is `QUESTLINE_TEST_SMTP_PYTHON` (`scripts/test` exports it, installing
//! aiosmtpd if missing; see `scripts/services/smtp.sh`), else the first of `python3` on the
//! `PATH`, `/usr/bin/python3` and the virtualenv `scripts/test` makes under `~/.cache` that
//! imports aiosmtpd. Under the rule of PostgreSQL and Redis, an SMTP test never passes
//! without running: without aiosmtpd it fails, saying how to get it. `QUESTLINE_SKIP_SMTP=1`
//! is the one way to run without it, and it is loud: see [`skipped`].

use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The variable naming the Python interpreter that imports aiosmtpd. `scripts/test` exports it.
pub const PYTHON_VAR: &str = "QUESTLINE_TEST_SMTP_PYTHON";

/// Set to `1` to run without aiosmtpd: the SMTP tests then say `SKIPPED` and return.
pub const SKIP_VAR: &str = "QUESTLINE_SKIP_SMTP";

/// The sink itself, written into each sink's directory and run from there.
const SCRIPT: &str = include_str!("../assets/smtp_sink.py");

const LISTENING: &str = "listening on ";

/// Whether the SMTP test `test` should return without running, i.e. whether
/// `QUESTLINE_SKIP_SMTP=1` is set; if so, says so in one line on standard error first.
pub fn skipped(test: &str) -> bool {
    if std::env::var(SKIP_VAR).is_ok_and(|v| v == "1") {
        // Through the handle, not `eprintln!`, which the harness captures for passing tests.
        let _ = writeln!(std::io::stderr().lock(), "SKIPPED ({SKIP_VAR}=1): smtp test {test} did not run");
        true
    } else {
        false
    }
}

/// The interpreter that imports aiosmtpd (looked for once per test process); the test fails,
/// saying how to get one, when there is none.
pub fn python() -> PathBuf {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match FOUND.get_or_init(find_python) {
        Ok(python) => python.clone(),
        Err(why) => panic!(
            "no SMTP sink: {why}. An SMTP test fails without its sink: run scripts/test (it installs aiosmtpd), \
             install it (`apt-get install python3-aiosmtpd` or `pip install aiosmtpd`) and point {PYTHON_VAR} at \
             that python, or set {SKIP_VAR}=1 to skip these tests."
        ),
    }
}

fn imports_aiosmtpd(python: &Path) -> bool {
    std::process::Command::new(python)
        .args(["-c", "import aiosmtpd.smtp"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn find_python() -> Result<PathBuf, String> {
    if let Ok(named) = std::env::var(PYTHON_VAR) {
        let named = PathBuf::from(named);
        return if imports_aiosmtpd(&named) {
            Ok(named)
        } else {
            Err(format!("{PYTHON_VAR}={} cannot import aiosmtpd", named.display()))
        };
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")));
    let mut candidates = vec![PathBuf::from("python3"), PathBuf::from("/usr/bin/python3")];
    candidates.extend(cache.map(|c| c.join("questline/smtp-venv/bin/python")));
    candidates.iter().find(|p| imports_aiosmtpd(p)).cloned().ok_or_else(|| {
        let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        format!("{PYTHON_VAR} is not set and none of {} imports aiosmtpd", tried.join(", "))
    })
}

/// A rule of the sink: recipients matching `pattern` (a glob such as `*@bounce.test`,
/// case-insensitive) are refused at `RCPT TO` with `code`, the first `times` times (`None`:
/// always). The first rule that applies decides; a recipient no rule refuses is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refuse {
    pub pattern: String,
    pub code: u16,
    pub times: Option<u32>,
}

impl Refuse {
    /// `550 5.1.1 No such mailbox`, every time.
    pub fn permanently(pattern: &str) -> Self {
        Self { pattern: pattern.to_owned(), code: 550, times: None }
    }

    /// `451 4.3.0 Try again later`, the first `times` times; accepted after that.
    pub fn transiently(pattern: &str, times: u32) -> Self {
        Self { pattern: pattern.to_owned(), code: 451, times: Some(times) }
    }
}

/// A message the sink accepted: its envelope, and its data as received.
#[derive(Debug, Clone)]
pub struct Mail {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// The raw message (headers and body), as the client sent it after `DATA`.
    pub data: Vec<u8>,
}

impl Mail {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).replace("\r\n", "\n")
    }

    /// The header `name` (case-insensitive; folded lines joined), as written: no RFC 2047
    /// decoding.
    pub fn header(&self, name: &str) -> Option<String> {
        let text = self.text();
        let head = text.split("\n\n").next().unwrap_or_default();
        let mut unfolded: Vec<String> = Vec::new();
        for line in head.lines() {
            match unfolded.last_mut() {
                Some(last) if line.starts_with([' ', '\t']) => {
                    last.push(' ');
                    last.push_str(line.trim_start());
                }
                _ => unfolded.push(line.to_owned()),
            }
        }
        unfolded.iter().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
        })
    }

    /// What follows the headers, line ends as `\n`, not decoded (see `Content-Transfer-Encoding`).
    pub fn body(&self) -> String {
        let text = self.text();
        text.split_once("\n\n").map(|(_, body)| body.to_owned()).unwrap_or_default()
    }
}

/// A recipient the sink refused, with the code it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub address: String,
    pub code: u16,
}

/// A private aiosmtpd server on 127.0.0.1, killed on drop. Its directory keeps what it
/// received (one `.eml` per message, `received.jsonl`, `refused.jsonl`), and is kept to be
/// looked at when the test fails.
pub struct SmtpSink {
    pub host: String,
    pub port: u16,
    // Fields drop in order: the process goes before its directory.
    child: Child,
    dir: Option<TempDir>,
}

impl SmtpSink {
    /// A sink that accepts every message.
    pub async fn start() -> Self {
        Self::start_refusing(&[]).await
    }

    /// A sink that refuses the recipients `rules` name (and accepts the others).
    pub async fn start_refusing(rules: &[Refuse]) -> Self {
        let python = python();
        let dir = tempfile::Builder::new().prefix("questline-smtp-").tempdir().expect("temporary directory");
        let script = dir.path().join("smtp_sink.py");
        std::fs::write(&script, SCRIPT).expect("write the sink's script");
        let rules: Vec<Value> =
            rules.iter().map(|r| json!({"pattern": r.pattern, "code": r.code, "times": r.times})).collect();
        let mut child = Command::new(&python)
            .arg(&script)
            .arg(dir.path())
            .arg(Value::Array(rules).to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(dir.path().join("sink.log")).expect("the sink's log")))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start the SMTP sink ({}): {e}", python.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let listening = tokio::time::timeout(crate::DEADLINE, async {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = line.strip_prefix(LISTENING) {
                    return Some(addr.to_owned());
                }
            }
            None
        })
        .await;
        let log = || std::fs::read_to_string(dir.path().join("sink.log")).unwrap_or_default();
        let addr = match listening {
            Ok(Some(addr)) => addr,
            Ok(None) => panic!("the SMTP sink exited before listening; its log:\n{}", log()),
            Err(_) => panic!("the SMTP sink did not listen within {:?}; its log:\n{}", crate::DEADLINE, log()),
        };
        let (host, port) = addr.rsplit_once(':').expect("host:port");
        Self { host: host.to_owned(), port: port.parse().expect("a port"), child, dir: Some(dir) }
    }

    /// `smtp://127.0.0.1:PORT`: an `smtp` provider's `url`.
    pub fn url(&self) -> String {
        format!("smtp://{}:{}", self.host, self.port)
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("the sink's directory").path()
    }

    fn lines(&self, file: &str) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir().join(file)).unwrap_or_default();
        // Only whole lines: the sink writes each in one go, but a read may catch one half-way.
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        whole.lines().map(|l| serde_json::from_str(l).expect("a JSON line of the sink")).collect()
    }

    /// Every message accepted so far, in the order received.
    pub fn received(&self) -> Vec<Mail> {
        self.lines("received.jsonl")
            .iter()
            .map(|record| {
                let eml = record["eml"].as_str().expect("eml");
                Mail {
                    mail_from: record["mail_from"].as_str().unwrap_or_default().to_owned(),
                    rcpt_tos: record["rcpt_tos"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|r| r.as_str().map(str::to_owned)).collect())
                        .unwrap_or_default(),
                    data: std::fs::read(self.dir().join(eml)).expect("the message's .eml"),
                }
            })
            .collect()
    }

    /// Every recipient refused so far, in order.
    pub fn refused(&self) -> Vec<Refusal> {
        self.lines("refused.jsonl")
            .iter()
            .map(|r| Refusal {
                address: r["address"].as_str().unwrap_or_default().to_owned(),
                code: r["code"].as_u64().and_then(|c| u16::try_from(c).ok()).unwrap_or_default(),
            })
            .collect()
    }

    /// The sink's own log (aiosmtpd's standard error).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir().join("sink.log")).unwrap_or_default()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("left what the SMTP sink received in {} to be looked at", dir.keep().display());
        }
    }
}
