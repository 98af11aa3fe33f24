//! Node processes: start one, wait for its readiness line, forward its logs,
//! and signal it (SIGTERM, SIGKILL, SIGSTOP, SIGCONT).
//!
//! Every child asks the kernel to kill it when its parent dies
//! (`PR_SET_PDEATHSIG`), so neither `shardgate dev` nor a test that panics
//! leaves nodes behind holding ports and sessions.

use anyhow::{bail, Context};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// What to start.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Display name, e.g. `coreapp-2`.
    pub name: String,
    /// Arguments after the executable, starting with the subcommand.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
}

/// Where a child's log lines go.
#[derive(Debug, Clone)]
pub struct LogSink {
    /// Append to this file.
    pub file: PathBuf,
    /// Also print on our stdout, prefixed with the node name.
    pub echo: bool,
}

/// A running node process.
pub struct NodeProcess {
    /// Display name.
    pub name: String,
    /// OS process id.
    pub pid: u32,
    /// The JSON of its readiness line.
    pub ready: Value,
    /// Its log file.
    pub log_file: PathBuf,
    child: Child,
}

/// Starts `exe` with `spec` and waits up to `ready_timeout` for its readiness line.
pub async fn start_node(
    exe: &Path,
    spec: &NodeSpec,
    sink: &LogSink,
    ready_timeout: Duration,
) -> anyhow::Result<NodeProcess> {
    let mut command = Command::new(exe);
    command
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe and touches only the child's own state.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().with_context(|| format!("cannot start {}", spec.name))?;
    let pid = child.id().context("child has no pid")?;
    let stdout = child.stdout.take().context("child stdout")?;
    let stderr = child.stderr.take().context("child stderr")?;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(forward(spec.name.clone(), stdout, sink.clone(), Some(ready_tx)));
    tokio::spawn(forward(spec.name.clone(), stderr, sink.clone(), None));
    let ready = match tokio::time::timeout(ready_timeout, ready_rx).await {
        Ok(Ok(json)) => json,
        Ok(Err(_)) => {
            let status = child.wait().await.ok();
            bail!("{} exited before it was ready ({status:?}); see {}", spec.name, sink.file.display())
        }
        Err(_) => {
            let _ = child.start_kill();
            bail!("{} was not ready within {ready_timeout:?}; see {}", spec.name, sink.file.display())
        }
    };
    Ok(NodeProcess { name: spec.name.clone(), pid, ready, log_file: sink.file.clone(), child })
}

/// Copies a child's output lines to the sink; the readiness line is parsed out.
async fn forward(
    name: String,
    stream: impl tokio::io::AsyncRead + Unpin,
    sink: LogSink,
    mut ready: Option<tokio::sync::oneshot::Sender<Value>>,
) {
    let mut lines = BufReader::new(stream).lines();
    let mut file = tokio::fs::OpenOptions::new().create(true).append(true).open(&sink.file).await.ok();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(json) = line.strip_prefix(shardgate_core::ready::READY_PREFIX) {
            if let (Some(tx), Ok(value)) = (ready.take(), serde_json::from_str(json)) {
                let _ = tx.send(value);
            }
        }
        if let Some(f) = file.as_mut() {
            let _ = f.write_all(format!("{line}\n").as_bytes()).await;
        }
        if sink.echo {
            println!("[{name}] {line}");
        }
    }
}

impl NodeProcess {
    /// A string field of the readiness line.
    pub fn ready_str(&self, field: &str) -> String {
        self.ready.get(field).and_then(Value::as_str).unwrap_or_default().to_string()
    }

    /// Sends a signal.
    pub fn signal(&self, signal: i32) -> anyhow::Result<()> {
        let pid = i32::try_from(self.pid)?;
        // SAFETY: kill(2) with a pid we started and still own (not yet reaped).
        if unsafe { libc::kill(pid, signal) } != 0 {
            bail!("cannot signal {} (pid {}): {}", self.name, self.pid, std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// `kill -9` without waiting, for drop paths that cannot await.
    pub fn kill_now(&mut self) {
        let _ = self.child.start_kill();
    }

    /// `kill -9`, and waits until the process is gone.
    pub async fn kill9(&mut self) -> anyhow::Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }

    /// Pauses the process (a zombie primary).
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal(libc::SIGSTOP)
    }

    /// Resumes a paused process.
    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal(libc::SIGCONT)
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub async fn stop(&mut self, grace: Duration) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let _ = self.signal(libc::SIGCONT);
        self.signal(libc::SIGTERM)?;
        if tokio::time::timeout(grace, self.child.wait()).await.is_err() {
            self.kill9().await?;
        }
        Ok(())
    }

    /// Waits for the process to exit by itself.
    pub async fn wait(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        Ok(self.child.wait().await?)
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}
