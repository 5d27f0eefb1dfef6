//! Consumers in processes of their own: exactly's (this binary's hidden `consume`
//! subcommand), the plain rdkafka counter, and the DBOS peers (`bench/peers/run`).
//! Each one prints `READY` on stdout once it consumes; its peak resident memory is
//! read from `/proc/PID/status` (`VmHWM`) before it is stopped with SIGTERM.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::Error;

/// How long a consumer may take to print READY (DBOS Python and Node start slowly,
/// and the peers wait until their group holds the topic's partitions).
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a stopped consumer may take to exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The repository's root (where `bench/peers` lives).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("bench/ has a parent").to_path_buf()
}

/// A consumer process, started and READY. (std's process API with a reader thread:
/// the workspace's tokio is built without its `process` feature.)
pub struct Consumer {
    label: String,
    child: Child,
    /// stdout, line by line, from a reader thread; closed at EOF.
    lines: mpsc::UnboundedReceiver<String>,
    /// From the spawn until READY.
    pub startup: Duration,
}

impl Consumer {
    /// Starts `program args..` with stderr going to `log` and waits until it prints
    /// READY on stdout.
    pub async fn start(label: &str, program: &Path, args: &[String], log: &Path) -> Result<Consumer, Error> {
        let stderr = std::fs::File::create(log).map_err(|e| format!("{label}: cannot create {}: {e}", log.display()))?;
        let spawned = Instant::now();
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("{label}: cannot start {}: {e}", program.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut consumer = Consumer { label: label.to_owned(), child, lines, startup: Duration::ZERO };
        match tokio::time::timeout(READY_TIMEOUT, consumer.wait_for_line("READY")).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                consumer.kill();
                return Err(format!("{e} (log: {})", log.display()).into());
            }
            Err(_) => {
                consumer.kill();
                return Err(format!("{label}: no READY within {READY_TIMEOUT:?} (log: {})", log.display()).into());
            }
        }
        consumer.startup = spawned.elapsed();
        Ok(consumer)
    }

    /// Reads stdout until a line equal to `want` (other lines are ignored).
    pub async fn wait_for_line(&mut self, want: &str) -> Result<(), Error> {
        loop {
            match self.lines.recv().await {
                Some(line) if line.trim() == want => return Ok(()),
                Some(_) => {}
                None => {
                    let status = self.wait(Duration::from_secs(5)).await;
                    return Err(format!("{}: exited ({status:?}) before printing {want}", self.label).into());
                }
            }
        }
    }

    /// The process's peak resident set size so far, in bytes (`VmHWM`).
    pub fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then waits for the exit (SIGKILL after [`STOP_TIMEOUT`]).
    pub async fn stop(mut self) -> Result<(), Error> {
        // std's Child only sends SIGKILL; SIGTERM through kill(1).
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        match self.wait(STOP_TIMEOUT).await {
            Some(status) if status.success() => {}
            Some(status) => eprintln!("exactly-bench: note: {} exited with {status} after SIGTERM", self.label),
            None => {
                eprintln!("exactly-bench: note: {} still running {STOP_TIMEOUT:?} after SIGTERM; killed", self.label);
                self.kill();
            }
        }
        Ok(())
    }

    /// Waits up to `timeout` for the exit.
    async fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// Where the consumers' stderr goes: `target/bench-logs/` (or `$CARGO_TARGET_DIR`).
pub fn log_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let dir = target.join("bench-logs");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// This program, for starting its `consume` subcommand.
pub fn this_exe() -> Result<PathBuf, Error> {
    Ok(std::env::current_exe()?)
}
