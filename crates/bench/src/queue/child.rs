//! One role of one system, as a process of its own: its stdout is read line by line (a
//! worker says `{"ready":true}` once running; the result is the last JSON line), its
//! stderr goes to ours. A process outliving its phase's timeout is killed.

use crate::Result;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{ChildStdout, Command};

pub struct Child {
    what: String,
    process: tokio::process::Child,
    lines: Lines<BufReader<ChildStdout>>,
    timeout: Duration,
}

impl Child {
    /// Starts `program args…`.
    pub fn spawn(what: String, program: &[String], args: &[String], timeout: Duration) -> Result<Child> {
        let (exe, pre) = program.split_first().ok_or("empty command")?;
        let mut process = Command::new(exe)
            .args(pre)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("{what}: cannot start {exe}: {e}"))?;
        let stdout = process.stdout.take().ok_or("no stdout")?;
        Ok(Child { what, process, lines: BufReader::new(stdout).lines(), timeout })
    }

    /// Waits for `{"ready":true}`.
    pub async fn ready(&mut self) -> Result<()> {
        let what = self.what.clone();
        let wait = async {
            while let Some(line) = self.lines.next_line().await? {
                if line.trim() == r#"{"ready":true}"# {
                    return Ok(());
                }
            }
            Err::<(), crate::Error>(format!("{what}: ended before it was ready").into())
        };
        tokio::time::timeout(self.timeout, wait).await.map_err(|_| format!("{what}: not ready in time"))?
    }

    /// Reads to the end; the process must exit 0. Returns its last JSON line.
    pub async fn result(mut self) -> Result<serde_json::Value> {
        let what = self.what.clone();
        let read = async {
            let mut last = None;
            while let Some(line) = self.lines.next_line().await? {
                if let Ok(value) = serde_json::from_str::<serde_json::Value>(line.trim()) {
                    last = Some(value);
                }
            }
            let status = self.process.wait().await?;
            if !status.success() {
                return Err(crate::Error::from(format!("{what}: exited with {status}")));
            }
            last.ok_or_else(|| crate::Error::from(format!("{what}: printed no result")))
        };
        tokio::time::timeout(self.timeout, read).await.map_err(|_| format!("{what}: timed out"))?
    }
}

/// Runs a role to its end.
pub async fn run(what: String, program: &[String], args: &[String], timeout: Duration) -> Result<serde_json::Value> {
    Child::spawn(what, program, args, timeout)?.result().await
}
