//! One trial process: `tune train --json --resume …` (the same binary), its stdout parsed
//! into epoch messages, its stderr kept for the failure reason, and a kill switch.
//! The child's stdin is a pipe the study never writes: when the study dies (even by
//! kill -9) the pipe closes and the child stops itself, so no orphan keeps writing.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};

use crate::training::EpochMetrics;

/// What a trial process tells the study.
#[derive(Debug)]
pub enum Message {
    Epoch(usize, EpochMetrics),
    Exit { number: usize, outcome: Exit },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Exit {
    Success,
    /// Ended by SIGINT or SIGTERM (Ctrl-C reaches the whole process group): not a failure.
    Interrupted,
    /// Killed on the study's request (pruning).
    Killed,
    Failed(String),
    /// Its disk filled up: not the trial's fault, so the study stops and resumes it later.
    NoSpace(String),
}

/// Why a trial process failed: its own error message (`error: diverged at epoch 3: …`) when
/// it printed one, else the exit status and the tail of its error output (a panic).
fn failure_reason(status: &str, stderr_tail: &str) -> String {
    // The last line that starts with `error: ` (an `I/O error: ` inside a message is not one).
    let start = stderr_tail
        .match_indices("error: ")
        .map(|(at, _)| at)
        .filter(|&at| at == 0 || stderr_tail[..at].ends_with('\n'))
        .last();
    match start {
        Some(at) => stderr_tail[at + "error: ".len()..].trim().to_string(),
        None => format!("{status}\n{stderr_tail}").trim().to_string(),
    }
}

/// The seam between the study loop and whatever runs a trial: the loop hands over a trial's
/// number and directory, and hears back [`Message`]s on `tx`. Shipped code starts processes
/// ([`ProcessLauncher`]); tests script trials in-process.
pub trait Launch: Send {
    /// Starts trial `number` in `dir` (holding params.toml and train.toml); returns its kill
    /// switch. Every epoch line is sent before the trial's one `Exit`.
    fn spawn(
        &self,
        number: usize,
        dir: &Path,
        tx: mpsc::UnboundedSender<Message>,
    ) -> std::io::Result<oneshot::Sender<()>>;
}

/// Starts each trial as `tune train --json --resume …` of this same binary.
#[derive(Debug, Clone)]
pub struct ProcessLauncher {
    pub exe: PathBuf,
    pub threads: usize,
    pub data_dir: Option<PathBuf>,
    pub split_seed: u64,
}

impl Launch for ProcessLauncher {
    fn spawn(
        &self,
        number: usize,
        dir: &Path,
        tx: mpsc::UnboundedSender<Message>,
    ) -> std::io::Result<oneshot::Sender<()>> {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("train")
            .arg("--json")
            .arg("--resume")
            .arg("--exit-on-stdin-eof")
            .arg("--params")
            .arg(dir.join("params.toml"))
            .arg("--config")
            .arg(dir.join("train.toml"))
            .arg("--out")
            .arg(dir)
            .arg("--threads")
            .arg(self.threads.to_string())
            .arg("--split-seed")
            .arg(self.split_seed.to_string())
            .env("TUNE_LOG", "warn")
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(d) = &self.data_dir {
            cmd.arg("--data-dir").arg(d);
        }
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let (kill_tx, kill_rx) = oneshot::channel::<()>();
        let lines_tx = tx.clone();
        let reader = tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<EpochMetrics>(&line) {
                    Ok(m) => {
                        let _ = lines_tx.send(Message::Epoch(number, m));
                    }
                    Err(_) => tracing::debug!("trial {number}: {line}"),
                }
            }
        });
        let errors = tokio::spawn(async move {
            let mut tail = VecDeque::new();
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tail.len() == 8 {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
            tail.into_iter().collect::<Vec<_>>().join("\n")
        });
        tokio::spawn(async move {
            let _stdin = stdin; // held open for the child's lifetime
            let mut killed = false;
            let status = tokio::select! {
                status = child.wait() => status,
                _ = kill_rx => {
                    killed = true;
                    let _ = child.kill().await;
                    child.wait().await
                }
            };
            let _ = reader.await; // every epoch line is delivered before the exit
            let stderr_tail = errors.await.unwrap_or_default();
            let outcome = match status {
                _ if killed => Exit::Killed,
                Ok(s) if s.success() => Exit::Success,
                Ok(s) if s.code() == Some(crate::error::DISK_FULL) => {
                    Exit::NoSpace(failure_reason(&s.to_string(), &stderr_tail))
                }
                Ok(s) => {
                    use std::os::unix::process::ExitStatusExt;
                    match s.signal() {
                        Some(2) | Some(15) => Exit::Interrupted,
                        Some(9) => Exit::Failed(format!("killed by SIGKILL (out of memory?)\n{stderr_tail}")),
                        _ => Exit::Failed(failure_reason(&s.to_string(), &stderr_tail)),
                    }
                }
                Err(e) => Exit::Failed(format!("could not wait for the process: {e}")),
            };
            let _ = tx.send(Message::Exit { number, outcome });
        });
        Ok(kill_tx)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_trials_own_error_is_the_reason() {
        let tail = "WARN something\nerror: diverged at epoch 3: val_loss is NaN; its last finite epoch is kept\n  fix: lower lr";
        assert_eq!(
            super::failure_reason("exit status: 7", tail),
            "diverged at epoch 3: val_loss is NaN; its last finite epoch is kept\n  fix: lower lr"
        );
        let panic = "thread 'main' panicked at src/x.rs:1:1:\nboom";
        assert_eq!(super::failure_reason("exit status: 101", panic), format!("exit status: 101\n{panic}"));
        let nested = "error: t/best.bpk: cannot save: Record I/O error: No space left on device (os error 28)";
        assert_eq!(
            super::failure_reason("exit status: 9", nested),
            &nested["error: ".len()..],
            "the line, not its inner error"
        );
    }
}
