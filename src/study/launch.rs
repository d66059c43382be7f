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

use super::devices::{self, DevicePool};
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
    /// Each trial is given the least-loaded device and sees only it; `None`: the CPU.
    pub devices: Option<DevicePool>,
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
        let lease = self.devices.as_ref().map(DevicePool::acquire);
        if let Some(l) = &lease {
            cmd.envs(l.device.env());
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
            let device = lease.as_ref().map(|l| l.device);
            drop(lease); // the device's slot is free before the study hears of the exit
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
            let outcome = match (outcome, device) {
                (Exit::Failed(reason), Some(d)) => Exit::Failed(devices::failure_on(d, &reason)),
                (outcome, _) => outcome,
            };
            let _ = tx.send(Message::Exit { number, outcome });
        });
        Ok(kill_tx)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tokio::sync::mpsc;

    use super::{Exit, Launch, Message, ProcessLauncher};
    use crate::study::devices::{DevicePool, Placement};

    /// A stand-in for `tune train`: writes the device it sees into its `--out` directory,
    /// then waits for stdin to close (the study's kill) or fails as a full GPU does.
    const FAKE_TRAIN: &str = r#"#!/bin/sh
while [ $# -gt 0 ]; do [ "$1" = --out ] && out=$2; shift; done
printf '%s|%s' "${CUDA_VISIBLE_DEVICES-unset}" "${TUNE_DEVICE-unset}" > "$out/device"
[ -e "$out/oom" ] && { echo "panicked: CUDA_ERROR_OUT_OF_MEMORY" >&2; exit 101; }
exec cat > /dev/null
"#;

    fn launcher(root: &Path, devices: &str, per_device: usize) -> ProcessLauncher {
        let exe = root.join("fake-train");
        std::fs::write(&exe, FAKE_TRAIN).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let placement = Placement::new(&[devices.to_string()], per_device).unwrap();
        ProcessLauncher { exe, threads: 1, data_dir: None, split_seed: 27, devices: Some(DevicePool::new(&placement)) }
    }

    async fn seen(dir: &Path) -> String {
        for _ in 0..500 {
            if let Ok(text) = std::fs::read_to_string(dir.join("device"))
                && text.contains('|')
            {
                return text;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the trial in {} never started", dir.display())
    }

    async fn exit_of(rx: &mut mpsc::UnboundedReceiver<Message>) -> (usize, Exit) {
        loop {
            if let Some(Message::Exit { number, outcome }) = rx.recv().await {
                return (number, outcome);
            }
        }
    }

    #[tokio::test]
    async fn each_trial_process_sees_only_its_own_device_and_slots_spread_over_devices() {
        let root = tempfile::tempdir().unwrap();
        let l = launcher(root.path(), "cuda:0,cuda:3", 2);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let dir = |n: usize| {
            let d = root.path().join(format!("trial-{n}"));
            std::fs::create_dir_all(&d).unwrap();
            d
        };
        let mut kills = Vec::new();
        for n in 0..4 {
            kills.push(l.spawn(n, &dir(n), tx.clone()).unwrap());
        }
        let mut got = Vec::new();
        for n in 0..4 {
            got.push(seen(&dir(n)).await);
        }
        assert_eq!(got, ["0|cuda:0", "3|cuda:3", "0|cuda:0", "3|cuda:3"], "two slots on each device, in turn");

        // Trial 1 (on cuda:3) is pruned: the next trial takes its place on cuda:3.
        kills.remove(1).send(()).unwrap();
        assert_eq!(exit_of(&mut rx).await, (1, Exit::Killed));
        let _next = l.spawn(4, &dir(4), tx.clone()).unwrap();
        assert_eq!(seen(&dir(4)).await, "3|cuda:3");

        // A trial whose device runs out of memory fails with the device named; the others run on.
        let oom = dir(5);
        std::fs::write(oom.join("oom"), "").unwrap();
        drop(kills.remove(0)); // trial 0 is stopped too, so cuda:0 has a free slot
        assert_eq!(exit_of(&mut rx).await.0, 0);
        let _oom = l.spawn(5, &oom, tx.clone()).unwrap();
        let (number, outcome) = exit_of(&mut rx).await;
        assert_eq!(number, 5);
        match outcome {
            Exit::Failed(reason) => assert!(reason.starts_with("out of memory on cuda:0:"), "{reason}"),
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_cpu_device_hides_every_gpu() {
        let root = tempfile::tempdir().unwrap();
        let l = launcher(root.path(), "cpu", 1);
        let (tx, _rx) = mpsc::unbounded_channel();
        let _kill = l.spawn(0, root.path(), tx).unwrap();
        assert_eq!(seen(root.path()).await, "|cpu");
    }

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
